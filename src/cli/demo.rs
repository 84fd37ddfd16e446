//! `a2fseg demo`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{Global, NotImplemented};

/// Arguments of `a2fseg demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder; finished stages found there are reused.
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    pub out: PathBuf,
    /// Time budget for the whole run, in minutes.
    #[arg(long, value_name = "M", default_value_t = 15.0)]
    pub budget_minutes: f64,
    /// Number of synthetic cases (split 70/10/20).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub cases: usize,
    /// Seed of phantoms, split and training.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
}

/// Runs `a2fseg demo`.
pub fn run(args: DemoArgs, global: Global) -> Result<()> {
    let _ = (args, global);
    Err(NotImplemented("demo").into())
}
