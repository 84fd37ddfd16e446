//! The wgpu path gives the CPU's answers: the `small` preset's network, loaded from the same
//! weights on flex and on a wgpu adapter, agrees on the forward pass (every fusion, several
//! subsets), on training steps (loss, every gradient: see [`assert_same_gradients`]), on
//! `predict` of a small case and on the 15-subset evaluation (probabilities within 1e-4,
//! same labels). A model saved from either device loads on the other. Every other method
//! (`Arch::ALL`) gets the same checks through the method seam.
//!
//! Built only with `--features wgpu`. The adapter is `wgpu:cpu` (Mesa's lavapipe in CI) unless
//! `A2FSEG_TEST_WGPU_DEVICE` names another (e.g. `wgpu` for a real GPU). Every test checks
//! that the device is a wgpu adapter, never flex, and prints its name; with the default
//! `wgpu:cpu` the name must be lavapipe's (`llvmpipe …`), so a silent fallback cannot pass.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;
use std::sync::Mutex;

use a2fseg::infer::{Predictor, Tta};
use a2fseg::labels::LabelConvention;
use a2fseg::model::device::{adapter_name, max_buffer_bytes};
use a2fseg::model::{
    self, A2fseg, A2fsegOutput, Arch, ComputeDevice, Fusion, ModelConfig, Network, Preset,
    TrainInputs, decode_classes, probabilities,
};
use a2fseg::preprocess::{CropBox, PreprocessedCase};
use a2fseg::volume::{Geometry, Grid};
use a2fseg::{Modality, Subset};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::max_diff;

/// Probabilities must agree to this (absolute).
const PROB_TOL: f32 = 1e-4;

/// Gradients must agree to this (relative L2 per tensor; see [`assert_same_gradients`]).
const GRAD_TOL: f64 = 1e-3;

/// Training steps compared per network, each from other inputs: a gradient must agree in
/// most of them (see [`assert_same_gradients`]).
const GRAD_RUNS: u64 = 3;

/// No gradient may differ by more than this (relative L2) in any run: the size of the
/// largest kink effect measured (3.7 %, see [`assert_same_gradients`]) with a margin.
const KINK_TOL: f64 = 0.1;

/// Methods whose training steps are compared with LeakyReLU slope 1 (every activation
/// linear, so the network has no kink), each gradient held to [`GRAD_TOL`] in every step.
/// RFNet and mmFormer put a LeakyReLU right after an instance norm without affine, so at
/// every voxel of every unit the activation reads a standardised value, most dense at the
/// kink, and they have many such units: kinks are hit in about half the steps, not in a
/// few. Measured (16³, `small`, flex against itself with every input ×(1 ± 1.2e-7)): RFNet's
/// gradients moved beyond 1e-3 in 4 of 7 steps (18–82 tensors, whole encoders by 0.2–1 %,
/// 2 % at most), as often as lavapipe's differed from flex (4 of 7), mmFormer's in 2 of 4
/// (encoders by up to 0.5 %). One such step of RFNet traced to a single activation: one
/// voxel of the auxiliary decoder's full-resolution `up` unit, 2.1e-6 after the norm with
/// flex's convolution kernels and −1.3e-6 with Burn's (both on flex), took the other slope
/// and moved that unit's weight gradient by 0.55 %, the level above by 0.9 % and the
/// encoder's by 0.6–0.7 %; every gradient downstream of it, and every gradient of the step
/// with no slope changed, agreed to 5e-6. With slope 1 the wgpu gradients agreed with flex's in
/// every step (RFNet within [`FLOOR`], mmFormer within 3e-4), so the linear networks check
/// every other backward kernel these two use (reflection padding, aligned trilinear
/// upsampling, instance norm without affine, the weighted cross-entropy and Dice, the
/// transformers) at the full rule (the LeakyReLU's is checked in the other methods); their
/// forward, `predict` and evaluation are compared at the preset.
const LINEARISED: [Arch; 2] = [Arch::Rfnet, Arch::Mmformer];

/// … unless they differ by at most this fraction of the network's largest gradient (see
/// [`assert_same_gradients`]).
const FLOOR: f32 = 1e-5;

/// The wgpu device under test, after checking it is a real wgpu adapter.
fn wgpu() -> Device {
    let name = std::env::var("A2FSEG_TEST_WGPU_DEVICE").unwrap_or_else(|_| "wgpu:cpu".into());
    let dev: ComputeDevice = name.parse().unwrap();
    assert!(
        matches!(dev, ComputeDevice::Wgpu(_)),
        "{name} is not a wgpu device"
    );
    let device = dev.open().unwrap();
    let adapter = adapter_name(&device).expect("the device reports no wgpu adapter: not wgpu");
    eprintln!(
        "wgpu adapter: {adapter} (largest buffer {} MiB)",
        max_buffer_bytes(&device).unwrap() >> 20
    );
    if std::env::var("A2FSEG_TEST_WGPU_DEVICE").is_err() {
        assert!(
            adapter.to_lowercase().contains("llvmpipe"),
            "wgpu:cpu should be Mesa's lavapipe (llvmpipe), got '{adapter}'"
        );
    }
    device
}

/// The `small` preset with `fusion` and a 16³ patch (lavapipe is slow).
fn config(fusion: Fusion) -> ModelConfig {
    ModelConfig::preset("small")
        .unwrap()
        .with_fusion(fusion)
        .with_patch_size([16, 16, 16])
}

/// Saves a network of `cfg` drawn on flex from seed 7 to `dir`: the same weights in every
/// run. Burn's device RNG is shared by the tests running in parallel and draws a parameter
/// when it is first used (here: when saved), so seeding, drawing and saving hold one lock.
fn save_seeded<N: Network>(cfg: &ModelConfig, dir: &Path) {
    static INIT: Mutex<()> = Mutex::new(());
    let _drawing = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = Device::flex();
    cpu.seed(7);
    model::save_model(dir, &N::init(cfg, &cpu), cfg).unwrap();
}

/// One seeded network on flex, saved to `dir`, loaded back onto flex and onto `gpu` (so the
/// weights are the same and the flex → wgpu load is exercised). `autodiff` wraps both devices.
fn pair(cfg: &ModelConfig, dir: &Path, gpu: &Device, autodiff: bool) -> (A2fseg, A2fseg) {
    let cpu = Device::flex();
    save_seeded::<A2fseg>(cfg, dir);
    let on = |d: &Device| {
        let d = if autodiff {
            d.clone().autodiff()
        } else {
            d.clone()
        };
        model::load_model::<A2fseg>(dir, &d).unwrap().0
    };
    (on(&cpu), on(gpu))
}

/// `[1, 1, 16, 16, 16]` inputs of `subset`, uniform in [-1, 1), the same values on both
/// devices (the test's own generator: the device RNG is shared by the tests running in
/// parallel).
fn inputs(subset: Subset, seed: u64) -> Vec<(Modality, Vec<f32>)> {
    subset
        .modalities()
        .map(|m| {
            let mut rng = common::Rng(seed * 131 + m.index() as u64);
            let v = (0..16 * 16 * 16)
                .map(|_| rng.uniform(-1.0, 1.0) as f32)
                .collect();
            (m, v)
        })
        .collect()
}

fn on(device: &Device, x: &[(Modality, Vec<f32>)]) -> Vec<(Modality, Tensor<5>)> {
    x.iter()
        .map(|(m, v)| {
            let data = TensorData::new(v.clone(), [1, 1, 16, 16, 16]);
            (*m, Tensor::<5>::from_data(data, device))
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The same labels, except where rounding may decide either way: a channel's probability
/// (`probs`: one slice per channel, same voxel order as the labels) within [`PROB_TOL`] of
/// the 0.5 threshold (regions; random weights put many voxels near 0.5), or two channels
/// within `4 · PROB_TOL` of each other (the argmax of classes; class probabilities derived
/// from two regions carry twice their error).
fn assert_same_labels(what: &str, a: &[u8], b: &[u8], probs: &[&[f32]]) {
    assert_eq!(a.len(), b.len());
    let on_threshold = |v: usize| {
        probs.iter().any(|p| (p[v] - 0.5).abs() < PROB_TOL)
            || probs.iter().enumerate().any(|(i, p)| {
                probs[i + 1..]
                    .iter()
                    .any(|q| (p[v] - q[v]).abs() < 4.0 * PROB_TOL)
            })
    };
    let differ: Vec<usize> = (0..a.len()).filter(|&v| a[v] != b[v]).collect();
    assert!(
        differ.iter().all(|&v| on_threshold(v)),
        "{what}: labels differ away from the threshold"
    );
    assert!(
        differ.len() * 1000 <= a.len(),
        "{what}: {} of {} labels differ",
        differ.len(),
        a.len()
    );
}

/// Probabilities within [`PROB_TOL`] and the same decoded labels (regions: WT, TC, ET).
fn assert_same_probabilities(cfg: &ModelConfig, what: &str, cpu: Tensor<5>, gpu: Tensor<5>) {
    let (pc, pg) = (probabilities(cfg, cpu), probabilities(cfg, gpu));
    let [_, k, z, y, x] = pc.dims();
    let vc = values(pc.clone());
    let d = max_diff(&vc, &values(pg.clone()));
    assert!(d < PROB_TOL, "{what}: probabilities differ by {d}");
    let n = z * y * x;
    let probs: Vec<&[f32]> = (0..k).map(|c| &vc[c * n..(c + 1) * n]).collect();
    let (lc, lg) = (decode_classes(cfg, pc), decode_classes(cfg, pg));
    assert_same_labels(what, &lc, &lg, &probs);
}

/// Every output of the forward pass (fused, average and per-modality heads as
/// probabilities; attention maps) agrees.
fn assert_same_output(cfg: &ModelConfig, what: &str, cpu: A2fsegOutput, gpu: A2fsegOutput) {
    assert_same_probabilities(cfg, &format!("{what} fused"), cpu.fused, gpu.fused);
    assert_same_probabilities(cfg, &format!("{what} average"), cpu.average, gpu.average);
    for ((m, hc), (_, hg)) in cpu.per_modality.into_iter().zip(gpu.per_modality) {
        for (l, (c, g)) in hc.into_iter().zip(hg).enumerate() {
            assert_same_probabilities(cfg, &format!("{what} {m:?} head {l}"), c, g);
        }
    }
    assert_eq!(cpu.attention.is_some(), gpu.attention.is_some());
    for ((m, c), (_, g)) in cpu
        .attention
        .unwrap_or_default()
        .into_iter()
        .zip(gpu.attention.unwrap_or_default())
    {
        let d = max_diff(&values(c), &values(g));
        assert!(d < PROB_TOL, "{what}: attention of {m:?} differs by {d}");
    }
}

const SUBSETS: [&str; 4] = ["1000", "0101", "1110", "1111"];

#[test]
fn forward_matches_flex_for_every_fusion_and_subset() {
    let gpu = wgpu();
    for fusion in [Fusion::Adaptive, Fusion::Average, Fusion::Hemis] {
        let cfg = config(fusion);
        let dir = common::tempdir();
        let (mc, mg) = pair(&cfg, dir.path(), &gpu, false);
        for (i, s) in SUBSETS.iter().enumerate() {
            let subset: Subset = s.parse().unwrap();
            let x = inputs(subset, 100 + i as u64);
            let oc = mc.forward(&on(&Device::flex(), &x)).unwrap();
            let og = mg.forward(&on(&gpu, &x)).unwrap();
            assert_same_output(&cfg, &format!("{fusion:?} {s}"), oc, og);
        }
    }
}

/// Every parameter's gradient, in module order (`None` where a parameter got none).
fn gradients<M: Module>(model: &M, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<Option<Vec<f32>>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push(self.grads.get::<D>(param.id).map(values));
        }
    }
    let mut c = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// Classes 0..=3 of a 16³ patch, in blobs, so every region is present.
fn classes() -> Vec<i64> {
    (0..16 * 16 * 16)
        .map(|v: i64| (v / 7 + v / 256) % 4)
        .collect()
}

#[test]
fn a_training_step_matches_flex() {
    let gpu = wgpu();
    let cfg = config(Fusion::Adaptive);
    let dir = common::tempdir();
    let (mc, mg) = pair(&cfg, dir.path(), &gpu, true);
    let subset: Subset = "1011".parse().unwrap();
    let run = |m: &A2fseg, device: &Device, x: &[(Modality, Vec<f32>)]| {
        let device = device.clone().autodiff();
        let out = m.forward(&on(&device, x)).unwrap();
        let t = Tensor::<4, Int>::from_data(TensorData::new(classes(), [1, 16, 16, 16]), &device);
        let parts = model::loss(&cfg, &out, t);
        let total = parts.total.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(parts.total.backward(), m);
        (
            total,
            [parts.modality, parts.average, parts.adaptive],
            gradients(m, &grads),
        )
    };
    let mut runs = Vec::new();
    for r in 0..GRAD_RUNS {
        let x = inputs(subset, 5 + r);
        let (lc, pc, gc) = run(&mc, &Device::flex(), &x);
        let (lg, pg, gg) = run(&mg, &gpu, &x);
        eprintln!("loss: flex {lc}, wgpu {lg}");
        assert!((lc - lg).abs() <= 1e-5 * lc.abs(), "loss {lc} vs {lg}");
        for (a, b) in pc.iter().zip(&pg) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "loss parts {pc:?} vs {pg:?}"
            );
        }
        runs.push((gc, gg));
    }
    assert_same_gradients("A2FSeg", &runs, false);
}

/// Gradients of the same parameters on flex and on the GPU (`runs`: one pair per training
/// step, each from other inputs) agree; more than half of the parameters have one.
///
/// Float sums run in another order on the GPU, and a weight's gradient sums many terms of both
/// signs (the instance norm's backward subtracts means), so single elements may differ by far
/// more than the rounding of their own size: a tensor agrees when it is within [`GRAD_TOL`]
/// (L2, relative) and no element differs by more than 1 % of the tensor's largest gradient.
/// Gradients that are 0 up to rounding (the bias of a convolution followed by instance norm:
/// the norm subtracts the mean) only have to agree to [`FLOOR`] of the network's largest
/// gradient.
///
/// Each tensor must agree so in most runs, and no run may differ by more than [`KINK_TOL`]:
/// the networks are piecewise linear (leaky ReLU), so where an activation lies within
/// rounding of a kink, a last-bit difference picks the other slope and moves every gradient
/// upstream of it, sometimes a whole encoder's by about 1 %. Flex does the same to itself:
/// with every input changed by one ulp (×(1 ± 1.2e-7)), flex's own gradients moved like this
/// in 2 of 18 steps with uniform inputs as here (A2FSeg, a2fseg-released, U-HVED at this size,
/// 6 inputs each; up to 2.7 % in a whole U-HVED encoder) and in 10 of 42 over every input
/// tried, while lavapipe (256-bit) differed from flex like this in 1 of the 18 (3.7 % at most
/// over 12 differently drawn A2FSeg networks with structured inputs). A backward kernel that
/// is wrong is wrong for every input, so it fails in most runs.
/// `every`: whether each tensor must agree so in every run rather than in most (networks
/// without kinks: [`LINEARISED`]).
fn assert_same_gradients(
    what: &str,
    runs: &[(Vec<Option<Vec<f32>>>, Vec<Option<Vec<f32>>>)],
    every: bool,
) {
    let n = runs[0].0.len();
    let mut agreed = vec![0usize; n];
    let mut worst = vec![0.0f64; n];
    let mut compared = 0;
    for (grads_c, grads_g) in runs {
        assert_eq!(grads_c.len(), n);
        // The largest gradient of the whole network: the scale of "0 up to rounding".
        let global = grads_c
            .iter()
            .flatten()
            .map(|c| max_abs(c))
            .fold(0.0, f32::max);
        assert!(global > 0.0, "{what}: no gradient");
        compared = 0;
        for (i, (c, g)) in grads_c.iter().zip(grads_g).enumerate() {
            assert_eq!(
                c.is_some(),
                g.is_some(),
                "{what}: parameter {i}: gradient on one device only"
            );
            let (Some(c), Some(g)) = (c, g) else {
                agreed[i] += 1;
                continue;
            };
            compared += 1;
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let diff: Vec<f32> = c.iter().zip(g).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(c).max(1e-30);
            let (d, scale) = (max_diff(c, g), max_abs(c));
            if d <= FLOOR * global {
                agreed[i] += 1;
                continue;
            }
            if rel <= GRAD_TOL && d as f64 <= 10.0 * GRAD_TOL * scale as f64 {
                agreed[i] += 1;
            }
            worst[i] = worst[i].max(rel);
            assert!(
                rel <= KINK_TOL,
                "{what}: parameter {i}: gradients differ by {rel:.2e} (L2, relative), {d} at \
                 most (largest {scale}; the network's largest {global})"
            );
        }
    }
    for (i, (&ok, &w)) in agreed.iter().zip(&worst).enumerate() {
        let needed = if every {
            runs.len()
        } else {
            runs.len() / 2 + 1
        };
        assert!(
            ok >= needed,
            "{what}: parameter {i}: gradients agree in {ok} of {} steps (largest relative L2 \
             difference {w:.2e})",
            runs.len()
        );
    }
    let kinks = worst.iter().filter(|w| **w > GRAD_TOL).count();
    eprintln!(
        "{what}: {compared} gradients compared in {} steps, largest relative L2 difference above the rounding floor \
         {:.2e}; {kinks} beyond {GRAD_TOL:e} in one step (a kink)",
        runs.len(),
        worst.iter().fold(0.0f64, |m, w| m.max(*w)),
    );
    // The extractor of a missing modality gets no gradient; the rest do.
    assert!(compared > n / 2, "{what}: only {compared} gradients");
}

/// A preprocessed 20×18×17 case with all four modalities, smooth enough to give the network
/// structure to segment, over a crop inside a larger grid.
fn case() -> PreprocessedCase {
    let dims = [20, 18, 17];
    let n: usize = dims.iter().product();
    let images = std::array::from_fn(|i| {
        let data = (0..n)
            .map(|v| ((v * (i + 3)) as f32 * 0.173).sin() * 2.0 + (v as f32 * 0.01).cos())
            .collect();
        Some(Grid::from_vec(dims, data).unwrap())
    });
    let mut affine = [[0.0; 4]; 4];
    for (a, row) in affine.iter_mut().enumerate() {
        row[a] = 1.0;
    }
    PreprocessedCase {
        id: "parity".into(),
        images,
        classes: None,
        crop: CropBox {
            start: [1, 2, 0],
            dims,
        },
        geometry: Geometry::from_affine([23, 20, 18], affine),
        convention: LabelConvention::Brats,
    }
}

fn assert_same_prediction(
    what: &str,
    a: &a2fseg::infer::Prediction,
    b: &a2fseg::infer::Prediction,
) {
    assert_eq!(a.subset, b.subset);
    for (x, y) in a.probabilities.iter().zip(&b.probabilities) {
        let d = max_diff(x.data(), y.data());
        assert!(d < PROB_TOL, "{what}: probabilities differ by {d}");
    }
    let full = a.probabilities_full();
    let [wt, tc, et] = [0, 1, 2].map(|r| full[r].data());
    // The class probabilities behind the regions (background, NCR, edema, ET), whose argmax
    // a 4-class model's labels are.
    let class_probs: [Vec<f32>; 4] = [
        wt.iter().map(|w| 1.0 - w).collect(),
        tc.iter().zip(et).map(|(t, e)| t - e).collect(),
        wt.iter().zip(tc).map(|(w, t)| w - t).collect(),
        et.to_vec(),
    ];
    let mut probs: Vec<&[f32]> = full.iter().map(|g| g.data()).collect();
    probs.extend(class_probs.iter().map(Vec::as_slice));
    assert_same_labels(what, a.classes.data(), b.classes.data(), &probs);
    for ((m, x), (_, y)) in a.attention.iter().zip(&b.attention) {
        let d = max_diff(x.data(), y.data());
        assert!(d < PROB_TOL, "{what}: attention of {m:?} differs by {d}");
    }
}

#[test]
fn predict_and_the_15_subset_evaluation_match_flex() {
    let gpu = wgpu();
    let cfg = config(Fusion::Adaptive);
    let dir = common::tempdir();
    let (mc, mg) = pair(&cfg, dir.path(), &gpu, false);
    let predictor = |m: A2fseg, d: &Device| {
        let mut p = Predictor::new(m, d.clone(), 0.5, Tta::OFF).unwrap();
        p.keep_attention = true;
        p
    };
    let (pc, pg) = (predictor(mc, &Device::flex()), predictor(mg, &gpu));
    let case = case();
    let full: Subset = "1111".parse().unwrap();
    assert_same_prediction(
        "predict 1111",
        &pc.predict_case(&case, full).unwrap(),
        &pg.predict_case(&case, full).unwrap(),
    );
    let subsets: Vec<Subset> = Subset::all_nonempty().collect();
    assert_eq!(subsets.len(), 15);
    let ec = pc.predict_subsets(&case, &subsets).unwrap();
    let eg = pg.predict_subsets(&case, &subsets).unwrap();
    for ((s, a), (_, b)) in ec.iter().zip(&eg) {
        assert_same_prediction(&format!("evaluate {s}"), a, b);
    }
}

#[test]
fn a_model_saved_on_one_device_loads_on_the_other() {
    let gpu = wgpu();
    let cfg = config(Fusion::Hemis);
    let dir = common::tempdir();
    let (mc, mg) = pair(&cfg, &dir.path().join("from_cpu"), &gpu, false);
    // wgpu → file → flex gives back the very same numbers.
    let back = dir.path().join("from_wgpu");
    model::save_model(&back, &mg, &cfg).unwrap();
    let (mb, _) = model::load_model::<A2fseg>(&back, &Device::flex()).unwrap();
    // Every tensor's bytes are the same (the metadata's key order may differ).
    let tensors = |d: &Path| {
        let bytes = std::fs::read(d.join(model::WEIGHTS_FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let from_cpu = tensors(&dir.path().join("from_cpu"));
    assert!(!from_cpu.is_empty());
    assert_eq!(from_cpu, tensors(&back));
    let x = inputs("0111".parse().unwrap(), 9);
    let a = values(mc.forward(&on(&Device::flex(), &x)).unwrap().fused);
    let b = values(mb.forward(&on(&Device::flex(), &x)).unwrap().fused);
    assert_eq!(a, b);
}

/// Every method (`Arch::ALL`) through the seam, at its `small` preset with 16³ patches: the
/// inference forward (`encode` + `decode`) for several subsets, one training step
/// (`training_loss`: loss, its terms, every gradient; the same noise seed on both devices)
/// and `predict` + the 15-subset evaluation of a case.
#[test]
fn every_method_matches_flex_through_the_seam() {
    let gpu = wgpu();
    for arch in Arch::ALL {
        a2fseg::with_network!(arch, N => method_parity::<N>(arch, &gpu));
    }
}

fn method_parity<N: Network>(arch: Arch, gpu: &Device) {
    let cfg = ModelConfig::of(arch, Preset::Small).with_patch_size([16, 16, 16]);
    let dir = common::tempdir();
    let cpu = Device::flex();
    save_seeded::<N>(&cfg, dir.path());
    let load = |d: &Device| model::load_model::<N>(dir.path(), d).unwrap().0;

    let (mc, mg) = (load(&cpu), load(gpu));
    let logits = |m: &N, d: &Device, x: &[(Modality, Vec<f32>)]| {
        let encodings: Vec<_> = on(d, x)
            .into_iter()
            .map(|(md, t)| (md, m.encode(md, t).unwrap()))
            .collect();
        m.decode(&encodings).unwrap().logits
    };
    for (i, s) in SUBSETS.iter().enumerate() {
        let x = inputs(s.parse().unwrap(), 200 + i as u64);
        let what = format!("{arch} {s}");
        assert_same_probabilities(&cfg, &what, logits(&mc, &cpu, &x), logits(&mg, gpu, &x));
    }

    // The training steps' network: the same one, or its linear variant (see [`LINEARISED`]).
    let linear = LINEARISED.contains(&arch);
    let linear_dir = linear.then(|| {
        let d = common::tempdir();
        save_seeded::<N>(&cfg.clone().with_leaky_slope(1.0), d.path());
        d
    });
    let step_dir = linear_dir.as_ref().map_or(dir.path(), |d| d.path());
    let subset: Subset = "1011".parse().unwrap();
    let loaded = if N::trains_on_all_modalities(&cfg) {
        Subset::FULL
    } else {
        subset
    };
    let step = |d: &Device, x: &[(Modality, Vec<f32>)]| {
        let d = d.clone().autodiff();
        let m = model::load_model::<N>(step_dir, &d).unwrap().0;
        let classes = Tensor::<4, Int>::from_data(TensorData::new(classes(), [1, 16, 16, 16]), &d);
        let step = TrainInputs::new(subset, on(&d, x), classes, 3);
        let loss = m.training_loss(step).unwrap();
        let total = loss.total.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.total.backward(), &m);
        (total, loss.terms, gradients(&m, &grads))
    };
    let mut runs = Vec::new();
    for r in 0..GRAD_RUNS {
        let x = inputs(loaded, 5 + r);
        let ((lc, tc, gc), (lg, tg, gg)) = (step(&cpu, &x), step(gpu, &x));
        eprintln!("{arch} loss: flex {lc}, wgpu {lg}");
        assert!(
            (lc - lg).abs() <= 1e-5 * lc.abs().max(1.0),
            "{arch}: loss {lc} vs {lg}"
        );
        for (a, b) in tc.iter().zip(&tg) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{arch}: loss terms {tc:?} vs {tg:?}"
            );
        }
        runs.push((gc, gg));
    }
    let what = if linear {
        format!("{arch} (LeakyReLU slope 1)")
    } else {
        arch.to_string()
    };
    assert_same_gradients(&what, &runs, linear);

    let predictor = |d: &Device| Predictor::new(load(d), d.clone(), 0.5, Tta::OFF).unwrap();
    let (pc, pg) = (predictor(&cpu), predictor(gpu));
    let case = case();
    let subsets: Vec<Subset> = Subset::all_nonempty().collect();
    let ec = pc.predict_subsets(&case, &subsets).unwrap();
    let eg = pg.predict_subsets(&case, &subsets).unwrap();
    for ((s, a), (_, b)) in ec.iter().zip(&eg) {
        assert_same_prediction(&format!("{arch} evaluate {s}"), a, b);
    }
}
