//! `a2fseg info`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg info`.
#[derive(Debug, Args)]
pub struct InfoArgs {}

/// Runs `a2fseg info`.
pub fn run(_args: InfoArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("info").into())
}
