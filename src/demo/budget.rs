//! Splitting a time budget across training runs: how many epochs to train, and whether
//! there is time for the demo's second (average-fusion) model, from a step time measured by
//! short training runs ([`measure_step`]). Used by `a2fseg demo` and `a2fseg compare`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::dataset::Split;
use crate::infer::window_starts;
use crate::preprocess::{CropBox, PreprocessSettings};
use crate::train::{ModalityDropout, TrainConfig, TrainOptions};
use crate::volume::Grid;

/// Share of a full (four-modality) step that a mean step of the `paper` modality dropout
/// costs: it alternates epochs of all four modalities with epochs of 1–3, measured at about
/// 0.45 of a full step.
pub const PAPER_DROPOUT_STEP_SHARE: f64 = 0.75;

/// The cost of a mean training step of `cfg` as a share of a four-modality step (what
/// [`measure_step`] measures): 1 when every step sees every modality (`full` dropout, or a
/// method that trains on all modalities, as U-HVED does), else the `paper` dropout's share.
pub fn step_share(cfg: &TrainConfig) -> f64 {
    let all = crate::with_network!(cfg.model.arch, N => {
        <N as crate::model::Network>::trains_on_all_modalities(&cfg.model)
    });
    if all || cfg.modality_dropout == ModalityDropout::Full {
        1.0
    } else {
        PAPER_DROPOUT_STEP_SHARE
    }
}

/// Seconds of one training step of `cfg` on all four modalities, measured as the
/// difference between a run of 1 + [`CALIBRATION_STEPS`] iterations (at most 1 + an epoch's
/// iterations) and a 1-iteration run (both of one epoch, without
/// validation or post-processing decision) in `dir/<name>-short` and `dir/<name>-long`, so
/// that loading the cases and writing checkpoints cancel out. `cache` is the preprocessing
/// cache the runs share (fill it first with `warm_up`, or the first run pays for it).
pub fn measure_step(
    data: &Path,
    split: &Path,
    cfg: &TrainConfig,
    cache: &Path,
    dir: &Path,
    name: &str,
) -> Result<f64> {
    let run = |suffix: &str, iterations| {
        let run_dir = dir.join(format!("{name}-{suffix}"));
        timed_run(data, split, cfg, cache, &run_dir, iterations)
    };
    // Forty steps apart: the runs' fixed part (then loading all 100 demo cases into memory,
    // about 14 s; now a few cases, `calibration_split`) varied by up to 3 s between runs,
    // which at ten steps apart moved one estimate from 0.19 to 0.43 s per step on the same
    // idle machine.
    // Epochs of a few steps (the tests' toy plans) need no finer timing than an epoch.
    let steps = CALIBRATION_STEPS.min(cfg.iterations_per_epoch).max(1);
    let short = run("short", 1)?;
    let long = run("long", 1 + steps)?;
    Ok(((long - short) / steps as f64).max(1e-3))
}

/// How many more steps the long calibration run takes than the short one ([`measure_step`]).
pub const CALIBRATION_STEPS: usize = 40;

/// How many times the calibration of `compare` and `demo` measures each method
/// ([`measure_steps`]).
pub const CALIBRATION_ROUNDS: usize = 2;

/// Seconds of one four-modality training step of each configuration of `runs` (its name and
/// configuration), each the fastest of `rounds` measurements by [`measure_step`] taken in
/// turn: every configuration once, then every one again. Taking the rounds in turn keeps a
/// burst of load during one measurement from making one method's plan unfair to the others.
/// The runs train on the split at `split`, made by [`calibration_split`]; they are
/// `dir/<name>-<round>-short` and `-long`.
///
/// Why the fastest: a measurement is a difference of two runs. While each run loaded all 100
/// demo cases (about 14 s, varying by up to 3 s), noise moved it both ways, the minimum picked
/// low outliers (0.147 s planned for a step that ran at 0.28 s), and the mean was kept. With
/// [`CALIBRATION_CASES`] cases to load, what is left slows a run and nothing speeds one up:
/// two rounds on the same idle machine measured 0.59 and 0.43 s for a step that trained at
/// 0.37 s, and their mean planned 26 epochs where the same run had fitted 35 before.
pub fn measure_steps(
    data: &Path,
    split: &Path,
    runs: &[(&str, &TrainConfig)],
    cache: &Path,
    dir: &Path,
    rounds: usize,
) -> Result<Vec<f64>> {
    fastest_in_turn(runs.len(), rounds, |i, round| {
        let (name, cfg) = runs[i];
        measure_step(data, split, cfg, cache, dir, &format!("{name}-{round}"))
    })
}

/// Training cases the calibration runs load: a step's time depends on the patch, not on
/// which case it is cut from. With every training case (100 in the default demo) each of the
/// four runs spent about 14 s loading them, more than half of the calibration's 100 s, and
/// that fixed part's run-to-run jitter (up to 3 s) was what made the step estimate noisy.
pub const CALIBRATION_CASES: usize = 4;

/// Writes `dir/calibration-split.json`: the first [`CALIBRATION_CASES`] (at least `batch`)
/// training cases of the split at `split` and its first validation case, nothing to test;
/// returns its path. The calibration runs ([`measure_steps`]) train on it.
pub fn calibration_split(split: &Path, batch: usize, dir: &Path) -> Result<PathBuf> {
    let full = Split::load(split)?;
    let small = Split {
        train: full
            .train
            .iter()
            .take(CALIBRATION_CASES.max(batch))
            .cloned()
            .collect(),
        validation: full.validation.iter().take(1).cloned().collect(),
        test: Vec::new(),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("calibration-split.json");
    small.save(&path)?;
    Ok(path)
}

/// The least over `rounds` of `measure(i, round)` for each `i < n`, measured in the order
/// round 0 of every `i`, then round 1 of every `i`, and so on (at least one round).
fn fastest_in_turn(
    n: usize,
    rounds: usize,
    mut measure: impl FnMut(usize, usize) -> Result<f64>,
) -> Result<Vec<f64>> {
    let mut best = vec![f64::INFINITY; n];
    for round in 0..rounds.max(1) {
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(measure(i, round)?);
        }
    }
    Ok(best)
}

/// One 1-iteration run of `cfg` in `dir` that fills the preprocessing cache `cache`.
pub fn warm_up(
    data: &Path,
    split: &Path,
    cfg: &TrainConfig,
    cache: &Path,
    dir: &Path,
) -> Result<()> {
    timed_run(data, split, cfg, cache, dir, 1).map(|_| ())
}

/// Wall seconds of a quiet one-epoch run of `iterations` full-modality steps in `dir`.
fn timed_run(
    data: &Path,
    split: &Path,
    cfg: &TrainConfig,
    cache: &Path,
    dir: &Path,
    iterations: usize,
) -> Result<f64> {
    let mut c = cfg.clone();
    c.epochs = 1;
    c.iterations_per_epoch = iterations;
    c.modality_dropout = ModalityDropout::Full;
    c.validate_every = usize::MAX / 2;
    c.determine_postprocessing = false;
    let mut o = TrainOptions::new(data, dir, c);
    o.split = Some(split.to_path_buf());
    o.cache = Some(cache.to_path_buf());
    o.quiet = true;
    let t = Instant::now();
    crate::train::train(&o)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Estimated seconds of validation per epoch and of evaluation per model (the test cases
/// over 15 subsets plus the post-processing decision on the validation cases over 15
/// subsets that ends each training), from the measured `step` (seconds), the windows per
/// case, the numbers of validation and test cases, the validation interval and the passes
/// per window of the test evaluation (its test-time mirrorings,
/// [`crate::infer::Tta::flips`]; validation and the post-processing decision run one pass).
pub fn run_costs(
    step: f64,
    per_case: f64,
    validation_cases: usize,
    test_cases: usize,
    validate_every: usize,
    test_passes: usize,
) -> (f64, f64) {
    let validation = validation_cases as f64 * per_case * step * 0.5 / validate_every.max(1) as f64;
    let cases = (test_cases * test_passes.max(1) + validation_cases) as f64;
    let evaluation = cases * per_case * step * 0.6 + 5.0;
    (validation, evaluation)
}

/// The grid the network slides over for case `id` of the dataset at `data`: the case's
/// grid, cropped to its brain box when `settings` crop (as validation, `evaluate` and
/// `predict` do). Planning with the whole grid instead counted 48 windows for the demo's
/// 80×80×52 phantoms where the network runs 12, and left half the budget unused.
pub fn inference_dims(data: &Path, id: &str, settings: &PreprocessSettings) -> Result<[usize; 3]> {
    let ds = crate::dataset::discover(data)?;
    let files = ds
        .case(id)
        .with_context(|| format!("case {id} is not in the dataset at {}", data.display()))?;
    let case = crate::dataset::load_case(&ds, files)?;
    let dims = case.geometry.dims;
    if !settings.crop {
        return Ok(dims);
    }
    let grids: Vec<&Grid<f32>> = case.images.iter().flatten().collect();
    Ok(CropBox::nonzero(dims, &grids, settings.margin).dims)
}

/// Margin on the planned steps, as a share of them: an epoch also writes a checkpoint and a
/// plot and starts its data loader, which the calibration's difference of two runs cancels
/// out, and the calibration is noisy. Measured on the default demo (AVX2 build, 2-core EPYC):
/// four-modality epochs ran at 0.37–0.38 s per step; two 40-step measurements gave 0.365 and
/// 0.417 s (mean 0.391), while the former 10-step ones gave 0.19–0.43 s, whose minimum once
/// planned a run to 950 s of 900 (with this margin) and once to about 22 minutes.
pub const STEP_MARGIN: f64 = 0.10;

/// Sliding windows (step 0.5) over a case of `dims` with patches of `patch`.
pub fn windows_per_case(dims: [usize; 3], patch: [usize; 3]) -> usize {
    (0..3)
        .map(|a| window_starts(dims[a], patch[a], 0.5).len())
        .product()
}

/// What the plan is computed from (all times in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetInputs {
    /// The whole budget.
    pub total: f64,
    /// Already spent (phantoms, split, the calibration run).
    pub spent: f64,
    /// Measured wall time of one training iteration (data loading included).
    pub step: f64,
    /// Iterations per epoch.
    pub iterations_per_epoch: usize,
    /// Estimated validation time per epoch.
    pub validation: f64,
    /// Estimated time to evaluate one model on the test cases over all 15 subsets.
    pub evaluation: f64,
    /// Kept back for the figures and the report.
    pub reserve: f64,
    /// Never train fewer epochs than this (even if the budget is exceeded).
    pub min_epochs: usize,
    /// Never train more epochs than this.
    pub max_epochs: usize,
    /// Train the second model only if each model then gets at least this many epochs.
    pub min_epochs_for_two: usize,
    /// Epoch counts above this are rounded down to a multiple of it, so that small
    /// differences in the measured step time usually give the same plan (and so the same
    /// learning-rate schedule); 0 or 1 does not round. Absent in older plans: 1.
    #[serde(default = "one")]
    pub epoch_quantum: usize,
}

fn one() -> usize {
    1
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    /// Epochs for each model.
    pub epochs: usize,
    /// Whether the average-fusion model is trained too (else only adaptive).
    pub both_models: bool,
    /// Estimated seconds of one epoch (training and validation).
    pub epoch_seconds: f64,
    /// Estimated total seconds of the remaining stages.
    pub estimated_seconds: f64,
    /// Whether even the minimum exceeds the budget.
    pub over_budget: bool,
}

/// Plans training: time left after what is spent, the evaluations and the reserve is
/// divided into epochs of measured length (rounded down to a multiple of `epoch_quantum`);
/// two models are trained when each would get at least `min_epochs_for_two` epochs.
pub fn plan(b: &BudgetInputs) -> BudgetPlan {
    let epoch =
        (b.step * b.iterations_per_epoch as f64 * (1.0 + STEP_MARGIN) + b.validation).max(1e-3);
    let left = b.total - b.spent - b.reserve;
    let epochs_for = |models: f64| {
        let per_model = left / models - b.evaluation;
        if per_model <= 0.0 {
            0
        } else {
            (per_model / epoch).floor() as usize
        }
    };
    let max = b.max_epochs.max(b.min_epochs).max(1);
    let two = epochs_for(2.0);
    let (models, raw) = if two >= b.min_epochs_for_two.max(b.min_epochs) {
        (2usize, two)
    } else {
        (1usize, epochs_for(1.0))
    };
    let q = b.epoch_quantum.max(1);
    let rounded = if raw > q { raw / q * q } else { raw };
    let epochs = rounded.clamp(b.min_epochs.max(1), max);
    let estimated = models as f64 * (epochs as f64 * epoch + b.evaluation) + b.reserve;
    BudgetPlan {
        epochs,
        both_models: models == 2,
        epoch_seconds: epoch,
        estimated_seconds: estimated,
        over_budget: raw < b.min_epochs.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(total: f64) -> BudgetInputs {
        BudgetInputs {
            total,
            spent: 30.0,
            step: 0.5,
            iterations_per_epoch: 20,
            validation: 5.0,
            evaluation: 40.0,
            reserve: 10.0,
            min_epochs: 2,
            max_epochs: 200,
            min_epochs_for_two: 8,
            epoch_quantum: 1,
        }
    }

    #[test]
    fn mirroring_multiplies_only_the_test_evaluation() {
        // 2 windows of 0.1 s per case; 10 validation cases every 5 epochs; 20 test cases.
        let (validation, plain) = run_costs(0.1, 2.0, 10, 20, 5, 1);
        let (validation8, mirrored) = run_costs(0.1, 2.0, 10, 20, 5, 8);
        assert_eq!(validation, validation8);
        assert!((validation - 0.2).abs() < 1e-12);
        // (20 + 10) cases × 0.2 s × 0.6 + 5 = 8.6 s; with 8 passes (160 + 10) × 0.12 + 5.
        assert!((plain - 8.6).abs() < 1e-9);
        assert!((mirrored - 25.4).abs() < 1e-9);
    }

    #[test]
    fn generous_budget_trains_both() {
        // left = 900 - 40 = 860; per model 430 - 40 = 390 s; epoch 10 s of steps, 10 % more
        // for the margin, and 5 s of validation: 16 s → 24 epochs.
        let p = plan(&inputs(900.0));
        assert!(p.both_models);
        assert_eq!(p.epochs, 24);
        assert!((p.epoch_seconds - 16.0).abs() < 1e-9);
        assert!(!p.over_budget);
        assert!(p.estimated_seconds <= 900.0 - 30.0);
    }

    #[test]
    fn tight_budget_trains_only_adaptive() {
        // left = 260; two: 130 - 40 = 90 → 5 epochs < 8; one: 220 → 13 epochs.
        let p = plan(&inputs(300.0));
        assert!(!p.both_models);
        assert_eq!(p.epochs, 13);
    }

    #[test]
    fn tiny_budget_keeps_the_minimum_and_says_so() {
        let p = plan(&inputs(50.0));
        assert!(!p.both_models);
        assert_eq!(p.epochs, 2);
        assert!(p.over_budget);
    }

    #[test]
    fn epochs_are_rounded_down_to_the_quantum() {
        // 24 epochs unrounded (see above), 23 with a slightly slower step; 20 for both with a
        // quantum of 5, so a step time a little slower or faster gives the same plan.
        let mut i = inputs(900.0);
        i.epoch_quantum = 5;
        let p = plan(&i);
        assert_eq!(p.epochs, 20);
        assert!(p.both_models);
        i.step = 0.52;
        i.epoch_quantum = 1;
        assert_eq!(plan(&i).epochs, 23);
        i.epoch_quantum = 5;
        assert_eq!(plan(&i).epochs, 20);
        // Counts up to the quantum are kept as they are.
        let mut t = inputs(300.0);
        t.epoch_quantum = 20;
        assert_eq!(plan(&t).epochs, 13);
        // The estimate follows the rounded count.
        let p = plan(&i);
        assert!(
            (p.estimated_seconds - (2.0 * (20.0 * p.epoch_seconds + 40.0) + 10.0)).abs() < 1e-9
        );
    }

    #[test]
    fn calibration_takes_turns_and_keeps_the_fastest() {
        // Two configurations, three rounds.
        let times = [[0.9, 0.3, 0.4], [0.5, 1.3, 0.6]];
        let mut order = Vec::new();
        let fastest = fastest_in_turn(2, 3, |i, round| {
            order.push((i, round));
            Ok(times[i][round])
        })
        .unwrap();
        assert_eq!(fastest, vec![0.3, 0.5]);
        assert_eq!(order, [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]);
        // Zero rounds still measures once; an error stops the calibration.
        assert_eq!(fastest_in_turn(1, 0, |_, _| Ok(2.0)).unwrap(), vec![2.0]);
        let mut calls = 0;
        let failed = fastest_in_turn(2, 2, |_, _| {
            calls += 1;
            anyhow::bail!("training failed")
        });
        assert!(failed.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn calibration_trains_on_a_few_cases_and_tests_none() {
        let dir = tempfile::tempdir().unwrap();
        let ids = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i:02}")).collect::<Vec<_>>();
        let full = Split {
            train: ids("tr", 70),
            validation: ids("va", 10),
            test: ids("te", 20),
        };
        let path = dir.path().join("split.json");
        full.save(&path).unwrap();
        let small =
            Split::load(&calibration_split(&path, 1, &dir.path().join("plan")).unwrap()).unwrap();
        assert_eq!(small.train, full.train[..CALIBRATION_CASES]);
        assert_eq!(small.validation, full.validation[..1]);
        assert!(small.test.is_empty());
        // A batch larger than the usual few cases still fills one.
        let big = Split::load(&calibration_split(&path, 9, dir.path()).unwrap()).unwrap();
        assert_eq!(big.train.len(), 9);
    }

    #[test]
    fn inference_dims_are_the_brain_box_when_cropping() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        crate::phantom::write_dataset(&data, 1, [40, 40, 26], 3, true).unwrap();
        let id = "BraTS20_Training_001";
        let full = PreprocessSettings {
            crop: false,
            ..PreprocessSettings::default()
        };
        assert_eq!(inference_dims(&data, id, &full).unwrap(), [40, 40, 26]);
        let cropped = inference_dims(&data, id, &PreprocessSettings::default()).unwrap();
        // BraTS's geometry: the brain fills about 140×175×140 of 240×240×155 mm.
        for (a, (&c, &f)) in cropped.iter().zip(&[40usize, 40, 26]).enumerate() {
            assert!(c < f && c * 2 > f, "axis {a}: {cropped:?}");
        }
        let margin = PreprocessSettings {
            margin: 1,
            ..PreprocessSettings::default()
        };
        let grown = inference_dims(&data, id, &margin).unwrap();
        assert!(grown.iter().zip(&cropped).all(|(g, c)| g > c), "{grown:?}");
        let missing = inference_dims(&data, "nope", &full).unwrap_err();
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
    }

    #[test]
    fn epochs_are_capped() {
        let mut i = inputs(1e7);
        i.max_epochs = 50;
        assert_eq!(plan(&i).epochs, 50);
    }
}
