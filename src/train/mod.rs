//! Training: from a dataset folder to a run directory with checkpoints.
//!
//! - [`config`]: the resolved settings (`RUN_DIR/config.toml`).
//! - [`dropout`]: which modalities each iteration trains on (restricted to those the
//!   batch's cases have: cases may lack modalities).
//! - [`sampler`] + [`augment`]: random patches with foreground oversampling and
//!   nnU-Net-style augmentation in one resampling pass.
//! - [`loader`]: batches prepared ahead on worker threads, deterministic in content and order.
//! - [`store`]: training cases read on demand from the preprocessing cache when there are
//!   more than `max_cases_in_memory` (a bounded least-recently-used set stays in memory).
//! - [`schedule`]: the poly learning-rate decay.
//! - [`rng`]: the keyed random streams that make all of it reproducible and resumable.
//! - [`checkpoint`]: crash-safe checkpoints; [`log`]: `log.csv` and `progress.png`;
//!   [`validate`]: the validation Dice (through the inference predictor).
//! - [`step`]: one optimiser step (also what `a2fseg bench` times).
//! - [`events`]: what a run reports, through one [`crate::progress::Sink`].
//!
//! A run goes through phases: `prepare` (the run folder's guard, the split, every case read
//! and checked), then `trainer` (init or resume, the epochs' steps, the end of each epoch,
//! the finish).
//!
//! # The run directory
//!
//! ```text
//! RUN_DIR/
//!   config.toml            the resolved TrainConfig, written before the first step
//!   split.json             train / validation / test case ids
//!   log.csv                one row per epoch (lr, losses per head group, val Dice, seconds)
//!   progress.png           losses and validation Dice, redrawn every epoch
//!   cache/                 preprocessed cases (unless --cache DIR)
//!   checkpoints/latest/    config.json + model.safetensors (a model folder for
//!   checkpoints/best/        `predict`/`evaluate`) + optimizer.bpk + state.json + train.toml
//!   checkpoints/best/postprocess.json   the post-processing decided on the validation
//!                          cases after the last epoch (`crate::infer::postprocess`)
//! ```
//!
//! # Reproducibility
//!
//! Every random decision comes from a stream keyed by `(seed, epoch, iteration, …)`, the
//! weights start from the seeded device RNG, and parameters get ids derived from their
//! module paths so that optimiser state reattaches to reloaded weights. Two runs with one
//! seed (on one machine and thread count) log the same numbers, and a run stopped at any
//! step and resumed ends with the same weights as one that never stopped.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod dropout;
pub mod events;
pub mod loader;
pub mod log;
mod prepare;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod step;
pub mod store;
mod trainer;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

pub use checkpoint::{Best, TrainState};
pub use config::{OptimizerKind, TrainConfig};
pub use dropout::{ModalityDropout, SubsetDraw};
pub use log::LogRow;
pub use schedule::LrSchedule;
pub use step::step;

use crate::model;
use crate::progress::{Output, Sink, Stream};

/// How progress is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// A progress bar per epoch and a summary line per epoch on stderr.
    Text,
    /// One JSON object per line on stdout (`"event"`: `start`, `epoch`, `postprocessing`,
    /// `done` or `interrupted`); no progress bar.
    Json,
}

/// What to train and where.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Dataset folder (any layout `crate::dataset::discover` knows).
    pub data: PathBuf,
    /// Run directory.
    pub out: PathBuf,
    /// The resolved configuration.
    pub config: TrainConfig,
    /// A split file to use instead of a random 70/10/20 split.
    pub split: Option<PathBuf>,
    /// Preprocessing cache folder (default `RUN_DIR/cache`).
    pub cache: Option<PathBuf>,
    /// Continue from `RUN_DIR/checkpoints/latest`.
    pub resume: bool,
    /// Where the network trains.
    pub device: model::ComputeDevice,
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// Install a Ctrl-C handler that stops after the current step and saves `latest`.
    pub handle_ctrl_c: bool,
    /// Stop as if Ctrl-C were pressed after this many steps of this process (for tests of
    /// interruption and resumption).
    pub stop_after_steps: Option<u64>,
    /// Refuse input files with NaN or infinite voxels instead of reading them as 0.
    pub strict_finite: bool,
}

impl TrainOptions {
    /// Where this run's events go: JSON lines, text on stderr, or nothing when quiet (JSON
    /// lines are written even when quiet).
    fn sink(&self) -> Sink {
        let output = match (self.log_format, self.quiet) {
            (LogFormat::Json, _) => Output::Json,
            (LogFormat::Text, false) => Output::Text,
            (LogFormat::Text, true) => Output::Quiet,
        };
        Sink::new(output, Stream::Stderr)
    }

    /// Options with defaults: cpu, text progress, no Ctrl-C handler, fresh run.
    pub fn new(data: &Path, out: &Path, config: TrainConfig) -> TrainOptions {
        TrainOptions {
            data: data.to_path_buf(),
            out: out.to_path_buf(),
            config,
            split: None,
            cache: None,
            resume: false,
            device: model::ComputeDevice::Cpu,
            quiet: false,
            log_format: LogFormat::Text,
            handle_ctrl_c: false,
            stop_after_steps: None,
            strict_finite: false,
        }
    }
}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Epochs finished (over all sessions of the run).
    pub epochs_completed: usize,
    /// Optimiser steps done (over all sessions).
    pub steps: u64,
    /// Whether the run stopped early (Ctrl-C) with `latest` saved mid-way.
    pub interrupted: bool,
    /// The last epoch's log row.
    pub last: Option<LogRow>,
    /// The best validation score.
    pub best: Option<Best>,
}

/// Set by the Ctrl-C handler.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: leave now. Checkpoints are swapped atomically, so this
                // cannot corrupt one.
                std::process::exit(130);
            }
            eprintln!("\nstopping after this step (Ctrl-C again to quit at once)…");
        });
    });
}

/// Whether Ctrl-C (SIGINT) was received during the last [`train`] call of this process
/// (with [`TrainOptions::handle_ctrl_c`]).
pub fn ctrl_c_received() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Trains the network `opts.config.model` names as `opts` says (see the module
/// documentation).
pub fn train(opts: &TrainOptions) -> Result<TrainOutcome> {
    opts.config.validate()?;
    // The device first: a missing driver or a patch too large for its buffers stops here,
    // before any case is read.
    let base_device = opts.device.open()?;
    model::device::check_model_fits(&opts.config.model, opts.config.batch_size, &base_device)?;
    let run = prepare::open_run_dir(opts)?;
    // From here on Ctrl-C stops cleanly (also while cases are being prepared): the flag is
    // checked before every step, and a stop saves `latest` first.
    STOP.store(false, Ordering::SeqCst);
    if opts.handle_ctrl_c {
        install_ctrl_c();
    }
    let sink = opts.sink();
    let data = prepare::load_data(opts, &run, &sink)?;
    crate::with_network!(opts.config.model.arch, N => {
        trainer::Trainer::<N>::init_or_resume(opts, run, data, sink, base_device)?.run()
    })
}
