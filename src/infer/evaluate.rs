//! Evaluation of one or more models over modality subsets: the paper's Table 1 (and
//! Table 2 when several models are compared) and Fig. 3 (mean attention per modality per
//! tumour class), for any trained model.
//!
//! For every case and model, each needed MSFE runs once per window and every subset is a
//! cheap fusion ([`Predictor::predict_subsets`]). Each finished case's rows are added to
//! `cases.csv` at once (the whole file is rewritten atomically), so a killed evaluation
//! resumes from the cases already scored. The summary is rebuilt from `cases.csv` every
//! time: `summary.md`, `summary.csv`, `summary.json` and `attention.json`.
//!
//! Output files in `--out`:
//! - `evaluate.json`: the settings; a rerun with different settings is refused.
//! - `cases.csv`: one row per (model, case, subset).
//! - `summary.json`: one model → `{"0001": {"WT": {"dice", "hd95", "sensitivity",
//!   "specificity"}, "TC": .., "ET": .., "ET_postprocessed": .. (with --et-postprocess),
//!   "cases": n}, …, "mean": {..}}`; several models → `{"<model>": {that object}, …}`, and
//!   each model's own file under `<model>/summary.json`.
//! - `attention.json`: `{"1111": {"ET": {"t1": w, "t1c": w, "t2": w, "flair": w}, "ED": ..,
//!   "NCR/NET": ..}, …}` per subset with at least two modalities (adaptive models only),
//!   keyed by model name when several models are evaluated (and under `<model>/`).
//! - `summary.csv`: one row per (model, subset or "mean").
//! - `summary.md`: Table 1 per model, Table 2 (one line per model), Fig. 3 numbers.
//!
//! Averages: Dice and HD95 are averaged over cases per subset; the `mean` row averages the
//! subsets' rows (as the paper's "Average" row). Attention: the mean of Ŵ_m over the voxels of
//! each ground-truth class (NCR/NET, ED, ET) per case, then averaged over the cases that
//! have that class.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::postprocess::Postprocess;
use super::predictor::{Prediction, Predictor, resolve_model_dir};
use super::tta::Tta;
use crate::dataset::{self, Split};
use crate::fsutil::atomic_write_bytes;
use crate::labels::{Region, TumourClass};
use crate::metrics::{self, CaseMetrics, MetricOptions, RegionMetrics};
use crate::modality::{Modality, Subset};
use crate::preprocess::{self, PreprocessSettings};
use crate::volume::Grid;

/// The tumour classes of the paper's Fig. 3 with their display names.
pub const ATTENTION_CLASSES: [(TumourClass, &str); 3] = [
    (TumourClass::Enhancing, "ET"),
    (TumourClass::Edema, "ED"),
    (TumourClass::Necrosis, "NCR/NET"),
];

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
}

/// The settings an output folder was made with (`evaluate.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateSettings {
    /// Model names and their resolved model folders.
    pub models: Vec<(String, PathBuf)>,
    /// Dataset folder.
    pub data: PathBuf,
    /// Split file, if any.
    pub split: Option<PathBuf>,
    /// Part of the split.
    pub part: String,
    /// Sliding-window step.
    pub step: f64,
    /// Test-time mirroring.
    pub tta: Tta,
    /// HD95 of a region empty in exactly one of prediction and truth (mm).
    pub hd95_penalty: f64,
    /// ET post-processing threshold (voxels), if any.
    pub et_postprocess: Option<usize>,
    /// The post-processing of each model's label maps, in model order.
    #[serde(default)]
    pub postprocess: Vec<Postprocess>,
}

/// One row of `cases.csv`: the scores of one model on one case from one subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    /// Model name.
    pub model: String,
    /// Case id.
    pub case: String,
    /// Subset bit string (`0101`).
    pub subset: Subset,
    /// Subset as names (`T1c+FLAIR`).
    pub modalities: String,
    /// WT Dice.
    pub wt_dice: f64,
    /// TC Dice.
    pub tc_dice: f64,
    /// ET Dice.
    pub et_dice: f64,
    /// WT HD95 (mm).
    pub wt_hd95: f64,
    /// TC HD95 (mm).
    pub tc_hd95: f64,
    /// ET HD95 (mm).
    pub et_hd95: f64,
    /// ET Dice after post-processing.
    pub et_pp_dice: Option<f64>,
    /// ET HD95 after post-processing.
    pub et_pp_hd95: Option<f64>,
    /// WT sensitivity.
    pub wt_sensitivity: f64,
    /// TC sensitivity.
    pub tc_sensitivity: f64,
    /// ET sensitivity.
    pub et_sensitivity: f64,
    /// WT specificity.
    pub wt_specificity: f64,
    /// TC specificity.
    pub tc_specificity: f64,
    /// ET specificity.
    pub et_specificity: f64,
    /// Predicted WT voxels.
    pub wt_pred_voxels: u64,
    /// Reference WT voxels.
    pub wt_gt_voxels: u64,
    /// Predicted TC voxels.
    pub tc_pred_voxels: u64,
    /// Reference TC voxels.
    pub tc_gt_voxels: u64,
    /// Predicted ET voxels.
    pub et_pred_voxels: u64,
    /// Reference ET voxels.
    pub et_gt_voxels: u64,
    /// Mean attention of T1 over reference ET voxels.
    pub attn_et_t1: Option<f64>,
    /// .. of T1c.
    pub attn_et_t1c: Option<f64>,
    /// .. of T2.
    pub attn_et_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_et_flair: Option<f64>,
    /// Mean attention of T1 over reference edema voxels.
    pub attn_ed_t1: Option<f64>,
    /// .. of T1c.
    pub attn_ed_t1c: Option<f64>,
    /// .. of T2.
    pub attn_ed_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_ed_flair: Option<f64>,
    /// Mean attention of T1 over reference NCR/NET voxels.
    pub attn_ncr_t1: Option<f64>,
    /// .. of T1c.
    pub attn_ncr_t1c: Option<f64>,
    /// .. of T2.
    pub attn_ncr_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_ncr_flair: Option<f64>,
}

impl CaseRow {
    /// A row from the metrics of a case and the per-class mean attention
    /// (`attention[class][modality]`, classes in [`ATTENTION_CLASSES`] order).
    pub fn new(
        model: &str,
        case: &str,
        subset: Subset,
        m: &CaseMetrics,
        attention: [[Option<f64>; 4]; 3],
    ) -> CaseRow {
        let r = |i: usize| -> &RegionMetrics { &m.regions[i] };
        let [a_et, a_ed, a_ncr] = attention;
        CaseRow {
            model: model.to_string(),
            case: case.to_string(),
            subset,
            modalities: subset.describe(),
            wt_dice: r(0).dice,
            tc_dice: r(1).dice,
            et_dice: r(2).dice,
            wt_hd95: r(0).hd95,
            tc_hd95: r(1).hd95,
            et_hd95: r(2).hd95,
            et_pp_dice: m.et_postprocessed.as_ref().map(|p| p.dice),
            et_pp_hd95: m.et_postprocessed.as_ref().map(|p| p.hd95),
            wt_sensitivity: r(0).sensitivity,
            tc_sensitivity: r(1).sensitivity,
            et_sensitivity: r(2).sensitivity,
            wt_specificity: r(0).specificity,
            tc_specificity: r(1).specificity,
            et_specificity: r(2).specificity,
            wt_pred_voxels: r(0).pred_voxels as u64,
            wt_gt_voxels: r(0).gt_voxels as u64,
            tc_pred_voxels: r(1).pred_voxels as u64,
            tc_gt_voxels: r(1).gt_voxels as u64,
            et_pred_voxels: r(2).pred_voxels as u64,
            et_gt_voxels: r(2).gt_voxels as u64,
            attn_et_t1: a_et[0],
            attn_et_t1c: a_et[1],
            attn_et_t2: a_et[2],
            attn_et_flair: a_et[3],
            attn_ed_t1: a_ed[0],
            attn_ed_t1c: a_ed[1],
            attn_ed_t2: a_ed[2],
            attn_ed_flair: a_ed[3],
            attn_ncr_t1: a_ncr[0],
            attn_ncr_t1c: a_ncr[1],
            attn_ncr_t2: a_ncr[2],
            attn_ncr_flair: a_ncr[3],
        }
    }

    /// Dice of WT, TC, ET.
    pub fn dice(&self) -> [f64; 3] {
        [self.wt_dice, self.tc_dice, self.et_dice]
    }

    /// HD95 of WT, TC, ET.
    pub fn hd95(&self) -> [f64; 3] {
        [self.wt_hd95, self.tc_hd95, self.et_hd95]
    }

    /// Sensitivity of WT, TC, ET.
    pub fn sensitivity(&self) -> [f64; 3] {
        [
            self.wt_sensitivity,
            self.tc_sensitivity,
            self.et_sensitivity,
        ]
    }

    /// Specificity of WT, TC, ET.
    pub fn specificity(&self) -> [f64; 3] {
        [
            self.wt_specificity,
            self.tc_specificity,
            self.et_specificity,
        ]
    }

    /// Mean attention per class (in [`ATTENTION_CLASSES`] order) per modality.
    pub fn attention(&self) -> [[Option<f64>; 4]; 3] {
        [
            [
                self.attn_et_t1,
                self.attn_et_t1c,
                self.attn_et_t2,
                self.attn_et_flair,
            ],
            [
                self.attn_ed_t1,
                self.attn_ed_t1c,
                self.attn_ed_t2,
                self.attn_ed_flair,
            ],
            [
                self.attn_ncr_t1,
                self.attn_ncr_t1c,
                self.attn_ncr_t2,
                self.attn_ncr_flair,
            ],
        ]
    }
}

/// Mean of the attention map of each modality over the voxels of each reference class
/// (`[class in ATTENTION_CLASSES order][modality index]`); `None` where the class is absent
/// from the reference or the modality has no map. `gt` is on the original grid.
pub fn attention_by_class(pred: &Prediction, gt: &Grid<u8>) -> [[Option<f64>; 4]; 3] {
    let mut out = [[None; 4]; 3];
    if pred.attention.is_empty() || gt.dims() != pred.full_dims {
        return out;
    }
    let gt = pred.crop.crop(gt);
    for (ci, (class, _)) in ATTENTION_CLASSES.iter().enumerate() {
        let want = class.index() as u8;
        for (m, map) in &pred.attention {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for (&g, &a) in gt.data().iter().zip(map.data()) {
                if g == want {
                    sum += a as f64;
                    n += 1;
                }
            }
            if n > 0 {
                out[ci][m.index()] = Some(sum / n as f64);
            }
        }
    }
    out
}

/// Mean of one region's metrics over cases (or over subsets for the mean row).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RegionMean {
    /// Mean Dice in [0, 1].
    pub dice: f64,
    /// Mean HD95 in mm.
    pub hd95: f64,
    /// Mean sensitivity.
    pub sensitivity: f64,
    /// Mean specificity.
    pub specificity: f64,
}

/// One line of Table 1: a subset's (or the mean's) averages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryRow {
    /// WT, TC, ET.
    pub regions: [RegionMean; 3],
    /// ET after post-processing (when enabled).
    pub et_postprocessed: Option<RegionMean>,
    /// Number of cases averaged.
    pub cases: usize,
}

impl SummaryRow {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        for r in Region::ALL {
            o.insert(r.name().to_string(), json!(self.regions[r.index()]));
        }
        if let Some(pp) = &self.et_postprocessed {
            o.insert(
                "ET_postprocessed".to_string(),
                json!({"dice": pp.dice, "hd95": pp.hd95}),
            );
        }
        o.insert("cases".to_string(), json!(self.cases));
        Value::Object(o)
    }
}

/// The summary of one model: rows per subset in Table 1 order, their mean, and the mean
/// attention per subset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSummary {
    /// Model name.
    pub model: String,
    /// Fusion strategy name, if known.
    pub fusion: Option<String>,
    /// Per subset (ascending bit value = the paper's order).
    pub subsets: BTreeMap<Subset, SummaryRow>,
    /// The mean of the subsets' rows.
    pub mean: SummaryRow,
    /// Per subset: mean attention `[class][modality]` (adaptive models, ≥ 2 modalities).
    pub attention: BTreeMap<Subset, [[Option<f64>; 4]; 3]>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

fn mean_opt(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Vec<f64> = v.flatten().collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Averages `rows` (all of one model) per subset and over subsets.
pub fn summarize(model: &str, fusion: Option<String>, rows: &[&CaseRow]) -> ModelSummary {
    let mut by_subset: BTreeMap<Subset, Vec<&CaseRow>> = BTreeMap::new();
    for r in rows {
        by_subset.entry(r.subset).or_default().push(r);
    }
    let mut subsets = BTreeMap::new();
    let mut attention = BTreeMap::new();
    for (s, rs) in &by_subset {
        let regions = std::array::from_fn(|i| RegionMean {
            dice: mean(rs.iter().map(|r| r.dice()[i])),
            hd95: mean(rs.iter().map(|r| r.hd95()[i])),
            sensitivity: mean(rs.iter().map(|r| r.sensitivity()[i])),
            specificity: mean(rs.iter().map(|r| r.specificity()[i])),
        });
        let pp = rs
            .iter()
            .all(|r| r.et_pp_dice.is_some())
            .then(|| RegionMean {
                dice: mean(rs.iter().filter_map(|r| r.et_pp_dice)),
                hd95: mean(rs.iter().filter_map(|r| r.et_pp_hd95)),
                ..Default::default()
            });
        subsets.insert(
            *s,
            SummaryRow {
                regions,
                et_postprocessed: pp,
                cases: rs.len(),
            },
        );
        let att: [[Option<f64>; 4]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|m| mean_opt(rs.iter().map(|r| r.attention()[c][m])))
        });
        if s.len() >= 2 && att.iter().flatten().any(Option::is_some) {
            attention.insert(*s, att);
        }
    }
    let all: Vec<&SummaryRow> = subsets.values().collect();
    let mean_row = SummaryRow {
        regions: std::array::from_fn(|i| RegionMean {
            dice: mean(all.iter().map(|r| r.regions[i].dice)),
            hd95: mean(all.iter().map(|r| r.regions[i].hd95)),
            sensitivity: mean(all.iter().map(|r| r.regions[i].sensitivity)),
            specificity: mean(all.iter().map(|r| r.regions[i].specificity)),
        }),
        et_postprocessed: (!all.is_empty() && all.iter().all(|r| r.et_postprocessed.is_some()))
            .then(|| RegionMean {
                dice: mean(
                    all.iter()
                        .filter_map(|r| r.et_postprocessed.map(|p| p.dice)),
                ),
                hd95: mean(
                    all.iter()
                        .filter_map(|r| r.et_postprocessed.map(|p| p.hd95)),
                ),
                ..Default::default()
            }),
        cases: by_subset
            .values()
            .flatten()
            .map(|r| &r.case)
            .collect::<BTreeSet<_>>()
            .len(),
    };
    ModelSummary {
        model: model.to_string(),
        fusion,
        subsets,
        mean: mean_row,
        attention,
    }
}

impl ModelSummary {
    /// The `summary.json` object of this model (see the module docs).
    pub fn summary_json(&self) -> Value {
        let mut o = Map::new();
        for (s, row) in &self.subsets {
            o.insert(s.name(), row.to_json());
        }
        o.insert("mean".to_string(), self.mean.to_json());
        Value::Object(o)
    }

    /// The `attention.json` object of this model (see the module docs).
    pub fn attention_json(&self) -> Value {
        let mut o = Map::new();
        for (s, att) in &self.attention {
            let mut classes = Map::new();
            for (ci, (_, name)) in ATTENTION_CLASSES.iter().enumerate() {
                let mut mods = Map::new();
                for m in s.modalities() {
                    if let Some(w) = att[ci][m.index()] {
                        mods.insert(m.key().to_string(), json!(w));
                    }
                }
                if !mods.is_empty() {
                    classes.insert(name.to_string(), Value::Object(mods));
                }
            }
            o.insert(s.name(), Value::Object(classes));
        }
        Value::Object(o)
    }
}

/// Keys a JSON value by model name when there are several models; the single model's
/// object otherwise.
fn by_model(summaries: &[ModelSummary], f: impl Fn(&ModelSummary) -> Value) -> Value {
    if summaries.len() == 1 {
        return f(&summaries[0]);
    }
    Value::Object(summaries.iter().map(|s| (s.model.clone(), f(s))).collect())
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}", 100.0 * x)
    } else {
        "–".to_string()
    }
}

fn mm(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".to_string()
    }
}

/// `summary.md`: per model a Table-1-style table (Dice in %, HD95 in mm, ET also after
/// post-processing when enabled), a Table-2-style comparison when several models are given,
/// and the Fig. 3 attention numbers.
pub fn summary_markdown(summaries: &[ModelSummary], settings: &EvaluateSettings) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation\n");
    let _ = writeln!(
        md,
        "Dataset `{}`{}; sliding window step {}, test-time mirroring {}.\n",
        settings.data.display(),
        match &settings.split {
            Some(p) => format!(", split `{}` part `{}`", p.display(), settings.part),
            None => String::new(),
        },
        settings.step,
        settings.tta
    );
    let _ = writeln!(
        md,
        "Metrics: Dice per region (both empty → 100, one empty → 0); HD95 = 95th percentile \
         (linear interpolation) of the pooled surface distances of both directions, surfaces \
         from 6-connected erosion, with the voxel spacing; both empty → 0 mm, one empty → \
         {} mm.{} Dice in %, HD95 in mm, averaged over cases; the mean row averages the \
         subsets.\n",
        settings.hd95_penalty,
        match settings.et_postprocess {
            Some(n) => format!(
                " ET (pp): predicted ET with fewer than {n} voxels relabelled NCR (RFNet/mmFormer)."
            ),
            None => String::new(),
        }
    );
    for ((name, _), rules) in settings.models.iter().zip(&settings.postprocess) {
        let _ = writeln!(
            md,
            "Post-processing of `{name}`'s label maps: {}.\n",
            rules.describe()
        );
    }
    let pp = settings.et_postprocess.is_some();
    for s in summaries {
        let _ = writeln!(
            md,
            "## Table 1: {}{}\n",
            s.model,
            s.fusion
                .as_ref()
                .map(|f| format!(" ({f} fusion)"))
                .unwrap_or_default()
        );
        let mut head = "| T1 | T1c | T2 | FLAIR | Dice WT | Dice TC | Dice ET |".to_string();
        let mut rule = "|:-:|:-:|:-:|:-:|--:|--:|--:|".to_string();
        if pp {
            head.push_str(" Dice ET (pp) |");
            rule.push_str("--:|");
        }
        head.push_str(" HD95 WT | HD95 TC | HD95 ET |");
        rule.push_str("--:|--:|--:|");
        if pp {
            head.push_str(" HD95 ET (pp) |");
            rule.push_str("--:|");
        }
        head.push_str(" Cases |");
        rule.push_str("--:|");
        let _ = writeln!(md, "{head}\n{rule}");
        let line = |marks: [String; 4], row: &SummaryRow| -> String {
            let mut l = format!("| {} |", marks.join(" | "));
            for r in &row.regions {
                let _ = write!(l, " {} |", pct(r.dice));
            }
            if pp {
                let v = row.et_postprocessed.map(|p| p.dice).unwrap_or(f64::NAN);
                let _ = write!(l, " {} |", pct(v));
            }
            for r in &row.regions {
                let _ = write!(l, " {} |", mm(r.hd95));
            }
            if pp {
                let v = row.et_postprocessed.map(|p| p.hd95).unwrap_or(f64::NAN);
                let _ = write!(l, " {} |", mm(v));
            }
            let _ = write!(l, " {} |", row.cases);
            l
        };
        for (sub, row) in &s.subsets {
            let marks = Modality::ALL.map(|m| if sub.contains(m) { "●" } else { "○" }.to_string());
            let _ = writeln!(md, "{}", line(marks, row));
        }
        let marks = [
            "**Mean**".to_string(),
            String::new(),
            String::new(),
            String::new(),
        ];
        let _ = writeln!(md, "{}\n", line(marks, &s.mean));
    }
    if summaries.len() > 1 {
        let _ = writeln!(
            md,
            "## Table 2: models compared (mean Dice over subsets, %)\n"
        );
        let _ = writeln!(
            md,
            "| Model | Fusion | WT | TC | ET | Average |\n|---|---|--:|--:|--:|--:|"
        );
        for s in summaries {
            let d = s.mean.regions.map(|r| r.dice);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                s.model,
                s.fusion.as_deref().unwrap_or("?"),
                pct(d[0]),
                pct(d[1]),
                pct(d[2]),
                pct((d[0] + d[1] + d[2]) / 3.0)
            );
        }
        let _ = writeln!(md);
    }
    for s in summaries.iter().filter(|s| !s.attention.is_empty()) {
        let _ = writeln!(
            md,
            "## Fig. 3: mean attention weight per modality and tumour class — {}\n",
            s.model
        );
        let _ = writeln!(
            md,
            "Mean of the adaptive fusion's Ŵ_m over the reference voxels of each class, per \
             case, averaged over cases.\n"
        );
        let _ = writeln!(
            md,
            "| Subset | Class | T1 | T1c | T2 | FLAIR |\n|---|---|--:|--:|--:|--:|"
        );
        for (sub, att) in s.attention.iter().rev() {
            for (ci, (_, name)) in ATTENTION_CLASSES.iter().enumerate() {
                let cells: Vec<String> = (0..4)
                    .map(|m| {
                        att[ci][m]
                            .map(|w| format!("{w:.3}"))
                            .unwrap_or_else(|| "–".into())
                    })
                    .collect();
                let _ = writeln!(md, "| {} | {name} | {} |", sub.marks(), cells.join(" | "));
            }
        }
        let _ = writeln!(md);
    }
    md
}

/// `summary.csv`: one row per model and subset (and `mean`).
pub fn summary_csv(summaries: &[ModelSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "model",
        "subset",
        "modalities",
        "cases",
        "wt_dice",
        "tc_dice",
        "et_dice",
        "et_pp_dice",
        "wt_hd95",
        "tc_hd95",
        "et_hd95",
        "et_pp_hd95",
        "wt_sensitivity",
        "tc_sensitivity",
        "et_sensitivity",
        "wt_specificity",
        "tc_specificity",
        "et_specificity",
    ])?;
    for s in summaries {
        let rows = s
            .subsets
            .iter()
            .map(|(k, r)| (k.name(), k.describe(), r))
            .chain(std::iter::once((
                "mean".to_string(),
                "mean".to_string(),
                &s.mean,
            )));
        for (name, desc, r) in rows {
            let f = |x: f64| format!("{x}");
            let o = |x: Option<f64>| x.map(f).unwrap_or_default();
            let mut rec = vec![s.model.clone(), name, desc, r.cases.to_string()];
            rec.extend(r.regions.iter().map(|x| f(x.dice)));
            rec.push(o(r.et_postprocessed.map(|p| p.dice)));
            rec.extend(r.regions.iter().map(|x| f(x.hd95)));
            rec.push(o(r.et_postprocessed.map(|p| p.hd95)));
            rec.extend(r.regions.iter().map(|x| f(x.sensitivity)));
            rec.extend(r.regions.iter().map(|x| f(x.specificity)));
            w.write_record(&rec)?;
        }
    }
    Ok(w.into_inner()?)
}

/// Reads `cases.csv`; a missing file is no rows. A row that cannot be parsed (a truncated
/// last line) is dropped.
pub fn read_case_rows(path: &Path) -> Result<Vec<CaseRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(r.deserialize::<CaseRow>().filter_map(|x| x.ok()).collect())
}

/// Writes all `rows` to `cases.csv` atomically.
pub fn write_case_rows(path: &Path, rows: &[CaseRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner()?;
    atomic_write_bytes(path, &bytes)
}

/// Writes `summary.md`, `summary.csv`, `summary.json`, `attention.json` (and per-model copies
/// under `<model>/` when several models are evaluated).
pub fn write_summaries(
    out: &Path,
    summaries: &[ModelSummary],
    settings: &EvaluateSettings,
) -> Result<()> {
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
    atomic_write_bytes(
        &out.join("summary.md"),
        summary_markdown(summaries, settings).as_bytes(),
    )?;
    atomic_write_bytes(&out.join("summary.csv"), &summary_csv(summaries)?)?;
    atomic_write_bytes(
        &out.join("summary.json"),
        &pretty(&by_model(summaries, ModelSummary::summary_json)),
    )?;
    atomic_write_bytes(
        &out.join("attention.json"),
        &pretty(&by_model(summaries, ModelSummary::attention_json)),
    )?;
    if summaries.len() > 1 {
        for s in summaries {
            let dir = out.join(&s.model);
            atomic_write_bytes(&dir.join("summary.json"), &pretty(&s.summary_json()))?;
            atomic_write_bytes(&dir.join("attention.json"), &pretty(&s.attention_json()))?;
        }
    }
    Ok(())
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

/// Outcome of [`evaluate`].
#[derive(Debug, Clone)]
pub struct EvaluateOutcome {
    /// Per model.
    pub summaries: Vec<ModelSummary>,
    /// Cases scored in this run (not resumed).
    pub scored: usize,
    /// Cases skipped because every model had already scored them.
    pub resumed: usize,
    /// Cases skipped because they have no segmentation.
    pub unlabelled: Vec<String>,
}

/// Evaluates the models over the dataset (see the module docs); resumes from `cases.csv`.
pub fn evaluate(opts: &EvaluateOptions) -> Result<EvaluateOutcome> {
    ensure!(!opts.models.is_empty(), "give at least one --model");
    ensure!(!opts.subsets.is_empty(), "no modality subset to evaluate");
    let device = opts.device.open()?;
    let names = model_names(&opts.models);
    let mut predictors = Vec::new();
    let mut resolved = Vec::new();
    for (name, path) in names.iter().zip(&opts.models) {
        let dir = resolve_model_dir(path)?;
        let mut p = Predictor::load(&dir, device.clone(), opts.step, opts.tta)?;
        p.keep_attention = p.is_adaptive();
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
        tta: opts.tta,
        hd95_penalty: opts.metrics.hd95_penalty,
        et_postprocess: opts.metrics.et_postprocess,
        postprocess: predictors.iter().map(|p| p.postprocess).collect(),
    };
    let settings_path = opts.out.join("evaluate.json");
    if settings_path.exists() {
        let text = std::fs::read_to_string(&settings_path)
            .with_context(|| format!("cannot read {}", settings_path.display()))?;
        let old: EvaluateSettings = serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", settings_path.display()))?;
        if old != settings {
            bail!(
                "{} holds an evaluation with other settings (models, data, split, step, tta, \
                 post-processing or metric options); choose another --out or delete it",
                opts.out.display()
            );
        }
    } else {
        atomic_write_bytes(&settings_path, &serde_json::to_vec_pretty(&settings)?)?;
    }

    let ds = dataset::discover(&opts.data)?;
    let ids = select_cases(&ds, opts.split.as_deref(), &opts.part)?;
    let cases_path = opts.out.join("cases.csv");
    let mut rows = read_case_rows(&cases_path)?;
    // Keep only complete (model, case) groups: every requested subset the case allows.
    let wanted = |case: &dataset::CaseFiles| -> Vec<Subset> {
        let avail = case.available();
        opts.subsets
            .iter()
            .copied()
            .filter(|s| s.is_subset_of(avail))
            .collect()
    };
    let by_id: BTreeMap<&str, &dataset::CaseFiles> =
        ds.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let done: BTreeSet<(String, String)> = {
        let mut have: BTreeMap<(String, String), BTreeSet<Subset>> = BTreeMap::new();
        for r in &rows {
            have.entry((r.model.clone(), r.case.clone()))
                .or_default()
                .insert(r.subset);
        }
        have.into_iter()
            .filter(|((_, case), got)| {
                by_id
                    .get(case.as_str())
                    .is_some_and(|c| wanted(c).iter().all(|s| got.contains(s)))
            })
            .map(|(k, _)| k)
            .collect()
    };
    rows.retain(|r| done.contains(&(r.model.clone(), r.case.clone())));

    let cache = match &opts.cache {
        Some(dir) => Some(preprocess::Cache::open(dir)?),
        None => None,
    };
    let bar = crate::infer::progress_bar(ids.len() as u64, "cases", opts.quiet);
    let (mut scored, mut resumed, mut unlabelled) = (0, 0, Vec::new());
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
        let subsets = wanted(case);
        let mut source = CaseSource::new(&ds, case, cache.as_ref())?;
        let (gt, spacing) = source.reference()?;
        for &i in &todo {
            let pre = source.preprocessed(&predictors[i].preprocess)?;
            let preds = predictors[i].predict_subsets(pre, &subsets)?;
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
        }
        write_case_rows(&cases_path, &rows)?;
        scored += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let summaries: Vec<ModelSummary> = names
        .iter()
        .zip(&predictors)
        .map(|(n, p)| {
            let rs: Vec<&CaseRow> = rows.iter().filter(|r| &r.model == n).collect();
            summarize(n, Some(p.config.fusion.name().to_string()), &rs)
        })
        .collect();
    write_summaries(&opts.out, &summaries, &settings)?;
    Ok(EvaluateOutcome {
        summaries,
        scored,
        resumed,
        unlabelled,
    })
}

/// One case's inputs for [`evaluate`]: the reference labels on the original grid and the
/// case preprocessed with each model's settings (computed once per distinct settings, from
/// the cache when there is one).
struct CaseSource<'a> {
    ds: &'a dataset::Dataset,
    case: &'a dataset::CaseFiles,
    cache: Option<&'a preprocess::Cache>,
    /// The case as read, kept while no cache is used (images are read once).
    loaded: Option<dataset::LoadedCase>,
    done: Vec<(PreprocessSettings, preprocess::PreprocessedCase)>,
}

impl<'a> CaseSource<'a> {
    fn new(
        ds: &'a dataset::Dataset,
        case: &'a dataset::CaseFiles,
        cache: Option<&'a preprocess::Cache>,
    ) -> Result<Self> {
        let loaded = match cache {
            Some(_) => None,
            None => Some(dataset::load_case(ds, case)?),
        };
        Ok(CaseSource {
            ds,
            case,
            cache,
            loaded,
            done: Vec::new(),
        })
    }

    /// The reference class map on the original grid and the voxel spacing. With a cache,
    /// only the segmentation file is read.
    fn reference(&self) -> Result<(Grid<u8>, [f64; 3])> {
        let seg_only;
        let loaded = match &self.loaded {
            Some(l) => l,
            None => {
                let files = dataset::CaseFiles {
                    images: Default::default(),
                    ..self.case.clone()
                };
                seg_only = dataset::load_case(self.ds, &files)?;
                &seg_only
            }
        };
        let gt = loaded
            .classes
            .clone()
            .with_context(|| format!("case {} has no segmentation", self.case.id))?;
        Ok((gt, loaded.geometry.spacing))
    }

    /// The case preprocessed with `settings`.
    fn preprocessed(
        &mut self,
        settings: &PreprocessSettings,
    ) -> Result<&preprocess::PreprocessedCase> {
        let i = match self.done.iter().position(|(s, _)| s == settings) {
            Some(i) => i,
            None => {
                let pre = match (self.cache, &self.loaded) {
                    (Some(cache), _) => cache.get_or_compute(self.ds, self.case, settings)?,
                    (None, Some(loaded)) => preprocess::preprocess_case(loaded, settings)?,
                    (None, None) => bail!("case {} was not read", self.case.id),
                };
                self.done.push((*settings, pre));
                self.done.len() - 1
            }
        };
        Ok(&self.done[i].1)
    }
}

/// The case ids to evaluate: the split's `part` (checked against the dataset), or every case
/// of the dataset without a split.
pub fn select_cases(
    ds: &dataset::Dataset,
    split: Option<&Path>,
    part: &str,
) -> Result<Vec<String>> {
    let Some(path) = split else {
        return Ok(ds.cases.iter().map(|c| c.id.clone()).collect());
    };
    let split = Split::load(path)?;
    split.validate(ds)?;
    let ids = match part {
        "test" => split.test.clone(),
        "validation" | "val" => split.validation.clone(),
        "train" => split.train.clone(),
        "all" => [
            split.train.clone(),
            split.validation.clone(),
            split.test.clone(),
        ]
        .concat(),
        other => bail!("invalid --part '{other}' (expected test, validation, train or all)"),
    };
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, case: &str, subset: &str, dice: f64, hd: f64, pp: Option<f64>) -> CaseRow {
        let rm = |dice: f64| RegionMetrics {
            dice,
            hd95: hd,
            sensitivity: dice,
            specificity: 1.0,
            pred_voxels: 10,
            gt_voxels: 12,
            pred_volume_ml: 0.01,
            gt_volume_ml: 0.012,
        };
        let m = CaseMetrics {
            regions: [rm(dice); 3],
            et_postprocessed: pp.map(rm),
        };
        let mut att = [[None; 4]; 3];
        att[0] = [Some(0.1), Some(0.2), Some(0.3), Some(0.4)];
        CaseRow::new(model, case, subset.parse().unwrap(), &m, att)
    }

    #[test]
    fn case_rows_round_trip_through_csv_and_truncation_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cases.csv");
        let rows = vec![
            row("a", "c1", "0101", 0.5, 3.0, Some(0.4)),
            row("a", "c1", "1111", 0.75, 1.0, None),
        ];
        write_case_rows(&p, &rows).unwrap();
        assert_eq!(read_case_rows(&p).unwrap(), rows);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() - 30]).unwrap();
        assert_eq!(read_case_rows(&p).unwrap(), rows[..1].to_vec());
        assert!(
            read_case_rows(&dir.path().join("none.csv"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn summary_averages_cases_then_subsets_and_keys_by_bit_string() {
        let rows = [
            row("m", "c1", "0001", 0.2, 10.0, Some(0.1)),
            row("m", "c2", "0001", 0.4, 20.0, Some(0.3)),
            row("m", "c1", "1111", 0.8, 2.0, Some(0.7)),
            row("m", "c2", "1111", 1.0, 4.0, Some(0.9)),
        ];
        let refs: Vec<&CaseRow> = rows.iter().collect();
        let s = summarize("m", Some("adaptive".into()), &refs);
        let j = s.summary_json();
        assert!((j["0001"]["WT"]["dice"].as_f64().unwrap() - 0.3).abs() < 1e-12);
        assert!((j["1111"]["ET"]["hd95"].as_f64().unwrap() - 3.0).abs() < 1e-12);
        assert!((j["mean"]["TC"]["dice"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert!((j["mean"]["ET_postprocessed"]["dice"].as_f64().unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(j["mean"]["cases"], 2);
        // Attention only for subsets with ≥ 2 modalities, and only their modalities.
        let a = s.attention_json();
        assert!(a.get("0001").is_none());
        assert!((a["1111"]["ET"]["flair"].as_f64().unwrap() - 0.4).abs() < 1e-12);
        assert!(a["1111"].get("ED").is_none());
        // The report module's reader accepts these files.
        let back = crate::report::Summary::from_json(&j.to_string());
        assert!(back.is_ok(), "{back:?}");
    }

    #[test]
    fn markdown_has_table_one_rows_in_paper_order_and_table_two_for_several_models() {
        let rows = [
            row("a", "c1", "1111", 0.8, 2.0, Some(0.7)),
            row("a", "c1", "0101", 0.6, 4.0, Some(0.5)),
            row("b", "c1", "1111", 0.9, 1.0, Some(0.8)),
        ];
        let sa = summarize(
            "a",
            Some("adaptive".into()),
            &rows[..2].iter().collect::<Vec<_>>(),
        );
        let sb = summarize(
            "b",
            Some("average".into()),
            &rows[2..].iter().collect::<Vec<_>>(),
        );
        let settings = EvaluateSettings {
            models: vec![],
            data: "d".into(),
            split: None,
            part: "test".into(),
            step: 0.5,
            tta: Tta::OFF,
            hd95_penalty: 373.13,
            et_postprocess: Some(500),
            postprocess: vec![],
        };
        let md = summary_markdown(&[sa.clone(), sb.clone()], &settings);
        let i0101 = md.find("| ○ | ● | ○ | ● |").unwrap();
        let i1111 = md.find("| ● | ● | ● | ● |").unwrap();
        assert!(i0101 < i1111);
        assert!(md.contains("Dice ET (pp)"));
        assert!(md.contains("## Table 2"));
        assert!(md.contains("| b | average | 90.00 | 90.00 | 90.00 | 90.00 |"));
        let j = by_model(&[sa, sb], ModelSummary::summary_json);
        assert!(j["a"]["0101"]["WT"]["dice"].is_number());
        let csv = String::from_utf8(
            summary_csv(&[summarize("x", None, &rows[..1].iter().collect::<Vec<_>>())]).unwrap(),
        )
        .unwrap();
        assert_eq!(csv.lines().count(), 3);
    }

    #[test]
    fn model_names_come_from_run_folders_and_are_unique() {
        let names = model_names(&[
            PathBuf::from("/r/run1"),
            PathBuf::from("/r/run1/checkpoints/best"),
            PathBuf::from("/x/run 2/"),
        ]);
        assert_eq!(names, ["run1", "run1-2", "run_2"]);
    }
}
