//! End-to-end tests of the inference plans (`--window`, `--max-memory`) of `a2fseg predict`
//! and `a2fseg evaluate`, with a tiny randomly initialised model and tiny synthetic cases.

mod common;

use a2fseg::model::Fusion;
use common::{arg as s, run_a2fseg as run};

#[test]
fn window_plans_are_printed_and_recorded() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [20, 18, 12]);
    let predict = |window: &[&str], out: &str| {
        let out = tmp.path().join(out);
        let mut args = vec!["predict", "--model", s(&run_dir), "--input", s(&data)];
        args.extend_from_slice(&["--output", s(&out)]);
        args.extend_from_slice(window);
        let (ok, err) = run(&args);
        assert!(ok, "{err}");
        err
    };
    let err = predict(&["--window", "whole"], "whole");
    assert!(err.contains("plan whole: 1 pass of "), "{err}");
    let err = predict(&["--window", "sliding"], "sliding");
    assert!(err.contains("plan sliding: "), "{err}");
    let err = predict(&["--window", "auto", "--max-memory", "64G"], "big");
    assert!(err.contains("plan whole: "), "{err}");
    // No plan fits under one kilobyte: the smaller in memory, the sliding window.
    let err = predict(&["--window", "auto", "--max-memory", "1K"], "tiny");
    assert!(err.contains("plan sliding: "), "{err}");

    let eval = tmp.path().join("eval");
    let (ok, err) = run(&[
        "evaluate",
        "--model",
        s(&run_dir),
        "--data",
        s(&data),
        "--subsets",
        "0101,1111",
        "--window",
        "auto",
        "--max-memory",
        "2G",
        "--out",
        s(&eval),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("plan (auto): whole for 1 case(s)"), "{err}");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("evaluate.json")).unwrap())
            .unwrap();
    assert_eq!(settings["window"], "auto");
    assert_eq!(settings["max_memory"], 2u64 << 30);
    let md = std::fs::read_to_string(eval.join("summary.md")).unwrap();
    assert!(
        md.contains("inference plan auto (memory cap 2.00 GiB)"),
        "{md}"
    );
}

#[test]
fn bad_plan_options_are_one_line_errors_naming_the_option() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Average);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [8, 8, 8]);
    let out = tmp.path().join("out");
    for bad in ["4X", "0", "-1G", "lots", ""] {
        for cmd in ["predict", "evaluate"] {
            let mut args = vec![cmd, "--model", s(&run_dir)];
            if cmd == "predict" {
                args.extend_from_slice(&["--input", s(&data), "--output", s(&out)]);
            } else {
                args.extend_from_slice(&["--data", s(&data), "--out", s(&out)]);
            }
            let cap = format!("--max-memory={bad}");
            args.extend_from_slice(&["--window", "auto", &cap]);
            let (ok, err) = run(&args);
            assert!(!ok, "{args:?}");
            assert!(err.contains("--max-memory"), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
    }
    assert!(!out.exists(), "nothing written on bad input");
    let (ok, err) = run(&[
        "predict",
        "--model",
        s(&run_dir),
        "--input",
        s(&data),
        "--output",
        s(&out),
        "--window",
        "tiles",
    ]);
    assert!(!ok && err.contains("--window"), "{err}");
}
