//! Evaluation of one or more models over modality subsets: the paper's Table 1 (and
//! Table 2 when several models are compared) and Fig. 3 (mean attention per modality per
//! tumour class), for any trained model.
//!
//! For every case and model, each needed MSFE runs once per window and every subset is a
//! cheap fusion ([`Predictor::predict_subsets`]). Each finished case's rows are added to
//! `cases.csv` at once (the whole file is rewritten atomically), so a killed evaluation
//! resumes from the cases already scored. The summary is rebuilt from `cases.csv` every
//! time.
//!
//! Output files in `--out`, each with one owner of its format:
//! - `evaluate.json`: the settings; a rerun with different settings is refused
//!   ([`settings`]).
//! - `cases.csv`: one row per (model, case, subset) ([`rows`]).
//! - `summary.json`: one model → `{"0001": {"WT": {"dice", "hd95", "sensitivity",
//!   "specificity"}, "TC": .., "ET": .., "ET_postprocessed": .. (with --et-postprocess),
//!   "cases": n}, …, "mean": {..}}`; several models → `{"<model>": {that object}, …}`, and
//!   each model's own file under `<model>/summary.json` ([`crate::report::scores`]).
//! - `attention.json`: `{"1111": {"ET": {"t1": w, "t1c": w, "t2": w, "flair": w}, "ED": ..,
//!   "NCR/NET": ..}, …}` per subset with at least two modalities (adaptive models only),
//!   keyed by model name when several models are evaluated (and under `<model>/`)
//!   ([`crate::report::attention`]).
//! - `summary.csv`: one row per (model, subset or "mean") ([`output`]).
//! - `summary.md`: Table 1 per model ([`crate::report::tables::table1`]), Table 2 (one line
//!   per model), Fig. 3 numbers ([`output`]).
//! - `report.html`: Table 1 per model and an interactive viewer of the first `view_cases`
//!   labelled cases ([`crate::report::viewer`]; their predictions of this run are kept for
//!   it, only a viewed case scored by an earlier run is predicted again) ([`output`]).
//!
//! Averages ([`summary`]): Dice and HD95 are averaged over cases per subset; the `mean` row
//! averages the subsets' rows (as the paper's "Average" row). Attention ([`attention`]): the
//! mean of Ŵ_m over the voxels of each ground-truth class (NCR/NET, ED, ET) per case, then
//! averaged over the cases that have that class. Case selection: [`cases`].

pub mod attention;
pub mod cases;
pub mod output;
pub mod rows;
pub mod settings;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Result, ensure};

pub use attention::{ATTENTION_CLASSES, ClassAttention, attention_by_class};
pub use cases::select_cases;
pub use output::{summary_csv, summary_markdown, write_report_html, write_summaries};
pub use rows::{CaseRow, read_case_rows, write_case_rows};
pub use settings::EvaluateSettings;
pub use summary::{ModelEvaluation, summarize};

use super::plan::{self, WindowChoice};
use super::postprocess::Postprocess;
use super::predictor::{Predictor, resolve_model_dir};
use super::tta::Tta;
use crate::dataset::{self, CaseFiles};
use crate::fsutil::FolderLock;
use crate::metrics::{self, MetricOptions};
use crate::modality::{Modality, Subset};
use crate::preprocess;
use crate::report::viewer::{self, ViewerCase};
use cases::CaseSource;

/// What to evaluate and where to write it.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Run folders or model folders (see [`resolve_model_dir`]).
    pub models: Vec<PathBuf>,
    /// Dataset folder.
    pub data: PathBuf,
    /// Split file; without it every case with a segmentation is evaluated.
    pub split: Option<PathBuf>,
    /// Part of the split: `test`, `validation`, `train` or `all`.
    pub part: String,
    /// Subsets to evaluate (each case uses those its modalities allow).
    pub subsets: Vec<Subset>,
    /// Output folder.
    pub out: PathBuf,
    /// Metric conventions (HD95 penalty, ET post-processing).
    pub metrics: MetricOptions,
    /// Sliding-window step fraction.
    pub step: f64,
    /// The inference plan (sliding window, whole volume or auto).
    pub window: WindowChoice,
    /// Memory cap in bytes of the auto plan; `None`: [`plan::default_max_memory`].
    pub max_memory: Option<u64>,
    /// Test-time mirroring.
    pub tta: Tta,
    /// Post-process the label maps as each model folder says (`postprocess.json`, else the
    /// brain mask alone); false scores the network's label maps as decoded.
    pub postprocess: bool,
    /// Where the networks run.
    pub device: crate::model::ComputeDevice,
    /// No progress bar.
    pub quiet: bool,
    /// Preprocessing cache folder (e.g. a training run's `RUN_DIR/cache`); `None`
    /// preprocesses every case afresh in memory, as nnU-Net's prediction does. Entries are
    /// keyed by the settings and the input files, so a stale one is never used; the results
    /// are the same either way.
    pub cache: Option<PathBuf>,
    /// Refuse input files with NaN or infinite voxels instead of reading them as 0.
    pub strict_finite: bool,
    /// Labelled cases (the first ones evaluated) with an interactive viewer in
    /// `report.html`, with the predictions that scored them (predicted again only when
    /// scored by an earlier, resumed run).
    pub view_cases: usize,
}

impl EvaluateOptions {
    /// `a2fseg evaluate`'s defaults for one model (a run or model folder) on the `test` part
    /// of `split` (or every case of `data`), writing to `out`: all 15 subsets, default
    /// metrics, the sliding window at step 0.5, no mirroring, the model's post-processing, on
    /// the CPU, without a cache, no viewer (the callers, `compare` and `demo`, show cases
    /// in their own reports).
    pub fn new(model: PathBuf, data: PathBuf, split: Option<PathBuf>, out: PathBuf) -> Self {
        EvaluateOptions {
            models: vec![model],
            data,
            split,
            part: "test".into(),
            subsets: Subset::all_nonempty().collect(),
            out,
            metrics: MetricOptions::default(),
            step: 0.5,
            window: WindowChoice::default(),
            max_memory: None,
            tta: Tta::OFF,
            postprocess: true,
            device: crate::model::ComputeDevice::Cpu,
            quiet: false,
            cache: None,
            strict_finite: false,
            view_cases: 0,
        }
    }
}

/// Outcome of [`evaluate`].
#[derive(Debug, Clone)]
pub struct EvaluateOutcome {
    /// Per model.
    pub summaries: Vec<ModelEvaluation>,
    /// Cases scored in this run (not resumed).
    pub scored: usize,
    /// Cases skipped because every model had already scored them.
    pub resumed: usize,
    /// Cases skipped because they have no segmentation.
    pub unlabelled: Vec<String>,
    /// Cases that lack some modalities, with the requested subsets that need them (not
    /// scored); a case with none of the requested subsets is not scored at all.
    pub partial: Vec<PartialCase>,
    /// How many (model, case) predictions of this run used each plan (`sliding`, `whole`).
    pub plans: BTreeMap<String, usize>,
    /// (model, case) predictions made again for the viewer: those of viewed cases scored by
    /// an earlier run (a viewed case scored in this run keeps its predictions for it).
    pub repredicted_for_viewer: usize,
    /// Notes about the evaluated cases' folders (files ignored, see
    /// [`CaseFiles::notes`]).
    pub notes: Vec<String>,
}

/// A case without some of the modalities the requested subsets use.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialCase {
    /// Case id.
    pub id: String,
    /// The modalities the case lacks.
    pub missing: Vec<Modality>,
    /// The requested subsets that were not scored because they need a missing modality.
    pub skipped: Vec<Subset>,
    /// How many requested subsets were scored.
    pub scored: usize,
}

impl PartialCase {
    /// The case `case` against `requested`, if it lacks a modality some subset needs.
    fn of(requested: &[Subset], case: &CaseFiles) -> Option<PartialCase> {
        let avail = case.available();
        let skipped: Vec<Subset> = requested
            .iter()
            .copied()
            .filter(|s| !s.is_subset_of(avail))
            .collect();
        (!skipped.is_empty()).then(|| PartialCase {
            id: case.id.clone(),
            missing: Modality::ALL
                .into_iter()
                .filter(|m| !avail.contains(*m))
                .collect(),
            scored: requested.len() - skipped.len(),
            skipped,
        })
    }

    /// One line for the user: which modalities the case lacks and what was skipped.
    pub fn note(&self) -> String {
        let missing: Vec<&str> = self.missing.iter().map(|m| m.label()).collect();
        let skipped: Vec<String> = self.skipped.iter().map(|s| s.name()).collect();
        format!(
            "case {} has no {}: scored {} subset(s), skipped {} that need it ({})",
            self.id,
            missing.join(", "),
            self.scored,
            self.skipped.len(),
            skipped.join(", ")
        )
    }
}

/// Evaluates the models over the dataset (see the module docs); resumes from `cases.csv`.
pub fn evaluate(opts: &EvaluateOptions) -> Result<EvaluateOutcome> {
    ensure!(!opts.models.is_empty(), "give at least one --model");
    ensure!(!opts.subsets.is_empty(), "no modality subset to evaluate");
    let device = opts.device.open()?;
    let names = model_names(&opts.models);
    let max_memory = opts.max_memory.unwrap_or_else(plan::default_max_memory);
    let mut predictors = Vec::new();
    let mut resolved = Vec::new();
    for (name, path) in names.iter().zip(&opts.models) {
        let dir = resolve_model_dir(path)?;
        let mut p = Predictor::load(&dir, device.clone(), opts.step, opts.tta)?;
        p.keep_attention = p.has_attention();
        p.window = opts.window;
        p.max_memory = max_memory;
        if !opts.postprocess {
            p.postprocess = Postprocess::NONE;
        }
        resolved.push((name.clone(), std::path::absolute(&dir).unwrap_or(dir)));
        predictors.push(p);
    }
    let settings = EvaluateSettings {
        models: resolved,
        data: std::path::absolute(&opts.data).unwrap_or_else(|_| opts.data.clone()),
        split: opts
            .split
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        part: opts.part.clone(),
        step: opts.step,
        window: opts.window,
        max_memory: (opts.window == WindowChoice::Auto).then_some(max_memory),
        tta: opts.tta,
        hd95_penalty: opts.metrics.hd95_penalty,
        et_postprocess: opts.metrics.et_postprocess,
        postprocess: predictors.iter().map(|p| p.postprocess).collect(),
    };
    // One evaluation writes a folder at a time: a second one would interleave `cases.csv`.
    let _lock = FolderLock::acquire(&opts.out, "evaluation")?;
    settings.check_or_write(&opts.out)?;

    let ds = dataset::discover(&opts.data)?.with_strict_finite(opts.strict_finite);
    let ids = select_cases(&ds, opts.split.as_deref(), &opts.part)?;
    let cases_path = opts.out.join("cases.csv");
    let by_id: BTreeMap<&str, &CaseFiles> = ds.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let wanted = |case: &CaseFiles| wanted_subsets(&opts.subsets, case);
    let mut notes: Vec<String> = opts
        .models
        .iter()
        .zip(&predictors)
        .filter(|(_, p)| p.config().spacing.is_none())
        .map(|(path, _)| super::unrecorded_spacing_note(path))
        .collect();
    notes.extend(ids.iter().flat_map(|id| by_id[id.as_str()].notes()));
    let mut resampled = vec![0usize; predictors.len()];
    let mut rows = read_case_rows(&cases_path)?;
    let done = complete_groups(&rows, &by_id, &opts.subsets);
    rows.retain(|r| done.contains(&(r.model.clone(), r.case.clone())));

    let cache = match &opts.cache {
        Some(dir) => Some(preprocess::Cache::open(dir)?),
        None => None,
    };
    // The viewed cases (the first labelled ones); their predictions in this run are kept
    // for the viewer, the other cases' are dropped once scored.
    let viewed: Vec<&String> = ids
        .iter()
        .filter(|id| by_id[id.as_str()].has_seg())
        .take(opts.view_cases)
        .collect();
    let mut kept: BTreeMap<(String, usize), viewer::ViewerMethod> = BTreeMap::new();
    let bar = crate::progress::bar(ids.len() as u64, "cases", opts.quiet);
    let (mut scored, mut resumed, mut unlabelled) = (0, 0, Vec::new());
    let mut partial = Vec::new();
    let mut plans: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let case = by_id[id.as_str()];
        bar.set_message(id.clone());
        let todo: Vec<usize> = (0..predictors.len())
            .filter(|&i| !done.contains(&(names[i].clone(), id.clone())))
            .collect();
        if todo.is_empty() {
            resumed += 1;
            bar.inc(1);
            continue;
        }
        if !case.has_seg() {
            unlabelled.push(id.clone());
            bar.inc(1);
            continue;
        }
        partial.extend(PartialCase::of(&opts.subsets, case));
        let subsets = wanted(case);
        if subsets.is_empty() {
            bar.inc(1);
            continue;
        }
        let mut source = CaseSource::new(&ds, case, cache.as_ref())?;
        let (gt, spacing) = source.reference()?;
        for &i in &todo {
            let (preds, was_resampled) = source.predict(&predictors[i], &subsets)?;
            resampled[i] += usize::from(was_resampled);
            if let Some((_, p)) = preds.first() {
                *plans.entry(p.plan.plan.to_string()).or_default() += 1;
            }
            for (s, p) in &preds {
                ensure!(
                    p.classes.dims() == gt.dims(),
                    "case {id}: the prediction's grid {:?} differs from the segmentation's {:?}",
                    p.classes.dims(),
                    gt.dims()
                );
                let m = metrics::evaluate_case(&p.classes, &gt, spacing, &opts.metrics);
                rows.push(CaseRow::new(
                    &names[i],
                    id,
                    *s,
                    &m,
                    attention_by_class(p, &gt),
                ));
            }
            if viewed.contains(&id) {
                kept.insert(
                    (id.clone(), i),
                    viewer::predictions_method(&names[i], preds),
                );
            }
        }
        write_case_rows(&cases_path, &rows)?;
        scored += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let summaries: Vec<ModelEvaluation> = names
        .iter()
        .zip(&predictors)
        .map(|(n, p)| {
            let rs: Vec<&CaseRow> = rows.iter().filter(|r| &r.model == n).collect();
            summarize(n, Some(p.config().network_label()), &rs)
        })
        .collect();
    write_summaries(&opts.out, &summaries, &settings)?;
    // The viewer shows this run's predictions of the viewed cases; a viewed case scored by
    // an earlier run (resumed) is predicted again.
    let mut viewers = Vec::new();
    let mut repredicted = 0;
    for id in viewed {
        let case = by_id[id.as_str()];
        let subsets = wanted(case);
        if subsets.is_empty() {
            continue;
        }
        let mut source = None;
        let mut methods = Vec::new();
        for (i, (name, p)) in names.iter().zip(&predictors).enumerate() {
            let method = match kept.remove(&(id.clone(), i)) {
                Some(m) => m,
                None => {
                    let source = match &mut source {
                        Some(s) => s,
                        None => source.insert(CaseSource::new(&ds, case, cache.as_ref())?),
                    };
                    let (preds, _) = source.predict(p, &subsets)?;
                    repredicted += 1;
                    viewer::predictions_method(name, preds)
                }
            };
            methods.push(method);
        }
        let loaded = dataset::load_case(&ds, case)?;
        let view = ViewerCase {
            id: id.clone(),
            geometry: loaded.geometry,
            images: loaded.images,
            truth: loaded.classes,
            methods,
            metrics: opts.metrics,
        };
        viewers.push((id.clone(), viewer::viewer_section(&view)?));
    }
    write_report_html(&opts.out, &summaries, &settings, &viewers)?;
    for ((name, p), n) in names.iter().zip(&predictors).zip(resampled) {
        if let (Some(s), true) = (p.config().spacing, n > 0) {
            notes.push(format!(
                "model {name}: {n} case(s) of another voxel spacing were resampled to its \
                 {} × {} × {} mm, and their predictions back to their own grids for scoring",
                s[0], s[1], s[2]
            ));
        }
    }
    Ok(EvaluateOutcome {
        summaries,
        scored,
        resumed,
        unlabelled,
        partial,
        plans,
        repredicted_for_viewer: repredicted,
        notes,
    })
}

/// The requested subsets that `case`'s modalities allow.
fn wanted_subsets(requested: &[Subset], case: &CaseFiles) -> Vec<Subset> {
    let avail = case.available();
    requested
        .iter()
        .copied()
        .filter(|s| s.is_subset_of(avail))
        .collect()
}

/// The (model, case) groups of `rows` that are complete, i.e. hold every requested subset
/// the case allows: what a resumed evaluation keeps and does not score again.
fn complete_groups(
    rows: &[CaseRow],
    by_id: &BTreeMap<&str, &CaseFiles>,
    requested: &[Subset],
) -> BTreeSet<(String, String)> {
    let mut have: BTreeMap<(String, String), BTreeSet<Subset>> = BTreeMap::new();
    for r in rows {
        have.entry((r.model.clone(), r.case.clone()))
            .or_default()
            .insert(r.subset);
    }
    have.into_iter()
        .filter(|((_, case), got)| {
            by_id
                .get(case.as_str())
                .is_some_and(|c| wanted_subsets(requested, c).iter().all(|s| got.contains(s)))
        })
        .map(|(k, _)| k)
        .collect()
}

/// Unique, file-name-safe model names: the run folder's name (the folder above
/// `checkpoints/<name>` for a checkpoint), with `-2`, `-3`… added to repeats.
pub fn model_names(paths: &[PathBuf]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    paths
        .iter()
        .map(|p| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let comps: Vec<String> = p
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let n = comps.len();
            let base = if n >= 3 && comps[n - 2] == "checkpoints" {
                comps[n - 3].clone()
            } else {
                comps.last().cloned().unwrap_or_else(|| "model".into())
            };
            let base: String = base
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let k = seen.entry(base.clone()).or_insert(0);
            *k += 1;
            if *k == 1 { base } else { format!("{base}-{k}") }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_come_from_run_folders_and_are_unique() {
        let names = model_names(&[
            PathBuf::from("/r/run1"),
            PathBuf::from("/r/run1/checkpoints/best"),
            PathBuf::from("/x/run 2/"),
        ]);
        assert_eq!(names, ["run1", "run1-2", "run_2"]);
    }

    #[test]
    fn partial_cases_name_what_they_lack_and_what_was_skipped() {
        let mut case = CaseFiles::empty("BraTS20_Training_009".into());
        for m in [Modality::T1c, Modality::Flair] {
            case.images[m.index()] = Some(dataset::ImageFile {
                path: PathBuf::from(format!("{}.nii.gz", m.key())),
                channel: None,
            });
        }
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let p = PartialCase::of(&all, &case).unwrap();
        assert_eq!(p.missing, [Modality::T1, Modality::T2]);
        assert_eq!((p.scored, p.skipped.len()), (3, 12));
        assert!(p.skipped.iter().all(|s| !s.is_subset_of(case.available())));
        assert_eq!(wanted_subsets(&all, &case).len(), p.scored);
        let note = p.note();
        assert!(
            note.contains("BraTS20_Training_009 has no T1, T2")
                && note.contains("scored 3 subset(s), skipped 12")
                && note.contains("1000"),
            "{note}"
        );
        // Only the requested subsets count: 0101 alone needs nothing the case lacks.
        let only = ["0101".parse::<Subset>().unwrap()];
        assert_eq!(PartialCase::of(&only, &case), None);
    }
}
