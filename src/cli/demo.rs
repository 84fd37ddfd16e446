//! `a2fseg demo`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs `a2fseg demo`.
pub fn run(_args: DemoArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("demo").into())
}
