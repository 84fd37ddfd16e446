//! `report.md` and `report.html`: the Table-1 table, the Table-2 fusion comparison, the
//! Fig.-2 panel, the Fig.-3 attention summary, training curves and the conventions, built
//! from the evaluation and training files on disk.
//!
//! The document is first assembled as a list of [`Block`]s, then rendered twice: Markdown
//! (figures as files under `figures/`, linked relatively) and a self-contained HTML page
//! (the same figures embedded as base64 `data:` URIs, no external reference).

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;

use super::attention::Attention;
use super::charts;
use super::inputs::TrainLog;
use super::scores::{AVERAGING, ScoreTable};
use super::tables::{self, Table, Table1Columns, escape};
use crate::fsutil::atomic_write_bytes;
use crate::labels::Region;
use crate::metrics::{self, MetricOptions};
use crate::modality::{Modality, Subset};

/// One trained and evaluated model.
#[derive(Debug, Clone)]
pub struct ModelReport {
    /// Name in tables and captions, e.g. `"Adaptive fusion (A2FSeg)"`.
    pub label: String,
    /// Short file-name-safe key, e.g. `"adaptive"`.
    pub key: String,
    /// Its `summary.json`.
    pub summary: ScoreTable,
    /// Its `attention.json`, if the model has an adaptive fusion and it was written.
    pub attention: Option<Attention>,
    /// Its run's `log.csv`, if available.
    pub log: Option<TrainLog>,
}

/// Where a model's files are.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// See [`ModelReport::label`].
    pub label: String,
    /// See [`ModelReport::key`].
    pub key: String,
    /// `summary.json` (required).
    pub summary: PathBuf,
    /// `attention.json` (read if it exists).
    pub attention: PathBuf,
    /// `log.csv` (read if it exists).
    pub log: Option<PathBuf>,
}

impl ModelFiles {
    /// The files of an evaluation folder (`summary.json`, `attention.json`) and optionally
    /// a training run folder (`log.csv`).
    pub fn from_dirs(label: &str, key: &str, eval_dir: &Path, run_dir: Option<&Path>) -> Self {
        ModelFiles {
            label: label.to_string(),
            key: key.to_string(),
            summary: eval_dir.join("summary.json"),
            attention: eval_dir.join("attention.json"),
            log: run_dir.map(|r| r.join("log.csv")),
        }
    }

    /// Reads the files; a missing `attention.json` or `log.csv` is not an error, nor is an
    /// empty `attention.json` (a model without adaptive fusion).
    pub fn load(&self) -> Result<ModelReport> {
        let summary = ScoreTable::load(&self.summary)?;
        let attention = Attention::load_optional(&self.attention)?;
        let log = match &self.log {
            Some(p) if p.exists() => Some(TrainLog::load(p)?),
            _ => None,
        };
        Ok(ModelReport {
            label: self.label.clone(),
            key: self.key.clone(),
            summary,
            attention,
            log,
        })
    }
}

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// Title (first heading).
    pub title: String,
    /// Introductory paragraphs (plain text; `code` spans in backticks).
    pub intro: Vec<String>,
    /// Models; the first is the primary one (Table 1, Fig. 3). Table 2 compares all.
    pub models: Vec<ModelReport>,
    /// Remarks shown under Table 2, e.g. that only one fusion strategy was trained.
    pub notes: Vec<String>,
    /// A rendered Fig.-2 panel (PNG file), if any.
    pub panel: Option<PathBuf>,
    /// Caption of the panel.
    pub panel_caption: String,
    /// Interactive viewers: `(case id, HTML section from
    /// [`super::viewer::viewer_section`])`, shown in `report.html` after the panel.
    pub viewers: Vec<(String, String)>,
    /// Conventions and facts of the run: `(name, value)` (metrics, split, seeds, versions,
    /// timings).
    pub conventions: Vec<(String, String)>,
}

/// A piece of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 1..=3.
    Heading(u8, String),
    /// A paragraph (plain text, backticks mark code).
    Para(String),
    /// A bullet list.
    Bullets(Vec<String>),
    /// A table.
    Table(Table),
    /// A PNG figure: file name under `figures/`, the bytes, and a caption.
    Figure {
        /// File name, e.g. `dice.png`.
        file: String,
        /// PNG bytes.
        png: Vec<u8>,
        /// Caption (alt text too).
        caption: String,
    },
    /// An interactive viewer (HTML only; Markdown points to `report.html`).
    Viewer {
        /// The case shown.
        case: String,
        /// The section from [`super::viewer::viewer_section`].
        html: String,
    },
}

/// The report's viewer part: a heading, what the viewer shows, and one viewer per case of
/// `viewers` (`(case id, HTML section)`); nothing without viewers.
pub fn viewer_blocks(viewers: &[(String, String)]) -> Vec<Block> {
    if viewers.is_empty() {
        return Vec::new();
    }
    let mut b = vec![
        Block::Heading(2, "Interactive viewer".into()),
        Block::Para(
            "Each test case below in 3D (NiiVue, in this page; drag to move the crosshair or \
             rotate the render, scroll to change slice): the four modalities, the ground truth \
             and each model's prediction from any modality subset (selector in the paper's order) \
             as label overlays in the figures' colours, the adaptive fusion's attention maps as \
             heat overlays, and the case's Dice and HD95 of the shown prediction against the \
             ground truth. Volumes are cropped to the brain box; images are stored in 256 grey \
             levels."
                .into(),
        ),
    ];
    b.extend(viewers.iter().map(|(case, html)| Block::Viewer {
        case: case.clone(),
        html: html.clone(),
    }));
    b
}

/// The files written by [`write_report`].
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Every PNG under `figures/`.
    pub figures: Vec<PathBuf>,
}

/// The conventions every report states: the metrics' ([`crate::metrics::conventions`])
/// and how the tables average.
pub fn metric_conventions(
    hd95_penalty: f64,
    et_postprocess: Option<usize>,
) -> Vec<(String, String)> {
    let opts = MetricOptions {
        hd95_penalty,
        et_postprocess,
    };
    let mut items = metrics::conventions(&opts);
    items.push(("Averaging".into(), AVERAGING.into()));
    items
}

/// The qualitative findings of the paper, checked on `primary` (and the fusion comparison
/// when two models are given), as sentences.
pub fn findings(models: &[ModelReport]) -> Vec<String> {
    let Some(primary) = models.first() else {
        return Vec::new();
    };
    let s = &primary.summary;
    let mut out = Vec::new();
    let m = s.mean.regions;
    out.push(format!(
        "Mean Dice over the {} evaluated subsets ({}): WT {}%, TC {}%, ET {}%.",
        s.subsets.len(),
        primary.label,
        tables::dice_pct(m[0].dice),
        tables::dice_pct(m[1].dice),
        tables::dice_pct(m[2].dice)
    ));
    if let Some((with, without)) = s.dice_with_and_without(Modality::T1c, Region::Et) {
        let verdict = if with > without + 0.05 {
            "holds"
        } else {
            "does NOT hold here"
        };
        out.push(format!(
            "T1c drives the enhancing tumour: mean ET Dice {}% over subsets with T1c vs {}% without \
             (the paper's finding {verdict}).",
            tables::dice_pct(with),
            tables::dice_pct(without)
        ));
    }
    let flair = Subset::from_modalities([Modality::Flair]);
    if let (Some(f), Some(all)) = (s.get(flair, Region::Wt), s.get(Subset::FULL, Region::Wt)) {
        let verdict = if all.dice > 0.0 && f.dice >= 0.85 * all.dice {
            "holds"
        } else {
            "does NOT hold here"
        };
        out.push(format!(
            "FLAIR alone already finds most of the whole tumour: WT Dice {}% with FLAIR only vs {}% with all four \
             (the paper's finding {verdict}).",
            tables::dice_pct(f.dice),
            tables::dice_pct(all.dice)
        ));
    }
    let t1c = Subset::from_modalities([Modality::T1c]);
    if let (Some(f), Some(c)) = (s.get(flair, Region::Wt), s.get(t1c, Region::Wt)) {
        let verdict = if f.dice > c.dice {
            "holds"
        } else {
            "does NOT hold here"
        };
        out.push(format!(
            "FLAIR shows the whole tumour better than T1c: WT Dice {}% with FLAIR only vs {}% with \
             T1c only (the paper's finding {verdict}).",
            tables::dice_pct(f.dice),
            tables::dice_pct(c.dice)
        ));
    }
    if let Some(a) = &primary.attention {
        let parts: Vec<String> = a
            .regions
            .iter()
            .filter_map(|(r, _)| a.dominant(r).map(|m| format!("{r} → {m}")))
            .collect();
        if !parts.is_empty() {
            out.push(format!(
                "Largest mean attention weight per region: {}.",
                parts.join(", ")
            ));
        }
    }
    if models.len() >= 2 {
        let b = &models[1];
        let d: Vec<String> = Region::ALL
            .iter()
            .map(|r| {
                let diff = (s.mean.regions[r.index()].dice
                    - b.summary.mean.regions[r.index()].dice)
                    * 100.0;
                format!("{r} {diff:+.2}")
            })
            .collect();
        out.push(format!(
            "{} minus {}: mean Dice {} points.",
            primary.label,
            b.label,
            d.join(", ")
        ));
    }
    out
}

/// Assembles the document; renders every chart.
pub fn blocks(input: &ReportInput) -> Result<Vec<Block>> {
    let mut b = vec![Block::Heading(1, input.title.clone())];
    b.extend(input.intro.iter().cloned().map(Block::Para));
    let found = findings(&input.models);
    if !found.is_empty() {
        b.push(Block::Heading(2, "Key findings".into()));
        b.push(Block::Bullets(found));
    }
    if let Some(primary) = input.models.first() {
        b.push(Block::Heading(
            2,
            format!("Table 1 — {} on every modality subset", primary.label),
        ));
        b.push(Block::Para(
            "Dice in %, HD95 in mm, mean over the test cases; ● available, ○ missing \
             (columns T1, T1c, T2, FLAIR), rows in the paper's order."
                .into(),
        ));
        b.push(Block::Table(tables::table1(
            &primary.summary,
            Table1Columns::default(),
        )));
        b.push(Block::Figure {
            file: "dice.png".into(),
            png: charts::png_bytes(&charts::dice_bar_chart(
                &primary.summary,
                &format!("Mean Dice per modality subset — {}", primary.label),
            )?)?,
            caption: "Mean Dice per modality subset and region".into(),
        });

        b.push(Block::Heading(
            2,
            "Table 2 — average fusion vs adaptive fusion".into(),
        ));
        let mut rows: Vec<(String, &ScoreTable)> = input
            .models
            .iter()
            .map(|m| (m.label.clone(), &m.summary))
            .collect();
        rows.reverse();
        b.push(Block::Para(
            "Mean Dice in % over the evaluated subsets (the paper's Table 2).".into(),
        ));
        b.push(Block::Table(tables::table2(&rows)));
        // The notes say why only one model was trained, when they do.
        if input.models.len() < 2 && input.notes.is_empty() {
            b.push(Block::Para(format!(
                "Only one model was trained ({}): there is no comparison.",
                primary.label
            )));
        }
        b.extend(input.notes.iter().cloned().map(Block::Para));
    }
    if let Some(panel) = &input.panel {
        let png = fs::read(panel).with_context(|| format!("cannot read {}", panel.display()))?;
        b.push(Block::Heading(
            2,
            "Fig. 2 — growing modality subsets".into(),
        ));
        b.push(Block::Figure {
            file: "panel.png".into(),
            png,
            caption: input.panel_caption.clone(),
        });
    }
    b.extend(viewer_blocks(&input.viewers));
    let with_attention = input.models.iter().find(|m| m.attention.is_some());
    if let Some(m) = with_attention {
        let a = m.attention.as_ref().expect("found above");
        b.push(Block::Heading(
            2,
            format!("Fig. 3 — contribution of each modality ({})", m.label),
        ));
        b.push(Block::Para(
            "Mean weight of each modality in the adaptive fusion's attention maps over the \
             test cases with all four modalities, per tumour region."
                .into(),
        ));
        b.push(Block::Table(tables::attention_table(a)));
        b.push(Block::Figure {
            file: "attention.png".into(),
            png: charts::png_bytes(&charts::attention_chart(a)?)?,
            caption: "Mean attention weight per modality and tumour region".into(),
        });
    }
    let logs: Vec<&ModelReport> = input.models.iter().filter(|m| m.log.is_some()).collect();
    if !logs.is_empty() {
        b.push(Block::Heading(2, "Training curves".into()));
        for m in logs {
            let log = m.log.as_ref().expect("filtered above");
            b.push(Block::Figure {
                file: format!("curves-{}.png", m.key),
                png: charts::png_bytes(&charts::training_curves(
                    log,
                    &format!("Training — {}", m.label),
                )?)?,
                caption: format!(
                    "Loss and validation Dice per epoch — {} ({} epochs)",
                    m.label,
                    log.rows.len()
                ),
            });
        }
    }
    if !input.conventions.is_empty() {
        b.push(Block::Heading(2, "Conventions".into()));
        b.push(Block::Bullets(
            input
                .conventions
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        ));
    }
    Ok(b)
}

/// Markdown: figures linked as `figures/<file>`.
pub fn render_markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {text}\n", "#".repeat(*level as usize));
            }
            Block::Para(text) => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::Bullets(items) => {
                for i in items {
                    let _ = writeln!(s, "- {i}");
                }
                s.push('\n');
            }
            Block::Table(t) => {
                let _ = writeln!(s, "{}", t.markdown());
            }
            Block::Figure { file, caption, .. } => {
                let _ = writeln!(
                    s,
                    "![{}](figures/{file})\n",
                    caption.replace(['[', ']'], "")
                );
            }
            Block::Viewer { case, .. } => {
                let _ = writeln!(
                    s,
                    "The interactive 3D viewer of case {case} is in `report.html`.\n"
                );
            }
        }
    }
    s
}

/// Escaped text with `code` spans.
fn inline_html(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// A self-contained HTML page: inline CSS, figures as base64 `data:` URIs.
pub fn render_html(blocks: &[Block]) -> String {
    let title = blocks
        .iter()
        .find_map(|b| match b {
            Block::Heading(1, t) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("a2fseg report");
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; }}\n\
         th {{ background: #eee; }}\n\
         td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         tr.footer td {{ font-weight: bold; border-top: 2px solid #444; }}\n\
         figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}\n\
         figcaption {{ color: #555; font-size: 0.9em; }}\n\
         code {{ background: #f3f3f3; padding: 0 0.2em; }}\n\
         </style>\n</head>\n<body>\n",
        escape(title)
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", inline_html(text));
            }
            Block::Para(text) => {
                let _ = writeln!(s, "<p>{}</p>", inline_html(text));
            }
            Block::Bullets(items) => {
                s.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(s, "<li>{}</li>", inline_html(i));
                }
                s.push_str("</ul>\n");
            }
            Block::Table(t) => s.push_str(&t.html()),
            Block::Figure { png, caption, .. } => {
                let _ = writeln!(
                    s,
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                    escape(caption),
                    b64.encode(png),
                    inline_html(caption)
                );
            }
            Block::Viewer { html, .. } => s.push_str(html),
        }
    }
    if blocks.iter().any(|b| matches!(b, Block::Viewer { .. })) {
        s.push_str(&super::viewer::viewer_scripts());
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// Writes `out/report.md`, `out/report.html` and the figures under `out/figures/`, each
/// file atomically.
pub fn write_report(out: &Path, input: &ReportInput) -> Result<ReportFiles> {
    let blocks = blocks(input)?;
    let fig_dir = out.join("figures");
    let mut figures = Vec::new();
    for b in &blocks {
        if let Block::Figure { file, png, .. } = b {
            let path = fig_dir.join(file);
            // The panel may already be this very file: rewriting identical bytes is harmless.
            atomic_write_bytes(&path, png)?;
            figures.push(path);
        }
    }
    let markdown = out.join("report.md");
    atomic_write_bytes(&markdown, render_markdown(&blocks).as_bytes())?;
    let html = out.join("report.html");
    atomic_write_bytes(&html, render_html(&blocks).as_bytes())?;
    Ok(ReportFiles {
        markdown,
        html,
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_marks_code() {
        assert_eq!(
            inline_html("run `a<b` & go"),
            "run <code>a&lt;b</code> &amp; go"
        );
        let html = render_html(&[
            Block::Heading(1, "T".into()),
            Block::Figure {
                file: "x.png".into(),
                png: vec![1, 2, 3],
                caption: "c".into(),
            },
        ]);
        assert!(html.contains("src=\"data:image/png;base64,AQID\""));
        let md = render_markdown(&[Block::Figure {
            file: "x.png".into(),
            png: vec![],
            caption: "c".into(),
        }]);
        assert_eq!(md.trim(), "![c](figures/x.png)");
    }
}
