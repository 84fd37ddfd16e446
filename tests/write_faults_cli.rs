//! Writes that fail: a full disk (injected by the `A2FSEG_FAIL_WRITES_AFTER` testing hook of
//! `fsutil`, see there) or a read-only folder, during `predict`, `evaluate` and `train`.
//! Each failure must stop the command with a one-line error naming the file it could not
//! write, leave every previous output byte-identical or replaced by a complete new version,
//! leave no temporary file behind that could pass for an output, and a following run without
//! the fault must succeed (and resume where one exists).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use a2fseg::fsutil::{FAIL_WRITES_AFTER, LOCK_FILE};
use a2fseg::model::Fusion;
use sha2::{Digest, Sha256};

/// More than any of these commands writes: a run that still fails at this many is a bug.
const MAX_WRITES: usize = 60;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary with `args`; with `fail_after`, every atomic write after the first
/// `fail_after` fails as on a full disk.
fn run(args: &[&str], fail_after: Option<usize>) -> (bool, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).env_remove(FAIL_WRITES_AFTER);
    if let Some(n) = fail_after {
        cmd.env(FAIL_WRITES_AFTER, n.to_string());
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir`, by path relative to it, with its bytes; the lock file is left
/// out (each run writes its process id into it).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.file_name().unwrap() != LOCK_FILE {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The stderr of a failed run is one `error: …` line naming a file under `folder`.
fn assert_write_error(stderr: &str, folder: &Path, cause: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(lines.last(), errors.first().copied(), "{stderr}");
    assert!(errors[0].contains(s(folder)), "{stderr}");
    assert!(errors[0].contains(cause), "{stderr}");
}

/// No file under `dir` is an unfinished temporary file of `fsutil::atomic_write`; the only
/// other names a failed run may add are hidden (`.a2fseg.lock`, a checkpoint's `.NAME.tmp`).
fn assert_no_temporary_files(dir: &Path, before: &BTreeMap<PathBuf, Vec<u8>>) {
    for rel in snapshot(dir).keys() {
        let hidden_tmp = rel.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with(".tmp-")
        });
        assert!(!hidden_tmp, "temporary file left: {}", rel.display());
        let name = rel.file_name().unwrap().to_string_lossy();
        if !before.contains_key(rel) && name.contains("tmp") {
            assert!(
                rel.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.')),
                "a temporary-looking file is not hidden: {}",
                rel.display()
            );
        }
    }
}

/// Whether `bytes` are a complete file of the kind its name says (a half-written one is
/// not): NIfTI read back, JSON and TOML parsed, CSV and Markdown ending in a newline, PNG
/// decoded; other kinds are checked by their folder ([`assert_checkpoints_complete`]).
fn is_complete(rel: &Path, bytes: &[u8]) -> bool {
    let name = rel.to_string_lossy();
    if name.ends_with(".nii.gz") {
        let dir = common::tempdir();
        let p = dir.path().join("x.nii.gz");
        fs::write(&p, bytes).unwrap();
        a2fseg::volume::read_volume(&p).is_ok()
    } else if name.ends_with(".json") {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
    } else if name.ends_with(".toml") {
        std::str::from_utf8(bytes).is_ok_and(|t| toml::from_str::<toml::Table>(t).is_ok())
    } else if name.ends_with(".csv") || name.ends_with(".md") || name.ends_with(".sha256") {
        bytes.last() == Some(&b'\n')
    } else if name.ends_with(".png") {
        image::load_from_memory(bytes).is_ok()
    } else {
        true
    }
}

/// Every model folder under `dir` holds weights whose SHA-256 is the one recorded beside
/// them: no checkpoint was left half-replaced.
fn assert_checkpoints_complete(dir: &Path) {
    for (rel, bytes) in snapshot(dir) {
        if rel.file_name().unwrap() == "model.sha256" {
            let weights = dir.join(&rel).with_file_name("model.safetensors");
            let actual = hex::encode(Sha256::digest(fs::read(&weights).unwrap()));
            let recorded = String::from_utf8(bytes).unwrap();
            assert!(
                recorded.starts_with(&actual),
                "{} does not match its weights",
                rel.display()
            );
        }
    }
}

/// Runs `args(n)` with the writes after the first `n` failing, for n = 0, 1, 2, … until a run
/// gets through. Each failed run must say that writing a file of `out` failed, and leave
/// every file of `out` either as it was before that run or complete, with no temporary file.
/// Returns the number of failed runs.
fn fail_each_write_in_turn(out: &Path, args: impl Fn(usize) -> Vec<String>) -> usize {
    for n in 0..MAX_WRITES {
        let before = snapshot(out);
        let argv = args(n);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (ok, err) = run(&argv, Some(n));
        if ok {
            return n;
        }
        assert_write_error(&err, out, "no space left on device");
        assert_no_temporary_files(out, &before);
        for (rel, bytes) in snapshot(out) {
            if before.get(&rel) != Some(&bytes) {
                assert!(
                    is_complete(&rel, &bytes),
                    "{} is incomplete after a write failure ({err})",
                    rel.display()
                );
            }
        }
        assert_checkpoints_complete(out);
    }
    panic!("still failing after {MAX_WRITES} writes");
}

#[test]
fn predict_keeps_previous_predictions_when_a_write_fails() {
    let tmp = common::tempdir();
    let old_model = common::tiny_run(tmp.path(), "old", Fusion::Adaptive);
    let new_model = common::tiny_run(tmp.path(), "new", Fusion::Average);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 2, [16, 16, 16]);
    let preds = tmp.path().join("preds");
    let predict = |model: &Path| {
        vec![
            "-q".to_string(),
            "predict".into(),
            "--model".into(),
            s(model).into(),
            "--input".into(),
            s(&data).into(),
            "--output".into(),
            s(&preds).into(),
        ]
    };
    let argv = predict(&old_model);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (ok, err) = run(&argv, None);
    assert!(ok, "{err}");
    let previous = snapshot(&preds);
    assert!(previous.len() >= 2, "{previous:?}");

    // The first write fails: nothing changes.
    let (ok, err) = run(&argv_of(&predict(&new_model)), Some(0));
    assert!(!ok);
    assert_write_error(&err, &preds, "no space left on device");
    assert_eq!(snapshot(&preds), previous);

    // Every later write fails in turn; then a run without the fault writes every prediction.
    let failed = fail_each_write_in_turn(&preds, |_| predict(&new_model));
    assert!(failed >= 2, "predict wrote only {failed} file(s)");
    let done = snapshot(&preds);
    for rel in previous.keys() {
        assert!(done.contains_key(rel), "{} missing", rel.display());
    }
}

fn argv_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn evaluate_keeps_finished_cases_when_a_write_fails_and_resumes() {
    let tmp = common::tempdir();
    let model = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 2, [16, 16, 16]);
    let evaluate = |out: &Path| {
        vec![
            "-q".to_string(),
            "evaluate".into(),
            "--model".into(),
            s(&model).into(),
            "--data".into(),
            s(&data).into(),
            "--subsets".into(),
            "1111,0001".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    // A reference evaluation without faults.
    let reference = tmp.path().join("reference");
    let (ok, err) = run(&argv_of(&evaluate(&reference)), None);
    assert!(ok, "{err}");

    // Every write fails in turn, each run resuming what the previous one left.
    let out = tmp.path().join("eval");
    let failed = fail_each_write_in_turn(&out, |_| evaluate(&out));
    assert!(failed >= 3, "evaluate wrote only {failed} file(s)");
    let done = snapshot(&out);
    let expected = snapshot(&reference);
    for name in ["cases.csv", "summary.json", "summary.csv", "summary.md"] {
        let rel = PathBuf::from(name);
        assert!(done.contains_key(&rel), "{name} missing");
        if name != "summary.md" {
            // summary.md names the model folder, which the reference shares.
            assert_eq!(
                done[&rel], expected[&rel],
                "{name} differs from a clean run"
            );
        }
    }

    // A finished evaluation run again on a full disk keeps every file as it was.
    let (_, err) = run(&argv_of(&evaluate(&out)), Some(0));
    assert_eq!(snapshot(&out), done, "{err}");
}

#[test]
fn training_checkpoints_survive_a_full_disk_and_training_resumes() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 3, [16, 16, 16]);
    let cfg = tmp.path().join("tiny.toml");
    fs::write(
        &cfg,
        "preset = \"small\"\nepochs = 2\niterations_per_epoch = 1\npatch_size = [8, 8, 8]\n\
         validate_every = 0\nworkers = 1\ndetermine_postprocessing = false\n\
         [model]\npoolings = 1\nbase_features = 4\nmax_features = 8\n",
    )
    .unwrap();
    let run_dir = tmp.path().join("run");
    let train = || {
        let mut v = vec![
            "-q".to_string(),
            "train".into(),
            "--data".into(),
            s(&data).into(),
            "--out".into(),
            s(&run_dir).into(),
        ];
        if run_dir.join("checkpoints/latest").is_dir() {
            v.push("--resume".into());
        } else {
            v.extend(["--config".into(), s(&cfg).into()]);
        }
        v
    };
    let failed = fail_each_write_in_turn(&run_dir, |_| train());
    assert!(failed >= 4, "train wrote only {failed} file(s)");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(run_dir.join("checkpoints/latest/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["next_epoch"], 2, "{state}");
    assert_checkpoints_complete(&run_dir);
}

/// Whether this process can write into a folder without write permission (root can).
fn permissions_are_enforced() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() != 0 }
}

#[cfg(unix)]
#[test]
fn predict_into_a_read_only_folder_names_the_file_and_keeps_it() {
    use std::os::unix::fs::PermissionsExt;
    if !permissions_are_enforced() {
        eprintln!("skipped: running as root, which writes into read-only folders");
        return;
    }
    let tmp = common::tempdir();
    let model = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [16, 16, 16]);
    let flair = data.join("BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("seg.nii.gz");
    fs::write(&output, b"previous prediction").unwrap();
    let argv = [
        "-q",
        "predict",
        "--model",
        s(&model),
        "--flair",
        s(&flair),
        "--output",
        s(&output),
    ];
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o555)).unwrap();
    let (ok, err) = run(&argv, None);
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!ok);
    assert_write_error(&err, &out_dir, "ermission denied");
    assert_eq!(fs::read(&output).unwrap(), b"previous prediction");
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1);
    let (ok, err) = run(&argv, None);
    assert!(ok, "{err}");
    assert!(a2fseg::volume::read_volume(&output).is_ok());
}
