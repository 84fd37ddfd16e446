//! The comparison's documents: `summary.md` (the tables) and a self-contained
//! `report.html` (the tables, a Dice bar chart per region and the Fig.-2-style panel with
//! one row per method), built with the report module's one Table-1 renderer
//! ([`tables::table1_methods`]) and its Markdown / HTML writers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::methods::Method;
use super::summary::CompareSummary;
use crate::dataset;
use crate::infer::{Prediction, Predictor, Tta};
use crate::labels::Region;
use crate::metrics::MetricOptions;
use crate::modality::{Modality, Subset};
use crate::preprocess::preprocess_case;
use crate::report::charts::{methods_bar_chart, png_bytes};
use crate::report::document::{Block, render_html, render_markdown, viewer_blocks};
use crate::report::slices::{PanelCase, PredictionRow, methods_panel};
use crate::report::tables::{self, Metric, Table, dice_pct};
use crate::report::viewer::{self, ViewerCase};
use crate::volume::Grid;

/// The subsets the panel shows, as the paper's Fig. 2: FLAIR, FLAIR + T1c, all four.
pub fn panel_subsets() -> [Subset; 3] {
    [
        Subset::from_modalities([Modality::Flair]),
        Subset::from_modalities([Modality::T1c, Modality::Flair]),
        Subset::FULL,
    ]
}

/// One model's predictions of a case, one per subset.
type SubsetPredictions = Vec<(Subset, Prediction)>;

/// Case `id` of the dataset `data` and its predictions by each model of `runs` (`(label, run
/// or model folder)`) from each of `subsets` the case has (with the adaptive fusion's
/// attention maps when `attention`), with the settings `evaluate` uses by default (step 0.5,
/// no mirroring, each model's post-processing).
fn predict_case(
    data: &Path,
    id: &str,
    runs: &[(&str, &Path)],
    subsets: &[Subset],
    attention: bool,
) -> Result<(dataset::LoadedCase, Vec<SubsetPredictions>)> {
    let ds = dataset::discover(data)?;
    let case = ds
        .case(id)
        .with_context(|| format!("case {id} is not in {}", data.display()))?;
    let loaded = dataset::load_case(&ds, case)?;
    let available = loaded.available();
    let subsets: Vec<Subset> = subsets
        .iter()
        .copied()
        .filter(|s| s.is_subset_of(available))
        .collect();
    let device = crate::model::device_from_name("cpu")?;
    let mut predictions = Vec::new();
    for (_, run) in runs {
        let mut predictor = Predictor::load(run, device.clone(), 0.5, Tta::OFF)?;
        predictor.keep_attention = attention && predictor.has_attention();
        let pre = preprocess_case(&loaded, &predictor.preprocess)?;
        predictions.push(predictor.predict_subsets(&pre, &subsets)?);
    }
    Ok((loaded, predictions))
}

/// The Fig.-2 panel of a report: which case, where its PNG goes, and how many models (the
/// first ones of the report's runs) it shows, one row each.
#[derive(Debug, Clone, Copy)]
pub struct PanelSpec<'a> {
    /// The case shown.
    pub case: &'a str,
    /// The PNG file written.
    pub path: &'a Path,
    /// Rows: the first `rows` models.
    pub rows: usize,
}

/// The panel's predictions out of a model's predictions: those of [`panel_subsets`] the
/// case has, in that order.
fn panel_predictions(predictions: &[(Subset, Prediction)]) -> Vec<(Subset, Grid<u8>)> {
    panel_subsets()
        .iter()
        .filter_map(|s| predictions.iter().find(|(t, _)| t == s))
        .map(|(s, p)| (*s, p.classes.clone()))
        .collect()
}

/// Writes the panel of `loaded` to `spec.path` as PNG: the modalities, then one row per
/// model (`labels`, with its [`panel_predictions`]) ending with the ground truth.
fn write_panel(
    loaded: &dataset::LoadedCase,
    labels: &[&str],
    predictions: &[SubsetPredictions],
    spec: PanelSpec<'_>,
) -> Result<()> {
    let truth = loaded
        .classes
        .as_ref()
        .with_context(|| format!("case {} has no segmentation", spec.case))?;
    let predictions: Vec<Vec<(Subset, Grid<u8>)>> =
        predictions.iter().map(|p| panel_predictions(p)).collect();
    let rows: Vec<PredictionRow<'_>> = labels
        .iter()
        .zip(&predictions)
        .map(|(label, p)| PredictionRow {
            label,
            predictions: p,
        })
        .collect();
    let case = PanelCase {
        id: spec.case,
        images: [0, 1, 2, 3].map(|i| loaded.images[i].as_ref()),
        truth,
        predictions: &[],
    };
    let (img, _) = methods_panel(&case, &rows, None)?;
    crate::fsutil::atomic_write_bytes(spec.path, &png_bytes(&img)?)
}

/// Writes the panel (`panel`, if any) and returns the viewer sections `(case id, HTML, see
/// [`crate::report::viewer`])` of the cases `viewed` of `data`, predicting each case once
/// with each model of `runs` (`(label, run or model folder)`): a viewed case from every
/// subset it has (the viewer shows the attention maps of the largest; its scores use
/// `metrics`), and the panel's case, when it is viewed, from those same predictions, else
/// from the panel's subsets only. One case's predictions are held at a time.
pub fn panel_and_viewers(
    data: &Path,
    runs: &[(&str, &Path)],
    panel: Option<PanelSpec<'_>>,
    viewed: &[String],
    metrics: MetricOptions,
) -> Result<Vec<(String, String)>> {
    panel_and_viewers_with(
        runs,
        panel,
        viewed,
        metrics,
        &mut |id, runs, subsets, attention| predict_case(data, id, runs, subsets, attention),
    )
}

/// How [`panel_and_viewers`] predicts a case: `(id, runs, subsets, attention)` as
/// [`predict_case`] takes them.
type PredictFn<'f> = dyn FnMut(
        &str,
        &[(&str, &Path)],
        &[Subset],
        bool,
    ) -> Result<(dataset::LoadedCase, Vec<SubsetPredictions>)>
    + 'f;

/// [`panel_and_viewers`] with its predictions from `predict`.
fn panel_and_viewers_with(
    runs: &[(&str, &Path)],
    panel: Option<PanelSpec<'_>>,
    viewed: &[String],
    metrics: MetricOptions,
    predict: &mut PredictFn<'_>,
) -> Result<Vec<(String, String)>> {
    let labels: Vec<&str> = runs.iter().map(|(l, _)| *l).collect();
    let all: Vec<Subset> = Subset::all_nonempty().collect();
    let mut panel_done = false;
    let mut sections = Vec::with_capacity(viewed.len());
    for id in viewed {
        let (loaded, predictions) = predict(id, runs, &all, true)?;
        if let Some(spec) = panel.filter(|p| p.case == id) {
            write_panel(&loaded, &labels[..spec.rows], &predictions, spec)?;
            panel_done = true;
        }
        let methods = labels
            .iter()
            .zip(predictions)
            .map(|(label, preds)| viewer::predictions_method(label, preds))
            .collect();
        let case = ViewerCase {
            id: id.clone(),
            geometry: loaded.geometry,
            images: loaded.images,
            truth: loaded.classes,
            methods,
            metrics,
        };
        sections.push((id.clone(), viewer::viewer_section(&case)?));
    }
    if let Some(spec) = panel.filter(|_| !panel_done) {
        let rows = &runs[..spec.rows];
        let (loaded, predictions) = predict(spec.case, rows, &panel_subsets(), false)?;
        write_panel(&loaded, &labels[..spec.rows], &predictions, spec)?;
    }
    Ok(sections)
}

/// What the documents say besides the results.
#[derive(Debug, Clone, Default)]
pub struct DocumentContext {
    /// Introductory paragraphs.
    pub intro: Vec<String>,
    /// The rendered panel and its caption, if any.
    pub panel: Option<(PathBuf, String)>,
    /// Interactive viewers: `(case id, HTML section)`.
    pub viewers: Vec<(String, String)>,
    /// `(name, value)` facts: data, split, recipe, epochs, conventions.
    pub conventions: Vec<(String, String)>,
}

/// The tables of a comparison: Table 1 of Dice and of HD95, Table 2 (A2FSeg against
/// average fusion, when both ran), the subsets won and the paired tests.
pub fn table_blocks(s: &CompareSummary) -> Vec<Block> {
    let methods = s.tables();
    let mut b = vec![
        Block::Heading(2, "Table 1 — Dice (%) per modality subset".into()),
        Block::Para(
            "Mean over the test cases; ● available, ○ missing (columns T1, T1c, T2, FLAIR), \
             rows in the paper's order; per region one column per method."
                .into(),
        ),
        Block::Table(tables::table1_methods(&methods, Metric::Dice)),
        Block::Heading(2, "Table 1 — HD95 (mm) per modality subset".into()),
        Block::Table(tables::table1_methods(&methods, Metric::Hd95)),
    ];
    if let (Some(a), Some(avg)) = (s.method(Method::A2FSEG), s.method(Method::AVERAGE)) {
        b.push(Block::Heading(
            2,
            "Table 2 — average fusion vs adaptive fusion".into(),
        ));
        b.push(Block::Table(tables::table2(&[
            (avg.label.clone(), &avg.scores),
            (a.label.clone(), &a.scores),
        ])));
    }
    b.push(Block::Heading(2, "Subsets won".into()));
    b.push(Block::Para(
        "Number of subsets in which a method has the highest mean Dice (ties count for every \
         tied method)."
            .into(),
    ));
    b.push(Block::Table(wins_table(s)));
    if !s.tests.is_empty() {
        b.push(Block::Heading(
            2,
            "Paired Wilcoxon signed-rank tests".into(),
        ));
        b.push(Block::Para(format!("{}.", capitalise(&s.test_unit))));
        b.push(Block::Table(tests_table(s)));
    }
    b
}

/// The whole report: title, intro, tables, a bar chart per region, the panel, conventions.
pub fn report_blocks(s: &CompareSummary, ctx: &DocumentContext) -> Result<Vec<Block>> {
    let mut b = vec![Block::Heading(
        1,
        "Comparison of segmentation methods over modality subsets".into(),
    )];
    b.extend(ctx.intro.iter().cloned().map(Block::Para));
    b.extend(table_blocks(s));
    b.push(Block::Heading(2, "Mean Dice per subset".into()));
    let methods = s.tables();
    for region in Region::ALL {
        let title = format!("Mean {region} Dice per modality subset");
        b.push(Block::Figure {
            file: format!("dice-{}.png", region.name().to_ascii_lowercase()),
            png: png_bytes(&methods_bar_chart(&methods, region, &title)?)?,
            caption: title,
        });
    }
    if let Some((panel, caption)) = &ctx.panel {
        let png =
            std::fs::read(panel).with_context(|| format!("cannot read {}", panel.display()))?;
        b.push(Block::Heading(
            2,
            "Fig. 2 — growing modality subsets".into(),
        ));
        b.push(Block::Figure {
            file: "panel.png".into(),
            png,
            caption: caption.clone(),
        });
    }
    b.extend(viewer_blocks(&ctx.viewers));
    if !ctx.conventions.is_empty() {
        b.push(Block::Heading(2, "Conventions".into()));
        b.push(Block::Bullets(
            ctx.conventions
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        ));
    }
    Ok(b)
}

/// Writes `summary.md` (title and tables), `report.html` (everything, figures embedded) and
/// the figures as PNG files under `out/figures/`, each atomically; returns the paths of
/// the two documents.
pub fn write_documents(
    out: &Path,
    s: &CompareSummary,
    ctx: &DocumentContext,
) -> Result<(PathBuf, PathBuf)> {
    let mut md_blocks = vec![Block::Heading(1, "Comparison summary".into())];
    md_blocks.extend(table_blocks(s));
    let md = out.join("summary.md");
    crate::fsutil::atomic_write_bytes(&md, render_markdown(&md_blocks).as_bytes())?;
    let html = out.join("report.html");
    let blocks = report_blocks(s, ctx)?;
    for b in &blocks {
        if let Block::Figure { file, png, .. } = b {
            // The panel is already this file: rewriting identical bytes is harmless.
            crate::fsutil::atomic_write_bytes(&out.join("figures").join(file), png)?;
        }
    }
    crate::fsutil::atomic_write_bytes(&html, render_html(&blocks).as_bytes())?;
    Ok((md, html))
}

/// Method × (WT, TC, ET, total) subsets won.
fn wins_table(s: &CompareSummary) -> Table {
    let header = ["Method", "WT", "TC", "ET", "Total"]
        .map(String::from)
        .to_vec();
    let rows = s
        .wins
        .iter()
        .map(|w| {
            let label = s.method(w.method).map_or("", |m| m.label.as_str());
            let mut row = vec![label.to_string()];
            row.extend(w.regions.iter().map(|n| n.to_string()));
            row.push(w.total.to_string());
            row
        })
        .collect();
    Table {
        header,
        rows,
        footer: 0,
    }
}

/// A row per (other method, region): cases, mean difference, statistic, p-value.
fn tests_table(s: &CompareSummary) -> Table {
    let header = [
        "Reference",
        "Other",
        "Region",
        "Cases",
        "Mean Dice difference (points)",
        "W",
        "p",
        "p from",
    ]
    .map(String::from)
    .to_vec();
    let label = |m: Method| {
        s.method(m)
            .map_or(m.name().to_string(), |r| r.label.clone())
    };
    let rows = s
        .tests
        .iter()
        .map(|t| {
            let (w, p, how) = match &t.test {
                Some(r) => (
                    format!("{}", r.statistic),
                    format!("{:.4}", r.p_value),
                    format!("{:?}", r.method).to_ascii_lowercase(),
                ),
                None => ("–".into(), "–".into(), "all differences zero".into()),
            };
            vec![
                label(t.reference),
                label(t.other),
                t.region.name().to_string(),
                t.cases.to_string(),
                dice_pct(t.mean_difference),
                w,
                p,
                how,
            ]
        })
        .collect();
    Table {
        header,
        rows,
        footer: 0,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::plan::{Plan, PlanCost};
    use crate::labels::LabelConvention;
    use crate::preprocess::CropBox;
    use crate::volume::Geometry;

    const DIMS: [usize; 3] = [12, 10, 8];

    /// A case of [`DIMS`]: four images, a tumour block, and each model's prediction of each
    /// requested subset (the truth; attention maps of 0.5 when asked).
    fn fake_case(
        id: &str,
        runs: &[(&str, &Path)],
        subsets: &[Subset],
        attention: bool,
    ) -> (dataset::LoadedCase, Vec<SubsetPredictions>) {
        let mut truth = Grid::<u8>::zeros(DIMS);
        for (x, y, z) in [(5, 4, 3), (6, 4, 3), (5, 5, 4)] {
            truth.set(x, y, z, 2);
        }
        let image = truth.map(|c| 100.0 + 10.0 * f32::from(c));
        let mut affine = [[0.0; 4]; 4];
        for (i, row) in affine.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        let loaded = dataset::LoadedCase {
            id: id.to_string(),
            geometry: Geometry::from_affine(DIMS, affine),
            images: std::array::from_fn(|_| Some(image.clone())),
            classes: Some(truth.clone()),
            convention: LabelConvention::Brats,
        };
        let prediction = |s: Subset| Prediction {
            subset: s,
            classes: truth.clone(),
            probabilities: Vec::new(),
            attention: if attention {
                s.modalities()
                    .map(|m| (m, Grid::filled(DIMS, 0.5)))
                    .collect()
            } else {
                Vec::new()
            },
            crop: CropBox::full(DIMS),
            full_dims: DIMS,
            plan: PlanCost {
                plan: Plan::Whole,
                window: DIMS,
                passes: 1,
                macs: 0,
                bytes: 0,
            },
        };
        let predictions = runs
            .iter()
            .map(|_| subsets.iter().map(|&s| (s, prediction(s))).collect())
            .collect();
        (loaded, predictions)
    }

    /// The calls `(case, models, subsets, attention)` to the predictor and the viewer
    /// sections of [`panel_and_viewers_with`] for `viewed` and `panel`.
    type Calls = Vec<(String, usize, usize, bool)>;
    fn run(
        runs: &[(&str, &Path)],
        panel: Option<PanelSpec<'_>>,
        viewed: &[String],
    ) -> (Calls, Vec<(String, String)>) {
        let mut calls = Vec::new();
        let sections = panel_and_viewers_with(
            runs,
            panel,
            viewed,
            MetricOptions::default(),
            &mut |id, runs, subsets, att| {
                calls.push((id.to_string(), runs.len(), subsets.len(), att));
                Ok(fake_case(id, runs, subsets, att))
            },
        )
        .unwrap();
        (calls, sections)
    }

    /// Each case is predicted once: the viewed panel case feeds the panel and the viewer;
    /// a panel case that is not viewed is predicted from the panel's subsets alone.
    #[test]
    fn each_case_is_predicted_once_for_the_panel_and_the_viewer() {
        let dir = tempfile::tempdir().unwrap();
        let runs: Vec<(&str, &Path)> = vec![("A", dir.path()), ("B", dir.path())];
        let png = dir.path().join("panel.png");
        let viewed = vec!["c1".to_string(), "c2".to_string()];
        let spec = PanelSpec {
            case: "c1",
            path: &png,
            rows: 1,
        };
        let (calls, sections) = run(&runs, Some(spec), &viewed);
        assert_eq!(
            calls,
            [("c1".into(), 2, 15, true), ("c2".into(), 2, 15, true)]
        );
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[1].0, "c2");
        assert!(sections[0].1.contains("data-case=\"c1\""));
        assert!(image::open(&png).is_ok());

        // Nothing viewed: the panel's case alone, its subsets and rows only.
        std::fs::remove_file(&png).unwrap();
        let (calls, sections) = run(&runs, Some(spec), &[]);
        assert!(sections.is_empty());
        assert_eq!(calls, [("c1".into(), 1, 3, false)]);
        assert!(image::open(&png).is_ok());
    }

    #[test]
    fn the_panel_takes_its_subsets_in_the_papers_order() {
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let runs: Vec<(&str, &Path)> = vec![("A", Path::new("."))];
        let (_, predictions) = fake_case("c", &runs, &all, false);
        let got: Vec<Subset> = panel_predictions(&predictions[0])
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, panel_subsets());
    }
}
