//! Timings of the fast kernels (`crate::kernels`) against flex's own, and of the training
//! step ([`crate::train::step`]) with them on and off:
//! `cargo test --release --lib bench::kernels -- --ignored --nocapture`.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::process::process_cpu_seconds;
use crate::kernels::{cpu, fast_kernels_enabled, set_fast_kernels, set_winograd, winograd_enabled};
use crate::modality::Modality;
use crate::model::Preset;
use crate::train::step::{build_optimizer, stable_param_ids};
use crate::train::{self, TrainConfig};

/// One measurement: median and minimum seconds over the repeats.
#[derive(Debug, Clone)]
pub struct Timing {
    /// What was timed, e.g. `conv3d 32->32 k3 64^3 weight-grad fast`.
    pub name: String,
    /// Median seconds.
    pub median: f64,
    /// Minimum seconds.
    pub min: f64,
    /// Median CPU seconds of the process (all threads; Linux only): on a shared machine this
    /// is steadier than wall time.
    pub cpu: Option<f64>,
    /// Floating-point operations of one run, if known.
    pub flops: Option<f64>,
}

impl Timing {
    /// GFLOP/s at the median time, if the FLOPs are known.
    pub fn gflops(&self) -> Option<f64> {
        self.flops.map(|f| f / self.median / 1e9)
    }
}

/// Runs `f` once to warm up, then `repeats` times; median and minimum seconds.
fn time(name: String, flops: Option<f64>, repeats: usize, mut f: impl FnMut()) -> Timing {
    f();
    let mut secs = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..repeats.max(1) {
        let c0 = process_cpu_seconds();
        let t = Instant::now();
        f();
        secs.push(t.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c0, process_cpu_seconds()) {
            cpu.push(c1 - c0);
        }
    }
    secs.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Timing {
        name,
        median: secs[secs.len() / 2],
        min: secs[0],
        cpu: (!cpu.is_empty()).then(|| cpu[cpu.len() / 2]),
        flops,
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Conv3d `c → c`, k3, s1, p1 on `[1, c, n, n, n]`: forward, input gradient and weight
/// gradient, flex's kernels (`flex`) against this module's (`fast`: Winograd where it
/// applies) and, for forward and input gradient, its im2col + GEMM path (`im2col`).
pub fn conv_timings(n: usize, c: usize, repeats: usize) -> Vec<Timing> {
    let xd = [1, c, n, n, n];
    let wd = [c, c, 3, 3, 3];
    let x = random(xd.iter().product(), 1);
    let w = random(wd.iter().product(), 2);
    let dy = random(xd.iter().product(), 3);
    let flops = Some(2.0 * (c * c * 27) as f64 * (n * n * n) as f64);
    let tag = format!("conv3d {c}->{c} k3 {n}^3");
    let ft = |v: &[f32], d: [usize; 5]| FlexTensor::from_data(TensorData::new(v.to_vec(), d));
    let (fx, fw, fdy) = (ft(&x, xd), ft(&w, wd), ft(&dy, xd));
    let opts = || ConvOptions::new([1; 3], [1; 3], [1; 3], 1);
    vec![
        time(format!("{tag} forward flex"), flops, repeats, || {
            let _ = Flex::conv3d(fx.clone(), fw.clone(), None, opts());
        }),
        time(format!("{tag} forward im2col"), flops, repeats, || {
            let _ = cpu::conv3d_forward_im2col(&x, xd, &w, wd, None, [1; 3], [1; 3]);
        }),
        time(format!("{tag} forward fast"), flops, repeats, || {
            let _ = cpu::conv3d_forward(&x, xd, &w, wd, None, [1; 3], [1; 3]);
        }),
        time(format!("{tag} input-grad flex"), flops, repeats, || {
            let _ = Flex::conv3d_x_backward(fx.clone(), fw.clone(), fdy.clone(), opts());
        }),
        time(format!("{tag} input-grad im2col"), flops, repeats, || {
            let previous = winograd_enabled();
            set_winograd(false);
            let _ = cpu::conv3d_input_grad(&dy, xd, &w, wd, [1; 3], [1; 3], [n; 3]);
            set_winograd(previous);
        }),
        time(format!("{tag} input-grad fast"), flops, repeats, || {
            let _ = cpu::conv3d_input_grad(&dy, xd, &w, wd, [1; 3], [1; 3], [n; 3]);
        }),
        time(format!("{tag} weight-grad flex"), flops, repeats, || {
            let _ = Flex::conv3d_weight_backward(fx.clone(), fw.clone(), fdy.clone(), opts());
        }),
        time(format!("{tag} weight-grad fast"), flops, repeats, || {
            let _ = cpu::conv3d_weight_grad(&x, xd, &dy, xd, [3; 3], [1; 3], [1; 3]);
        }),
    ]
}

/// Seconds of one training step ([`train::step`]: forward of all 4 modalities, loss,
/// backward, clipping, optimiser step) of the `small` training preset with the model `cfg`
/// on a `[1, 1, n, n, n]` patch on `Device::flex().autodiff()`, with the fast kernels on or
/// off (Burn's conv).
pub fn training_step_timing(
    cfg: &crate::model::ModelConfig,
    n: usize,
    fast: bool,
    repeats: usize,
) -> Result<Timing> {
    let device = Device::flex().autodiff();
    let mut train_cfg = TrainConfig::preset(Preset::Small);
    train_cfg.model = cfg.clone().with_patch_size([n; 3]);
    let mut slot = Some(stable_param_ids(train_cfg.model.init(&device)));
    let mut optim = build_optimizer(&train_cfg);
    let inputs: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| {
            let x = Tensor::random([1, 1, n, n, n], Distribution::Normal(0.0, 1.0), &device);
            (m, x)
        })
        .collect();
    let classes = Tensor::<4, Int>::random([1, n, n, n], Distribution::Uniform(0.0, 4.0), &device);
    let previous = fast_kernels_enabled();
    set_fast_kernels(fast);
    let mut failure = None;
    let timing = time(
        format!("training step {n}^3 {}", if fast { "fast" } else { "flex" }),
        None,
        repeats,
        || {
            let Some(model) = slot.take() else {
                return;
            };
            let step_inputs = crate::model::TrainInputs::new(
                crate::modality::Subset::FULL,
                inputs.clone(),
                classes.clone(),
                0,
            );
            match train::step(model, &mut optim, step_inputs, &train_cfg, train_cfg.lr) {
                Ok((model, _)) => slot = Some(model),
                Err(e) => failure = Some(e),
            }
        },
    );
    set_fast_kernels(previous);
    match failure {
        Some(e) => Err(e),
        None => slot.map(|_| timing).context("the training step failed"),
    }
}

#[test]
#[ignore = "timing: run with --release --ignored --nocapture"]
fn timing() {
    let print = |t: &Timing| {
        let g = t
            .gflops()
            .map(|g| format!(" {g:6.1} GFLOP/s"))
            .unwrap_or_default();
        let cpu = t
            .cpu
            .map(|c| format!("  cpu {:8.1} ms", c * 1e3))
            .unwrap_or_default();
        println!(
            "{:<44} median {:8.1} ms  min {:8.1} ms{cpu}{g}",
            t.name,
            t.median * 1e3,
            t.min * 1e3
        );
    };
    println!("threads: {}", rayon::current_num_threads());
    for (n, c) in [(64, 32), (128, 32), (64, 64), (32, 128)] {
        for t in conv_timings(n, c, 3) {
            print(&t);
        }
    }
    let cfg = crate::model::ModelConfig::preset("small").unwrap();
    for fast in [false, true] {
        print(&training_step_timing(&cfg, 32, fast, 5).unwrap());
    }
}
