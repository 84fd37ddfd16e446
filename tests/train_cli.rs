//! `a2fseg train` on the command line: a short run, and bad data or settings that must
//! stop with a clear one-line error before any training step.

mod common;

use std::path::Path;
use std::process::Command;

const TINY: &str = r#"
preset = "small"
epochs = 2
iterations_per_epoch = 1
patch_size = [16, 16, 16]
validate_every = 1
workers = 1

[model]
poolings = 2
base_features = 4
max_features = 8
"#;

fn phantoms(dir: &Path, n: usize, dims: [usize; 3]) {
    common::synthetic_brats(dir, n, dims);
}

fn tiny_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tiny.toml");
    std::fs::write(&p, TINY).unwrap();
    p
}

/// Runs `a2fseg train` with `args`; returns (exit code, stdout, stderr).
fn train(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("train")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn trains_with_json_log_and_resumes() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    phantoms(&data, 3, [20, 20, 20]);
    let cfg = tiny_config(tmp.path());
    let run = tmp.path().join("run");
    let (code, stdout, stderr) = train(&[
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--config",
        p(&cfg),
        "--log-format",
        "json",
        "--seed",
        "3",
        "--stop-after-steps",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines.last().unwrap()["event"], "interrupted");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "epoch" && l["epoch"] == 1)
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("seed = 3"), "{config}");

    let (code, stdout, stderr) = train(&["--data", p(&data), "--out", p(&run), "--resume", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("trained 2 epochs"), "{stdout}");
    let log = std::fs::read_to_string(run.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(run.join("checkpoints/best/model.safetensors").is_file());
}

fn assert_error(args: &[&str], needle: &str) {
    let (code, _, stderr) = train(args);
    assert_eq!(code, 1, "expected failure, stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn bad_data_stops_before_training() {
    let tmp = common::tempdir();
    let cfg = tiny_config(tmp.path());
    let run = tmp.path().join("run");

    // An empty dataset.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, stderr) = train(&["--data", p(&empty), "--out", p(&run), "--config", p(&cfg)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(p(&empty)) || stderr.contains("no case"),
        "{stderr}"
    );
    assert!(!run.join("checkpoints").exists());

    let data = tmp.path().join("data");
    phantoms(&data, 3, [20, 20, 20]);

    // A split naming unknown cases.
    let split = tmp.path().join("split.json");
    std::fs::write(
        &split,
        r#"{"train": ["BraTS20_Training_001", "nobody"], "validation": [], "test": []}"#,
    )
    .unwrap();
    assert_error(
        &[
            "--data",
            p(&data),
            "--out",
            p(&run),
            "--config",
            p(&cfg),
            "--split",
            p(&split),
        ],
        "nobody",
    );

    // A patch larger than the images.
    assert_error(
        &[
            "--data",
            p(&data),
            "--out",
            p(&run),
            "--config",
            p(&cfg),
            "--patch",
            "32,16,16",
        ],
        "patch size [32, 16, 16] is larger",
    );

    // A patch the network cannot take.
    assert_error(
        &[
            "--data",
            p(&data),
            "--out",
            p(&run),
            "--config",
            p(&cfg),
            "--patch",
            "18,16,16",
        ],
        "patch_size",
    );

    // An unknown configuration key.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "epoch = 3\n").unwrap();
    assert_error(
        &["--data", p(&data), "--out", p(&run), "--config", p(&bad)],
        "unknown key 'epoch'",
    );

    // A case whose modalities disagree in shape.
    let case = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let t2 = std::fs::read_dir(&case)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_t2.nii.gz"))
        .unwrap();
    let vol = a2fseg::volume::read_volume(&t2).unwrap();
    let dims = [20, 20, 18];
    let geometry = a2fseg::volume::Geometry::from_affine(dims, vol.geometry.affine);
    let grid = a2fseg::volume::Grid::<f32>::filled(dims, 1.0);
    a2fseg::volume::write_float(&t2, &geometry, &grid).unwrap();
    let all_train = tmp.path().join("all.json");
    let ids: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    std::fs::write(
        &all_train,
        serde_json::json!({"train": ids, "validation": [], "test": []}).to_string(),
    )
    .unwrap();
    let (code, _, stderr) = train(&[
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--config",
        p(&cfg),
        "--split",
        p(&all_train),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("_t2.nii.gz") || stderr.contains("shape"),
        "{stderr}"
    );
    assert!(!run.join("checkpoints").exists());
    assert!(!run.join("log.csv").exists());
}
