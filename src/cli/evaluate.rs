//! `a2fseg evaluate`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {}

/// Runs `a2fseg evaluate`.
pub fn run(_args: EvaluateArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("evaluate").into())
}
