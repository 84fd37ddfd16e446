//! `a2fseg train`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg train`.
#[derive(Debug, Args)]
pub struct TrainArgs {}

/// Runs `a2fseg train`.
pub fn run(_args: TrainArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("train").into())
}
