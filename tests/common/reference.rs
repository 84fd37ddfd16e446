//! Helpers of the reference tests: randomised parameters, safetensors files of the network's
//! inputs and outputs, and the numpy layers every reference computation shares.

use std::collections::BTreeMap;
use std::path::Path;

use a2fseg::Modality;
use a2fseg::model::{Encoding, ModelConfig, Network, probabilities, save_model};
use burn::module::{ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// Replaces every parameter by N(0, 0.3) values, so that the norms' affine parameters and
/// the biases are non-trivial too.
pub struct Randomise;

impl ModuleMapper for Randomise {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            let device = t.device();
            Tensor::random(shape, Distribution::Normal(0.0, 0.3), &device)
        })
    }
}

/// The shape and f32 values of `t`.
pub fn to_vec(t: Tensor<5>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().convert::<f32>().try_into_vec().unwrap())
}

/// Writes `tensors` (f32) as a safetensors file.
pub fn write_tensors(path: &Path, tensors: &Named) {
    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| {
            (
                k,
                (s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, (s, b))| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            ((*k).clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A tiny network for reference computations: 2 poolings, features 4-6-6, 4³ patches.
pub fn tiny_config() -> ModelConfig {
    ModelConfig::new()
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(6)
        .with_patch_size([4, 4, 4])
}

/// Replaces every weight (rank ≥ 2) by N(0, 2 / fan) values, `fan` = its elements per
/// index of the first axis (a convolution's fan-in; within a factor of 4 of the fan-in of
/// a transposed convolution or a linear layer), and every rank-1 parameter (biases, norms'
/// scale and shift) by N(0, 0.3), as [`Randomise`] does. For deep networks whose paths are
/// not all normalised: with [`Randomise`]'s N(0, 0.3) weights their features grow by about
/// `0.3·√fan` per convolution, and f32's relative rounding then exceeds 1e-4 in absolute
/// terms while most sigmoids saturate; these keep the activations near unit scale.
pub struct HeRandomise;

impl ModuleMapper for HeRandomise {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            let std = if D >= 2 {
                (2.0 * shape[0] as f64 / shape.num_elements() as f64).sqrt()
            } else {
                0.3
            };
            Tensor::random(shape, Distribution::Normal(0.0, std), &t.device())
        })
    }
}

/// The network of `cfg` with [`Randomise`]d parameters (device seeded with `seed`), saved
/// by [`save_model`] into a fresh folder; returns the network, the folder and the device.
pub fn saved_random_model<N: Network>(
    cfg: &ModelConfig,
    seed: u64,
) -> (N, tempfile::TempDir, Device) {
    saved_model_mapped(cfg, seed, &mut Randomise)
}

/// [`saved_random_model`] with the parameters drawn by `mapper`.
pub fn saved_model_mapped<N: Network>(
    cfg: &ModelConfig,
    seed: u64,
    mapper: &mut impl ModuleMapper,
) -> (N, tempfile::TempDir, Device) {
    let device = Device::flex();
    device.seed(seed);
    let model = N::init(cfg, &device).map(mapper);
    let dir = super::tempdir();
    save_model(dir.path(), &model, cfg).unwrap();
    (model, dir, device)
}

/// Decodes each of `subsets` (canonical order) from its modalities' `encodings` and stores
/// the probabilities as `probs.{m}+{m}…` (modality keys) in `io`.
pub fn insert_subset_probabilities<N: Network>(
    model: &N,
    encodings: &[(Modality, Encoding)],
    subsets: &[&[Modality]],
    io: &mut Named,
) {
    for subset in subsets {
        let chosen: Vec<_> = encodings
            .iter()
            .filter(|(m, _)| subset.contains(m))
            .cloned()
            .collect();
        let logits = model.decode(&chosen).unwrap().logits;
        let keys: Vec<&str> = subset.iter().map(|m| m.key()).collect();
        io.insert(
            format!("probs.{}", keys.join("+")),
            to_vec(probabilities(model.config(), logits)),
        );
    }
}

/// Tensors by name, as [`write_tensors`] writes them.
pub type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Random images `[2, 1, 4, 8, 12]` (D ≠ H ≠ W to catch axis mix-ups) of the modalities
/// `present`, and the same as named tensors `input.{m}`.
pub fn random_inputs(present: &[Modality], device: &Device) -> (Vec<(Modality, Tensor<5>)>, Named) {
    let inputs: Vec<(Modality, Tensor<5>)> = present
        .iter()
        .map(|&m| {
            let x = Tensor::random([2, 1, 4, 8, 12], Distribution::Normal(0.0, 1.0), device);
            (m, x)
        })
        .collect();
    let io = inputs
        .iter()
        .map(|(m, x)| (format!("input.{}", m.key()), to_vec(x.clone())))
        .collect();
    (inputs, io)
}

/// Writes `io` (inputs and outputs) as `io.safetensors` into the model folder `dir`, runs
/// [`NUMPY_LAYERS`] followed by `script` on it, and asserts that numpy recomputed every
/// output (all but the `inputs` input tensors) to within 1e-4. `what` names the case in the
/// printed line.
pub fn check_against_numpy(dir: &Path, script: &str, io: &Named, inputs: usize, what: &str) {
    let (worst, checked) = run_reference(dir, &format!("{NUMPY_LAYERS}{script}"), io);
    eprintln!("{what}: {checked} outputs, largest difference from numpy {worst:e}");
    // Every output the network produced was recomputed (all but the inputs).
    assert_eq!(checked, io.len() - inputs);
    assert!(worst < 1e-4, "largest difference from numpy: {worst}");
}

/// Writes `io` as `io.safetensors` into the model folder `dir` and runs the Python `script`
/// on the folder, which prints the largest difference it found and how many outputs it
/// checked; returns both.
pub fn run_reference(dir: &Path, script: &str, io: &Named) -> (f64, usize) {
    write_tensors(&dir.join("io.safetensors"), io);
    let printed = super::run_python(script, &[dir.to_str().unwrap()]);
    let mut fields = printed.split_whitespace();
    let worst: f64 = fields.next().unwrap().parse().unwrap();
    let checked: usize = fields.next().unwrap().parse().unwrap();
    (worst, checked)
}

/// The numpy layers of the nnU-Net building blocks, written from their definitions (not
/// from the crate): reads the model folder `sys.argv[1]` (`config.json`,
/// `model.safetensors`, and `io.safetensors` with the network's inputs and outputs) into
/// `cfg`, `W` and `io`, and defines `conv`, `up`, `block`, `decoder` and `msfe` on one
/// sample `[C, D, H, W]` in float64. A script appends its own forward pass and checks.
pub const NUMPY_LAYERS: &str = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
mods = ["t1", "t1c", "t2", "flair"]
slope, eps = cfg["leaky_slope"], cfg["norm_epsilon"]
P, n = cfg["poolings"], cfg["convs_per_stage"]
nheads = P if cfg["deep_supervision"] else 1

def lrelu(y):
    return np.where(y > 0, y, slope * y)

def conv(x, w, b=None, stride=1):
    # x [C, D, H, W], w [O, C, k, k, k]; zero padding k // 2 (cross-correlation).
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k, k), axis=(1, 2, 3))
    win = win[:, ::stride, ::stride, ::stride]
    y = np.einsum("cdhwijk,ocijk->odhw", win, w)
    if b is not None:
        y = y + b[:, None, None, None]
    return y

def up(x, w):
    # ConvTranspose3d k2 s2: w [C, O, 2, 2, 2].
    c, d, h, ww = x.shape
    y = np.einsum("cdhw,coijk->odihjwk", x, w)
    return y.reshape(w.shape[1], 2 * d, 2 * h, 2 * ww)

def block(x, name, stride=1):
    y = conv(x, W[name + ".conv.weight"], W[name + ".conv.bias"], stride)
    mu = y.mean(axis=(1, 2, 3), keepdims=True)
    var = y.var(axis=(1, 2, 3), keepdims=True)
    y = (y - mu) / np.sqrt(var + eps)
    y = y * W[name + ".norm.gamma"][:, None, None, None] + W[name + ".norm.beta"][:, None, None, None]
    return lrelu(y)

def decoder(x, skips, prefix):
    # U-Net decoder from the deepest tensor x: skips[l] is concatenated after the upsampled
    # tensor at level l. Returns the stage outputs {l: [f(l), ...]}.
    levels = {}
    for l in reversed(range(P)):
        x = np.concatenate([up(x, W[f"{prefix}.decoder.{l}.up.weight"]), skips[l]], axis=0)
        for i in range(n):
            x = block(x, f"{prefix}.decoder.{l}.convs.{i}")
        levels[l] = x
    return levels

def heads(levels, prefix):
    return [conv(levels[l], W[f"{prefix}.heads.{l}.weight"]) for l in range(nheads)]

def msfe(x, m):
    # Returns {l: decoder level l, P: bottleneck} and the head logits.
    skips = []
    for s in range(P + 1):
        for i in range(n):
            x = block(x, f"msfe.{m}.encoder.{s}.convs.{i}", 2 if (s > 0 and i == 0) else 1)
        if s < P:
            skips.append(x)
    levels = decoder(x, skips, f"msfe.{m}")
    levels[P] = x
    return levels, heads(levels, f"msfe.{m}")

worst = 0.0
checked = set()
def check(name, ours, b):
    global worst
    checked.add(name)
    ref = io[name][b]
    assert ref.shape == ours.shape, (name, ref.shape, ours.shape)
    worst = max(worst, float(np.abs(ref - ours).max()))
"#;
