//! `a2fseg predict`.

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {}

/// Runs `a2fseg predict`.
pub fn run(_args: PredictArgs, _global: Global) -> Result<()> {
    Err(NotImplemented("predict").into())
}
