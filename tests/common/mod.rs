//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The Python interpreter used for reference computations (`A2FSEG_PYTHON` or `python3`).
pub fn python() -> String {
    std::env::var("A2FSEG_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether the reference Python has every module in `modules`.
///
/// When it lacks one, the test that asked is skipped with a message on stderr, unless
/// `A2FSEG_REQUIRE_PYTHON=1` (as `.ci/run` sets it): then the test fails, so CI never
/// passes by skipping a reference comparison.
pub fn python_has(modules: &[&str]) -> bool {
    let probe = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ok = Command::new(python())
        .args(["-c", &probe])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let required = std::env::var("A2FSEG_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "reference Python modules {modules:?} are missing and A2FSEG_REQUIRE_PYTHON=1 \
             (install tests/python-requirements.txt)"
        );
        eprintln!("SKIPPED: reference Python modules {modules:?} are not installed");
    }
    ok
}

/// Runs `script` with the reference Python and `args`; panics with its stderr on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("cannot start the reference Python");
    assert!(
        out.status.success(),
        "reference Python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("Python printed non-UTF-8")
}

/// A fresh temporary folder for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary folder")
}

/// Path to the built `a2fseg` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_a2fseg"))
}
