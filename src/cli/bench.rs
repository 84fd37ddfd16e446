//! `a2fseg bench`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs `a2fseg bench`.
pub fn run(_args: BenchArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("bench").into())
}
