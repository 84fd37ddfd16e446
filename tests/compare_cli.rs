//! End-to-end tests of `a2fseg compare` (and `demo --methods`) on tiny synthetic cases:
//! the outputs exist and parse with the stated rows and columns, a rerun reuses every
//! training and evaluation, an interrupted comparison resumes, other settings and unknown
//! methods are refused with one-line errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;

/// `a2fseg compare` of a2fseg and average fusion on `data`, 1 epoch of 2 steps, plus `extra`.
fn compare(data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(common::bin())
        .args(["--quiet", "compare", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(common::TOY_COMPARE)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "compare failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .modified()
        .unwrap()
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn compare_writes_every_output_reuses_and_resumes() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 7, [32, 32, 32]);
    let out = tmp.path().join("cmp");
    let first = compare(&data, &out, &[]);
    ok(&first);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("a2fseg: mean Dice over 15 subset(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("report.html"), "{stdout}");

    // The layout.
    for f in [
        "compare.json",
        "split.json",
        "a2fseg/run/log.csv",
        "a2fseg/run/checkpoints/best/model.safetensors",
        "a2fseg/eval/cases.csv",
        "average/eval/summary.json",
        "summary.md",
        "summary.csv",
        "summary.json",
        "report.html",
        "figures/dice-wt.png",
        "figures/dice-tc.png",
        "figures/dice-et.png",
        "figures/panel.png",
    ] {
        assert!(out.join(f).is_file(), "no {f}");
    }
    let settings = json(&out.join("compare.json"));
    assert_eq!(
        settings["settings"]["methods"],
        serde_json::json!(["a2fseg", "average"])
    );
    assert_eq!(settings["plan"][1]["epochs"], 1);

    // summary.json: both methods with 15 subsets, wins, the three paired tests.
    let s = json(&out.join("summary.json"));
    let methods = s["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[0]["method"], "a2fseg");
    assert_eq!(methods[1]["method"], "average");
    let test_cases = json(&out.join("split.json"))["test"]
        .as_array()
        .unwrap()
        .len();
    for m in methods {
        let scores = m["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 16, "15 subsets and the mean");
        assert_eq!(m["case_dice"].as_object().unwrap().len(), test_cases);
        let dice = scores["mean"]["WT"]["dice"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&dice));
    }
    let wins = s["wins"].as_array().unwrap();
    assert_eq!(wins.len(), 2);
    for w in wins {
        // Every subset and region is won by at least one method: totals cover 45.
        assert!(w["total"].as_u64().unwrap() <= 45);
    }
    let total: u64 = wins.iter().map(|w| w["total"].as_u64().unwrap()).sum();
    assert!(total >= 45);
    let tests = s["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3);
    for (t, region) in tests.iter().zip(["WT", "TC", "ET"]) {
        assert_eq!(t["region"], region);
        assert_eq!(
            (&t["reference"], &t["other"]),
            (&"a2fseg".into(), &"average".into())
        );
        assert_eq!(t["cases"].as_u64().unwrap() as usize, test_cases);
        if let Some(p) = t["test"]["p_value"].as_f64() {
            assert!((0.0..=1.0).contains(&p));
        }
    }

    // summary.csv: a row per method and subset or mean.
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 16);
    assert_eq!(
        lines[0],
        "method,subset,dice_wt,dice_tc,dice_et,hd95_wt,hd95_tc,hd95_et"
    );
    assert!(lines[16].starts_with("a2fseg,mean,"), "{}", lines[16]);

    // summary.md: Table 1 (Dice and HD95) with a column per region and method, 15 subset
    // rows and the mean, Table 2, subsets won, the tests.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let header = "| T1 | T1c | T2 | FLAIR | WT · A2FSeg | WT · Average fusion | TC · A2FSeg | \
                  TC · Average fusion | ET · A2FSeg | ET · Average fusion |";
    assert_eq!(md.matches(header).count(), 2, "{md}");
    assert_eq!(md.matches("| ○ | ○ | ○ | ● |").count(), 2);
    assert_eq!(md.matches("| ● | ● | ● | ● |").count(), 2);
    assert_eq!(md.matches("| **Mean** |").count(), 2);
    for part in [
        "Table 2",
        "| Average fusion |",
        "Subsets won",
        "Wilcoxon",
        "| A2FSeg | Average fusion | WT |",
    ] {
        assert!(md.contains(part), "no {part} in {md}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 4);
    assert!(html.contains("Fig. 2"));

    // A rerun reuses both trainings and evaluations: nothing is rewritten there.
    let stamps = |out: &Path| {
        [
            "a2fseg/run/log.csv",
            "a2fseg/eval/cases.csv",
            "average/run/log.csv",
            "average/eval/cases.csv",
        ]
        .map(|f| mtime(&out.join(f)))
    };
    let before = stamps(&out);
    let second = compare(&data, &out, &[]);
    ok(&second);
    assert_eq!(stamps(&out), before, "a rerun retrained or re-evaluated");
    assert_eq!(json(&out.join("summary.json")), s);

    // An interrupted comparison resumes: without average's evaluation, only it is redone.
    std::fs::remove_dir_all(out.join("average/eval")).unwrap();
    let third = compare(&data, &out, &[]);
    ok(&third);
    let after = stamps(&out);
    assert_eq!(after[..3], before[..3]);
    assert!(out.join("average/eval/summary.json").is_file());
    assert_eq!(
        json(&out.join("summary.json")),
        s,
        "same models, same scores"
    );

    // Killed after average's last checkpoint but before its training was marked done: the
    // rerun resumes that training (nothing left to train) and evaluates it again.
    std::fs::remove_file(out.join("average/run/.done.json")).unwrap();
    std::fs::remove_dir_all(out.join("average/eval")).unwrap();
    let fourth = compare(&data, &out, &[]);
    ok(&fourth);
    assert!(out.join("average/run/.done.json").is_file());
    assert_eq!(mtime(&out.join("a2fseg/run/log.csv")), before[0]);
    assert_eq!(
        json(&out.join("summary.json")),
        s,
        "the resumed model is the same"
    );

    // Other settings are refused, naming what differs.
    let other = compare(&data, &out, &["--recipe", "common"]);
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("compare.json") && err.contains("recipe: \"own\" → \"common\""),
        "{err}"
    );
}

#[test]
fn unknown_methods_and_bad_options_are_one_line_errors() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(common::bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };
    let d = data.to_str().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    let err = run(&[
        "compare",
        "--data",
        d,
        "--out",
        o,
        "--methods",
        "a2fseg,unet3d",
    ]);
    assert_eq!(
        err.trim(),
        "error: --methods: unknown method 'unet3d' (known: a2fseg, average, hemis, a2fseg-released, uhved, mfi, mmformer, rfnet)"
    );
    let err = run(&["demo", "--out", o, "--methods", "unet"]);
    assert!(
        err.contains(
            "unknown method 'unet' (known: a2fseg, average, hemis, a2fseg-released, uhved, mfi, mmformer, rfnet)"
        ),
        "{err}"
    );
    let err = run(&[
        "compare",
        "--data",
        d,
        "--out",
        o,
        "--methods",
        "a2fseg",
        "--budget-minutes=0",
    ]);
    assert!(err.contains("--budget-minutes"), "{err}");
    let missing = tmp.path().join("none");
    let err = run(&[
        "compare",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        o,
        "--methods",
        "a2fseg",
    ]);
    assert!(err.contains("--data") && err.contains("none"), "{err}");
    assert!(!out.join("compare.json").exists());
}

#[test]
fn demo_methods_compares_on_phantoms_within_a_budget() {
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    let o = Command::new(common::bin())
        .args(["--quiet", "demo", "--out"])
        .arg(&out)
        .args(["--methods", "a2fseg,hemis"])
        .args(common::TOY_DEMO)
        .output()
        .unwrap();
    ok(&o);
    let cmp = out.join("compare");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        cmp.join("report.html").display().to_string()
    );
    assert!(out.join("phantoms/data").is_dir());
    // The budget was planned from measured step times, a share per method; the
    // calibration runs are gone.
    let plan = json(&cmp.join("compare.json"));
    assert_eq!(plan["settings"]["budget_minutes"], 0.1);
    for p in plan["plan"].as_array().unwrap() {
        assert!(p["step_seconds"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["epochs"].as_u64().unwrap() >= 1);
    }
    assert!(!cmp.join("calibrate").exists());
    let s = json(&cmp.join("summary.json"));
    let names: Vec<&str> = s["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a2fseg", "hemis"]);
    let md = std::fs::read_to_string(cmp.join("summary.md")).unwrap();
    assert!(md.contains("WT · HeMIS fusion"));
    assert!(!md.contains("Table 2"), "no average fusion: no Table 2");
}
