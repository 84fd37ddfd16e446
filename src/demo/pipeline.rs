//! The demo's stages, each a call of the same library function its command uses:
//! [`crate::phantom::write_dataset`] (`a2fseg phantom`), [`crate::dataset::Split::random`]
//! (`a2fseg dataset split`), [`crate::train::train`] (`a2fseg train`) and
//! [`crate::infer::evaluate::evaluate`] (`a2fseg evaluate`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::budget::{self, BudgetInputs, BudgetPlan};
use super::stage::{Stage, StageState};
use super::{DemoModel, DemoOptions, build_report, model_label};
use crate::dataset::{self, Split};
use crate::infer::evaluate::{EvaluateOptions, evaluate};
use crate::infer::{Predictor, Tta, postprocess, resolve_model_dir, window_starts};
use crate::metrics::MetricOptions;
use crate::modality::{Modality, Subset};
use crate::model::Fusion;
use crate::preprocess::{PreprocessSettings, preprocess_case};
use crate::report::charts::png_bytes;
use crate::report::document::metric_conventions;
use crate::report::slices::{PanelCase, slice_panel};
use crate::train::{ModalityDropout, TrainConfig, TrainOptions, TrainPreset};

/// Split ratios train/validation/test, as the paper.
const RATIOS: [u32; 3] = [70, 10, 20];

/// What a finished demo produced.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// The models trained, adaptive first.
    pub models: Vec<DemoModel>,
    /// Stages reused from an earlier run.
    pub reused: Vec<String>,
}

/// Prints a stage line unless quiet.
fn say(opts: &DemoOptions, text: &str) {
    if !opts.quiet {
        println!("{text}");
    }
}

/// ` (about N min left)` until `deadline`, the plan's estimate of the demo's end: a running
/// total beside each stage line, on top of the training and evaluation progress bars.
fn time_left(deadline: Instant) -> String {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    if left < 60.0 {
        " (less than a minute left)".to_string()
    } else {
        format!(" (about {:.0} min left)", (left / 60.0).ceil())
    }
}

/// The training configuration of the demo: the `small` preset, the paper's modality dropout.
fn train_config(opts: &DemoOptions, fusion: Fusion, epochs: usize) -> TrainConfig {
    let mut cfg = TrainConfig::preset(TrainPreset::Small);
    cfg.modality_dropout = ModalityDropout::Paper;
    cfg.model.fusion = fusion;
    cfg.seed = opts.seed;
    cfg.epochs = epochs.max(1);
    if let Some(n) = opts.iterations_per_epoch {
        cfg.iterations_per_epoch = n.max(1);
    }
    cfg
}

/// Runs the demo (see the module docs of [`crate::demo`]).
pub fn run_demo(opts: &DemoOptions) -> Result<DemoOutcome> {
    let start = Instant::now();
    let root = &opts.out;
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create folder {}", root.display()))?;
    let mut reused = Vec::new();
    let mut note = |name: &str, r: bool| {
        if r {
            reused.push(name.to_string());
        }
        r
    };

    // 1. Phantoms.
    let phantoms = Stage::new(root, "phantoms", &(opts.cases, opts.dims, opts.seed), &[]);
    let data = phantoms.dir.join("data");
    say(
        opts,
        &format!("[1/6] phantoms: {} cases {:?}", opts.cases, opts.dims),
    );
    let (_, r) = phantoms.run(false, |d| {
        crate::phantom::write_dataset(
            &d.join("data"),
            opts.cases,
            opts.dims,
            opts.seed,
            opts.quiet,
        )?;
        Ok(json!({ "cases": opts.cases }))
    })?;
    note("phantoms", r);

    // 2. Split.
    let split_stage = Stage::new(root, "split", &(opts.seed, RATIOS), &[&phantoms]);
    let split_path = split_stage.dir.join("split.json");
    let (_, r) = split_stage.run(false, |d| {
        let ds = dataset::discover(&data)?;
        let split = Split::random(&ds.ids(), opts.seed, RATIOS)?;
        split.save(&d.join("split.json"))?;
        Ok(json!({}))
    })?;
    note("split", r);
    let split = Split::load(&split_path)?;
    say(
        opts,
        &format!(
            "[2/6] split: {} train / {} validation / {} test (seed {})",
            split.train.len(),
            split.validation.len(),
            split.test.len(),
            opts.seed
        ),
    );

    // 3. Plan: time a few training steps, then divide the budget.
    let plan_stage = Stage::new(
        root,
        "plan",
        &(opts.budget_minutes, opts.iterations_per_epoch),
        &[&split_stage],
    );
    let (plan_marker, r) = plan_stage.run(false, |d| {
        // A training run also loads and preprocesses every case and writes checkpoints, so
        // the time of one step is the difference between a long and a short run, both after
        // a first run that fills the preprocessing cache.
        // The calibration runs train on all four modalities (the costliest step); the
        // `paper` dropout alternates such epochs with epochs of 1–3 modalities, measured
        // here at about 0.45 of their cost, so a mean step is taken as 0.75 of a full one.
        let cfg = train_config(opts, Fusion::Adaptive, 1);
        let timed_run = |name: &str, iterations: usize| -> Result<f64> {
            let mut c = cfg.clone();
            c.iterations_per_epoch = iterations;
            c.modality_dropout = ModalityDropout::Full;
            c.validate_every = usize::MAX / 2;
            let mut o = TrainOptions::new(&data, &d.join(name), c);
            o.split = Some(split_path.clone());
            o.cache = Some(d.join("cache"));
            o.quiet = true;
            let t = Instant::now();
            crate::train::train(&o)?;
            Ok(t.elapsed().as_secs_f64())
        };
        timed_run("calibrate-warm-up", 1)?;
        let short = timed_run("calibrate-short", 1)?;
        let long = timed_run("calibrate-long", 6)?;
        let step = (0.75 * (long - short) / 5.0).max(1e-3);
        let windows = |n: usize, p: usize| window_starts(n, p, 0.5).len();
        let p = cfg.patch_size;
        let per_case = (windows(opts.dims[0], p[0])
            * windows(opts.dims[1], p[1])
            * windows(opts.dims[2], p[2])) as f64;
        let small = TrainConfig::preset(TrainPreset::Small);
        let inputs = BudgetInputs {
            total: opts.budget_minutes * 60.0,
            spent: start.elapsed().as_secs_f64(),
            step,
            iterations_per_epoch: opts
                .iterations_per_epoch
                .unwrap_or(small.iterations_per_epoch),
            validation: split.validation.len() as f64 * per_case * step * 0.5
                / small.validate_every.max(1) as f64,
            // The test cases over 15 subsets, and the post-processing decision on the
            // validation cases over 15 subsets that ends each training.
            evaluation: (split.test.len() + split.validation.len()) as f64 * per_case * step * 0.6
                + 5.0,
            reserve: 10.0 + per_case * step,
            min_epochs: 2,
            max_epochs: small.epochs * 4,
            min_epochs_for_two: 40,
            epoch_quantum: 5,
        };
        let plan = budget::plan(&inputs);
        Ok(json!({ "inputs": inputs, "plan": plan }))
    })?;
    note("plan", r);
    let plan: BudgetPlan = serde_json::from_value(plan_marker.info["plan"].clone())
        .context("the plan stage's marker holds no plan")?;
    // 4–5 (their stages, for the time estimate): train and evaluate each model.
    let mut fusions = vec![("adaptive", Fusion::Adaptive)];
    if plan.both_models {
        fusions.push(("average", Fusion::Average));
    }
    let mut model_stages = Vec::new();
    for (key, fusion) in &fusions {
        let cfg = train_config(opts, *fusion, plan.epochs);
        let train_stage = Stage::new(
            root,
            &format!("train-{key}"),
            &cfg.to_toml()?,
            &[&plan_stage],
        );
        let eval_stage = Stage::new(root, &format!("eval-{key}"), &"test", &[&train_stage]);
        model_stages.push((*key, cfg, train_stage, eval_stage));
    }
    // The plan's estimate, less the stages an earlier run finished.
    let evaluation = plan_marker.info["inputs"]["evaluation"]
        .as_f64()
        .unwrap_or(0.0);
    let done = |s: &Stage| matches!(s.state(), StageState::Done(_));
    let reused_seconds: f64 = model_stages
        .iter()
        .map(|(_, cfg, t, e)| {
            let train = if done(t) {
                cfg.epochs as f64 * plan.epoch_seconds
            } else {
                0.0
            };
            train + if done(e) { evaluation } else { 0.0 }
        })
        .sum();
    let deadline = Instant::now()
        + Duration::from_secs_f64((plan.estimated_seconds - reused_seconds).max(0.0));
    // ` (finished earlier: reused)` for a stage an earlier run completed, else the time left.
    let status = |s: &Stage| {
        if done(s) {
            " (finished earlier: reused)".to_string()
        } else {
            time_left(deadline)
        }
    };
    say(
        opts,
        &format!(
            "[3/6] plan: {} epochs per model ({:.0} s each), {}{}{}",
            plan.epochs,
            plan.epoch_seconds,
            if plan.both_models {
                "adaptive and average fusion"
            } else {
                "adaptive fusion only (no time for the average-fusion baseline)"
            },
            if plan.over_budget {
                "; the minimum training exceeds the budget"
            } else {
                ""
            },
            time_left(deadline)
        ),
    );

    let mut models = Vec::new();
    let count = model_stages.len();
    for (i, (key, cfg, train_stage, eval_stage)) in model_stages.into_iter().enumerate() {
        say(
            opts,
            &format!(
                "[4/6] train {key} ({} of {count}): {} epochs{}",
                i + 1,
                cfg.epochs,
                status(&train_stage)
            ),
        );
        let (_, r) = train_stage.run(true, |d| {
            let resume = d.join("checkpoints").join("latest").exists();
            let mut o = TrainOptions::new(&data, d, cfg.clone());
            o.split = Some(split_path.clone());
            o.resume = resume;
            o.quiet = opts.quiet;
            o.handle_ctrl_c = true;
            let outcome = crate::train::train(&o)?;
            anyhow::ensure!(
                !outcome.interrupted,
                "training stopped early; run the demo again to resume it"
            );
            Ok(json!({ "epochs": outcome.epochs_completed, "steps": outcome.steps }))
        })?;
        note(&train_stage.name, r);

        say(
            opts,
            &format!(
                "[5/6] evaluate {key}: {} test cases × 15 subsets{}",
                split.test.len(),
                status(&eval_stage)
            ),
        );
        let (_, r) = eval_stage.run(true, |d| {
            let outcome = evaluate(&EvaluateOptions {
                models: vec![train_stage.dir.clone()],
                data: data.clone(),
                split: Some(split_path.clone()),
                part: "test".into(),
                subsets: Subset::all_nonempty().collect(),
                out: d.to_path_buf(),
                metrics: MetricOptions::default(),
                step: 0.5,
                tta: Tta::OFF,
                postprocess: true,
                device: crate::model::ComputeDevice::Cpu,
                quiet: opts.quiet,
                cache: None,
            })?;
            Ok(json!({ "scored": outcome.scored }))
        })?;
        note(&eval_stage.name, r);
        models.push(DemoModel {
            key: key.to_string(),
            label: model_label(key),
            run_dir: train_stage.dir.clone(),
            eval_dir: eval_stage.dir.clone(),
        });
    }

    // 6. Figures and report (always rebuilt from the files: cheap).
    say(opts, "[6/6] report");
    let summary = models[0].eval_dir.join("summary.json");
    let bytes =
        std::fs::read(&summary).with_context(|| format!("cannot read {}", summary.display()))?;
    crate::fsutil::atomic_write_bytes(&root.join("summary.json"), &bytes)?;
    let (panel, caption) = match split.test.first() {
        Some(id) => {
            let path = root.join("figures").join("panel.png");
            let caption = render_panel(&data, id, &models[0].run_dir, &path)?;
            (Some(path), caption)
        }
        None => (None, String::new()),
    };
    let mut notes = Vec::new();
    if !plan.both_models {
        notes.push(format!(
            "Only the adaptive-fusion model was trained: the {:.0}-minute budget left no time \
             for the average-fusion baseline (rerun with a larger --budget-minutes).",
            opts.budget_minutes
        ));
    }
    let mut conventions = metric_conventions(MetricOptions::default().hd95_penalty, None);
    let cfg = train_config(opts, Fusion::Adaptive, plan.epochs);
    conventions.extend([
        (
            "Data".to_string(),
            format!(
                "{} synthetic cases {:?} (phantoms, seed {})",
                opts.cases, opts.dims, opts.seed
            ),
        ),
        (
            "Split".to_string(),
            format!(
                "{} train / {} validation / {} test, ratios 70/10/20, seed {} ({})",
                split.train.len(),
                split.validation.len(),
                split.test.len(),
                opts.seed,
                split_path.display()
            ),
        ),
        (
            "Training".to_string(),
            format!(
                "preset small, patch {:?}, {} epochs × {} iterations, batch {}, {:?} lr {}, \
                 modality dropout paper, seed {}",
                cfg.patch_size,
                cfg.epochs,
                cfg.iterations_per_epoch,
                cfg.batch_size,
                cfg.optimizer,
                cfg.lr,
                cfg.seed
            ),
        ),
        (
            "Inference".to_string(),
            "sliding window step 0.5, Gaussian weighting, no test-time mirroring, CPU".to_string(),
        ),
        ("Post-processing".to_string(), postprocessing_text(&models)),
        (
            "Versions".to_string(),
            format!(
                "a2fseg {}, burn 0.22.1 (flex CPU backend)",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        ("Timings".to_string(), timings(root)),
    ]);
    let (files, findings) = build_report(root, &models, panel, &caption, notes, conventions)?;
    for line in &findings {
        say(opts, &format!("  - {line}"));
    }
    say(
        opts,
        &format!(
            "done in {:.0} s: {} and {}",
            start.elapsed().as_secs_f64(),
            files.markdown.display(),
            files.html.display()
        ),
    );
    Ok(DemoOutcome {
        markdown: files.markdown,
        html: files.html,
        models,
        reused,
    })
}

/// What each model's label maps went through: the decision saved after its training
/// (`postprocess.json` in the model folder), as `evaluate` applied it.
fn postprocessing_text(models: &[DemoModel]) -> String {
    let mut parts = vec![
        "labels only inside the head (where an image is non-zero), then the largest \
         whole-tumour component only if that raised the mean validation Dice (decided after \
         training on the validation cases from all 15 subsets, as nnU-Net decides its \
         post-processing)"
            .to_string(),
    ];
    for m in models {
        let text = resolve_model_dir(&m.run_dir)
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join(postprocess::FILE)).ok())
            .and_then(|t| serde_json::from_str::<postprocess::Decision>(&t).ok());
        parts.push(match text {
            Some(d) => format!("{}: {}", m.label, d.summary()),
            None => format!("{}: no decision saved (brain mask only)", m.label),
        });
    }
    parts.join("; ")
}

/// Seconds of every finished stage, from the done-markers.
fn timings(root: &Path) -> String {
    let mut parts = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return String::new();
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let marker = d.join(super::stage::MARKER);
        if let Ok(text) = std::fs::read_to_string(&marker)
            && let Ok(m) = serde_json::from_str::<super::stage::StageMarker>(&text)
        {
            parts.push(format!("{} {:.0} s", m.stage, m.seconds));
        }
    }
    parts.join(", ")
}

/// Predicts test case `id` from FLAIR, FLAIR + T1c and all four with the model of
/// `run_dir`, and writes the Fig.-2 panel to `path`. Returns its caption.
fn render_panel(data: &Path, id: &str, run_dir: &Path, path: &Path) -> Result<String> {
    let ds = dataset::discover(data)?;
    let case = ds
        .case(id)
        .with_context(|| format!("test case {id} is not in {}", data.display()))?;
    let loaded = dataset::load_case(&ds, case)?;
    let pre = preprocess_case(&loaded, &PreprocessSettings::default())?;
    let device = crate::model::device_from_name("cpu")?;
    let predictor = Predictor::load(run_dir, device, 0.5, Tta::OFF)?;
    let subsets = [
        Subset::from_modalities([Modality::Flair]),
        Subset::from_modalities([Modality::T1c, Modality::Flair]),
        Subset::FULL,
    ];
    let preds: Vec<(Subset, crate::volume::Grid<u8>)> = predictor
        .predict_subsets(&pre, &subsets)?
        .into_iter()
        .map(|(s, p)| (s, p.classes))
        .collect();
    let truth = loaded
        .classes
        .as_ref()
        .with_context(|| format!("test case {id} has no segmentation"))?;
    let images = [0, 1, 2, 3].map(|i| loaded.images[i].as_ref());
    let (img, _) = slice_panel(
        &PanelCase {
            id,
            images,
            truth,
            predictions: &preds,
        },
        None,
    )?;
    crate::fsutil::atomic_write_bytes(path, &png_bytes(&img)?)?;
    Ok(format!(
        "Test case {id}: axial slice with the most tumour; top: T1, T1c, T2, FLAIR; bottom: the \
         adaptive model's prediction over FLAIR from FLAIR, FLAIR + T1c and all four, then the \
         ground truth (edema red, enhancing blue, necrosis/non-enhancing green)"
    ))
}
