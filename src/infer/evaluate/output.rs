//! The summary files of an evaluation, rebuilt from `cases.csv` after every run:
//! `summary.md` (Table 1 per model, Table 2 when several models are compared, the Fig. 3
//! numbers), `summary.csv` (this module owns it: one row per model and subset or `mean`),
//! `summary.json` (format: [`crate::report::scores`]) and `attention.json` (format:
//! [`crate::report::attention`]); with several models, also each model's own
//! `<model>/summary.json` and `<model>/attention.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::attention::ATTENTION_CLASSES;
use super::settings::EvaluateSettings;
use super::summary::ModelEvaluation;
use crate::fsutil::atomic_write_bytes;
use crate::modality::Modality;
use crate::report::document::{Block, metric_conventions, render_html, viewer_blocks};
use crate::report::scores::by_model_json;
use crate::report::tables::{Table, Table1Columns, dice_pct, table1};

/// `summary.md`: the settings and conventions, per model Table 1 (Dice in %, HD95 in mm,
/// ET also after post-processing when enabled, cases), a Table-2-style comparison when
/// several models are given, and the Fig. 3 attention numbers.
pub fn summary_markdown(models: &[ModelEvaluation], settings: &EvaluateSettings) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation\n");
    let _ = writeln!(
        md,
        "Dataset `{}`{}; inference plan {}{}, sliding window step {}, test-time mirroring {}.\n",
        settings.data.display(),
        match &settings.split {
            Some(p) => format!(", split `{}` part `{}`", p.display(), settings.part),
            None => String::new(),
        },
        settings.window,
        match settings.max_memory {
            Some(b) => format!(" (memory cap {:.2} GiB)", b as f64 / (1u64 << 30) as f64),
            None => String::new(),
        },
        settings.step,
        settings.tta
    );
    let _ = writeln!(md, "Conventions (Dice in %, HD95 in mm):\n");
    for (name, text) in metric_conventions(settings.hd95_penalty, settings.et_postprocess) {
        let _ = writeln!(md, "- {name}: {text}");
    }
    let _ = writeln!(md);
    for ((name, _), rules) in settings.models.iter().zip(&settings.postprocess) {
        let _ = writeln!(
            md,
            "Post-processing of `{name}`'s label maps: {}.\n",
            rules.describe()
        );
    }
    let columns = Table1Columns {
        et_postprocessed: settings.et_postprocess.is_some(),
        cases: true,
    };
    for m in models {
        let _ = writeln!(
            md,
            "## Table 1: {}{}\n",
            m.model,
            m.network
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let _ = writeln!(md, "{}", table1(&m.scores, columns).markdown());
    }
    if models.len() > 1 {
        let _ = writeln!(
            md,
            "## Table 2: models compared (mean Dice over subsets, %)\n"
        );
        let rows = models
            .iter()
            .map(|m| {
                let d = m.scores.mean.regions.map(|r| r.dice);
                vec![
                    m.model.clone(),
                    m.network.clone().unwrap_or_else(|| "?".into()),
                    dice_pct(d[0]),
                    dice_pct(d[1]),
                    dice_pct(d[2]),
                    dice_pct((d[0] + d[1] + d[2]) / 3.0),
                ]
            })
            .collect();
        let table = Table {
            header: ["Model", "Network", "WT", "TC", "ET", "Average"]
                .map(String::from)
                .to_vec(),
            rows,
            footer: 0,
        };
        let _ = writeln!(md, "{}", table.markdown());
    }
    for m in models.iter().filter(|m| !m.attention.is_empty()) {
        let _ = writeln!(
            md,
            "## Fig. 3: mean attention weight per modality and tumour class — {}\n",
            m.model
        );
        let _ = writeln!(
            md,
            "Mean of the adaptive fusion's Ŵ_m over the reference voxels of each class, per \
             case, averaged over cases.\n"
        );
        let mut header = vec!["Subset".to_string(), "Class".to_string()];
        header.extend(Modality::ALL.iter().map(|m| m.label().to_string()));
        let mut rows = Vec::new();
        for (sub, att) in m.attention.iter().rev() {
            for (ci, (_, name)) in ATTENTION_CLASSES.iter().enumerate() {
                let mut row = vec![sub.marks(), name.to_string()];
                row.extend(
                    att[ci]
                        .iter()
                        .map(|w| w.map(|w| format!("{w:.3}")).unwrap_or_else(|| "–".into())),
                );
                rows.push(row);
            }
        }
        let table = Table {
            header,
            rows,
            footer: 0,
        };
        let _ = writeln!(md, "{}", table.markdown());
    }
    md
}

/// `summary.csv`: one row per model and subset (and `mean`).
pub fn summary_csv(models: &[ModelEvaluation]) -> Result<Vec<u8>> {
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
    for m in models {
        let rows = m
            .scores
            .subsets
            .iter()
            .map(|(k, r)| (k.name(), k.describe(), r))
            .chain(std::iter::once((
                "mean".to_string(),
                "mean".to_string(),
                &m.scores.mean,
            )));
        for (name, desc, r) in rows {
            let o = |x: Option<f64>| x.map(|x| format!("{x}")).unwrap_or_default();
            let mut rec = vec![m.model.clone(), name, desc, r.cases.to_string()];
            rec.extend(r.regions.iter().map(|x| format!("{}", x.dice)));
            rec.push(o(r.et_postprocessed.map(|p| p.dice)));
            rec.extend(r.regions.iter().map(|x| o(x.hd95)));
            rec.push(o(r.et_postprocessed.and_then(|p| p.hd95)));
            rec.extend(r.regions.iter().map(|x| o(x.sensitivity)));
            rec.extend(r.regions.iter().map(|x| o(x.specificity)));
            w.write_record(&rec)?;
        }
    }
    Ok(w.into_inner()?)
}

/// `report.html`: Table 1 per model and the interactive viewers `(case id, HTML section)`.
pub fn write_report_html(
    out: &Path,
    models: &[ModelEvaluation],
    settings: &EvaluateSettings,
    viewers: &[(String, String)],
) -> Result<()> {
    let columns = Table1Columns {
        et_postprocessed: settings.et_postprocess.is_some(),
        cases: true,
    };
    let mut blocks = vec![
        Block::Heading(1, "Evaluation".into()),
        Block::Para(format!(
            "Dataset `{}`; Dice in %, HD95 in mm, mean over the cases; the settings and \
             conventions are in `summary.md`.",
            settings.data.display()
        )),
    ];
    for m in models {
        blocks.push(Block::Heading(2, format!("Table 1 — {}", m.model)));
        blocks.push(Block::Table(table1(&m.scores, columns)));
    }
    blocks.extend(viewer_blocks(viewers));
    atomic_write_bytes(&out.join("report.html"), render_html(&blocks).as_bytes())
}

/// Writes `summary.md`, `summary.csv`, `summary.json`, `attention.json` (and per-model copies
/// under `<model>/` when several models are evaluated).
pub fn write_summaries(
    out: &Path,
    models: &[ModelEvaluation],
    settings: &EvaluateSettings,
) -> Result<()> {
    atomic_write_bytes(
        &out.join("summary.md"),
        summary_markdown(models, settings).as_bytes(),
    )?;
    atomic_write_bytes(&out.join("summary.csv"), &summary_csv(models)?)?;
    let scores: Vec<_> = models
        .iter()
        .map(|m| (m.model.as_str(), &m.scores))
        .collect();
    atomic_write_bytes(&out.join("summary.json"), &by_model_json(&scores)?)?;
    let attention: Vec<_> = models
        .iter()
        .map(|m| (m.model.as_str(), m.attention_file()))
        .collect();
    atomic_write_bytes(&out.join("attention.json"), &by_model_json(&attention)?)?;
    if models.len() > 1 {
        for (m, (_, att)) in models.iter().zip(&attention) {
            let dir = out.join(&m.model);
            atomic_write_bytes(
                &dir.join("summary.json"),
                &serde_json::to_vec_pretty(&m.scores)?,
            )?;
            atomic_write_bytes(
                &dir.join("attention.json"),
                &serde_json::to_vec_pretty(att)?,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::Tta;
    use crate::infer::evaluate::rows::tests::row;
    use crate::infer::evaluate::summary::summarize;

    #[test]
    fn markdown_has_table_one_rows_in_paper_order_and_table_two_for_several_models() {
        let rows = [
            row("a", "c1", "1111", 0.8, 2.0, Some(0.7)),
            row("a", "c1", "0101", 0.6, 4.0, Some(0.5)),
            row("b", "c1", "1111", 0.9, 1.0, Some(0.8)),
        ];
        let sa = summarize(
            "a",
            Some("adaptive fusion".into()),
            &rows[..2].iter().collect::<Vec<_>>(),
        );
        let sb = summarize(
            "b",
            Some("rfnet".into()),
            &rows[2..].iter().collect::<Vec<_>>(),
        );
        let settings = EvaluateSettings {
            models: vec![],
            data: "d".into(),
            split: None,
            part: "test".into(),
            step: 0.5,
            window: crate::infer::WindowChoice::Sliding,
            max_memory: None,
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
        assert!(md.contains("## Table 1: a (adaptive fusion)"));
        assert!(md.contains("## Table 1: b (rfnet)"));
        assert!(md.contains("| b | rfnet | 90.00 | 90.00 | 90.00 | 90.00 |"));
        let j: serde_json::Value = serde_json::from_slice(
            &by_model_json(&[("a", &sa.scores), ("b", &sb.scores)]).unwrap(),
        )
        .unwrap();
        assert!(j["a"]["0101"]["WT"]["dice"].is_number());
        let csv = String::from_utf8(
            summary_csv(&[summarize("x", None, &rows[..1].iter().collect::<Vec<_>>())]).unwrap(),
        )
        .unwrap();
        assert_eq!(csv.lines().count(), 3);
    }
}
