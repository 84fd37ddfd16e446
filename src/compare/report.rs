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

/// Case `id` of the dataset `data` and its predictions by each model of `runs` (`(label, run
/// or model folder)`) from each of `subsets` the case has (with the adaptive fusion's
/// attention maps when `attention`), with the settings `evaluate` uses by default (step 0.5,
/// no mirroring, each model's post-processing).
/// One model's predictions of a case, one per subset.
type SubsetPredictions = Vec<(Subset, Prediction)>;

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

/// Predicts case `id` of the dataset `data` from [`panel_subsets`] with each model of
/// `runs` (`(label, run or model folder)`) and writes the panel (the modalities, then one
/// row per model ending with the ground truth) to `path` as PNG.
pub fn render_panel(data: &Path, id: &str, runs: &[(&str, &Path)], path: &Path) -> Result<()> {
    let (loaded, predictions) = predict_case(data, id, runs, &panel_subsets(), false)?;
    let truth = loaded
        .classes
        .as_ref()
        .with_context(|| format!("case {id} has no segmentation"))?;
    let predictions: Vec<Vec<(Subset, Grid<u8>)>> = predictions
        .into_iter()
        .map(|p| p.into_iter().map(|(s, p)| (s, p.classes)).collect())
        .collect();
    let rows: Vec<PredictionRow<'_>> = runs
        .iter()
        .zip(&predictions)
        .map(|((label, _), p)| PredictionRow {
            label,
            predictions: p,
        })
        .collect();
    let case = PanelCase {
        id,
        images: [0, 1, 2, 3].map(|i| loaded.images[i].as_ref()),
        truth,
        predictions: &[],
    };
    let (img, _) = methods_panel(&case, &rows, None)?;
    crate::fsutil::atomic_write_bytes(path, &png_bytes(&img)?)
}

/// The viewer sections (HTML, see [`crate::report::viewer`]) of the cases `ids` of `data`:
/// each model of `runs` predicts every subset the case has; the attention maps are those
/// of the largest subset; the scores beside the viewer use `metrics`.
pub fn viewer_sections(
    data: &Path,
    ids: &[String],
    runs: &[(&str, &Path)],
    metrics: MetricOptions,
) -> Result<Vec<String>> {
    let all: Vec<Subset> = Subset::all_nonempty().collect();
    let mut sections = Vec::with_capacity(ids.len());
    for id in ids {
        let (loaded, predictions) = predict_case(data, id, runs, &all, true)?;
        let methods = runs
            .iter()
            .zip(predictions)
            .map(|((label, _), preds)| viewer::predictions_method(label, preds))
            .collect();
        let case = ViewerCase {
            id: id.clone(),
            geometry: loaded.geometry,
            images: loaded.images,
            truth: loaded.classes,
            methods,
            metrics,
        };
        sections.push(viewer::viewer_section(&case)?);
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
