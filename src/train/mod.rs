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
pub mod loader;
pub mod log;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod store;
pub mod validate;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

pub use checkpoint::{Best, TrainState};
pub use config::{OptimizerKind, TrainConfig, TrainPreset};
pub use dropout::ModalityDropout;
pub use log::LogRow;

use crate::dataset::{self, Dataset, Split};
use crate::infer::{Predictor, Tta, postprocess};
use crate::modality::Subset;
use crate::model::{self, A2fseg};
use crate::preprocess::{Cache, PreprocessedCase};
use loader::{Batch, BatchSpec, CaseSource, Loader};
use sampler::TrainCase;
use store::LazyCases;

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
}

impl TrainOptions {
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

/// Paths inside a run directory.
struct RunDir {
    root: PathBuf,
}

impl RunDir {
    fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    fn split(&self) -> PathBuf {
        self.root.join("split.json")
    }
    fn log(&self) -> PathBuf {
        self.root.join("log.csv")
    }
    fn plot(&self) -> PathBuf {
        self.root.join("progress.png")
    }
    fn latest(&self) -> PathBuf {
        self.root.join("checkpoints").join("latest")
    }
    fn best(&self) -> PathBuf {
        self.root.join("checkpoints").join("best")
    }
}

/// Trains A2FSeg as `opts` says (see the module documentation).
pub fn train(opts: &TrainOptions) -> Result<TrainOutcome> {
    let cfg = &opts.config;
    cfg.validate()?;
    let base_device = opts.device.open()?;
    model::device::check_model_fits(&cfg.model, cfg.batch_size, &base_device)?;
    let run = RunDir {
        root: opts.out.clone(),
    };
    checkpoint::recover(&run.latest())?;
    checkpoint::recover(&run.best())?;
    if opts.resume {
        ensure!(
            run.latest().join(checkpoint::STATE_FILE).is_file(),
            "nothing to resume: {} holds no checkpoint",
            run.latest().display()
        );
    } else {
        ensure!(
            !run.latest().exists(),
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            run.root.display()
        );
    }
    std::fs::create_dir_all(&run.root)
        .with_context(|| format!("cannot create folder {}", run.root.display()))?;
    // From here on Ctrl-C stops cleanly (also while cases are being prepared): the flag is
    // checked before every step, and a stop saves `latest` first.
    STOP.store(false, Ordering::SeqCst);
    if opts.handle_ctrl_c {
        install_ctrl_c();
    }

    let text = opts.log_format == LogFormat::Text && !opts.quiet;
    let json = opts.log_format == LogFormat::Json;

    // ---- Data: discover, split, load and check every case before the first step. ----
    let dataset = dataset::discover(&opts.data)?;
    ensure!(
        !dataset.cases.is_empty(),
        "no cases found in {}",
        opts.data.display()
    );
    let split = resolve_split(opts, &run, &dataset)?;
    ensure!(
        !split.train.is_empty(),
        "the training split is empty ({} cases in {})",
        dataset.cases.len(),
        opts.data.display()
    );
    split.save(&run.split())?;
    let cache_dir = opts.cache.clone().unwrap_or_else(|| run.root.join("cache"));
    let cache = Cache::open(&cache_dir)?;
    let mut val_ids = split.validation.clone();
    if cfg.validate_every == 0 {
        val_ids.clear();
    }
    if cfg.validation_cases > 0 {
        val_ids.truncate(cfg.validation_cases);
    }
    let all_ids: Vec<&String> = split.train.iter().chain(&val_ids).collect();
    // Every case is read and checked before the first step. With more training cases than
    // `max_cases_in_memory`, only their modalities are kept: the loader reads them again
    // from the cache when needed (see `store`).
    let lazy = cfg.max_cases_in_memory > 0 && split.train.len() > cfg.max_cases_in_memory;
    let bar = progress_bar(all_ids.len(), !text, "preparing cases");
    let prepared: Vec<Result<(Subset, Option<PreprocessedCase>)>> = all_ids
        .par_iter()
        .map(|id| {
            let r = prepare_case(&dataset, &cache, id, cfg)
                .map(|pre| (pre.available(), (!lazy).then_some(pre)));
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut available = Vec::with_capacity(prepared.len());
    let mut cases = Vec::with_capacity(prepared.len());
    for r in prepared {
        let (a, pre) = r?;
        available.push(a);
        cases.extend(pre);
    }
    let n_train = split.train.len();
    let (train_cases, val_cases): (Arc<dyn CaseSource>, ValCases) = if lazy {
        let lazy_cases = |ids: &[String], available: &[Subset], capacity: usize| {
            LazyCases::new(
                dataset.clone(),
                cache.clone(),
                cfg.preprocess,
                ids.to_vec(),
                available.to_vec(),
                capacity,
            )
        };
        (
            Arc::new(lazy_cases(
                &split.train,
                &available[..n_train],
                cfg.max_cases_in_memory,
            )),
            ValCases::Lazy(lazy_cases(&val_ids, &available[n_train..], 1)),
        )
    } else {
        let val = cases.split_off(n_train);
        let train = cases
            .into_iter()
            .map(store::train_case)
            .collect::<Result<Vec<TrainCase>>>()?;
        (Arc::new(train), ValCases::Memory(val))
    };

    // ---- Run directory, model and optimiser. ----
    let device = base_device.clone().autodiff();
    let (mut model, mut optim, mut state) = if opts.resume {
        let latest = run.latest();
        let saved = TrainConfig::load(&latest.join(checkpoint::TRAIN_CONFIG_FILE), None)?;
        if &saved != cfg && text {
            eprintln!(
                "note: the configuration differs from the checkpoint's; the run will not \
                 match an uninterrupted one"
            );
        }
        let (m, _) = model::load_model(&latest, &device)?;
        let m = stable_param_ids(m);
        let path = latest.join(checkpoint::OPTIMIZER_FILE);
        let o = build_optimizer(cfg)
            .load(&path)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot read {}", path.display()))?;
        (m, o, TrainState::load(&latest)?)
    } else {
        let seed = rng::key(cfg.seed, &[rng::INIT]);
        let m = stable_param_ids(model::device::init_seeded(&cfg.model, seed, &device));
        (m, build_optimizer(cfg), TrainState::new())
    };
    cfg.save(&run.config())?;

    let spec = Arc::new(BatchSpec {
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        patch: cfg.patch_size,
        foreground_fraction: cfg.foreground_fraction,
        dropout: cfg.modality_dropout,
        augment: cfg.augmentation.clone(),
    });
    if json {
        println!(
            "{}",
            json!({
                "event": "start",
                "run_dir": run.root,
                "train_cases": train_cases.len(),
                "validation_cases": val_cases.len(),
                "cases_read_on_demand": lazy,
                "parameters": model.num_params(),
                "epochs": cfg.epochs,
                "resume_epoch": state.next_epoch,
                "resume_iteration": state.next_iteration,
            })
        );
    } else if text {
        eprintln!(
            "training on {} cases ({} for validation), {} parameters, {} epochs × {} iterations, patch {:?}{}",
            train_cases.len(),
            val_cases.len(),
            model.num_params(),
            cfg.epochs,
            cfg.iterations_per_epoch,
            cfg.patch_size,
            if opts.resume {
                format!(
                    ", resuming at epoch {} iteration {}",
                    state.next_epoch, state.next_iteration
                )
            } else {
                String::new()
            }
        );
        if lazy {
            eprintln!(
                "cases are read from the cache {} as needed ({} kept in memory)",
                cache_dir.display(),
                cfg.max_cases_in_memory
            );
        }
    }

    let mut session_steps = 0u64;
    let stop_now = |session_steps: u64| {
        STOP.load(Ordering::SeqCst) || opts.stop_after_steps.is_some_and(|n| session_steps >= n)
    };

    // ---- The loop. ----
    while state.next_epoch < cfg.epochs {
        let epoch = state.next_epoch;
        let lr = schedule::poly_lr(cfg.lr, epoch, cfg.epochs, cfg.poly_power);
        let started = Instant::now();
        let seconds_before = state.partial.seconds;
        let bar = progress_bar(cfg.iterations_per_epoch, !text, "");
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, cfg.epochs));
        bar.set_position(state.next_iteration as u64);
        let batches = Loader::new(
            Arc::clone(&train_cases),
            Arc::clone(&spec),
            epoch,
            state.next_iteration,
            cfg.iterations_per_epoch,
            cfg.workers,
            cfg.prefetch,
        );
        let mut interrupted = false;
        for batch in batches {
            let batch = batch?;
            if stop_now(session_steps) {
                interrupted = true;
                break;
            }
            let (m, parts) = step(model, &mut optim, &batch, cfg, lr, &device)?;
            model = m;
            let p = &mut state.partial;
            p.steps += 1;
            p.total += parts[0];
            p.modality += parts[1];
            p.average += parts[2];
            p.adaptive += parts[3];
            state.next_iteration += 1;
            state.steps += 1;
            session_steps += 1;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", p.total / p.steps as f64));
            if stop_now(session_steps) && state.next_iteration < cfg.iterations_per_epoch {
                interrupted = true;
                break;
            }
        }
        state.partial.seconds = seconds_before + started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if interrupted {
            save_checkpoint(&run.latest(), &model, &optim, &state, cfg)?;
            return Ok(finish(opts, &run, &state, true, json));
        }

        // Epoch finished: validate, log, checkpoint.
        let validate_now = !val_cases.is_empty()
            && cfg.validate_every > 0
            && ((epoch + 1) % cfg.validate_every == 0 || epoch + 1 == cfg.epochs);
        let dice = if validate_now {
            Some(validate::validate(
                model.valid(),
                val_cases.len(),
                |i| val_cases.get(i),
                &base_device,
            )?)
        } else {
            None
        };
        let p = &state.partial;
        let n = p.steps.max(1) as f64;
        let row = LogRow {
            epoch: epoch + 1,
            lr,
            loss_total: p.total / n,
            loss_modality: p.modality / n,
            loss_average: p.average / n,
            loss_adaptive: p.adaptive / n,
            val_dice_wt: dice.map(|d| d[0]),
            val_dice_tc: dice.map(|d| d[1]),
            val_dice_et: dice.map(|d| d[2]),
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        };
        state.rows.push(row.clone());
        state.next_epoch += 1;
        state.next_iteration = 0;
        state.partial = Default::default();
        let improved = match (row.val_dice_mean(), &state.best) {
            (Some(m), Some(b)) => m > b.mean_dice,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            state.best = Some(Best {
                epoch: epoch + 1,
                mean_dice: row.val_dice_mean().unwrap_or(0.0),
            });
        }
        log::write_csv(&run.log(), &state.rows)?;
        log::plot(&run.plot(), &state.rows)?;
        if improved {
            save_checkpoint(&run.best(), &model, &optim, &state, cfg)?;
        }
        save_checkpoint(&run.latest(), &model, &optim, &state, cfg)?;
        report_epoch(&row, cfg.epochs, state.best.as_ref(), text, json);
        if !row.loss_total.is_finite() {
            bail!(
                "the training loss became {} in epoch {}: lower the learning rate (--lr)",
                row.loss_total,
                epoch + 1
            );
        }
        if stop_now(session_steps) && state.next_epoch < cfg.epochs {
            return Ok(finish(opts, &run, &state, true, json));
        }
    }

    // ---- Post-processing, decided once on the best model (again after a resume that
    // finds it missing). ----
    let best_dir = run.best();
    if cfg.determine_postprocessing
        && !val_cases.is_empty()
        && best_dir.join("config.json").is_file()
        && !best_dir.join(postprocess::FILE).is_file()
    {
        let mut predictor =
            Predictor::load(&best_dir, base_device.clone(), validate::STEP, Tta::OFF)?;
        let bar = progress_bar(
            val_cases.len(),
            !text,
            "deciding post-processing on validation cases (all subsets)",
        );
        let mut stopped = false;
        let decision = postprocess::determine(
            &mut predictor,
            val_cases.len(),
            |i| val_cases.get(i),
            &mut |done, _| {
                bar.set_position(done as u64);
                stopped = STOP.load(Ordering::SeqCst);
                !stopped
            },
        )?;
        bar.finish_and_clear();
        match decision {
            Some(d) => {
                d.save(&best_dir)?;
                if json {
                    println!("{}", json!({ "event": "postprocessing", "decision": d }));
                } else if text {
                    eprintln!("post-processing: {}", d.summary());
                }
            }
            None => return Ok(finish(opts, &run, &state, true, json)),
        }
    }
    Ok(finish(opts, &run, &state, false, json))
}

fn finish(
    opts: &TrainOptions,
    run: &RunDir,
    state: &TrainState,
    interrupted: bool,
    json: bool,
) -> TrainOutcome {
    let outcome = TrainOutcome {
        run_dir: run.root.clone(),
        epochs_completed: state.next_epoch,
        steps: state.steps,
        interrupted,
        last: state.rows.last().cloned(),
        best: state.best.clone(),
    };
    if json {
        println!(
            "{}",
            json!({
                "event": if interrupted { "interrupted" } else { "done" },
                "run_dir": run.root,
                "epochs_completed": outcome.epochs_completed,
                "epochs": opts.config.epochs,
                "steps": outcome.steps,
                "best": outcome.best,
            })
        );
    }
    outcome
}

fn report_epoch(row: &LogRow, epochs: usize, best: Option<&Best>, text: bool, json: bool) {
    if json {
        let mut v = serde_json::to_value(row).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("event".into(), json!("epoch"));
            obj.insert("best_epoch".into(), json!(best.map(|b| b.epoch)));
        }
        println!("{v}");
    } else if text {
        let dice = match (row.val_dice_wt, row.val_dice_tc, row.val_dice_et) {
            (Some(w), Some(t), Some(e)) => format!("  val Dice WT {w:.3} TC {t:.3} ET {e:.3}"),
            _ => String::new(),
        };
        eprintln!(
            "epoch {}/{}  lr {:.5}  loss {:.4} (modality {:.4}, average {:.4}, adaptive {:.4}){}  {:.1} s",
            row.epoch,
            epochs,
            row.lr,
            row.loss_total,
            row.loss_modality,
            row.loss_average,
            row.loss_adaptive,
            dice,
            row.seconds
        );
    }
}

fn progress_bar(len: usize, hidden: bool, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix} {msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// The split: `--split FILE`, else the run's own `split.json` when resuming, else a random
/// 70/10/20 split of the cases that have a segmentation, seeded by the run seed.
fn resolve_split(opts: &TrainOptions, run: &RunDir, dataset: &Dataset) -> Result<Split> {
    let split = if let Some(path) = &opts.split {
        Split::load(path)?
    } else if opts.resume && run.split().is_file() {
        Split::load(&run.split())?
    } else {
        let ids: Vec<String> = dataset
            .cases
            .iter()
            .filter(|c| c.has_seg())
            .map(|c| c.id.clone())
            .collect();
        ensure!(
            !ids.is_empty(),
            "no case in {} has a segmentation to train on",
            opts.data.display()
        );
        Split::random(
            &ids,
            rng::key(opts.config.seed, &[rng::SPLIT]),
            [70, 10, 20],
        )?
    };
    split.validate(dataset)?;
    Ok(split)
}

/// Loads (through the cache) and checks one case for training or validation.
fn prepare_case(
    dataset: &Dataset,
    cache: &Cache,
    id: &str,
    cfg: &TrainConfig,
) -> Result<PreprocessedCase> {
    let patch = cfg.patch_size;
    let files = dataset
        .case(id)
        .with_context(|| format!("case {id} is not in {}", dataset.root.display()))?;
    ensure!(
        files.has_seg(),
        "case {id} has no segmentation, so it cannot be used for training or validation"
    );
    ensure!(
        !files.available().is_empty(),
        "case {id} has no image to train on"
    );
    let pre: PreprocessedCase = cache.get_or_compute(dataset, files, &cfg.preprocess)?;
    let dims = pre.geometry.dims;
    for a in 0..3 {
        ensure!(
            patch[a] <= dims[a],
            "patch size [{}, {}, {}] is larger than the image of case {id} ({}×{}×{}) along {}: \
             choose a smaller --patch",
            patch[0],
            patch[1],
            patch[2],
            dims[0],
            dims[1],
            dims[2],
            ["x", "y", "z"][a]
        );
    }
    ensure!(pre.classes.is_some(), "case {id} has no segmentation");
    Ok(pre)
}

/// The validation cases: in memory, or read one at a time from the cache.
enum ValCases {
    Memory(Vec<PreprocessedCase>),
    Lazy(LazyCases),
}

impl ValCases {
    fn len(&self) -> usize {
        match self {
            ValCases::Memory(v) => v.len(),
            ValCases::Lazy(l) => l.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, index: usize) -> Result<Cow<'_, PreprocessedCase>> {
        match self {
            ValCases::Memory(v) => Ok(Cow::Borrowed(&v[index])),
            ValCases::Lazy(l) => Ok(Cow::Owned(l.preprocessed(index)?)),
        }
    }
}

fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: cfg.momentum,
                dampening: 0.0,
                nesterov: cfg.nesterov,
            }))
            .with_weight_decay(decay)
            .init(),
    }
}

/// Gives every parameter an id derived from its module path and position, so that a
/// reloaded model's parameters match the optimiser state saved with it (Burn draws fresh
/// random ids on every initialisation).
fn stable_param_ids<M: Module>(module: M) -> M {
    struct Ids {
        path: Vec<String>,
        index: u64,
    }
    impl ModuleMapper for Ids {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, value, mapper) = param.consume();
            // FNV-1a of the path, then mixed with the visit index.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.path.join(".").bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            let id = rng::key(h, &[self.index]);
            self.index += 1;
            Param::from_mapped_value(ParamId::from(id), value, mapper)
        }
    }
    module.map(&mut Ids {
        path: Vec::new(),
        index: 0,
    })
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares {
        grads: &*grads,
        acc: None,
    };
    module.visit(&mut sum);
    let norm = sum
        .acc
        .map_or(0.0, |a| (a.into_scalar::<f32>() as f64).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

/// One optimiser step on `batch`; returns the updated model and the loss parts
/// `[total, modality, average, adaptive]`.
fn step(
    model: A2fseg,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
    device: &Device,
) -> Result<(A2fseg, [f64; 4])> {
    let shape = batch.image_shape();
    let inputs: Vec<_> = batch
        .images
        .iter()
        .map(|(m, v)| {
            (
                *m,
                Tensor::<5>::from_data(TensorData::new(v.clone(), shape), device),
            )
        })
        .collect();
    let classes: Vec<i64> = batch.classes.iter().map(|&c| c as i64).collect();
    let classes =
        Tensor::<4, Int>::from_data(TensorData::new(classes, batch.class_shape()), device);
    let out = model.forward(&inputs).with_context(|| {
        format!(
            "forward pass failed in epoch {} iteration {}",
            batch.epoch + 1,
            batch.iteration
        )
    })?;
    let parts = model::loss(&cfg.model, &out, classes);
    let total = parts.total.clone().into_scalar::<f32>() as f64;
    let grads = parts.total.backward();
    let mut grads = GradientsParams::from_grads(grads, &model);
    clip_global_norm(&model, &mut grads, cfg.grad_clip_norm);
    let model = optim.step(lr, model, grads);
    Ok((
        model,
        [
            total,
            parts.modality as f64,
            parts.average as f64,
            parts.adaptive as f64,
        ],
    ))
}

fn save_checkpoint(
    dir: &Path,
    model: &A2fseg,
    optim: &ModuleOptimizer,
    state: &TrainState,
    cfg: &TrainConfig,
) -> Result<()> {
    checkpoint::write_atomically(dir, |tmp| {
        model::save_model(tmp, model, &cfg.model)?;
        let path = tmp.join(checkpoint::OPTIMIZER_FILE);
        optim
            .save(&path)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        state.save(tmp)?;
        cfg.save(&tmp.join(checkpoint::TRAIN_CONFIG_FILE))
    })
    .with_context(|| format!("cannot save the checkpoint {}", dir.display()))
}
