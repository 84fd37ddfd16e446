//! `a2fseg train`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::Global;
use crate::model::{Arch, ComputeDevice, Fusion, Preset, Targets};
use crate::train::{
    LogFormat, ModalityDropout, OptimizerKind, SubsetDraw, TrainConfig, TrainOptions,
};

/// Arguments of `a2fseg train`.
///
/// Settings are resolved as: the preset, then the `--config` file's keys, then these flags.
/// With `--resume`, the run's own `config.toml` replaces preset and file, so a resumed run
/// continues with the settings it started with (flags still override).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder (BraTS 2020/2021/2023 or MSD Task01 layout).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// Run directory: config.toml, split.json, log.csv, progress.png, checkpoints/.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,

    /// The method to train: a2fseg (the default; see --fusion for its ablations). Its
    /// recipe (network, optimiser, schedule, modality draw) is the starting point.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,

    /// Defaults to start from: paper (Adam, 128³, 400 epochs), small (CPU-sized network,
    /// 32³), authors (SGD Nesterov, 800 epochs, as the authors' code).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,

    /// A TOML file with any keys of config.toml (tables like [augmentation] and [model]
    /// merge key by key); unknown keys are errors.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// Split file (JSON with train / validation / test id lists) instead of a random
    /// 70/10/20 split by the seed.
    #[arg(long, value_name = "split.json")]
    pub split: Option<PathBuf>,

    /// Preprocessing cache folder (default RUN_DIR/cache); share one between runs on the
    /// same data to preprocess once.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,

    #[command(flatten)]
    pub finite: super::args::FiniteArgs,

    /// Epochs (the poly learning-rate decay reaches 0 after the last).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Optimiser steps per epoch.
    #[arg(long, value_name = "N")]
    pub iterations_per_epoch: Option<usize>,

    /// Patches per step.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Patch size X,Y,Z in voxels (multiples of 2^poolings of the network).
    #[arg(long, value_name = "X,Y,Z", value_parser = super::args::parse_xyz)]
    pub patch: Option<[usize; 3]>,

    /// Initial learning rate.
    #[arg(long, value_name = "F")]
    pub lr: Option<f64>,

    /// Optimiser.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,

    /// Fusion strategy of the network.
    #[arg(long, value_parser = parse_fusion, value_name = "adaptive|average|hemis")]
    pub fusion: Option<Fusion>,

    /// Head targets: overlapping regions WT/TC/ET (sigmoid) or 4 classes (softmax).
    #[arg(long, value_parser = parse_targets, value_name = "regions|classes")]
    pub targets: Option<Targets>,

    /// How modalities are hidden in training.
    #[arg(long, value_enum)]
    pub modality_dropout: Option<ModalityDropout>,

    /// Draw the training subset once per batch or once per sample.
    #[arg(long, value_enum)]
    pub subset_draw: Option<SubsetDraw>,

    /// Validate every N epochs (0: never).
    #[arg(long, value_name = "N")]
    pub validate_every: Option<usize>,

    /// Data-loading threads.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Seed of every random choice (weights, split, patches, augmentation, dropout).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Continue RUN_DIR from checkpoints/latest, exactly as if never interrupted.
    #[arg(long)]
    pub resume: bool,

    /// Compute device: cpu, cuda[:N], wgpu or wgpu:cpu|discrete:N|integrated:N (GPU builds
    /// only).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: ComputeDevice,

    /// Progress as text (bars and summary lines on stderr) or JSON lines on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Stop (as on Ctrl-C, saving checkpoints/latest) after this many steps (testing).
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

fn parse_fusion(s: &str) -> Result<Fusion, String> {
    s.parse()
}

fn parse_targets(s: &str) -> Result<Targets, String> {
    s.parse()
}

/// The configuration of this invocation (see [`TrainArgs`]).
pub fn resolve_config(args: &TrainArgs) -> Result<TrainConfig> {
    let saved = args.out.join("config.toml");
    let mut cfg = if args.resume && saved.is_file() {
        TrainConfig::load(&saved, None, None)?
    } else if let Some(path) = &args.config {
        TrainConfig::load(path, args.arch, args.preset)?
    } else {
        TrainConfig::resolve(args.arch, args.preset, None, "the preset")?
    };
    apply_overrides(&mut cfg, args);
    cfg.validate().context("invalid training settings")?;
    Ok(cfg)
}

fn apply_overrides(cfg: &mut TrainConfig, args: &TrainArgs) {
    if let Some(v) = args.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = args.iterations_per_epoch {
        cfg.iterations_per_epoch = v;
    }
    if let Some(v) = args.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = args.patch {
        cfg.model.patch_size = v;
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.optimizer {
        cfg.optimizer = v;
    }
    if let Some(v) = args.fusion {
        cfg.model.fusion = v;
    }
    if let Some(v) = args.targets {
        cfg.model.targets = v;
    }
    if let Some(v) = args.modality_dropout {
        cfg.modality_dropout = v;
    }
    if let Some(v) = args.subset_draw {
        cfg.subset_draw = v;
    }
    if let Some(v) = args.validate_every {
        cfg.validate_every = v;
    }
    if let Some(v) = args.workers {
        cfg.workers = v;
    }
    if let Some(v) = args.seed {
        cfg.seed = v;
    }
}

/// Runs `a2fseg train`.
pub fn run(args: TrainArgs, global: Global) -> Result<()> {
    let config = resolve_config(&args)?;
    if let Some(d) = args.device.describe()?
        && !global.quiet
        && args.log_format == LogFormat::Text
    {
        eprintln!("device {d}");
    }
    let opts = TrainOptions {
        split: args.split.clone(),
        cache: args.cache.clone(),
        resume: args.resume,
        device: args.device,
        quiet: global.quiet,
        log_format: args.log_format,
        handle_ctrl_c: true,
        stop_after_steps: args.stop_after_steps,
        strict_finite: args.finite.strict_finite,
        ..TrainOptions::new(&args.data, &args.out, config)
    };
    let outcome = crate::train::train(&opts)?;
    if args.log_format == LogFormat::Text {
        print_outcome(&outcome.run_dir, &outcome);
    }
    if outcome.interrupted && crate::train::ctrl_c_received() {
        // Stopped by Ctrl-C with `latest` saved: exit as shells report an interrupted
        // command (128 + SIGINT), so a script does not go on to use an unfinished model.
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(130);
    }
    Ok(())
}

fn print_outcome(run_dir: &Path, o: &crate::train::TrainOutcome) {
    let best = match &o.best {
        Some(b) => format!(
            ", best mean Dice {:.4} at epoch {} (checkpoints/best)",
            b.mean_dice, b.epoch
        ),
        None => String::new(),
    };
    if o.interrupted {
        println!(
            "stopped after {} epochs ({} steps); resume with --resume: {}{best}",
            o.epochs_completed,
            o.steps,
            run_dir.display()
        );
    } else {
        println!(
            "trained {} epochs ({} steps): {}{best}",
            o.epochs_completed,
            o.steps,
            run_dir.display()
        );
    }
}
