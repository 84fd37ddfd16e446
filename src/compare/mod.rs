//! `a2fseg compare`: several segmentation methods trained and evaluated on the same data,
//! split, augmentation, metrics and post-processing, and reported side by side (the
//! paper's Table 1 and Table 2, subsets won, paired Wilcoxon tests, charts, Fig. 2).
//!
//! Each method runs through the library functions its commands use:
//! [`crate::train::train`] (`a2fseg train`) into `OUT/<method>/run`, then
//! [`crate::infer::evaluate::evaluate`] (`a2fseg evaluate`, the test cases over all 15
//! subsets) into `OUT/<method>/eval`. Both are resumable stages with done-markers
//! ([`crate::demo::stage`]): a rerun reuses a finished training or evaluation, an
//! interrupted training continues from its latest checkpoint and an interrupted evaluation
//! from its `cases.csv`. `OUT/compare.json` ([`settings`]) holds the settings and the plan;
//! `OUT/split.json` the split every method uses; `OUT/cache` the preprocessing they share.
//! The outputs ([`summary`], [`report`]): `summary.json`, `summary.csv`, `summary.md`,
//! `report.html` and `figures/`.
//!
//! With `--budget-minutes M`, the budget left after the calibration is split **equally in
//! wall-clock time** across the methods: each method's step time is measured by two short
//! training runs, twice and in turn with the other methods (the faster measurement counts,
//! so a burst of load during the calibration does not make the plan unfair), and the demo's
//! planner ([`crate::demo::budget::plan`]) turns its share (training, validation and
//! evaluation) into epochs, so a slower method trains fewer epochs in the same time. The
//! plan is not a deadline: a machine that gets busier after the calibration takes longer
//! (a training cut at a wall-clock deadline would not be reproducible).

pub mod methods;
pub mod report;
pub mod settings;
pub mod summary;
pub mod wilcoxon;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

pub use methods::{Method, Recipe, parse_methods};
pub use settings::{CompareFile, CompareSettings, MethodPlan};
pub use summary::CompareSummary;

use crate::dataset::{self, Split};
use crate::demo::budget::{self, BudgetInputs};
use crate::demo::stage::{self, Stage, StageState};
use crate::fsutil::FolderLock;
use crate::infer::Tta;
use crate::infer::evaluate::{EvaluateOptions, evaluate};
use crate::metrics::MetricOptions;
use crate::model::{ComputeDevice, Preset};
use crate::preprocess::PreprocessSettings;
use crate::train::{TrainConfig, TrainOptions};

/// Split ratios train/validation/test when no split file is given, as the paper.
const RATIOS: [u32; 3] = [70, 10, 20];

/// What to compare and where.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Dataset folder.
    pub data: PathBuf,
    /// The methods, in table order.
    pub methods: Vec<Method>,
    /// Output folder.
    pub out: PathBuf,
    /// A split file; without it a seeded 70/10/20 split is written to `OUT/split.json`.
    pub split: Option<PathBuf>,
    /// The preset of every method.
    pub preset: Preset,
    /// Own or common training recipe.
    pub recipe: Recipe,
    /// Time budget for the whole comparison, in minutes.
    pub budget_minutes: Option<f64>,
    /// Seconds of the budget already spent before the comparison started (the demo's
    /// phantoms); not a setting, so a rerun is not refused when it differs.
    pub spent_seconds: f64,
    /// Epochs for every method (instead of the recipe's or the budget's).
    pub epochs: Option<usize>,
    /// Optimiser steps per epoch for every method.
    pub iterations_per_epoch: Option<usize>,
    /// Seed of the split and of every training.
    pub seed: u64,
    /// Test cases with an interactive viewer in `report.html` (the first ones of the split;
    /// the first is the Fig.-2 case); not a setting of the results.
    pub view_cases: usize,
    /// Test-time mirroring of every method's evaluation on the test cases.
    pub tta: Tta,
    /// Where the networks train and run.
    pub device: ComputeDevice,
    /// Refuse input files with NaN or infinite voxels instead of reading them as 0 (training
    /// and evaluation).
    pub strict_finite: bool,
    /// No progress bars or stage lines.
    pub quiet: bool,
}

/// The files a comparison wrote.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// The results.
    pub summary: CompareSummary,
    /// `summary.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Stages (`<method>/run`, `<method>/eval`) reused from an earlier run.
    pub reused: Vec<String>,
}

/// Runs the comparison (see the module docs).
pub fn run_compare(opts: &CompareOptions) -> Result<CompareOutcome> {
    ensure!(!opts.methods.is_empty(), "--methods names no method");
    if let Some(m) = opts.budget_minutes {
        ensure!(
            m.is_finite() && m > 0.0,
            "--budget-minutes must be a positive number"
        );
    }
    ensure!(opts.epochs != Some(0), "--epochs must be at least 1");
    ensure!(
        opts.iterations_per_epoch != Some(0),
        "--iterations-per-epoch must be at least 1"
    );
    ensure!(
        opts.data.is_dir(),
        "--data {} is not a folder",
        opts.data.display()
    );
    let start = Instant::now();
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create folder {}", opts.out.display()))?;
    let _lock = FolderLock::acquire(&opts.out, "comparison")?;
    let settings = settings_of(opts);
    let existing = CompareFile::load_matching(&opts.out, &settings)?;
    let split_path = ensure_split(opts)?;
    let split = Split::load(&split_path)?;
    let cache = opts.out.join("cache");
    let file = match existing {
        Some(f) => f,
        None => {
            let plan = plan(opts, &split_path, &split, &cache, start)?;
            let f = CompareFile { settings, plan };
            f.save(&opts.out)?;
            f
        }
    };
    let mut reused = Vec::new();
    let mut results = Vec::new();
    let count = opts.methods.len();
    for (i, &method) in opts.methods.iter().enumerate() {
        let epochs = file
            .plan_of(method)
            .with_context(|| format!("compare.json has no plan for {method}"))?
            .epochs;
        let cfg = config_of(opts, method, epochs);
        let root = opts.out.join(method.name());
        let run = Stage::new(&root, "run", &cfg.to_toml()?, &[]);
        let eval = Stage::new(
            &root,
            "eval",
            &stage::test_evaluation_params(opts.tta),
            &[&run],
        );
        say(
            opts,
            format!(
                "[{}/{count}] {method}: train {epochs} epochs{}",
                i + 1,
                done_note(&run)
            ),
        );
        let (_, r) = run.run(true, |d| {
            let mut o = TrainOptions::new(&opts.data, d, cfg.clone());
            o.split = Some(split_path.clone());
            o.cache = Some(cache.clone());
            o.resume = has_checkpoint(d);
            o.device = opts.device;
            o.strict_finite = opts.strict_finite;
            o.quiet = opts.quiet;
            o.handle_ctrl_c = true;
            let outcome = crate::train::train(&o)?;
            ensure!(
                !outcome.interrupted,
                "training of {method} stopped early; run the comparison again to resume it"
            );
            Ok(json!({ "epochs": outcome.epochs_completed, "steps": outcome.steps }))
        })?;
        if r {
            reused.push(format!("{method}/run"));
        }
        say(
            opts,
            format!(
                "[{}/{count}] {method}: evaluate {} test cases × 15 subsets{}",
                i + 1,
                split.test.len(),
                done_note(&eval)
            ),
        );
        let (_, r) = eval.run(true, |d| {
            evaluate(&evaluate_options(opts, &run.dir, &split_path, d))?;
            Ok(json!({}))
        })?;
        if r {
            reused.push(format!("{method}/eval"));
        }
        results.push(summary::MethodResult::load(method, epochs, &eval.dir)?);
    }
    let summary = CompareSummary::new(results);
    crate::fsutil::atomic_write_bytes(&opts.out.join("summary.json"), &summary.to_json()?)?;
    crate::fsutil::atomic_write_bytes(&opts.out.join("summary.csv"), &summary.to_csv()?)?;
    let ctx = document_context(opts, &file, &split, &split_path)?;
    let (markdown, html) = report::write_documents(&opts.out, &summary, &ctx)?;
    say(
        opts,
        format!(
            "done in {:.0} s: {} and {}",
            start.elapsed().as_secs_f64(),
            markdown.display(),
            html.display()
        ),
    );
    Ok(CompareOutcome {
        summary,
        markdown,
        html,
        reused,
    })
}

/// Whether the run folder `run` holds a checkpoint to resume: `checkpoints/latest`, or
/// only `checkpoints/.latest.old` after a crash between the two renames of a checkpoint
/// swap (training restores it).
pub fn has_checkpoint(run: &Path) -> bool {
    let dir = run.join("checkpoints");
    dir.join("latest").exists() || dir.join(".latest.old").exists()
}

/// A stage line on stderr unless quiet.
fn say(opts: &CompareOptions, line: String) {
    if !opts.quiet {
        eprintln!("{line}");
    }
}

/// ` (finished earlier: reused)` for a finished stage.
fn done_note(stage: &Stage) -> &'static str {
    if matches!(stage.state(), StageState::Done(_)) {
        " (finished earlier: reused)"
    } else {
        ""
    }
}

/// The settings recorded in `compare.json`.
fn settings_of(opts: &CompareOptions) -> CompareSettings {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    CompareSettings {
        data: abs(&opts.data),
        split: opts.split.as_deref().map(abs),
        methods: opts.methods.clone(),
        preset: opts.preset,
        recipe: opts.recipe,
        budget_minutes: opts.budget_minutes,
        epochs: opts.epochs,
        iterations_per_epoch: opts.iterations_per_epoch,
        seed: opts.seed,
        tta: opts.tta,
    }
}

/// `OUT/split.json`: a copy of the given split (checked against the dataset), or a seeded
/// 70/10/20 split of the labelled cases; kept on a rerun.
fn ensure_split(opts: &CompareOptions) -> Result<PathBuf> {
    let path = opts.out.join("split.json");
    if path.is_file() {
        return Ok(path);
    }
    let ds = dataset::discover(&opts.data)?;
    let split = match &opts.split {
        Some(given) => {
            Split::load(given).with_context(|| format!("--split {}", given.display()))?
        }
        None => Split::random(&ds.labelled_ids(), opts.seed, RATIOS)?,
    };
    split.validate(&ds)?;
    ensure!(
        !split.test.is_empty(),
        "the split has no test case to evaluate"
    );
    split.save(&path)?;
    Ok(path)
}

/// The training configuration of `method` with `epochs` and the comparison's overrides.
fn config_of(opts: &CompareOptions, method: Method, epochs: usize) -> TrainConfig {
    let mut cfg = method.train_config(opts.preset, opts.recipe);
    cfg.seed = opts.seed;
    cfg.epochs = epochs.max(1);
    if let Some(n) = opts.iterations_per_epoch {
        cfg.iterations_per_epoch = n;
    }
    cfg
}

/// How every method's evaluation runs: `evaluate`'s defaults (the test cases, all 15
/// subsets, …) on the comparison's device, with its cache.
fn evaluate_options(
    opts: &CompareOptions,
    run: &Path,
    split: &Path,
    out: &Path,
) -> EvaluateOptions {
    EvaluateOptions {
        device: opts.device,
        quiet: opts.quiet,
        cache: Some(opts.out.join("cache")),
        strict_finite: opts.strict_finite,
        tta: opts.tta,
        ..EvaluateOptions::new(
            run.to_path_buf(),
            opts.data.clone(),
            Some(split.to_path_buf()),
            out.to_path_buf(),
        )
    }
}

/// Epochs per method: `--epochs`, else the budget's plan, else the recipe's.
fn plan(
    opts: &CompareOptions,
    split_path: &Path,
    split: &Split,
    cache: &Path,
    start: Instant,
) -> Result<Vec<MethodPlan>> {
    let Some(minutes) = opts.budget_minutes.filter(|_| opts.epochs.is_none()) else {
        return Ok(opts
            .methods
            .iter()
            .map(|&m| MethodPlan {
                method: m,
                epochs: opts
                    .epochs
                    .unwrap_or_else(|| m.train_config(opts.preset, opts.recipe).epochs),
                step_seconds: None,
                share_seconds: None,
            })
            .collect());
    };
    say(
        opts,
        format!(
            "plan: measuring a training step of each of {} methods",
            opts.methods.len()
        ),
    );
    let calibration = opts.out.join("calibrate");
    // Runs left by an interrupted calibration would refuse to start again.
    if calibration.exists() {
        std::fs::remove_dir_all(&calibration)
            .with_context(|| format!("cannot remove {}", calibration.display()))?;
    }
    let first = config_of(opts, opts.methods[0], 1);
    budget::warm_up(
        &opts.data,
        split_path,
        &first,
        cache,
        &calibration.join("warm-up"),
    )?;
    let configs: Vec<TrainConfig> = opts
        .methods
        .iter()
        .map(|&m| config_of(opts, m, 1))
        .collect();
    let runs: Vec<(&str, &TrainConfig)> = opts
        .methods
        .iter()
        .zip(&configs)
        .map(|(m, cfg)| (m.name(), cfg))
        .collect();
    let batch = configs.iter().map(|c| c.batch_size).max().unwrap_or(1);
    let calibration_split = budget::calibration_split(split_path, batch, &calibration)?;
    let full = budget::measure_steps(
        &opts.data,
        &calibration_split,
        &runs,
        cache,
        &calibration,
        budget::CALIBRATION_ROUNDS,
    )?;
    let steps: Vec<f64> = configs
        .iter()
        .zip(full)
        .map(|(cfg, step)| budget::step_share(cfg) * step)
        .collect();
    // The calibration runs are only timings.
    std::fs::remove_dir_all(&calibration)
        .with_context(|| format!("cannot remove {}", calibration.display()))?;
    let test_case = split.test.first().context("the split has no test case")?;
    let reserve = 30.0;
    let left = minutes * 60.0 - opts.spent_seconds - start.elapsed().as_secs_f64() - reserve;
    let share = (left / opts.methods.len() as f64).max(0.0);
    let mut out = Vec::new();
    // The brain box of the test case per preprocessing (methods usually share one): the case
    // is read once, not once per method.
    let mut boxes: Vec<(PreprocessSettings, [usize; 3])> = Vec::new();
    for (&m, &step) in opts.methods.iter().zip(&steps) {
        let cfg = config_of(opts, m, 1);
        let dims = match boxes.iter().find(|(s, _)| *s == cfg.preprocess) {
            Some(&(_, dims)) => dims,
            None => {
                let dims = budget::inference_dims(&opts.data, test_case, &cfg.preprocess)?;
                boxes.push((cfg.preprocess, dims));
                dims
            }
        };
        let per_case = budget::windows_per_case(dims, cfg.model.patch_size) as f64;
        let recipe = m.train_config(opts.preset, opts.recipe);
        let (validation, evaluation) = budget::run_costs(
            step,
            per_case,
            recipe.validation_count(split.validation.len()),
            split.test.len(),
            recipe.validate_every,
            opts.tta.flips().len(),
        );
        let p = budget::plan(&BudgetInputs {
            total: share,
            spent: 0.0,
            step,
            iterations_per_epoch: cfg.iterations_per_epoch,
            validation,
            evaluation,
            reserve: 0.0,
            min_epochs: 1,
            max_epochs: recipe.epochs * 4,
            min_epochs_for_two: usize::MAX,
            epoch_quantum: 5,
        });
        say(
            opts,
            format!(
                "plan: {m}: {} epochs ({:.2} s per step, {:.0} s of the budget)",
                p.epochs, step, share
            ),
        );
        out.push(MethodPlan {
            method: m,
            epochs: p.epochs,
            step_seconds: Some(step),
            share_seconds: Some(share),
        });
    }
    Ok(out)
}

/// The documents' intro, panel and conventions.
fn document_context(
    opts: &CompareOptions,
    file: &CompareFile,
    split: &Split,
    split_path: &Path,
) -> Result<report::DocumentContext> {
    let runs: Vec<(&str, PathBuf)> = opts
        .methods
        .iter()
        .map(|m| (m.label(), opts.out.join(m.name()).join("run")))
        .collect();
    let refs: Vec<(&str, &Path)> = runs.iter().map(|(l, p)| (*l, p.as_path())).collect();
    let viewed: Vec<String> = split.test.iter().take(opts.view_cases).cloned().collect();
    let panel_path = opts.out.join("figures").join("panel.png");
    let panel_spec = split.test.first().map(|id| report::PanelSpec {
        case: id,
        path: &panel_path,
        rows: refs.len(),
    });
    let viewers = report::panel_and_viewers(
        &opts.data,
        &refs,
        panel_spec,
        &viewed,
        MetricOptions::default(),
    )?;
    let panel = split.test.first().map(|id| {
        (
            panel_path.clone(),
            format!(
                "Test case {id}: axial slice with the most tumour; top: T1, T1c, T2, FLAIR; \
                 then one row per method: its prediction over FLAIR from FLAIR, FLAIR + T1c \
                 and all four, and the ground truth (edema red, enhancing blue, \
                 necrosis/non-enhancing green)"
            ),
        )
    });
    let s = &file.settings;
    let mut conventions =
        crate::report::document::metric_conventions(MetricOptions::default().hd95_penalty, None);
    let epochs: Vec<String> = file
        .plan
        .iter()
        .map(|p| format!("{} {}", p.method, p.epochs))
        .collect();
    conventions.extend([
        ("Data".to_string(), s.data.display().to_string()),
        (
            "Split".to_string(),
            format!(
                "{} train / {} validation / {} test ({})",
                split.train.len(),
                split.validation.len(),
                split.test.len(),
                split_path.display()
            ),
        ),
        (
            "Training".to_string(),
            format!(
                "preset {}, recipe {}, seed {}, epochs: {}{}",
                s.preset,
                match s.recipe {
                    Recipe::Own => "own (each method its own)",
                    Recipe::Common => "common (A2FSeg's for every method)",
                },
                s.seed,
                epochs.join(", "),
                s.budget_minutes.map_or_else(String::new, |m| format!(
                    " (planned for a {m}-minute budget split equally in time across the methods)"
                ))
            ),
        ),
        (
            "Inference".to_string(),
            format!(
                "sliding window step 0.5, Gaussian weighting, {}; each model's \
                 post-processing as decided after its training",
                s.tta.describe()
            ),
        ),
        (
            "Versions".to_string(),
            format!("a2fseg {}, burn 0.22.1", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    Ok(report::DocumentContext {
        intro: vec![format!(
            "Made by `a2fseg compare`: {} trained on the same split with the same \
             augmentation, evaluated on the test cases over every modality subset with the \
             same metrics and post-processing rules. Rerun the command to rebuild this page \
             (finished trainings and evaluations are reused).",
            opts.methods
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", ")
        )],
        panel,
        viewers,
        conventions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_found_also_mid_swap() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert!(!has_checkpoint(run));
        std::fs::create_dir_all(run.join("checkpoints/.latest.old")).unwrap();
        assert!(has_checkpoint(run));
        std::fs::remove_dir_all(run.join("checkpoints/.latest.old")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints/latest")).unwrap();
        assert!(has_checkpoint(run));
    }
}
