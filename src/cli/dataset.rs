//! `a2fseg dataset check` and `a2fseg dataset split`.

use anyhow::Result;
use clap::Subcommand;

use super::{Global, NotImplemented};

/// Subcommands of `a2fseg dataset`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Report the layout, cases, modalities and every problem found.
    Check {},
    /// Write a reproducible train/validation/test split.
    Split {},
}

/// Runs `a2fseg dataset …`.
pub fn run(cmd: DatasetCommand, _global: Global) -> Result<()> {
    match cmd {
        DatasetCommand::Check {} => Err(NotImplemented("dataset check").into()),
        DatasetCommand::Split {} => Err(NotImplemented("dataset split").into()),
    }
}
