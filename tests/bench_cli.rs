//! `a2fseg bench --quick` end to end: every measurement prints one JSON line with the
//! documented fields; `--out`, `--only` and `--export` do what they say. No timing checks.

mod common;

use serde_json::Value;

fn bench(args: &[&str]) -> (String, String) {
    let mut all = vec!["--threads", "2", "bench", "--quick", "--preset", "small"];
    all.extend_from_slice(&["--repeats", "1", "--warmup", "0"]);
    all.extend_from_slice(args);
    let out = common::a2fseg_ok(&all);
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The stderr of `a2fseg bench --preset small ARGS`, which must fail.
fn bench_error(args: &[&str]) -> String {
    let mut all = vec!["bench", "--preset", "small"];
    all.extend_from_slice(args);
    common::a2fseg_error(&all).1
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn quick_run_prints_every_measurement() {
    let dir = common::tempdir();
    let out = dir.path().join("bench.jsonl");
    let export = dir.path().join("export");
    let (stdout, stderr) = bench(&[
        "--out",
        out.to_str().unwrap(),
        "--export",
        export.to_str().unwrap(),
    ]);
    let rows = lines(&stdout);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "conv_block",
            "msfe_forward",
            "forward_m1",
            "forward_m2",
            "forward_m3",
            "forward_m4",
            "train_step_small",
            "predict",
            "evaluate_shared",
            "evaluate_separate"
        ]
    );
    for r in &rows {
        assert_eq!(r["implementation"], "a2fseg");
        assert_eq!(r["preset"], "small");
        assert_eq!(r["shape"], serde_json::json!([16, 16, 16]));
        assert_eq!(r["threads"], 2);
        assert_eq!(r["repeats"], 1);
        assert_eq!(r["times_s"].as_array().unwrap().len(), 1);
        let median = r["median_s"].as_f64().unwrap();
        let min = r["min_s"].as_f64().unwrap();
        assert!(median > 0.0 && min > 0.0 && min <= median, "{r}");
        assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["flops"].as_f64().unwrap() > 0.0, "{r}");
        // Peak RSS needs the kernel's reset of it (`/proc/self/clear_refs`), which some
        // sandboxes refuse; where this process can reset it, the bench must report it.
        if std::fs::write("/proc/self/clear_refs", b"5").is_ok() {
            assert!(r["peak_rss_mb"].as_f64().unwrap() > 1.0, "{r}");
        }
        let n = r["subset_size"].as_u64().unwrap() as usize;
        assert_eq!(r["subset"].as_str().unwrap().matches('1').count(), n);
    }
    let fwd: Vec<u64> = rows[2..6]
        .iter()
        .map(|r| r["subset_size"].as_u64().unwrap())
        .collect();
    assert_eq!(fwd, [1, 2, 3, 4]);
    // More modalities, more FLOPs; the shared evaluation counts far fewer than 15 passes.
    let flops = |i: usize| rows[i]["flops"].as_f64().unwrap();
    assert!(flops(2) < flops(3) && flops(3) < flops(4) && flops(4) < flops(5));
    assert!(flops(8) * 4.0 < flops(9));
    for r in &rows[7..] {
        assert_eq!(r["case_dims"], serde_json::json!([24, 24, 16]));
        assert!(r["windows"].as_u64().unwrap() >= 1);
    }
    assert_eq!(rows[8]["subsets"], 15);
    // One progress line per measurement (plus one when it starts).
    assert_eq!(stderr.lines().filter(|l| l.contains("median")).count(), 10);
    // --out holds the same lines.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stdout);
    // The export for the PyTorch reference.
    for f in [
        "models/small/config.json",
        "models/small/model.safetensors",
        "check_small.safetensors",
        "case.safetensors",
    ] {
        assert!(export.join(f).is_file(), "{f} missing");
    }
    let cfg = std::fs::read_to_string(export.join("models/small/config.json")).unwrap();
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["patch_size"], serde_json::json!([16, 16, 16]));
}

#[test]
fn only_selects_by_name_and_id() {
    let (stdout, _) = bench(&["--only", "forward_m2,evaluate"]);
    let rows = lines(&stdout);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["forward_m2", "evaluate_shared", "evaluate_separate"]);
}

#[test]
fn arch_measures_each_method_forward_and_training_step() {
    let archs: Vec<String> = a2fseg::model::Arch::ALL
        .iter()
        .map(|a| a.to_string())
        .collect();
    let ids: Vec<String> = archs
        .iter()
        .flat_map(|a| [format!("forward_{a}"), format!("train_step_{a}_small")])
        .collect();
    let (stdout, _) = bench(&["--arch", &archs.join(","), "--only", &ids.join(",")]);
    let rows = lines(&stdout);
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &rows {
        assert_eq!(r["subset"], "1111");
        assert!(r["median_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["flops"].as_f64().unwrap() > 0.0, "{r}");
    }
    let (_, err) = common::a2fseg_error(&["bench", "--quick", "--arch", "unet"]);
    assert!(err.contains("unet") && err.contains("a2fseg"), "{err}");
}

#[test]
fn bad_options_are_errors() {
    for args in [
        vec!["--only", "nonsense"],
        vec!["--repeats", "0"],
        vec!["--shape", "20,16,16"],
        vec!["--train-presets", "huge"],
    ] {
        let err = bench_error(&args);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}

#[test]
fn case_geometries_and_the_cpu_in_every_line() {
    let dir = common::tempdir();
    let export = dir.path().join("export");
    let (stdout, _) = bench(&[
        "--only",
        "conv_block,predict",
        "--case-geometry",
        "brats,fit",
        "--export",
        export.to_str().unwrap(),
    ]);
    let rows = lines(&stdout);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["conv_block", "predict", "predict_fit"]);
    let cpu = a2fseg::bench::CpuInfo::detect();
    for r in &rows {
        assert_eq!(r["cpu"]["model"], cpu.model.as_str(), "{r}");
        let ext: Vec<&str> = r["cpu"]["vector_extensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ext, cpu.vector_extensions, "{r}");
    }
    assert!(rows[0].get("case_geometry").is_none());
    let (brats, fit) = (&rows[1], &rows[2]);
    assert_eq!(brats["case_geometry"], "brats");
    assert_eq!(fit["case_geometry"], "fit");
    for r in [brats, fit] {
        assert_eq!(r["name"], "predict");
        assert_eq!(r["case_dims"], serde_json::json!([24, 24, 16]));
    }
    // BraTS's geometry scaled to the 24×24×16 grid (10 mm voxels): a brain box of about
    // 140×175×140 mm in 240×240×155 mm is about 14×17.5×14.5 voxels. The default geometry
    // crops to another box.
    let crop = |r: &Value| -> Vec<f64> {
        r["crop_dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (cb, cf) = (crop(brats), crop(fit));
    for (a, want) in [14.0, 17.5, 14.5].into_iter().enumerate() {
        assert!((cb[a] - want).abs() <= 2.0, "{cb:?}");
    }
    assert_ne!(cb, cf);
    for f in ["case.safetensors", "case_fit.safetensors"] {
        assert!(export.join(f).is_file(), "{f} missing");
    }
    // A geometry named twice, an unknown one, and an id of a geometry not asked for.
    for args in [
        vec!["--quick", "--case-geometry", "fit,fit"],
        vec!["--quick", "--case-geometry", "mni"],
        vec!["--quick", "--only", "predict_fit"],
    ] {
        let err = bench_error(&args);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}
