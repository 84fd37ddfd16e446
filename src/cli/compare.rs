//! `a2fseg compare`: several methods on one split, reported side by side. See
//! [`crate::compare`] for the layout of the output folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Global;
use crate::compare::{CompareOptions, Method, Recipe, parse_methods, run_compare};
use crate::infer::Tta;
use crate::model::{ComputeDevice, Preset};

/// Arguments of `a2fseg compare`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    a2fseg compare --data phantoms --methods a2fseg,average,hemis --preset small \
    --budget-minutes 60 --out cmp/")]
pub struct CompareArgs {
    /// Dataset folder.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Comma-separated methods: a2fseg, average, hemis (A2FSeg's network with each fusion)
    /// and every other architecture of `--arch` by its name.
    #[arg(long, value_name = "LIST")]
    pub methods: String,
    /// Output folder: compare.json, split.json, <method>/run, <method>/eval, summary.md,
    /// summary.csv, summary.json, report.html; rerunning reuses and resumes.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Split file (JSON with train / validation / test id lists) instead of a seeded
    /// 70/10/20 split.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// Preset of every method.
    #[arg(long, value_enum, default_value = "small")]
    pub preset: Preset,
    /// Time budget in minutes, split equally in time across the methods (decides the
    /// epochs from measured step times).
    #[arg(long, value_name = "M")]
    pub budget_minutes: Option<f64>,
    /// Training recipe: each method its own, or A2FSeg's for every method.
    #[arg(long, value_enum, default_value = "own")]
    pub recipe: Recipe,
    /// Epochs for every method (instead of the recipe's or the budget's).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Optimiser steps per epoch for every method.
    #[arg(long, value_name = "N")]
    pub iterations_per_epoch: Option<usize>,
    /// Seed of the split and of every training.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Test cases shown in report.html's interactive viewer (the first N of the test part;
    /// the first is the Fig.-2 case; 0: none).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub view_cases: usize,
    /// Test-time mirroring of the evaluations: off (as `evaluate`), 8 (every axis, as the
    /// A2FSeg authors evaluate) or axes such as x; a budget leaves time for it.
    #[arg(long, value_name = "TTA", default_value = "off")]
    pub tta: Tta,
    /// Compute device: cpu, cuda[:N], wgpu or wgpu:cpu|discrete:N|integrated:N (GPU builds
    /// only).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: ComputeDevice,
    /// NaN or infinite input voxels: refused or read as 0.
    #[command(flatten)]
    pub finite: super::args::FiniteArgs,
}

/// Parses a `--methods` value (see [`parse_methods`]); the error names the option and the
/// known methods, on one line.
pub fn methods_option(s: &str) -> Result<Vec<Method>> {
    parse_methods(s).context("--methods")
}

/// Runs `a2fseg compare`.
pub fn run(args: CompareArgs, global: Global) -> Result<()> {
    if let Some(d) = args.device.describe()?
        && !global.quiet
    {
        eprintln!("device {d}");
    }
    let methods = methods_option(&args.methods)?;
    let opts = CompareOptions {
        data: args.data,
        methods,
        out: args.out,
        split: args.split,
        preset: args.preset,
        recipe: args.recipe,
        budget_minutes: args.budget_minutes,
        spent_seconds: 0.0,
        epochs: args.epochs,
        iterations_per_epoch: args.iterations_per_epoch,
        seed: args.seed,
        view_cases: args.view_cases,
        tta: args.tta,
        device: args.device,
        strict_finite: args.finite.strict_finite,
        quiet: global.quiet,
    };
    let outcome = match run_compare(&opts) {
        Ok(o) => o,
        // Stopped by Ctrl-C with the training's `latest` saved: exit as `train` does
        // (128 + SIGINT), so a script does not go on to use an unfinished comparison.
        Err(e) if crate::train::ctrl_c_received() => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(130);
        }
        Err(e) => return Err(e),
    };
    for m in &outcome.summary.methods {
        let d = m.scores.mean.regions.map(|r| 100.0 * r.dice);
        println!(
            "{}: mean Dice over {} subset(s): WT {:.2}  TC {:.2}  ET {:.2}",
            m.method,
            m.scores.subsets.len(),
            d[0],
            d[1],
            d[2]
        );
    }
    println!("{}", outcome.html.display());
    Ok(())
}
