//! `a2fseg bench`: speed and memory of the network's building blocks, the whole model, a
//! training step and whole-case inference, as JSON lines (one [`Measurement`] per line).
//!
//! # Measurements
//!
//! | id | what |
//! |----|------|
//! | `conv_block` | one Conv3d(k3) → InstanceNorm → LeakyReLU block, C → C channels (`msfe.t1.encoder.0.convs.{last}`), input `[1, C, D, H, W]` |
//! | `msfe_forward` | one MSFE (T1) with its deep-supervision heads, input `[1, 1, D, H, W]` |
//! | `forward_m{n}` | the whole model's forward pass with the first `n` modalities (T1, T1c, T2, FLAIR order), n = 1..4 |
//! | `train_step_{preset}` | [`crate::train::step`], the step `train` runs (forward of 4 modalities, loss, backward, gradient clipping, the preset's optimiser), at the preset's patch size |
//! | `predict` | [`crate::infer::Predictor::predict_case`] of one phantom case with 4 modalities, no TTA: BraTS's geometry (240×240×155 voxels of 1 mm, a brain box of about 140×175×140, [`PhantomGeometry::Brats`]) |
//! | `evaluate_shared` | [`crate::infer::Predictor::predict_subsets`] of that case over all 15 subsets (each MSFE once per window) |
//! | `evaluate_separate` | 15 separate [`crate::infer::Predictor::predict_case`] calls, one per subset |
//! | `predict_fit`, `evaluate_shared_fit`, `evaluate_separate_fit` | with `--case-geometry …,fit`: the same on the case in the phantoms' default geometry (on 240×240×155 its brain crops to about 144×181×118: 4 windows of 128³ where the BraTS-geometry case needs 8) |
//! | `forward_{arch}` | with `--arch`: that method's inference forward from all four modalities (encode each, decode), at `--preset` |
//! | `train_step_{arch}_{preset}` | with `--arch`: [`crate::train::step`] of that method with its own recipe at each training preset |
//!
//! `--only` selects by id or by name (`conv_block`, `msfe_forward`, `forward`, `train_step`,
//! `predict`, `evaluate`). Everything except the training step runs without autodiff.
//!
//! Every line names the CPU (`cpu`: model and vector extensions, [`CpuInfo`]): the same
//! build runs gemm's AVX-512 micro-kernels where the CPU has them and AVX2 + FMA elsewhere.
//!
//! Weights are randomly initialised (He, seeded): timing does not depend on training.
//! The phantom case is generated in memory and preprocessed as `predict` does (crop to the
//! brain, z-score); `predict` and `evaluate` time the sliding window over the cropped case
//! (neither the preprocessing nor writing files, nor metrics).
//!
//! # Numbers
//!
//! Each measurement runs `warmup` untimed times, then `repeats` timed times; `median_s` and
//! `min_s` are over the timed runs. `gflops` = counted FLOPs / `median_s` / 1e9, with FLOPs
//! = 2 × the multiply-accumulates of the convolutions ([`crate::model::ModelSummary`]: conv
//! 2·Cin·Cout·k³ per output voxel, transposed conv 2·Cin·Cout per output voxel, 1×1×1
//! heads, attention convs); normalisations, activations and element-wise fusion are not
//! counted. A training step counts 3 × its forward FLOPs (the usual convention: the input
//! and the weight gradient each cost about one forward).
//!
//! `peak_rss_mb` (Linux): the process's peak resident set (`VmHWM` of `/proc/self/status`)
//! after the measurement, with the peak reset (`echo 5 > /proc/self/clear_refs`) just before
//! it; so it includes what the process already holds (the model weights, the case) but not
//! the peaks of earlier measurements. `None` where `/proc` is missing or the reset fails.
//!
//! # Export for the PyTorch reference
//!
//! With `--export DIR`, the bench also writes what `benches/reference/run.py` needs to run
//! the same measurements with the same weights and to check that both implementations agree:
//! `DIR/models/{preset}/` (a model folder, `config.json` + `model.safetensors`, whose
//! `patch_size` is the measured shape), `DIR/check_{preset}.safetensors` (inputs and outputs
//! of a forward pass and a loss on a small shape) and, for each case geometry,
//! `DIR/case.safetensors` (BraTS geometry) or `DIR/case_{geometry}.safetensors` (the
//! preprocessed case and, when its `predict` ran, the predicted probabilities).
//!
//! # Files
//!
//! - [`cpu`]: the CPU's model and vector extensions.
//! - `harness`: the runner: selection, timing (warm-up, repeats, median), the JSON lines.
//! - `measurements`: what each measurement sets up and times.
//! - [`export`]: the files for the PyTorch reference.
//! - [`process`]: process metrics (peak RSS, load average, CPU time).
//! - [`kernels`]: the fast kernels against flex's own, and the training step with them on
//!   and off (an ignored test: `cargo test --release --lib bench::kernels -- --ignored
//!   --nocapture`).

pub mod cpu;
pub mod export;
mod harness;
pub mod kernels;
mod measurements;
mod methods;
pub mod process;

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

pub use cpu::CpuInfo;
pub use export::{check_shape, export_check};
pub use measurements::{phantom_case, shared_macs};

use crate::model::ModelConfig;
use crate::phantom::PhantomGeometry;
use harness::Bench;

/// The measurement names `--only` accepts besides the ids.
pub const NAMES: [&str; 6] = [
    "conv_block",
    "msfe_forward",
    "forward",
    "train_step",
    "predict",
    "evaluate",
];

/// Default case size `[x, y, z]` for `predict` and `evaluate`: a BraTS volume.
pub const CASE_DIMS: [usize; 3] = crate::phantom::BRATS_SHAPE;

/// Options of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Preset of every measurement except the training steps.
    pub preset: String,
    /// Presets whose training step is measured.
    pub train_presets: Vec<String>,
    /// Input size `[x, y, z]` of the model-level measurements and the predictor's patch;
    /// `None`: the preset's patch size.
    pub shape: Option<[usize; 3]>,
    /// Size `[x, y, z]` of the phantom case of `predict` and `evaluate`.
    pub case_dims: [usize; 3],
    /// Geometries of the phantom cases of `predict` and `evaluate`, one case each (ids of
    /// geometries other than `brats` get the suffix `_{geometry}`).
    pub case_geometries: Vec<PhantomGeometry>,
    /// Timed runs per measurement (at least 1).
    pub repeats: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Ids or names to run; empty: all.
    pub only: Vec<String>,
    /// Tiny shapes (seconds in total), for tests.
    pub quick: bool,
    /// Seed of the weights, the inputs and the phantom case.
    pub seed: u64,
    /// Also write the JSON lines to this file (rewritten atomically after each measurement).
    pub out: Option<PathBuf>,
    /// Write models, inputs and outputs for the PyTorch reference into this folder.
    pub export: Option<PathBuf>,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// Where the network runs (each timed run waits for a GPU to finish).
    pub device: crate::model::ComputeDevice,
    /// Methods whose forward pass and training step are measured as well (`--arch`), after
    /// the A2FSeg measurements above.
    pub archs: Vec<crate::model::Arch>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            preset: "paper".into(),
            train_presets: vec!["small".into(), "paper".into()],
            shape: None,
            case_dims: CASE_DIMS,
            case_geometries: vec![PhantomGeometry::Brats],
            repeats: 3,
            warmup: 1,
            only: Vec::new(),
            quick: false,
            seed: 0,
            out: None,
            export: None,
            quiet: false,
            device: crate::model::ComputeDevice::Cpu,
            archs: Vec::new(),
        }
    }
}

/// One measurement: a JSON line of the bench's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Which implementation was timed: `a2fseg` (the PyTorch reference writes `pytorch`).
    pub implementation: String,
    /// Unique id (`forward_m4`, `train_step_small`, …).
    pub id: String,
    /// Measurement kind (`forward`, `train_step`, …; see [`NAMES`]).
    pub name: String,
    /// Model preset.
    pub preset: String,
    /// Network input size `[x, y, z]` (the patch size for `predict` and `evaluate`).
    pub shape: [usize; 3],
    /// Modalities fed to the network (bit string, T1 T1c T2 FLAIR; `1111` for evaluate).
    pub subset: String,
    /// Number of modalities in `subset`.
    pub subset_size: usize,
    /// Subsets predicted (15 for `evaluate`, else 1).
    pub subsets: usize,
    /// Phantom case size `[x, y, z]` (`predict` and `evaluate` only).
    pub case_dims: Option<[usize; 3]>,
    /// The phantom case's geometry (`predict` and `evaluate` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_geometry: Option<PhantomGeometry>,
    /// The cropped case the sliding window covers `[x, y, z]`.
    pub crop_dims: Option<[usize; 3]>,
    /// Sliding-window positions per prediction.
    pub windows: Option<usize>,
    /// Worker threads (the rayon pool).
    pub threads: usize,
    /// Timed runs.
    pub repeats: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Median wall time of the timed runs (seconds).
    pub median_s: f64,
    /// Fastest timed run (seconds).
    pub min_s: f64,
    /// Every timed run (seconds).
    pub times_s: Vec<f64>,
    /// Counted floating-point operations of one run (see the module docs).
    pub flops: Option<f64>,
    /// `flops / median_s / 1e9`.
    pub gflops: Option<f64>,
    /// Peak resident memory during the measurement (MB = 2^20 bytes).
    pub peak_rss_mb: Option<f64>,
    /// The machine's 1-minute load average after the measurement (`/proc/loadavg`): on a
    /// shared machine, how much else was running.
    pub load_avg: Option<f64>,
    /// The GPU device and adapter (`--device`), absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The CPU the process ran on (model and vector extensions).
    pub cpu: CpuInfo,
}

/// Runs the selected measurements, prints each as a JSON line on stdout (and a progress
/// line on stderr), writes them to `opts.out` if given, and returns them.
pub fn run(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    ensure!(opts.repeats >= 1, "--repeats must be at least 1");
    ensure!(
        !opts.case_geometries.is_empty(),
        "--case-geometry needs at least one geometry"
    );
    for (i, g) in opts.case_geometries.iter().enumerate() {
        ensure!(
            !opts.case_geometries[..i].contains(g),
            "--case-geometry lists {g} twice"
        );
    }
    ModelConfig::preset(&opts.preset).context("--preset")?;
    for p in &opts.train_presets {
        ModelConfig::preset(p).context("--train-presets")?;
    }
    for o in &opts.only {
        let known = NAMES.contains(&o.as_str())
            || all_ids(&opts.train_presets, &opts.case_geometries, &opts.archs).contains(o);
        ensure!(
            known,
            "--only: unknown measurement '{o}' (expected one of {} or an id such as forward_m2)",
            NAMES.join(", ")
        );
    }
    let mut bench = Bench::new(opts)?;
    bench.run_all()?;
    Ok(bench.results)
}

/// The case-level measurements, in run order.
const CASE_LEVEL: [&str; 3] = ["predict", "evaluate_shared", "evaluate_separate"];

/// The id of case-level measurement `base` on the case of `geometry`: `base` for BraTS's
/// geometry, `{base}_{geometry}` for the others.
fn case_id(base: &str, geometry: PhantomGeometry) -> String {
    match geometry {
        PhantomGeometry::Brats => base.to_string(),
        other => format!("{base}_{other}"),
    }
}

/// Every measurement id, in run order.
fn all_ids(
    train_presets: &[String],
    case_geometries: &[PhantomGeometry],
    archs: &[crate::model::Arch],
) -> Vec<String> {
    let mut ids = vec!["conv_block".to_string(), "msfe_forward".to_string()];
    ids.extend((1..=4).map(|n| format!("forward_m{n}")));
    ids.extend(train_presets.iter().map(|p| format!("train_step_{p}")));
    for &g in case_geometries {
        ids.extend(CASE_LEVEL.iter().map(|base| case_id(base, g)));
    }
    for arch in archs {
        ids.push(format!("forward_{arch}"));
        ids.extend(
            train_presets
                .iter()
                .map(|p| format!("train_step_{arch}_{p}")),
        );
    }
    ids
}

/// The size used by `--quick` for `cfg`: 16 voxels per axis, or the network's divisor.
fn quick_shape(cfg: &ModelConfig) -> [usize; 3] {
    [cfg.size_divisor().max(16); 3]
}

/// Case size used by `--quick`.
const QUICK_CASE: [usize; 3] = [24, 24, 16];

/// The measurement name of an id.
fn name_of(id: &str) -> &'static str {
    NAMES
        .iter()
        .find(|n| id.starts_with(*n))
        .copied()
        .unwrap_or("")
}
