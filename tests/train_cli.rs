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

    // Invalid values and TOML syntax errors: one line naming the file, line, column and key.
    for (text, at, words) in [
        (
            "epochs = 2\nlr = \"x\"\n",
            "line 2, column 6",
            "lr: invalid type: string",
        ),
        (
            "optimizer = \"adamw\"\n",
            "line 1, column 13",
            "optimizer: unknown variant",
        ),
        (
            "[model]\nfusion = \"sum\"\n",
            "line 2, column 10",
            "model.fusion: unknown fusion 'sum'",
        ),
        (
            "epochs = 0\n",
            "line 1, column 10",
            "epochs must be at least 1",
        ),
        (
            "epochs = 2\nlr = \n",
            "line 2, column 6",
            "string values must be quoted",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        assert_error(
            &["--data", p(&data), "--out", p(&run), "--config", p(&bad)],
            &format!("error: {}: {at}: {words}", p(&bad)),
        );
    }

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

/// A run long enough to be interrupted: 4 epochs × 5 steps of the tiny network.
const LONGER: &str = r#"
preset = "small"
epochs = 4
iterations_per_epoch = 5
patch_size = [16, 16, 16]
validate_every = 1
workers = 1
seed = 4

[model]
poolings = 2
base_features = 4
max_features = 8
"#;

/// Starts `a2fseg train` in the background with JSON progress on a pipe.
fn spawn_train(args: &[&str]) -> std::process::Child {
    Command::new(common::bin())
        .arg("train")
        .args(args)
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every tensor of a model folder's weights, by name.
fn weights_of(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// Checks that every visible entry of `RUN/checkpoints` is a complete, loadable checkpoint
/// (only the hidden `.NAME.tmp` / `.NAME.old` of an interrupted swap may be partial), and
/// that `log.csv`, if present, parses. Returns whether `latest` (or its `.old` copy, which
/// the next start restores) exists.
fn assert_no_corrupt_checkpoint(run: &Path) -> bool {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return false;
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            assert!(
                name.ends_with(".tmp") || name.ends_with(".old"),
                "unexpected entry {name}"
            );
            if name.ends_with(".tmp") {
                continue;
            }
        }
        assert!(path.is_dir(), "{name} is not a checkpoint folder");
        a2fseg::model::load_model::<a2fseg::model::A2fseg>(&path, &burn::tensor::Device::flex())
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        a2fseg::train::TrainState::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(path.join("optimizer.bpk").is_file(), "{name}: no optimizer");
        assert!(path.join("train.toml").is_file(), "{name}: no train.toml");
    }
    if run.join("log.csv").exists() {
        a2fseg::train::log::read_csv(&run.join("log.csv")).unwrap();
    }
    dir.join("latest").is_dir() || dir.join(".latest.old").is_dir()
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_saves_latest_and_resume_finishes() {
    use std::io::BufRead;
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    phantoms(&data, 3, [20, 20, 20]);
    let cfg = tmp.path().join("longer.toml");
    std::fs::write(&cfg, LONGER).unwrap();
    let cache = tmp.path().join("cache");
    let run = tmp.path().join("run");
    let base = [
        "--data",
        p(&data),
        "--config",
        p(&cfg),
        "--cache",
        p(&cache),
    ];

    let mut child = spawn_train(&[&base[..], &["--out", p(&run)]].concat());
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    // Interrupt in the middle of the run: once the first epoch is done.
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let first_epoch = v["event"] == "epoch";
        events.push(v);
        if first_epoch {
            break;
        }
    }
    assert_eq!(events.last().unwrap()["epoch"], 1, "{events:?}");
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    events.extend(lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "interrupted", "{events:?}");
    let done = last["epochs_completed"].as_u64().unwrap();
    assert!(done < 4, "{events:?}");
    assert!(assert_no_corrupt_checkpoint(&run));
    let state = a2fseg::train::TrainState::load(&run.join("checkpoints/latest")).unwrap();
    assert_eq!(state.next_epoch as u64, done);
    assert_eq!(state.steps, last["steps"].as_u64().unwrap());

    // --resume continues and finishes: 4 epochs, 20 steps in all.
    let (code, stdout, stderr) =
        train(&[&base[..], &["--out", p(&run), "--resume", "-q"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("trained 4 epochs (20 steps)"), "{stdout}");
    let rows = a2fseg::train::log::read_csv(&run.join("log.csv")).unwrap();
    assert_eq!(rows.len(), 4);
}

/// `kill -9` at random moments (the seed is printed) never leaves a corrupt checkpoint, and
/// resuming after each kill ends with exactly the weights of an uninterrupted run.
#[cfg(unix)]
#[test]
fn kill_9_at_random_moments_never_corrupts_and_resume_matches() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    phantoms(&data, 3, [20, 20, 20]);
    let cfg = tmp.path().join("longer.toml");
    std::fs::write(&cfg, LONGER).unwrap();
    let cache = tmp.path().join("cache");
    let base = [
        "--data",
        p(&data),
        "--config",
        p(&cfg),
        "--cache",
        p(&cache),
    ];

    // The uninterrupted reference run, timed to place the kills inside it.
    let reference = tmp.path().join("reference");
    let started = std::time::Instant::now();
    let (code, _, stderr) = train(&[&base[..], &["--out", p(&reference), "-q"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let full = started.elapsed().as_millis() as u64;

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("kill -9 delays seeded with {seed} (reference run {full} ms)");
    let run = tmp.path().join("run");
    for round in 0..4 {
        // xorshift: a delay anywhere in the run, start-up and checkpoint writes included.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = seed % full.max(1);
        let resume = assert_no_corrupt_checkpoint(&run);
        let mut args = [&base[..], &["--out", p(&run)]].concat();
        if resume {
            args.push("--resume");
        }
        let mut child = spawn_train(&args);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "round {round}: killed after {delay} ms (resume {resume}, status {:?})",
            out.status
        );
        if out.status.success() {
            break; // finished before the kill
        }
    }
    let resume = assert_no_corrupt_checkpoint(&run);
    let mut args = [&base[..], &["--out", p(&run), "-q"]].concat();
    if resume {
        args.push("--resume");
    }
    let state = run.join("checkpoints/latest/state.json");
    let finished = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v["next_epoch"] == 4);
    if !finished {
        let (code, _, stderr) = train(&args);
        assert_eq!(code, 0, "{stderr}");
    }
    assert!(assert_no_corrupt_checkpoint(&run));
    assert!(
        weights_of(&run.join("checkpoints/latest"))
            == weights_of(&reference.join("checkpoints/latest")),
        "weights after kills and resumes differ from the uninterrupted run"
    );
    assert_eq!(
        a2fseg::train::log::read_csv(&run.join("log.csv"))
            .unwrap()
            .into_iter()
            .map(|r| (r.loss_total, r.val_dice_wt))
            .collect::<Vec<_>>(),
        a2fseg::train::log::read_csv(&reference.join("log.csv"))
            .unwrap()
            .into_iter()
            .map(|r| (r.loss_total, r.val_dice_wt))
            .collect::<Vec<_>>()
    );
}
