//! The demo's stages, each a call of the same library function its command uses:
//! [`crate::phantom::write_dataset`] (`a2fseg phantom`), [`crate::dataset::Split::random`]
//! (`a2fseg dataset split`), [`crate::train::train`] (`a2fseg train`) and
//! [`crate::infer::evaluate::evaluate`] (`a2fseg evaluate`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::budget::{self, BudgetInputs, BudgetPlan};
use super::events::DemoEvent;
use super::stage::{self, Stage, StageState};
use super::{DemoModel, DemoOptions, build_report, model_label};
use crate::compare::report::PanelSpec;
use crate::compare::{CompareOptions, CompareOutcome, Method, Recipe, run_compare};
use crate::dataset::{self, Split};
use crate::infer::evaluate::{EvaluateOptions, evaluate};
use crate::infer::{postprocess, resolve_model_dir};
use crate::metrics::MetricOptions;
use crate::model::{Arch, Preset};
use crate::progress::{Output, Sink, Stream};
use crate::report::document::metric_conventions;
use crate::train::{TrainConfig, TrainOptions};

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

/// The models the demo trains, in order, by stage key: for A2FSeg the adaptive-fusion model,
/// then the average-fusion baseline if the budget allows; another method alone, by its name.
fn demo_models(arch: Arch) -> Vec<(&'static str, Method)> {
    match arch {
        Arch::A2fseg => vec![("adaptive", Method::A2FSEG), ("average", Method::AVERAGE)],
        other => vec![(other.name(), Method::from(other))],
    }
}

/// The most validation cases a demo model validates on (the default 100 cases have 10).
pub const VALIDATION_CASES: usize = 10;

/// The training configuration of a demo model: `method`'s own recipe at the `small` preset
/// (for A2FSeg: the paper's modality dropout), the demo's seed, `epochs`.
fn train_config(opts: &DemoOptions, method: Method, epochs: usize) -> TrainConfig {
    let mut cfg = method.train_config(Preset::Small, Recipe::Own);
    cfg.seed = opts.seed;
    cfg.epochs = epochs.max(1);
    if let Some(n) = opts.iterations_per_epoch {
        cfg.iterations_per_epoch = n.max(1);
    }
    // Keep every case in memory when they all fit in 2 GiB (100 cases of 80×80×52 take
    // about 0.5 GiB): past `max_cases_in_memory` the loader reads an evicted case from the
    // cache again each time it is drawn.
    let bytes_per_case = 16 * opts.dims.iter().product::<usize>();
    if opts.cases * bytes_per_case <= 2 << 30 {
        cfg.max_cases_in_memory = cfg.max_cases_in_memory.max(opts.cases);
    }
    // Validation picks the best checkpoint and decides the post-processing; past
    // `VALIDATION_CASES` more cases cost time the budget would take from training.
    if cfg.validation_cases == 0 {
        cfg.validation_cases = VALIDATION_CASES;
    }
    cfg
}

/// Runs the demo (see the module docs of [`crate::demo`]).
pub fn run_demo(opts: &DemoOptions) -> Result<DemoOutcome> {
    let mut demo = Demo::new(opts)?;
    let phantoms = demo.phantoms()?;
    let inputs = demo.split(&phantoms)?;
    let planned = demo.plan(&inputs)?;
    let models = demo.train_and_evaluate(&inputs, &planned)?;
    demo.report(&inputs, &planned.plan, models)
}

/// `demo --methods`: the phantoms and split stages, then [`crate::compare::run_compare`] of
/// `methods` on them into `OUT/compare` (the `small` preset, each method's own recipe,
/// the demo's budget less the time already spent).
pub fn run_demo_compare(opts: &DemoOptions, methods: &[Method]) -> Result<CompareOutcome> {
    let mut demo = Demo::new(opts)?;
    let phantoms = demo.phantoms()?;
    let inputs = demo.split(&phantoms)?;
    run_compare(&CompareOptions {
        data: inputs.data,
        methods: methods.to_vec(),
        out: opts.out.join("compare"),
        split: Some(inputs.split_path),
        preset: Preset::Small,
        recipe: Recipe::Own,
        budget_minutes: Some(opts.budget_minutes),
        spent_seconds: demo.start.elapsed().as_secs_f64(),
        epochs: None,
        iterations_per_epoch: opts.iterations_per_epoch,
        seed: opts.seed,
        view_cases: opts.view_cases,
        tta: opts.tta,
        device: crate::model::ComputeDevice::Cpu,
        strict_finite: false,
        quiet: opts.quiet,
    })
}

/// A demo run: its options, its clock and where its lines go.
struct Demo<'a> {
    opts: &'a DemoOptions,
    start: Instant,
    sink: Sink,
    /// Stages reused from an earlier run.
    reused: Vec<String>,
}

/// The phantoms and their split, as every later stage reads them.
struct Inputs {
    /// The split stage.
    split_stage: Stage,
    /// The dataset folder.
    data: PathBuf,
    /// `split.json`.
    split_path: PathBuf,
    /// The split.
    split: Split,
}

/// The plan and the stages it asks for.
struct Planned {
    plan: BudgetPlan,
    /// Per model: key, training configuration, training and evaluation stages.
    models: Vec<(&'static str, TrainConfig, Stage, Stage)>,
    /// The plan's estimate of the demo's end.
    deadline: Instant,
}

impl<'a> Demo<'a> {
    fn new(opts: &'a DemoOptions) -> Result<Demo<'a>> {
        let start = Instant::now();
        std::fs::create_dir_all(&opts.out)
            .with_context(|| format!("cannot create folder {}", opts.out.display()))?;
        let output = if opts.quiet {
            Output::Quiet
        } else {
            Output::Text
        };
        Ok(Demo {
            opts,
            start,
            sink: Sink::new(output, Stream::Stdout),
            reused: Vec::new(),
        })
    }

    /// Records `stage` as reused when `reused`.
    fn note(&mut self, stage: &Stage, reused: bool) {
        if reused {
            self.reused.push(stage.name.clone());
        }
    }

    /// Stage 1: the phantom dataset.
    fn phantoms(&mut self) -> Result<Stage> {
        let opts = self.opts;
        let stage = Stage::new(
            &opts.out,
            "phantoms",
            &(
                opts.cases,
                opts.dims,
                opts.seed,
                crate::phantom::GENERATOR_VERSION,
            ),
            &[],
        );
        self.sink.emit(&DemoEvent::Phantoms {
            cases: opts.cases,
            dims: opts.dims,
        });
        let (_, r) = stage.run(false, |d| {
            crate::phantom::write_dataset(
                &d.join("data"),
                opts.cases,
                opts.dims,
                opts.seed,
                opts.quiet,
            )?;
            Ok(json!({ "cases": opts.cases }))
        })?;
        self.note(&stage, r);
        Ok(stage)
    }

    /// Stage 2: the 70/10/20 split of the phantoms.
    fn split(&mut self, phantoms: &Stage) -> Result<Inputs> {
        let opts = self.opts;
        let data = phantoms.dir.join("data");
        let stage = Stage::new(&opts.out, "split", &(opts.seed, RATIOS), &[phantoms]);
        let split_path = stage.dir.join("split.json");
        let (_, r) = stage.run(false, |d| {
            let ds = dataset::discover(&data)?;
            let split = Split::random(&ds.ids(), opts.seed, RATIOS)?;
            split.save(&d.join("split.json"))?;
            Ok(json!({}))
        })?;
        self.note(&stage, r);
        let split = Split::load(&split_path)?;
        self.sink.emit(&DemoEvent::Split {
            split: &split,
            seed: opts.seed,
        });
        Ok(Inputs {
            split_stage: stage,
            data,
            split_path,
            split,
        })
    }

    /// Stage 3: time a few training steps, then divide the budget; the training and
    /// evaluation stages the plan asks for, and its estimate of the end.
    fn plan(&mut self, inputs: &Inputs) -> Result<Planned> {
        let opts = self.opts;
        // Another method calibrates its own step; A2FSeg's key is that of earlier versions, so
        // their finished stages stay valid.
        let mut key = match opts.arch {
            Arch::A2fseg => json!([opts.budget_minutes, opts.iterations_per_epoch]),
            arch => json!([opts.budget_minutes, opts.iterations_per_epoch, arch.name()]),
        };
        // Mirroring changes the evaluation's cost, so the plan; without it the key is that
        // of earlier versions.
        if !opts.tta.is_off() {
            key = json!([key, opts.tta.to_string()]);
        }
        let stage = Stage::new(&opts.out, "plan", &key, &[&inputs.split_stage]);
        let (marker, r) = stage.run(false, |d| self.calibrate(inputs, d))?;
        self.note(&stage, r);
        let plan: BudgetPlan = serde_json::from_value(marker.info["plan"].clone())
            .context("the plan stage's marker holds no plan")?;
        // 4–5 (their stages, for the time estimate): train and evaluate each model.
        let mut planned = demo_models(opts.arch);
        planned.truncate(if plan.both_models { 2 } else { 1 });
        let mut models = Vec::new();
        for (key, method) in planned {
            let cfg = train_config(opts, method, plan.epochs);
            let train_stage = Stage::new(
                &opts.out,
                &format!("train-{key}"),
                &cfg.to_toml()?,
                &[&stage],
            );
            let eval_stage = Stage::new(
                &opts.out,
                &format!("eval-{key}"),
                &stage::test_evaluation_params(opts.tta),
                &[&train_stage],
            );
            models.push((key, cfg, train_stage, eval_stage));
        }
        // The plan's estimate, less the stages an earlier run finished.
        let evaluation = marker.info["inputs"]["evaluation"].as_f64().unwrap_or(0.0);
        let reused_seconds: f64 = models
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
        self.sink.emit(&DemoEvent::Plan {
            plan: &plan,
            time_left: time_left(deadline),
        });
        Ok(Planned {
            plan,
            models,
            deadline,
        })
    }

    /// The work of the plan stage in its folder `dir`: calibration runs, then the budget
    /// plan; returns the marker's info (`inputs` and `plan`).
    fn calibrate(&self, inputs: &Inputs, dir: &Path) -> Result<serde_json::Value> {
        let opts = self.opts;
        let split = &inputs.split;
        // The calibration runs train on all four modalities (the costliest step); the mean
        // step of the method's modality draw costs a share of it. The faster of two rounds
        // (`budget::measure_steps`). They train on a few cases only, so the warm-up that
        // fills their preprocessing cache reads only those (the demo's training reads the
        // dataset itself).
        let methods = demo_models(opts.arch);
        let cfg = train_config(opts, methods[0].1, 1);
        let cache = dir.join("cache");
        let calibration_split = budget::calibration_split(&inputs.split_path, cfg.batch_size, dir)?;
        budget::warm_up(
            &inputs.data,
            &calibration_split,
            &cfg,
            &cache,
            &dir.join("calibrate-warm-up"),
        )?;
        let full = budget::measure_steps(
            &inputs.data,
            &calibration_split,
            &[("calibrate", &cfg)],
            &cache,
            dir,
            budget::CALIBRATION_ROUNDS,
        )?;
        let step = budget::step_share(&cfg) * full[0];
        let test_case = split.test.first().context("the split has no test case")?;
        let dims = budget::inference_dims(&inputs.data, test_case, &cfg.preprocess)?;
        let per_case = budget::windows_per_case(dims, cfg.model.patch_size) as f64;
        let (validation, evaluation) = budget::run_costs(
            step,
            per_case,
            cfg.validation_count(split.validation.len()),
            split.test.len(),
            cfg.validate_every,
            opts.tta.flips().len(),
        );
        let recipe = methods[0].1.train_config(Preset::Small, Recipe::Own);
        let budget_inputs = BudgetInputs {
            total: opts.budget_minutes * 60.0,
            spent: self.start.elapsed().as_secs_f64(),
            step,
            iterations_per_epoch: cfg.iterations_per_epoch,
            validation,
            evaluation,
            reserve: 10.0 + per_case * step,
            min_epochs: 2,
            max_epochs: recipe.epochs * 4,
            min_epochs_for_two: if methods.len() > 1 { 40 } else { usize::MAX },
            // Every epoch that fits: with the step margin now as large as the measured
            // overrun, rounding down to 5 epochs left up to 90 s of 900 unused (a run planned
            // 35 epochs where 39 fitted and ended at 790 s).
            epoch_quantum: 1,
        };
        let plan = budget::plan(&budget_inputs);
        Ok(json!({ "inputs": budget_inputs, "plan": plan }))
    }

    /// Stages 4 and 5: train each planned model (resuming an interrupted training), then
    /// evaluate it on the test cases over all 15 subsets.
    fn train_and_evaluate(&mut self, inputs: &Inputs, planned: &Planned) -> Result<Vec<DemoModel>> {
        let opts = self.opts;
        let deadline = planned.deadline;
        // ` (finished earlier: reused)` for a stage an earlier run completed, else the time left.
        let status = |s: &Stage| {
            if done(s) {
                " (finished earlier: reused)".to_string()
            } else {
                time_left(deadline)
            }
        };
        let mut models = Vec::new();
        let count = planned.models.len();
        for (i, (key, cfg, train_stage, eval_stage)) in planned.models.iter().enumerate() {
            self.sink.emit(&DemoEvent::Train {
                key,
                index: i + 1,
                count,
                epochs: cfg.epochs,
                status: status(train_stage),
            });
            let (_, r) = train_stage.run(true, |d| {
                let resume = crate::compare::has_checkpoint(d);
                let mut o = TrainOptions::new(&inputs.data, d, cfg.clone());
                o.split = Some(inputs.split_path.clone());
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
            self.note(train_stage, r);

            self.sink.emit(&DemoEvent::Evaluate {
                key,
                test_cases: inputs.split.test.len(),
                status: status(eval_stage),
            });
            let (_, r) = eval_stage.run(true, |d| {
                let outcome = evaluate(&EvaluateOptions {
                    quiet: opts.quiet,
                    tta: opts.tta,
                    ..EvaluateOptions::new(
                        train_stage.dir.clone(),
                        inputs.data.clone(),
                        Some(inputs.split_path.clone()),
                        d.to_path_buf(),
                    )
                })?;
                Ok(json!({ "scored": outcome.scored }))
            })?;
            self.note(eval_stage, r);
            models.push(DemoModel {
                key: key.to_string(),
                label: model_label(key),
                run_dir: train_stage.dir.clone(),
                eval_dir: eval_stage.dir.clone(),
            });
        }
        Ok(models)
    }

    /// Stage 6: figures and report (always rebuilt from the files: cheap).
    fn report(
        self,
        inputs: &Inputs,
        plan: &BudgetPlan,
        models: Vec<DemoModel>,
    ) -> Result<DemoOutcome> {
        let opts = self.opts;
        let root = &opts.out;
        self.sink.emit(&DemoEvent::Report);
        let summary = models[0].eval_dir.join("summary.json");
        let bytes = std::fs::read(&summary)
            .with_context(|| format!("cannot read {}", summary.display()))?;
        crate::fsutil::atomic_write_bytes(&root.join("summary.json"), &bytes)?;
        let mut notes = Vec::new();
        if !plan.both_models && demo_models(opts.arch).len() > 1 {
            notes.push(format!(
                "Only the adaptive-fusion model was trained: the {:.0}-minute budget left no \
                 time for the average-fusion baseline (rerun with a larger --budget-minutes).",
                opts.budget_minutes
            ));
        }
        let viewed: Vec<String> = inputs
            .split
            .test
            .iter()
            .take(opts.view_cases)
            .cloned()
            .collect();
        let runs: Vec<(&str, &Path)> = models
            .iter()
            .map(|m| (m.label.as_str(), m.run_dir.as_path()))
            .collect();
        // The panel shows the first model; the viewers every model.
        let panel_path = root.join("figures").join("panel.png");
        let panel_case = inputs.split.test.first();
        let viewers = crate::compare::report::panel_and_viewers(
            &inputs.data,
            &runs,
            panel_case.map(|id| PanelSpec {
                case: id,
                path: &panel_path,
                rows: 1,
            }),
            &viewed,
            MetricOptions::default(),
        )?;
        let panel = panel_case.map(|id| (panel_path.clone(), panel_caption(id, &models[0])));
        let conventions = conventions(opts, inputs, plan, &models);
        let method = Method::from(opts.arch).label();
        let (files, findings) =
            build_report(root, method, &models, panel, viewers, notes, conventions)?;
        for line in &findings {
            self.sink.emit(&DemoEvent::Finding(line));
        }
        self.sink.emit(&DemoEvent::Done {
            seconds: self.start.elapsed().as_secs_f64(),
            markdown: &files.markdown,
            html: &files.html,
        });
        Ok(DemoOutcome {
            markdown: files.markdown,
            html: files.html,
            models,
            reused: self.reused,
        })
    }
}

/// Whether an earlier run finished `stage`.
fn done(stage: &Stage) -> bool {
    matches!(stage.state(), StageState::Done(_))
}

/// The report's conventions: the metrics', then the data, split, training, inference,
/// post-processing, versions and the stages' timings.
fn conventions(
    opts: &DemoOptions,
    inputs: &Inputs,
    plan: &BudgetPlan,
    models: &[DemoModel],
) -> Vec<(String, String)> {
    let split = &inputs.split;
    let root = &opts.out;
    let mut conventions = metric_conventions(MetricOptions::default().hd95_penalty, None);
    let cfg = train_config(opts, demo_models(opts.arch)[0].1, plan.epochs);
    conventions.extend([
        (
            "Data".to_string(),
            format!(
                "{} synthetic cases {:?} of {} mm (phantoms in BraTS's geometry, generator \
                 version {}, seed {})",
                opts.cases,
                opts.dims,
                crate::phantom::phantom_spacing(opts.dims)[0],
                crate::phantom::GENERATOR_VERSION,
                opts.seed
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
                inputs.split_path.display()
            ),
        ),
        (
            "Training".to_string(),
            format!(
                "{}, preset small, patch {:?}, {} epochs × {} iterations, batch {}, {:?} lr {}, \
                 modality dropout {}, seed {}",
                Method::from(opts.arch).label(),
                cfg.model.patch_size,
                cfg.epochs,
                cfg.iterations_per_epoch,
                cfg.batch_size,
                cfg.optimizer,
                cfg.lr,
                cfg.modality_dropout,
                cfg.seed
            ),
        ),
        (
            "Inference".to_string(),
            format!(
                "sliding window step 0.5, Gaussian weighting, {}, CPU",
                opts.tta.describe()
            ),
        ),
        ("Post-processing".to_string(), postprocessing_text(models)),
        (
            "Versions".to_string(),
            format!(
                "a2fseg {}, burn 0.22.1 (flex CPU backend)",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        ("Timings".to_string(), timings(root)),
    ]);
    conventions
}

/// What each model's label maps went through: the decision saved after its training
/// (`postprocess.json` in the model folder), as `evaluate` applied it.
fn postprocessing_text(models: &[DemoModel]) -> String {
    let mut parts = vec![
        "labels only inside the head (where an image is non-zero), then, for each modality \
         subset, the largest whole-tumour component only if that raised the subset's mean \
         validation Dice of one region and lowered none, then an \
         enhancing tumour under a volume threshold relabelled necrosis/non-enhancing core if \
         a threshold raised the mean validation ET Dice (both decided after training on the \
         validation cases from all 15 subsets, as nnU-Net decides its post-processing)"
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

/// The caption of the Fig.-2 panel of test case `id` (the comparison's panel with one
/// unlabelled row: `model`'s predictions).
fn panel_caption(id: &str, model: &DemoModel) -> String {
    format!(
        "Test case {id}: axial slice with the most tumour; top: T1, T1c, T2, FLAIR; bottom: the \
         prediction of {} over FLAIR from FLAIR, FLAIR + T1c and all four, then the ground \
         truth (edema red, enhancing blue, necrosis/non-enhancing green)",
        model.label
    )
}
