//! `a2fseg phantom`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg phantom`.
#[derive(Debug, Args)]
pub struct PhantomArgs {}

/// Runs `a2fseg phantom`.
pub fn run(_args: PhantomArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("phantom").into())
}
