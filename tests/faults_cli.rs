//! Faults a user can cause without meaning to: an output that names one of the inputs, and
//! a second process writing into a folder that one is still writing. Each must be refused
//! with a one-line error that names the file or folder, leaving the user's files as they were.

mod common;

use std::path::Path;
use std::process::Command;

use a2fseg::fsutil::FolderLock;
use a2fseg::model::Fusion;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The error is one line and names `what`.
fn assert_one_line_error(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(what), "{stderr}");
}

/// Runs `args` while this test holds the lock of `folder` (as another process writing it
/// would): refused with a one-line error naming the folder, and `output` not written. Then,
/// the lock released, the same command succeeds and writes `output`.
fn refused_while_locked(folder: &Path, args: &[&str], output: &Path) {
    let held = FolderLock::acquire(folder, "test").unwrap();
    let (ok, err) = run(args);
    assert!(!ok);
    assert_one_line_error(&err, s(folder));
    assert!(err.contains("in use by another a2fseg process"), "{err}");
    assert!(
        !output.exists(),
        "the refused run wrote {}",
        output.display()
    );
    drop(held);
    // Released: the run goes through. A child process that another test of this binary is
    // starting at this very moment may still hold a copy of the lock's descriptor between
    // its fork and its exec (which closes it), so "in use" is retried briefly.
    let mut attempt = 0;
    let (ok, err) = loop {
        let (ok, err) = run(args);
        attempt += 1;
        if ok || !err.contains("in use by another a2fseg process") || attempt == 5 {
            break (ok, err);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(ok, "{err}");
    assert!(output.exists(), "{} missing", output.display());
}

#[test]
fn predict_never_overwrites_one_of_its_inputs() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [16, 16, 16]);
    let case = data.join("BraTS20_Training_001");
    let flair = case.join("BraTS20_Training_001_flair.nii.gz");
    let t1c = case.join("BraTS20_Training_001_t1ce.nii.gz");
    let before = std::fs::read(&flair).unwrap();

    // The label map would replace the FLAIR scan.
    let (ok, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--flair",
        s(&flair),
        "--output",
        s(&flair),
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "BraTS20_Training_001_flair.nii.gz");
    assert!(err.contains("refusing to write"), "{err}");
    // Another spelling of the same path.
    let dotted = case.join(".").join("BraTS20_Training_001_flair.nii.gz");
    let (ok, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--t1c",
        s(&t1c),
        "--flair",
        s(&flair),
        "--output",
        s(&dotted),
    ]);
    assert!(!ok, "{err}");
    // A probability map beside the labels would replace the T1c scan: `X_prob_wt.nii.gz`
    // next to `X.nii.gz`, so an input named like that is protected too.
    let named = case.join("seg_prob_wt.nii.gz");
    std::fs::copy(&t1c, &named).unwrap();
    let (ok, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--t1c",
        s(&named),
        "--output",
        s(&case.join("seg.nii.gz")),
        "--save-probabilities",
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "seg_prob_wt.nii.gz");
    assert!(
        !case.join("seg.nii.gz").exists(),
        "nothing is written when refused"
    );
    assert_eq!(
        std::fs::read(&flair).unwrap(),
        before,
        "the scan is untouched"
    );

    // An output that is no input is written as usual.
    let (ok, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--flair",
        s(&flair),
        "--output",
        s(&tmp.path().join("seg.nii.gz")),
    ]);
    assert!(ok, "{err}");
}

#[test]
fn a_folder_being_written_is_refused_to_a_second_process() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [16, 16, 16]);
    let preds = tmp.path().join("preds");
    let args = [
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--input",
        s(&data),
        "--output",
        s(&preds),
    ];
    refused_while_locked(&preds, &args, &preds.join("BraTS20_Training_001.nii.gz"));
}

#[test]
fn a_second_evaluation_into_the_same_folder_is_refused() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 1, [16, 16, 16]);
    let out = tmp.path().join("eval");
    let args = [
        "-q",
        "evaluate",
        "--model",
        s(&run_dir),
        "--data",
        s(&data),
        "--subsets",
        "1111",
        "--out",
        s(&out),
    ];
    refused_while_locked(&out, &args, &out.join("cases.csv"));
}

#[test]
fn a_second_training_into_the_same_run_folder_is_refused() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 3, [16, 16, 16]);
    let cfg = tmp.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        "preset = \"small\"\nepochs = 1\niterations_per_epoch = 1\npatch_size = [8, 8, 8]\n\
         validate_every = 0\nworkers = 1\ndetermine_postprocessing = false\n\
         [model]\npoolings = 1\nbase_features = 4\nmax_features = 8\n",
    )
    .unwrap();
    let run_dir = tmp.path().join("run");
    let args = [
        "-q",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run_dir),
        "--config",
        s(&cfg),
    ];
    refused_while_locked(&run_dir, &args, &run_dir.join("config.toml"));
    assert!(run_dir.join("checkpoints/latest/model.sha256").is_file());
    // Resuming a folder that does not exist creates nothing.
    let typo = tmp.path().join("typo");
    let (ok, err) = run(&[
        "-q",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&typo),
        "--resume",
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "nothing to resume");
    assert!(!typo.exists());
}
