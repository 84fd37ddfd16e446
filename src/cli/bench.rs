//! `a2fseg bench`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::bench::{BenchOptions, CASE_DIMS};

/// Arguments of `a2fseg bench`. JSON lines on stdout, one per measurement; progress on
/// stderr. The thread count is the global `--threads` (default: all cores).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Timed runs per measurement (median and minimum are reported).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub repeats: usize,

    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub warmup: usize,

    /// Run only these measurements: names (conv_block, msfe_forward, forward, train_step,
    /// predict, evaluate) or ids (forward_m2, train_step_small, evaluate_shared, …).
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME]")]
    pub only: Vec<String>,

    /// Model preset of every measurement except the training steps (paper or small).
    #[arg(long, default_value = "paper")]
    pub preset: String,

    /// Presets whose training step is measured, each at its own patch size.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "small,paper",
        value_name = "P[,P]"
    )]
    pub train_presets: Vec<String>,

    /// Network input size X,Y,Z (and the predictor's patch) for the --preset measurements;
    /// default: the preset's patch size (128,128,128 for paper).
    #[arg(long, value_name = "X,Y,Z", value_parser = super::args::parse_xyz)]
    pub shape: Option<[usize; 3]>,

    /// Size X,Y,Z of the phantom case of predict and evaluate (default 240,240,155).
    #[arg(long, value_name = "X,Y,Z", value_parser = super::args::parse_xyz)]
    pub case_dims: Option<[usize; 3]>,

    /// Phantom geometries of predict and evaluate, one case each: brats (BraTS's 1 mm
    /// geometry, a brain box of about 140×175×140; ids predict, evaluate_shared, …) and fit
    /// (the phantoms' default geometry, the bench's case before; ids predict_fit, …).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "brats",
        value_name = "GEOMETRY[,GEOMETRY]"
    )]
    pub case_geometry: Vec<crate::phantom::PhantomGeometry>,

    /// Tiny shapes (16³ patches, a 24×24×16 case) and only the --preset training step: for
    /// tests, seconds in total.
    #[arg(long)]
    pub quick: bool,

    /// Seed of the random weights, the inputs and the phantom case.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Also write the JSON lines to this file (atomically, after each measurement).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Write the models, check inputs/outputs and the case for the PyTorch reference
    /// (benches/reference/run.py) into this folder.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,

    /// Compute device: cpu, cuda[:N], wgpu or wgpu:cpu|discrete:N|integrated:N (GPU builds
    /// only).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: crate::model::ComputeDevice,

    /// Also measure these methods' forward pass (forward_ARCH, at --preset) and training step
    /// (train_step_ARCH_PRESET, each with its own recipe), e.g. --arch a2fseg,uhved.
    #[arg(long, value_delimiter = ',', value_name = "ARCH[,ARCH]")]
    pub arch: Vec<crate::model::Arch>,
}

/// Runs `a2fseg bench`.
pub fn run(args: BenchArgs, global: Global) -> Result<()> {
    let shape = args.shape;
    let case_dims = args.case_dims.unwrap_or(CASE_DIMS);
    let train_presets = if args.quick {
        vec![args.preset.clone()]
    } else {
        args.train_presets
    };
    let opts = BenchOptions {
        preset: args.preset,
        train_presets,
        shape,
        case_dims,
        case_geometries: args.case_geometry,
        repeats: args.repeats,
        warmup: args.warmup,
        only: args.only,
        quick: args.quick,
        seed: args.seed,
        out: args.out,
        export: args.export,
        quiet: global.quiet,
        device: args.device,
        archs: args.arch,
    };
    crate::bench::run(&opts)?;
    Ok(())
}
