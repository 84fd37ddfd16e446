//! The bench's runner: which measurements run, timing each (`warmup` untimed runs, then
//! `repeats` timed ones), and the JSON lines on stdout and in `--out`.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor};

use super::cpu::CpuInfo;
use super::export::safetensors_bytes;
use super::process::{load_average, peak_rss_mb, reset_peak_rss};
use super::{BenchOptions, CASE_LEVEL, Measurement, all_ids, case_id, name_of, quick_shape};
use crate::modality::Subset;
use crate::model::{self, A2fseg, Arch, ModelConfig};
use crate::phantom::PhantomGeometry;

/// A benchmark run: its options, its device and the measurements so far.
pub(super) struct Bench<'a> {
    pub opts: &'a BenchOptions,
    pub device: Device,
    threads: usize,
    /// The CPU, detected once and written into every line.
    cpu: CpuInfo,
    pub results: Vec<Measurement>,
    lines: String,
}

/// What one measurement is, before it is timed.
pub(super) struct Spec {
    /// Unique id (`forward_m4`).
    pub id: String,
    /// Measurement kind (see `NAMES`).
    pub name: &'static str,
    /// Model preset.
    pub preset: String,
    /// Network input size `[x, y, z]`.
    pub shape: [usize; 3],
    /// Modalities fed to the network.
    pub subset: Subset,
    /// Subsets predicted per run.
    pub subsets: usize,
    /// Counted FLOPs of one run.
    pub flops: Option<f64>,
}

impl<'a> Bench<'a> {
    pub fn new(opts: &'a BenchOptions) -> Result<Self> {
        Ok(Bench {
            opts,
            device: opts.device.open()?,
            threads: rayon::current_num_threads(),
            cpu: CpuInfo::detect(),
            results: Vec::new(),
            lines: String::new(),
        })
    }

    pub fn wanted(&self, id: &str, name: &str) -> bool {
        self.opts.only.is_empty() || self.opts.only.iter().any(|o| o == id || o == name)
    }

    /// A2FSeg's configuration of `preset` with its patch size set to the measured shape.
    pub fn config(&self, preset: &str, main: bool) -> Result<ModelConfig> {
        self.config_of(Arch::A2fseg, preset, main)
    }

    /// The configuration of method `arch` at `preset`, its patch size set to the measured
    /// shape: `--shape` for the main preset (`main`), else the preset's patch (tiny with
    /// `--quick`); checked against the device's buffer limit.
    pub fn config_of(&self, arch: Arch, preset: &str, main: bool) -> Result<ModelConfig> {
        let cfg = ModelConfig::named_preset(arch, preset)?;
        let shape = if self.opts.quick {
            quick_shape(&cfg)
        } else if main {
            self.opts.shape.unwrap_or(cfg.patch_size)
        } else {
            cfg.patch_size
        };
        cfg.check_size(shape)
            .with_context(|| format!("--shape does not fit the {preset} preset of {arch}"))?;
        let cfg = cfg.with_patch_size(shape);
        model::device::check_model_fits(&cfg, 1, &self.device)?;
        Ok(cfg)
    }

    /// A seeded, randomly initialised model of `cfg`, exported to `models/{preset}` if asked.
    pub fn model(&self, preset: &str, cfg: &ModelConfig) -> Result<(A2fseg, Vec<u8>)> {
        self.device.seed(self.opts.seed);
        let model = cfg.init(&self.device);
        let bytes = safetensors_bytes(&model, cfg)?;
        if let Some(dir) = &self.opts.export {
            let mdir = dir.join("models").join(preset);
            model::save_model(&mdir, &model, cfg)?;
        }
        Ok((model, bytes))
    }

    pub fn run_all(&mut self) -> Result<()> {
        let ids = all_ids(&self.opts.train_presets, &self.opts.case_geometries, &[]);
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
        for g in self.opts.case_geometries.clone() {
            if CASE_LEVEL
                .iter()
                .any(|base| self.wanted(&case_id(base, g), name_of(base)))
            {
                self.case_level(g)?;
            }
        }
        for arch in self.opts.archs.clone() {
            self.method(arch)?;
        }
        Ok(())
    }

    pub fn measure_case(
        &mut self,
        spec: Spec,
        (geometry, case_dims, crop_dims, windows): (PhantomGeometry, [usize; 3], [usize; 3], usize),
        f: impl FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        self.measure(spec, f)?;
        let m = self.results.last_mut().expect("measure pushed a result");
        m.case_geometry = Some(geometry);
        m.case_dims = Some(case_dims);
        m.crop_dims = Some(crop_dims);
        m.windows = Some(windows);
        self.emit_last()
    }

    /// Times `f` (`warmup` + `repeats` calls, the argument is the call index) and records
    /// the result; case-level callers add their fields and emit it themselves.
    pub fn measure(&mut self, spec: Spec, mut f: impl FnMut(usize) -> Result<()>) -> Result<()> {
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
            case_geometry: None,
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
            cpu: self.cpu.clone(),
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

/// Waits for `t` by reading it back (and drops it).
pub(super) fn sync<const D: usize>(t: Tensor<D>) -> Result<()> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))?;
    Ok(())
}
