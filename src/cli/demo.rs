//! `a2fseg demo`.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use super::Global;
use crate::demo::{DemoOptions, run_demo, run_demo_compare};
use crate::infer::Tta;
use crate::model::Arch;

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
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub cases: usize,
    /// Seed of phantoms, split and training.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
    /// Phantom shape X,Y,Z in voxels.
    #[arg(long, value_name = "X,Y,Z", default_value = "80,80,52", value_parser = super::args::parse_xyz)]
    pub shape: [usize; 3],
    /// The method the demo trains with its own recipe: a2fseg (the default: adaptive fusion,
    /// then the average-fusion baseline if the budget allows), a2fseg-released, uhved, mfi,
    /// mmformer or rfnet.
    #[arg(
        long,
        value_name = "ARCH",
        default_value = "a2fseg",
        conflicts_with = "methods"
    )]
    pub arch: Arch,
    /// Compare these methods (comma-separated: a2fseg, average, hemis, uhved,
    /// a2fseg-released, mfi, mmformer, rfnet) on the phantoms, as `a2fseg compare` does, into OUT/compare, instead
    /// of the single-model demo.
    #[arg(long, value_name = "LIST")]
    pub methods: Option<String>,
    /// Test cases shown in report.html's interactive viewer (the first N of the test part;
    /// the first is the Fig.-2 case; 0: none).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub view_cases: usize,
    /// Test-time mirroring of the final evaluation: x (left-right, 2 passes; the default),
    /// 8 (every axis, as the A2FSeg authors evaluate), off, or other axes such as xy. The
    /// plan leaves time for it.
    #[arg(long, value_name = "TTA", default_value = "x")]
    pub tta: Tta,
    /// Optimiser steps per epoch (for fast end-to-end tests of the pipeline).
    #[arg(long, value_name = "N", hide = true)]
    pub iterations_per_epoch: Option<usize>,
}

/// Runs `a2fseg demo`.
pub fn run(args: DemoArgs, global: Global) -> Result<()> {
    ensure!(
        args.budget_minutes.is_finite() && args.budget_minutes > 0.0,
        "--budget-minutes must be a positive number"
    );
    ensure!(
        args.cases >= 5,
        "--cases must be at least 5 (train, validation and test need cases)"
    );
    ensure!(
        args.iterations_per_epoch != Some(0),
        "--iterations-per-epoch must be at least 1"
    );
    let opts = DemoOptions {
        out: args.out,
        budget_minutes: args.budget_minutes,
        cases: args.cases,
        seed: args.seed,
        dims: args.shape,
        arch: args.arch,
        quiet: global.quiet,
        iterations_per_epoch: args.iterations_per_epoch,
        view_cases: args.view_cases,
        tta: args.tta,
    };
    if let Some(list) = &args.methods {
        let methods = super::compare::methods_option(list)?;
        let outcome = run_demo_compare(&opts, &methods)?;
        println!("{}", outcome.html.display());
        return Ok(());
    }
    let outcome = run_demo(&opts)?;
    if global.quiet {
        println!("{}", outcome.html.display());
    }
    Ok(())
}
