//! `a2fseg train`, `predict`, `evaluate` and `bench` with `--device wgpu` on tiny phantoms,
//! against the same commands on the CPU: one seed gives the same training run, a model
//! written on either device predicts the same labels on the other, and a patch too large for
//! the device is a one-line error.
//!
//! Built only with `--features wgpu`. The commands get `CUBECL_WGPU_DEFAULT_DEVICE=Cpu` (the
//! software adapter, Mesa's lavapipe in CI) unless the environment sets it or
//! `A2FSEG_TEST_WGPU_DEVICE` names another device (e.g. `wgpu` for a real GPU); with the
//! default, the commands' own report of the adapter must be lavapipe's (`llvmpipe`), so a
//! run that fell back to the CPU cannot pass.
#![cfg(feature = "wgpu")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use a2fseg::infer::evaluate::read_case_rows;
use a2fseg::train::log::read_csv;
use a2fseg::volume::read_volume;
use common::max_diff;

/// The `--device` value under test.
fn gpu() -> String {
    std::env::var("A2FSEG_TEST_WGPU_DEVICE").unwrap_or_else(|_| "wgpu".into())
}

/// Whether the test runs on the default software adapter (lavapipe).
fn on_lavapipe() -> bool {
    std::env::var("A2FSEG_TEST_WGPU_DEVICE").is_err()
        && std::env::var("CUBECL_WGPU_DEFAULT_DEVICE").is_err()
}

/// Runs `a2fseg args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(common::bin());
    if on_lavapipe() {
        cmd.env("CUBECL_WGPU_DEFAULT_DEVICE", "Cpu");
    }
    // Mesa prints a line about XDG_RUNTIME_DIR when it is unset (as in CI).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks a command's `device …` line names a wgpu adapter (lavapipe's by default).
fn assert_adapter(stderr: &str) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("device wgpu"))
        .unwrap_or_else(|| panic!("no wgpu device line in:\n{stderr}"));
    eprintln!("{line}");
    if on_lavapipe() {
        assert!(line.contains("llvmpipe"), "not lavapipe: {line}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `small` network at 16³, two steps, no validation: seconds on lavapipe.
const CONFIG: &str = r#"
preset = "small"
epochs = 1
iterations_per_epoch = 2
patch_size = [16, 16, 16]
validate_every = 0
determine_postprocessing = false
workers = 1
seed = 3
"#;

/// Every tensor of a `model.safetensors`, as f32.
fn weights(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, v)
        })
        .collect()
}

#[test]
fn train_predict_and_evaluate_on_wgpu_give_the_cpu_results() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 3, [24, 24, 24]);
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let device = gpu();

    // The same run on both devices.
    let train = |name: &str, dev: &str| {
        let out = tmp.path().join(name);
        let (ok, _, err) = run(&[
            "train",
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--config",
            s(&config),
            "--device",
            dev,
        ]);
        assert!(ok, "train --device {dev}: {err}");
        (out, err)
    };
    let (run_cpu, _) = train("run_cpu", "cpu");
    let (run_gpu, err) = train("run_gpu", &device);
    assert_adapter(&err);
    let (lc, lg) = (
        read_csv(&run_cpu.join("log.csv")).unwrap(),
        read_csv(&run_gpu.join("log.csv")).unwrap(),
    );
    assert_eq!(lc.len(), 1);
    let (a, b) = (lc[0].loss_total, lg[0].loss_total);
    eprintln!("mean loss of the two steps: cpu {a}, wgpu {b}");
    assert!((a - b).abs() <= 1e-4 * a.abs(), "loss {a} vs {b}");
    // The same weights after two steps (the one seed draws the same initial network on
    // either device).
    let (wc, wg) = (
        weights(&run_cpu.join("checkpoints/latest")),
        weights(&run_gpu.join("checkpoints/latest")),
    );
    assert_eq!(wc.keys().collect::<Vec<_>>(), wg.keys().collect::<Vec<_>>());
    // Adam (lr 0.01, eps 1e-8) moves every weight by up to lr per step whatever the size of
    // its gradient, so a weight whose gradient is at the level of rounding noise moves by an
    // amount rounding decides (a convolution's bias followed by instance norm always is: the
    // norm subtracts the mean, its gradient is 0 up to rounding). So: no weight differs by
    // more than Adam's bound (2 steps · lr, each way), and all but a few (< 1%) agree to
    // 1e-4; the predictions below then agree.
    let lr_moves = 2.0 * 0.01;
    let (mut total, mut loose) = (0, 0);
    for (name, c) in &wc {
        let d = max_diff(c, &wg[name]);
        assert!(d <= 2.0 * lr_moves, "{name}: differs by {d} after training");
        total += c.len();
        loose += c
            .iter()
            .zip(&wg[name])
            .filter(|(a, b)| (*a - *b).abs() > 1e-4)
            .count();
    }
    eprintln!("weights differing by more than 1e-4 after two steps: {loose} of {total}");
    assert!(
        loose * 100 < total,
        "{loose} of {total} weights differ by more than 1e-4"
    );

    // A model written on wgpu predicts on the CPU, and one written on the CPU on wgpu: the
    // same labels and probabilities from the same weights.
    let case = data.join("BraTS20_Training_001");
    let predict = |model: &Path, dev: &str, out: &str| {
        let out = tmp.path().join(out);
        let (ok, _, err) = run(&[
            "predict",
            "--model",
            s(&model.join("checkpoints/latest")),
            "--input",
            s(&case),
            "--output",
            s(&out),
            "--save-probabilities",
            "--device",
            dev,
        ]);
        assert!(ok, "predict --device {dev}: {err}");
        if dev != "cpu" {
            assert_adapter(&err);
        }
        out
    };
    for model in [&run_gpu, &run_cpu] {
        let pc = predict(model, "cpu", "pred_cpu");
        let pg = predict(model, &device, "pred_gpu");
        let file = |dir: &Path, suffix: &str| {
            read_volume(&dir.join(format!("BraTS20_Training_001{suffix}.nii.gz"))).unwrap()
        };
        let mut probs = Vec::new();
        for p in ["_prob_wt", "_prob_tc", "_prob_et"] {
            let (a, b) = (
                file(&pc, p).channels.remove(0),
                file(&pg, p).channels.remove(0),
            );
            let d = max_diff(a.data(), b.data());
            assert!(d < 1e-4, "{p} differs by {d}");
            probs.push(a);
        }
        // The same labels, except where a probability is within 1e-4 of the 0.5 threshold
        // (rounding may decide either way there).
        let (a, b) = (
            file(&pc, "").channels.remove(0),
            file(&pg, "").channels.remove(0),
        );
        let mut differ = 0;
        for (v, (x, y)) in a.data().iter().zip(b.data()).enumerate() {
            if x != y {
                differ += 1;
                assert!(
                    probs.iter().any(|p| (p.data()[v] - 0.5).abs() < 1e-4),
                    "labels differ away from the threshold at voxel {v}"
                );
            }
        }
        eprintln!("labels differing at the threshold: {differ} of {}", a.len());
        std::fs::remove_dir_all(pc).unwrap();
        std::fs::remove_dir_all(pg).unwrap();
    }

    // evaluate over the 15 subsets scores the same on both devices.
    let evaluate = |dev: &str, out: &str| {
        let out = tmp.path().join(out);
        let (ok, _, err) = run(&[
            "evaluate",
            "--model",
            s(&run_gpu.join("checkpoints/latest")),
            "--data",
            s(&data),
            "--subsets",
            "all",
            "--out",
            s(&out),
            "--device",
            dev,
        ]);
        assert!(ok, "evaluate --device {dev}: {err}");
        if dev != "cpu" {
            assert_adapter(&err);
        }
        read_case_rows(&out.join("cases.csv")).unwrap()
    };
    let (ec, eg) = (evaluate("cpu", "eval_cpu"), evaluate(&device, "eval_gpu"));
    assert_eq!(ec.len(), 3 * 15);
    assert_eq!(ec.len(), eg.len());
    for (a, b) in ec.iter().zip(&eg) {
        assert_eq!((&a.case, a.subset), (&b.case, b.subset));
        for (x, y) in [
            (a.wt_dice, b.wt_dice),
            (a.tc_dice, b.tc_dice),
            (a.et_dice, b.et_dice),
        ] {
            assert!(
                x == y || (x.is_nan() && y.is_nan()),
                "{} {}: {x} vs {y}",
                a.case,
                a.subset
            );
        }
    }
}

#[test]
fn a_patch_too_large_for_the_device_is_a_one_line_error() {
    if !on_lavapipe() {
        eprintln!("SKIPPED: the size limit is lavapipe's (128 MiB per buffer)");
        return;
    }
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 3, [24, 24, 24]);
    let (ok, _, err) = run(&[
        "-q",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&tmp.path().join("run")),
        "--preset",
        "paper",
        "--device",
        "wgpu",
    ]);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    for needle in [
        "error: ",
        "[1, 64, 128, 128, 128]",
        "512.0 MiB",
        "llvmpipe",
        "128.0 MiB per buffer",
    ] {
        assert!(err.contains(needle), "no '{needle}' in: {err}");
    }
}

#[test]
fn bench_runs_on_wgpu() {
    let tmp = common::tempdir();
    let out = tmp.path().join("bench.jsonl");
    let device = gpu();
    let (ok, stdout, err) = run(&[
        "bench",
        "--quick",
        "--preset",
        "small",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--only",
        "forward_m4,train_step,predict",
        "--device",
        &device,
        "--out",
        s(&out),
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["forward_m4", "train_step_small", "predict"]);
    for l in &lines {
        let d = l["device"].as_str().expect("a device key on a GPU run");
        assert!(d.starts_with("wgpu"), "{d}");
        if on_lavapipe() {
            assert!(d.contains("llvmpipe"), "{d}");
        }
        assert!(l["median_s"].as_f64().unwrap() > 0.0);
    }
}
