//! `a2fseg metrics`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {}

/// Runs `a2fseg metrics`.
pub fn run(_args: MetricsArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("metrics").into())
}
