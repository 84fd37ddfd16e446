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
//! | `train_step_{preset}` | forward (4 modalities) + loss + backward + Adam step, at the preset's patch size |
//! | `predict` | [`Predictor::predict_case`] of one phantom case (default 240×240×155) with 4 modalities, no TTA |
//! | `evaluate_shared` | [`Predictor::predict_subsets`] of that case over all 15 subsets (each MSFE once per window) |
//! | `evaluate_separate` | 15 separate [`Predictor::predict_case`] calls, one per subset |
//!
//! `--only` selects by id or by name (`conv_block`, `msfe_forward`, `forward`, `train_step`,
//! `predict`, `evaluate`). Everything except the training step runs without autodiff.
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
//! = 2 × the multiply-accumulates of the convolutions ([`ModelSummary`]: conv
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
//! of a forward pass and a loss on a small shape) and, when `predict` runs, `DIR/case.safetensors`
//! (the preprocessed case and the predicted probabilities).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dataset::LoadedCase;
use crate::infer::{Predictor, SlidingWindow, Tta};
use crate::labels::LabelConvention;
use crate::modality::{Modality, Subset};
use crate::model::weights::load_weights;
use crate::model::{self, A2fseg, ModelConfig, ModelSummary};
use crate::preprocess::{PreprocessSettings, PreprocessedCase, preprocess_case};
use crate::volume::Grid;

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
pub const CASE_DIMS: [usize; 3] = [240, 240, 155];

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
    pub device: model::ComputeDevice,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            preset: "paper".into(),
            train_presets: vec!["small".into(), "paper".into()],
            shape: None,
            case_dims: CASE_DIMS,
            repeats: 3,
            warmup: 1,
            only: Vec::new(),
            quick: false,
            seed: 0,
            out: None,
            export: None,
            quiet: false,
            device: model::ComputeDevice::Cpu,
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
}

/// Runs the selected measurements, prints each as a JSON line on stdout (and a progress
/// line on stderr), writes them to `opts.out` if given, and returns them.
pub fn run(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    ensure!(opts.repeats >= 1, "--repeats must be at least 1");
    ModelConfig::preset(&opts.preset).context("--preset")?;
    for p in &opts.train_presets {
        ModelConfig::preset(p).context("--train-presets")?;
    }
    for o in &opts.only {
        let known = NAMES.contains(&o.as_str()) || all_ids(&opts.train_presets).contains(o);
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

/// Every measurement id, in run order.
fn all_ids(train_presets: &[String]) -> Vec<String> {
    let mut ids = vec!["conv_block".to_string(), "msfe_forward".to_string()];
    ids.extend((1..=4).map(|n| format!("forward_m{n}")));
    ids.extend(train_presets.iter().map(|p| format!("train_step_{p}")));
    ids.extend(
        ["predict", "evaluate_shared", "evaluate_separate"]
            .iter()
            .map(|s| s.to_string()),
    );
    ids
}

/// The size used by `--quick` for `cfg`: 16 voxels per axis, or the network's divisor.
fn quick_shape(cfg: &ModelConfig) -> [usize; 3] {
    [cfg.size_divisor().max(16); 3]
}

/// Case size used by `--quick`.
const QUICK_CASE: [usize; 3] = [24, 24, 16];

struct Bench<'a> {
    opts: &'a BenchOptions,
    device: Device,
    threads: usize,
    results: Vec<Measurement>,
    lines: String,
}

/// What one measurement is, before it is timed.
struct Spec {
    id: String,
    name: &'static str,
    preset: String,
    shape: [usize; 3],
    subset: Subset,
    subsets: usize,
    flops: Option<f64>,
}

impl<'a> Bench<'a> {
    fn new(opts: &'a BenchOptions) -> Result<Self> {
        Ok(Bench {
            opts,
            device: opts.device.open()?,
            threads: rayon::current_num_threads(),
            results: Vec::new(),
            lines: String::new(),
        })
    }

    fn wanted(&self, id: &str, name: &str) -> bool {
        self.opts.only.is_empty() || self.opts.only.iter().any(|o| o == id || o == name)
    }

    /// The configuration of `preset` with its patch size set to the measured shape.
    fn config(&self, preset: &str, main: bool) -> Result<ModelConfig> {
        let cfg = ModelConfig::preset(preset)?;
        let shape = if self.opts.quick {
            quick_shape(&cfg)
        } else if main {
            self.opts.shape.unwrap_or(cfg.patch_size)
        } else {
            cfg.patch_size
        };
        cfg.check_size(shape)
            .with_context(|| format!("--shape does not fit the {preset} preset"))?;
        let cfg = cfg.with_patch_size(shape);
        model::device::check_model_fits(&cfg, 1, &self.device)?;
        Ok(cfg)
    }

    /// A seeded, randomly initialised model of `cfg`, exported to `models/{preset}` if asked.
    fn model(&self, preset: &str, cfg: &ModelConfig) -> Result<(A2fseg, Vec<u8>)> {
        self.device.seed(self.opts.seed);
        let model = cfg.init(&self.device);
        let bytes = safetensors_bytes(&model, cfg)?;
        if let Some(dir) = &self.opts.export {
            let mdir = dir.join("models").join(preset);
            model::save_model(&mdir, &model, cfg)?;
        }
        Ok((model, bytes))
    }

    fn run_all(&mut self) -> Result<()> {
        let ids = all_ids(&self.opts.train_presets);
        let main_needed = ids
            .iter()
            .any(|id| !id.starts_with("train_step") && self.wanted(id, name_of(id)))
            || self.opts.export.is_some();
        if main_needed {
            self.main_preset()?;
        }
        for p in self.opts.train_presets.clone() {
            let id = format!("train_step_{p}");
            if self.wanted(&id, "train_step") {
                self.train_step(&p)?;
            }
        }
        if self.wanted("predict", "predict")
            || self.wanted("evaluate_shared", "evaluate")
            || self.wanted("evaluate_separate", "evaluate")
        {
            self.case_level()?;
        }
        Ok(())
    }

    /// conv_block, msfe_forward and forward_m1..4 of the main preset (and its export).
    fn main_preset(&mut self) -> Result<()> {
        let preset = self.opts.preset.clone();
        let cfg = self.config(&preset, true)?;
        let (model, _) = self.model(&preset, &cfg)?;
        if let Some(dir) = &self.opts.export {
            export_check(
                &dir.join(format!("check_{preset}.safetensors")),
                &model,
                &cfg,
                &self.device,
            )?;
        }
        let shape = cfg.patch_size;
        let [x, y, z] = shape;
        let summary = ModelSummary::new(&cfg);
        let input = |c: usize, dev: &Device| {
            Tensor::<5>::random([1, c, z, y, x], Distribution::Normal(0.0, 1.0), dev)
        };

        if self.wanted("conv_block", "conv_block") {
            let block = model.msfe.t1.encoder[0]
                .convs
                .last()
                .context("stage 0 has no convolution")?;
            let [cout, cin, k, _, _] = block.conv.weight.dims();
            let voxels = (x * y * z) as f64;
            let flops = 2.0 * (cin * cout * k * k * k) as f64 * voxels;
            let spec = Spec {
                id: "conv_block".into(),
                name: "conv_block",
                preset: preset.clone(),
                shape,
                subset: Subset::from_modalities([Modality::T1]),
                subsets: 1,
                flops: Some(flops),
            };
            let xin = input(cin, &self.device);
            self.measure(spec, |_| {
                let out = block.forward(xin.clone());
                sync(out)
            })?;
        }
        if self.wanted("msfe_forward", "msfe_forward") {
            let spec = Spec {
                id: "msfe_forward".into(),
                name: "msfe_forward",
                preset: preset.clone(),
                shape,
                subset: Subset::from_modalities([Modality::T1]),
                subsets: 1,
                flops: Some(2.0 * summary.macs_per_msfe as f64),
            };
            let xin = input(1, &self.device);
            self.measure(spec, |_| {
                let (f, _) = model.msfe.t1.forward(xin.clone());
                sync(f)
            })?;
        }
        for n in 1..=4 {
            let id = format!("forward_m{n}");
            if !self.wanted(&id, "forward") {
                continue;
            }
            let subset = Subset::from_modalities(Modality::ALL.into_iter().take(n));
            let spec = Spec {
                id,
                name: "forward",
                preset: preset.clone(),
                shape,
                subset,
                subsets: 1,
                flops: Some(2.0 * summary.macs_by_modalities[n - 1].macs as f64),
            };
            let inputs: Vec<(Modality, Tensor<5>)> = subset
                .modalities()
                .map(|m| (m, input(1, &self.device)))
                .collect();
            self.measure(spec, |_| {
                let out = model.forward(&inputs)?;
                sync(out.fused)
            })?;
        }
        Ok(())
    }

    /// Forward (4 modalities) + loss + backward + Adam step of `preset` at its patch size.
    fn train_step(&mut self, preset: &str) -> Result<()> {
        let main = preset == self.opts.preset;
        let cfg = self.config(preset, main)?;
        let (_, bytes) = self.model(preset, &cfg)?;
        let ad = self.device.clone().autodiff();
        let mut slot = Some(load_weights(&cfg, bytes, &ad)?);
        let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
        let [x, y, z] = cfg.patch_size;
        ad.seed(self.opts.seed.wrapping_add(1));
        let inputs: Vec<(Modality, Tensor<5>)> = Modality::ALL
            .into_iter()
            .map(|m| {
                let t = Tensor::<5>::random([1, 1, z, y, x], Distribution::Normal(0.0, 1.0), &ad);
                (m, t)
            })
            .collect();
        let classes = Tensor::<4, Int>::from_data(
            TensorData::new(class_pattern([x, y, z]), [1, z, y, x]),
            &ad,
        );
        let summary = ModelSummary::new(&cfg);
        let spec = Spec {
            id: format!("train_step_{preset}"),
            name: "train_step",
            preset: preset.to_string(),
            shape: cfg.patch_size,
            subset: Subset::FULL,
            subsets: 1,
            flops: Some(3.0 * 2.0 * summary.macs_by_modalities[3].macs as f64),
        };
        self.measure(spec, |_| {
            let model = slot
                .take()
                .context("the model is gone after a failed step")?;
            let out = model.forward(&inputs)?;
            let parts = model::loss(&cfg, &out, classes.clone());
            let grads = parts.total.backward();
            let grads = GradientsParams::from_grads(grads, &model);
            slot = Some(optim.step(0.01, model, grads));
            Ok(())
        })
    }

    /// predict, evaluate_shared and evaluate_separate on one phantom case.
    fn case_level(&mut self) -> Result<()> {
        let preset = self.opts.preset.clone();
        let cfg = self.config(&preset, true)?;
        let (model, _) = self.model(&preset, &cfg)?;
        let dims = if self.opts.quick {
            QUICK_CASE
        } else {
            self.opts.case_dims
        };
        let case = phantom_case(self.opts.seed, dims)?;
        let predictor = Predictor::new(model, cfg.clone(), self.device.clone(), 0.5, Tta::OFF)?;
        let crop = case.crop.dims;
        let windows = SlidingWindow::new(cfg.patch_size, 0.5, Tta::OFF)?
            .windows(crop)
            .len();
        let summary = ModelSummary::new(&cfg);
        let forward_macs = |n: usize| summary.macs_by_modalities[n - 1].macs as f64;
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let base = |id: &str, name: &'static str, subsets: usize, flops: f64| Spec {
            id: id.into(),
            name,
            preset: preset.clone(),
            shape: cfg.patch_size,
            subset: Subset::FULL,
            subsets,
            flops: Some(flops),
        };
        let extra = (dims, crop, windows);

        let mut last = None;
        if self.wanted("predict", "predict") {
            let flops = windows as f64 * 2.0 * forward_macs(4);
            let spec = base("predict", "predict", 1, flops);
            self.measure_case(spec, extra, |_| {
                last = Some(predictor.predict_case(&case, Subset::FULL)?);
                Ok(())
            })?;
        }
        if let Some(dir) = &self.opts.export {
            let probs = last.as_ref().map(|p| p.probabilities.as_slice());
            export_case(&dir.join("case.safetensors"), &case, probs)?;
        }
        if self.wanted("evaluate_shared", "evaluate") {
            let flops = windows as f64 * 2.0 * shared_macs(&summary, &all);
            let spec = base("evaluate_shared", "evaluate", all.len(), flops);
            self.measure_case(spec, extra, |_| {
                predictor.predict_subsets(&case, &all)?;
                Ok(())
            })?;
        }
        if self.wanted("evaluate_separate", "evaluate") {
            let macs: f64 = all.iter().map(|s| forward_macs(s.len())).sum();
            let spec = base(
                "evaluate_separate",
                "evaluate",
                all.len(),
                windows as f64 * 2.0 * macs,
            );
            self.measure_case(spec, extra, |_| {
                for s in &all {
                    predictor.predict_case(&case, *s)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn measure_case(
        &mut self,
        spec: Spec,
        (case_dims, crop_dims, windows): ([usize; 3], [usize; 3], usize),
        f: impl FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        self.measure(spec, f)?;
        let m = self.results.last_mut().expect("measure pushed a result");
        m.case_dims = Some(case_dims);
        m.crop_dims = Some(crop_dims);
        m.windows = Some(windows);
        self.emit_last()
    }

    /// Times `f` (`warmup` + `repeats` calls, the argument is the call index) and records
    /// the result; case-level callers add their fields and emit it themselves.
    fn measure(&mut self, spec: Spec, mut f: impl FnMut(usize) -> Result<()>) -> Result<()> {
        let label = format!(
            "{} ({}, {}x{}x{}, subset {})",
            spec.id,
            spec.preset,
            spec.shape[0],
            spec.shape[1],
            spec.shape[2],
            spec.subset.name()
        );
        if !self.opts.quiet {
            eprintln!(
                "bench: {label}: {} warm-up + {} timed runs …",
                self.opts.warmup, self.opts.repeats
            );
        }
        let rss_ok = reset_peak_rss();
        let mut times = Vec::with_capacity(self.opts.repeats);
        for i in 0..self.opts.warmup + self.opts.repeats {
            let t0 = Instant::now();
            f(i).with_context(|| format!("bench {} failed", spec.id))?;
            if !self.opts.device.is_cpu() {
                self.device
                    .sync()
                    .map_err(|e| anyhow::anyhow!("bench {}: the device failed: {e:?}", spec.id))?;
            }
            let dt = t0.elapsed().as_secs_f64();
            if i >= self.opts.warmup {
                times.push(dt);
            }
        }
        let peak = if rss_ok { peak_rss_mb() } else { None };
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        };
        let m = Measurement {
            implementation: "a2fseg".into(),
            id: spec.id,
            name: spec.name.into(),
            preset: spec.preset,
            shape: spec.shape,
            subset: spec.subset.name(),
            subset_size: spec.subset.len(),
            subsets: spec.subsets,
            case_dims: None,
            crop_dims: None,
            windows: None,
            threads: self.threads,
            repeats: self.opts.repeats,
            warmup: self.opts.warmup,
            median_s: median,
            min_s: sorted[0],
            times_s: times,
            gflops: spec.flops.map(|fl| fl / median.max(1e-12) / 1e9),
            flops: spec.flops,
            peak_rss_mb: peak,
            load_avg: load_average(),
            device: self.opts.device.describe()?,
        };
        if !self.opts.quiet {
            let gf = m
                .gflops
                .map_or(String::new(), |g| format!(", {g:.1} GFLOP/s"));
            let rss = m
                .peak_rss_mb
                .map_or(String::new(), |r| format!(", peak RSS {r:.0} MB"));
            let rss = match m.load_avg {
                Some(l) => format!("{rss}, load {l:.1}"),
                None => rss,
            };
            eprintln!(
                "bench: {label}: median {:.3} s, min {:.3} s{gf}{rss}",
                m.median_s, m.min_s
            );
        }
        self.results.push(m);
        if spec.name == "predict" || spec.name == "evaluate" {
            return Ok(());
        }
        self.emit_last()
    }

    /// Prints the last result as a JSON line and rewrites `--out`.
    fn emit_last(&mut self) -> Result<()> {
        let m = self.results.last().expect("a result to emit");
        let line = serde_json::to_string(m).context("cannot serialise a measurement")?;
        println!("{line}");
        self.lines.push_str(&line);
        self.lines.push('\n');
        if let Some(out) = &self.opts.out {
            crate::fsutil::atomic_write_bytes(out, self.lines.as_bytes())
                .with_context(|| format!("--out {}", out.display()))?;
        }
        Ok(())
    }
}

/// The measurement name of an id.
fn name_of(id: &str) -> &'static str {
    NAMES
        .iter()
        .find(|n| id.starts_with(*n))
        .copied()
        .unwrap_or("")
}

/// Waits for `t` by reading it back (and drops it).
fn sync<const D: usize>(t: Tensor<D>) -> Result<()> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))?;
    Ok(())
}

/// MACs of one window of [`Predictor::predict_subsets`] over `subsets`: each needed MSFE
/// once without heads, then per subset its attention convs and the two fusion heads.
pub fn shared_macs(summary: &ModelSummary, subsets: &[Subset]) -> f64 {
    let body: u64 = summary
        .layers
        .iter()
        .filter(|l| l.name.starts_with("msfe.") && l.kind != "head")
        .map(|l| l.macs)
        .sum();
    let attention = summary
        .layers
        .iter()
        .find(|l| l.name.starts_with("fusion.attention."))
        .map_or(0, |l| l.macs);
    let heads: u64 = summary
        .layers
        .iter()
        .filter(|l| l.name.starts_with("fusion.") && l.kind == "head")
        .map(|l| l.macs)
        .sum();
    let union = subsets.iter().fold(0u8, |a, s| a | s.bits());
    let fusions: u64 = subsets
        .iter()
        .map(|s| s.len() as u64 * attention + heads)
        .sum();
    (Subset::from_bits(union).len() as u64 * body + fusions) as f64
}

/// A deterministic class map `[x, y, z]` (values 0..=3, flattened x fastest) with all four
/// classes, so that every loss term is non-trivial.
fn class_pattern(dims: [usize; 3]) -> Vec<i64> {
    let [x, y, z] = dims;
    let mut out = Vec::with_capacity(x * y * z);
    for k in 0..z {
        for j in 0..y {
            for i in 0..x {
                let h = (i * 7 + j * 13 + k * 29) / 5;
                out.push((h % 4) as i64);
            }
        }
    }
    out
}

/// Phantom case 0 of `seed` on `dims`, preprocessed as `predict` does.
pub fn phantom_case(seed: u64, dims: [usize; 3]) -> Result<PreprocessedCase> {
    ensure!(
        dims.iter().all(|&d| d >= 8),
        "the phantom case needs at least 8 voxels per axis, got {dims:?}"
    );
    let p = crate::phantom::generate_case(seed, 0, dims);
    let [t1, t1c, t2, flair] = p.images;
    let loaded = LoadedCase {
        id: p.id,
        geometry: p.geometry,
        images: [Some(t1), Some(t1c), Some(t2), Some(flair)],
        classes: Some(p.classes),
        convention: LabelConvention::Brats,
    };
    preprocess_case(&loaded, &PreprocessSettings::default())
}

/// The model's weights as safetensors bytes (the format of `model.safetensors`).
fn safetensors_bytes(model: &A2fseg, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None).metadata("a2fseg_config", cfg.to_json());
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))?;
    store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))
}

/// Tensors to write: name → (shape, f32 values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn put<const D: usize>(map: &mut Tensors, name: impl Into<String>, t: Tensor<D>) -> Result<()> {
    let dims = t.dims().to_vec();
    let v = t
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))?;
    map.insert(name.into(), (dims, v));
    Ok(())
}

/// Writes `tensors` as an f32 safetensors file (atomically).
fn write_safetensors(path: &Path, tensors: &Tensors) -> Result<()> {
    let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, s, b) in &bytes {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, (*s).clone(), b)
            .map_err(|e| anyhow::anyhow!("tensor {k}: {e}"))?;
        views.push(((*k).clone(), view));
    }
    let data = safetensors::serialize(views, None)
        .map_err(|e| anyhow::anyhow!("cannot serialise {}: {e}", path.display()))?;
    crate::fsutil::atomic_write_bytes(path, &data)
}

/// The shape of the equivalence check: `[3·d, 2·d, 2·d]` with d the network's divisor
/// (small; not cubic, so that an axis mix-up shows; at least 12 voxels at the bottom level,
/// so that its instance norms are not degenerate).
pub fn check_shape(cfg: &ModelConfig) -> [usize; 3] {
    let d = cfg.size_divisor().max(4);
    [3 * d, 2 * d, 2 * d]
}

/// Writes the inputs and outputs of the equivalence check for `model` to `path`:
/// `input.{m}` `[1, 1, D, H, W]` at [`check_shape`], the 4-modality forward's `fused`,
/// `average`, `attention.{m}` and `per_modality.{m}.{l}`, the `0101` (T1c + FLAIR)
/// forward's `fused_0101`, `conv_block.input` / `.output` (`msfe.t1.encoder.0.convs.{last}`),
/// `classes` (as f32) and the loss `loss_total` `[1]`.
pub fn export_check(path: &Path, model: &A2fseg, cfg: &ModelConfig, device: &Device) -> Result<()> {
    let [x, y, z] = check_shape(cfg);
    device.seed(0x5eed);
    let mut t = Tensors::new();
    let inputs: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .into_iter()
        .map(|m| {
            let v = Tensor::<5>::random([1, 1, z, y, x], Distribution::Normal(0.0, 1.0), device);
            (m, v)
        })
        .collect();
    for (m, v) in &inputs {
        put(&mut t, format!("input.{}", m.key()), v.clone())?;
    }
    let out = model.forward(&inputs)?;
    put(&mut t, "fused", out.fused.clone())?;
    put(&mut t, "average", out.average.clone())?;
    for (m, logits) in &out.per_modality {
        for (l, lg) in logits.iter().enumerate() {
            put(&mut t, format!("per_modality.{}.{l}", m.key()), lg.clone())?;
        }
    }
    for (m, a) in out.attention.clone().unwrap_or_default() {
        put(&mut t, format!("attention.{}", m.key()), a)?;
    }
    let classes = class_pattern([x, y, z]);
    let ct = Tensor::<4, Int>::from_data(TensorData::new(classes.clone(), [1, z, y, x]), device);
    let loss = model::loss(cfg, &out, ct);
    put(&mut t, "loss_total", loss.total)?;
    let cf: Vec<f32> = classes.iter().map(|&c| c as f32).collect();
    t.insert("classes".into(), (vec![1, z, y, x], cf));
    let pair: Vec<(Modality, Tensor<5>)> = inputs
        .iter()
        .filter(|(m, _)| matches!(m, Modality::T1c | Modality::Flair))
        .cloned()
        .collect();
    put(&mut t, "fused_0101", model.forward(&pair)?.fused)?;
    let block = model.msfe.t1.encoder[0]
        .convs
        .last()
        .context("stage 0 has no convolution")?;
    let cin = block.conv.weight.dims()[1];
    let xin = Tensor::<5>::random([1, cin, z, y, x], Distribution::Normal(0.0, 1.0), device);
    put(&mut t, "conv_block.input", xin.clone())?;
    put(&mut t, "conv_block.output", block.forward(xin))?;
    write_safetensors(path, &t)
}

/// Writes the preprocessed case (`case.{m}` `[z, y, x]`) and, if given, the predicted
/// probabilities (`predict.probabilities` `[K, z, y, x]`, cropped grid) to `path`.
fn export_case(path: &Path, case: &PreprocessedCase, probs: Option<&[Grid<f32>]>) -> Result<()> {
    let mut t = Tensors::new();
    for m in Modality::ALL {
        let g = case.images[m.index()]
            .as_ref()
            .context("the phantom case lacks a modality")?;
        let [x, y, z] = g.dims();
        t.insert(
            format!("case.{}", m.key()),
            (vec![z, y, x], g.data().to_vec()),
        );
    }
    if let Some(probs) = probs.filter(|p| !p.is_empty()) {
        let first = &probs[0];
        let [x, y, z] = first.dims();
        let v: Vec<f32> = probs
            .iter()
            .flat_map(|g| g.data().iter().copied())
            .collect();
        t.insert(
            "predict.probabilities".into(),
            (vec![probs.len(), z, y, x], v),
        );
    }
    write_safetensors(path, &t)
}

/// Resets the kernel's peak-RSS counter of this process (`echo 5 > /proc/self/clear_refs`);
/// false where that is not possible (not Linux, or no permission).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// This process's peak resident set size in MB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The 1-minute load average of the machine (`/proc/loadavg`, Linux).
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Parses `X,Y,Z` (or `XxYxZ`) into a size.
pub fn parse_dims(s: &str) -> Result<[usize; 3]> {
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    if parts.len() != 3 {
        bail!("expected three sizes X,Y,Z, got '{s}'");
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse()
            .ok()
            .filter(|&v| v > 0)
            .with_context(|| format!("'{p}' in '{s}' is not a positive size"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_parse_and_reject() {
        assert_eq!(parse_dims("240,240,155").unwrap(), [240, 240, 155]);
        assert_eq!(parse_dims("16x8x4").unwrap(), [16, 8, 4]);
        assert!(parse_dims("1,2").is_err());
        assert!(parse_dims("0,2,3").is_err());
        assert!(parse_dims("a,2,3").is_err());
    }

    #[test]
    fn shared_path_counts_each_msfe_once() {
        let cfg = ModelConfig::preset("small").unwrap();
        let s = ModelSummary::new(&cfg);
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let shared = shared_macs(&s, &all);
        let separate: f64 = all
            .iter()
            .map(|x| s.macs_by_modalities[x.len() - 1].macs as f64)
            .sum();
        // 32 MSFE runs against 4: the shared path is far cheaper but not free.
        assert!(shared > 4.0 * (s.macs_per_msfe as f64) * 0.9);
        assert!(separate / shared > 6.0, "{separate} / {shared}");
        let one = shared_macs(&s, &[Subset::FULL]);
        assert!(one < s.macs_by_modalities[3].macs as f64);
    }

    #[test]
    fn class_pattern_has_all_classes() {
        let c = class_pattern([8, 8, 8]);
        for k in 0..4 {
            assert!(c.contains(&k));
        }
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb().unwrap() > 0.0);
        }
    }
}
