//! The report is rebuilt from files: tiny fake `summary.json`, `attention.json` and
//! `log.csv` give a Markdown report with Table 1 in the paper's order and a self-contained
//! HTML page.

mod common;

use std::fs;
use std::path::Path;

use a2fseg::Subset;
use a2fseg::report::{ModelFiles, ReportInput, write_report};

/// A summary whose WT Dice encodes the subset (bits / 100 + 0.8), so row order is visible.
fn write_summary(dir: &Path, offset: f64) {
    let mut s = String::from("{");
    for subset in Subset::all_nonempty() {
        let wt = 0.8 + subset.bits() as f64 / 100.0 + offset;
        let et = if subset.contains(a2fseg::Modality::T1c) {
            0.8
        } else {
            0.4
        };
        s += &format!(
            "\"{}\": {{\"WT\": {{\"dice\": {wt}, \"hd95\": 2.5}}, \"TC\": {{\"dice\": 0.7, \"hd95\": 4}}, \"ET\": {{\"dice\": {et}, \"hd95\": null}}}},",
            subset.name()
        );
    }
    s += "\"mean\": {\"WT\": {\"dice\": 0.88, \"hd95\": 2.5}, \"TC\": {\"dice\": 0.7, \"hd95\": 4}, \"ET\": {\"dice\": 0.6, \"hd95\": 9}}}";
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("summary.json"), s).unwrap();
}

fn model(root: &Path, key: &str, offset: f64, attention: bool) -> ModelFiles {
    let eval = root.join(format!("eval-{key}"));
    let run = root.join(format!("train-{key}"));
    write_summary(&eval, offset);
    if attention {
        fs::write(
            eval.join("attention.json"),
            r#"{"ET": {"t1": 0.2, "t1c": 0.4, "t2": 0.2, "flair": 0.2},
                "ED": {"t1": 0.1, "t1c": 0.1, "t2": 0.3, "flair": 0.5},
                "NCR/NET": {"t1": 0.3, "t1c": 0.3, "t2": 0.2, "flair": 0.2}}"#,
        )
        .unwrap();
    }
    fs::create_dir_all(&run).unwrap();
    fs::write(
        run.join("log.csv"),
        "epoch,loss_total,val_dice_wt,val_dice_tc,val_dice_et\n1,2.1,0.3,0.2,0.1\n2,1.4,0.6,0.4,0.3\n3,0.9,0.8,0.6,0.5\n",
    )
    .unwrap();
    ModelFiles::from_dirs(&format!("{key} fusion"), key, &eval, Some(&run))
}

#[test]
fn report_has_table1_in_paper_order_and_self_contained_html() {
    let dir = common::tempdir();
    let adaptive = model(dir.path(), "adaptive", 0.0, true).load().unwrap();
    let average = model(dir.path(), "average", -0.01, false).load().unwrap();
    let input = ReportInput {
        title: "Test report".into(),
        intro: vec!["Made by a test with `code`.".into()],
        models: vec![adaptive, average],
        notes: vec![],
        panel: None,
        panel_caption: String::new(),
        viewers: vec![],
        conventions: vec![("Split".into(), "70/10/20, seed 7".into())],
    };
    let out = dir.path().join("report");
    let files = write_report(&out, &input).unwrap();

    let md = fs::read_to_string(&files.markdown).unwrap();
    // Table 1: the 15 rows, in the paper's order, each with the marks of its subset.
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("## Table 1"))
        .filter(|l| l.starts_with("| ○") || l.starts_with("| ●"))
        .take(15)
        .collect();
    assert_eq!(rows.len(), 15);
    for (row, subset) in rows.iter().zip(Subset::all_nonempty()) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let marks: String = cells[1..5].concat();
        assert_eq!(marks, subset.marks(), "row {row}");
        let wt = format!("{:.2}", (0.8 + subset.bits() as f64 / 100.0) * 100.0);
        assert_eq!(cells[5], wt, "row {row}");
    }
    assert!(md.contains("| **Mean** |"));
    assert!(md.contains("## Table 2"));
    assert!(md.contains("adaptive fusion") && md.contains("average fusion"));
    assert!(md.contains("T1c drives the enhancing tumour"));
    assert!(md.contains("(the paper's finding holds)"));
    assert!(md.contains("ET → T1c"));
    assert!(md.contains("Split: 70/10/20, seed 7"));
    for f in [
        "dice.png",
        "attention.png",
        "curves-adaptive.png",
        "curves-average.png",
    ] {
        assert!(md.contains(&format!("figures/{f}")), "{f}");
        let bytes = fs::read(out.join("figures").join(f)).unwrap();
        image::load_from_memory(&bytes).unwrap();
    }

    let html = fs::read_to_string(&files.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let srcs: Vec<&str> = html.split("src=\"").skip(1).collect();
    assert_eq!(srcs.len(), 4);
    for s in &srcs {
        assert!(
            s.starts_with("data:image/png;base64,"),
            "external src: {}",
            &s[..40]
        );
    }
    assert!(!html.contains("href="));
    assert!(!html.contains("<link"));
    assert!(!html.contains("<script"));
    assert_eq!(html.matches("<tr>").count(), (1 + 15) + (1 + 2) + (1 + 3));
}

#[test]
fn one_model_says_so_and_bad_summary_names_the_file() {
    let dir = common::tempdir();
    let adaptive = model(dir.path(), "adaptive", 0.0, false).load().unwrap();
    let input = ReportInput {
        title: "One".into(),
        models: vec![adaptive],
        ..Default::default()
    };
    let files = write_report(dir.path(), &input).unwrap();
    let md = fs::read_to_string(files.markdown).unwrap();
    assert!(md.contains("Only one model was trained"));

    let bad = dir.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("summary.json"), "{\"0001\": 3}").unwrap();
    let err = ModelFiles::from_dirs("x", "x", &bad, None)
        .load()
        .unwrap_err();
    assert!(format!("{err:#}").contains("summary.json"), "{err:#}");
}
