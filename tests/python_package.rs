//! The Python package (`python/`): its wheel is built with maturin into this workspace's
//! target folder in the dev profile, on top of what `cargo test` compiled (the workspace's
//! features are unified, see Cargo.toml: only pyo3, numpy and the module itself compile),
//! installed into a fresh virtual environment with only numpy, nibabel and pytest, and its
//! pytest suite (`python/tests/`) run there against this build's `a2fseg` binary and two tiny
//! saved models (A2FSeg with adaptive fusion, and U-HVED): `predict` must equal the command
//! line's output on the same files.
//!
//! Needs Python 3 with `maturin` and `venv` (tests/python-requirements.txt) and PyPI for the
//! virtual environment's packages; skipped without them, unless `A2FSEG_REQUIRE_PYTHON=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use a2fseg::model::{Arch, Fusion, ModelConfig, Network, Preset, Uhved, save_model};
use burn::prelude::Device;

/// Runs `cmd`, panicking with its output when it fails; returns its stdout.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the wheel into `out` and returns its path.
fn build_wheel(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    run(
        "maturin build",
        Command::new(common::python())
            // Stripped: the dev profile's line tables would make the wheel large to zip and install.
            .args([
                "-m",
                "maturin",
                "build",
                "--profile",
                "dev",
                "--strip",
                "--out",
            ])
            .arg(out)
            .arg("--manifest-path")
            .arg(root.join("python/Cargo.toml"))
            // A cargo run from `cargo test` inherits variables meant for this test binary.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS"),
    );
    eprintln!(
        "built the wheel in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel expected in {}", out.display());
    let name = wheels[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("a2fseg-0.1.0-cp39-abi3-"),
        "{name} is not one abi3 wheel for CPython ≥ 3.9"
    );
    wheels[0].clone()
}

#[test]
fn wheel_installs_in_a_fresh_venv_and_its_pytest_suite_passes() {
    if !common::python_has(&["maturin", "venv", "ensurepip"]) {
        return;
    }
    let tmp = common::tempdir();
    let wheel = build_wheel(&tmp.path().join("wheels"));

    let venv = tmp.path().join("venv");
    run(
        "python -m venv",
        Command::new(common::python())
            .args(["-m", "venv"])
            .arg(&venv),
    );
    let py = venv.join("bin/python");
    run(
        "pip install",
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "numpy",
                "nibabel",
                "pytest",
            ])
            .arg(&wheel),
    );
    // Nothing else came with the wheel (no Rust toolchain or extra package at run time).
    let freeze = run(
        "pip freeze",
        Command::new(&py).args(["-m", "pip", "freeze", "--disable-pip-version-check"]),
    );
    let names: Vec<&str> = freeze
        .lines()
        .map(|l| l.split(['=', ' ', '@']).next().unwrap_or(l))
        .collect();
    assert!(names.contains(&"a2fseg"), "{freeze}");
    assert!(!names.contains(&"scipy"), "{freeze}");

    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    // Another method through the same `Predictor` (the small preset at 16³ patches).
    let uhved_dir = tmp.path().join("uhved");
    let cfg = ModelConfig::of(Arch::Uhved, Preset::Small).with_patch_size([16, 16, 16]);
    let uhved = Uhved::init(&cfg, &Device::flex());
    save_model(&uhved_dir, &uhved, &cfg).unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests");
    let out = Command::new(&py)
        .args(["-m", "pytest", "-v", "-p", "no:cacheprovider"])
        .arg(&tests)
        // Outside the source tree: `import a2fseg` finds the installed wheel only.
        .current_dir(tmp.path())
        .env("A2FSEG_BIN", common::bin())
        .env("A2FSEG_TEST_MODEL", &run_dir)
        .env("A2FSEG_TEST_MODEL_UHVED", &uhved_dir)
        .output()
        .expect("cannot start pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.to_lowercase().contains("skipped"),
        "no pytest test may skip:\n{stdout}"
    );
    eprintln!("{stdout}");
}
