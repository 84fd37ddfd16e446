//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod reference;

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

/// SplitMix64: a small deterministic generator, enough for test shapes and samples.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `a2fseg compare` at toy size: A2FSeg and average fusion, the `small` preset, 1 epoch of 2
/// optimiser steps, seed 5.
pub const TOY_COMPARE: [&str; 10] = [
    "--methods",
    "a2fseg,average",
    "--preset",
    "small",
    "--epochs",
    "1",
    "--iterations-per-epoch",
    "2",
    "--seed",
    "5",
];

/// The options of `a2fseg demo` at toy size: 5 cases of 32³, a 6-second budget, 2 optimiser
/// steps per epoch, seed 3.
pub const TOY_DEMO: [&str; 10] = [
    "--cases",
    "5",
    "--shape",
    "32,32,32",
    "--budget-minutes",
    "0.1",
    "--iterations-per-epoch",
    "2",
    "--seed",
    "3",
];

/// A fresh temporary folder for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary folder")
}

/// Saves a tiny randomly initialised model (1 pooling, 4–8 features, 8³ patches) as
/// `<dir>/<name>/checkpoints/best` and returns the run folder.
pub fn tiny_run(dir: &Path, name: &str, fusion: a2fseg::model::Fusion) -> PathBuf {
    use a2fseg::model::{ModelConfig, save_model};
    let cfg = ModelConfig::new()
        .with_poolings(1)
        .with_base_features(4)
        .with_max_features(8)
        .with_convs_per_stage(1)
        .with_deep_supervision(false)
        .with_fusion(fusion)
        .with_patch_size([8, 8, 8]);
    let model = cfg.init(&burn::prelude::Device::flex());
    let run = dir.join(name);
    save_model(&run.join("checkpoints/best"), &model, &cfg).unwrap();
    run
}

/// Path to the built `a2fseg` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_a2fseg"))
}

/// Runs the `a2fseg` binary with `args`: whether it succeeded, and its stderr.
pub fn run_a2fseg(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `a2fseg` binary with `args`, which must succeed: its output (the panic message
/// shows the stderr otherwise).
pub fn a2fseg_ok(args: &[&str]) -> Output {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "a2fseg {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the `a2fseg` binary with `args`, which must fail: its exit code and stderr.
pub fn a2fseg_error(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a2fseg {args:?} succeeded: {stderr}");
    (out.status.code(), stderr)
}

/// A path as a command-line argument (the tests' paths are UTF-8).
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `n` tiny synthetic BraTS 2020 cases of `dims` into `dir`: a bright ellipsoidal
/// "brain" with a tumour (edema shell, necrotic core, enhancing rim) whose contrast differs
/// per modality, so a network can learn it from any modality.
pub fn synthetic_brats(dir: &Path, n: usize, dims: [usize; 3]) {
    use a2fseg::volume::{Geometry, Grid, write_float, write_labels};
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let geometry = Geometry::from_affine(dims, affine);
    for case in 0..n {
        let id = format!("BraTS20_Training_{:03}", case + 1);
        let case_dir = dir.join(&id);
        std::fs::create_dir_all(&case_dir).unwrap();
        let c = [
            dims[0] as f64 / 2.0 + (case % 3) as f64 - 1.0,
            dims[1] as f64 / 2.0 - (case % 2) as f64,
            dims[2] as f64 / 2.0,
        ];
        let r_tumour = 3.0 + (case % 2) as f64;
        let mut labels = Grid::<u8>::zeros(dims);
        let mut brain = Grid::<f32>::zeros(dims);
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    let p = [x as f64, y as f64, z as f64];
                    let rb: f64 = (0..3)
                        .map(|a| ((p[a] - dims[a] as f64 / 2.0) / (dims[a] as f64 * 0.45)).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if rb < 1.0 {
                        brain.set(x, y, z, 1.0);
                    }
                    let rt = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>().sqrt();
                    let label = if rt < r_tumour * 0.4 {
                        1
                    } else if rt < r_tumour * 0.7 {
                        4
                    } else if rt < r_tumour * 1.3 {
                        2
                    } else {
                        0
                    };
                    if rb < 1.0 {
                        labels.set(x, y, z, label);
                    }
                }
            }
        }
        // Per modality: intensity of background brain, NCR, ET, edema.
        let contrast = [
            ("t1", [1.0, 0.6, 1.2, 0.8]),
            ("t1ce", [1.0, 0.5, 2.5, 0.9]),
            ("t2", [1.0, 1.8, 1.4, 2.0]),
            ("flair", [1.0, 1.5, 1.3, 2.2]),
        ];
        for (suffix, k) in contrast {
            let mut img = Grid::<f32>::zeros(dims);
            for (i, v) in img.data_mut().iter_mut().enumerate() {
                if brain.data()[i] > 0.0 {
                    let base = match labels.data()[i] {
                        1 => k[1],
                        4 => k[2],
                        2 => k[3],
                        _ => k[0],
                    };
                    *v = (100.0 * base + ((i * 37 + case * 11) % 13) as f64) as f32;
                }
            }
            write_float(
                &case_dir.join(format!("{id}_{suffix}.nii.gz")),
                &geometry,
                &img,
            )
            .unwrap();
        }
        write_labels(
            &case_dir.join(format!("{id}_seg.nii.gz")),
            &geometry,
            &labels,
        )
        .unwrap();
    }
}

/// The largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
