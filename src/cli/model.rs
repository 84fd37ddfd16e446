//! `a2fseg model summary`.

use anyhow::Result;
use clap::Subcommand;

use super::{Global, NotImplemented};

/// Subcommands of `a2fseg model`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print layers, parameter counts and multiply-accumulates.
    Summary {},
}

/// Runs `a2fseg model …`.
pub fn run(cmd: ModelCommand, _global: Global) -> Result<()> {
    match cmd {
        ModelCommand::Summary {} => Err(NotImplemented("model summary").into()),
    }
}
