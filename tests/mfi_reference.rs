//! MFI's inference, recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json`, must match to 1e-4 for subsets of 1, 2, 3 and 4 modalities.
//!
//! The parameters are random at a trained network's scale ([`HeRandomise`]), not the
//! N(0, 0.3) of `common::reference::Randomise`: with those, MFI's unnormalised paths (the
//! residual sums, the interaction's `F_i + Σ_j R_ij F_j`, the 1×1×1 and transposed
//! convolutions of the up-steps) grow the features to ~3,000 and the logits to ~1,000 at 2
//! poolings. Every layer still agrees with float64 numpy to f32's relative precision
//! (1e-7 to 2e-6, measured layer by layer), but that is ~3e-3 on such logits and up to
//! 6.6e-4 on a sigmoid near 0.5 (numpy itself in float32 differs from float64 by 4e-4),
//! while nearly every other probability is saturated at 0 or 1 and checks nothing.

mod common;

use common::reference::{to_vec, write_tensors};

use std::collections::BTreeMap;

use a2fseg::Modality;
use a2fseg::model::{Arch, Mfi, ModelConfig, Network, Preset, probabilities, save_model};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// Replaces every weight (rank ≥ 2) by N(0, 2 / fan) values, `fan` = its elements per
/// index of the first axis (a convolution's fan-in; within a factor of 4 of the fan-in of
/// the transposed convolutions and linear layers), and every rank-1 parameter (biases,
/// norms' scale and shift) by N(0, 0.3): the logits stay within ~15, so the sigmoids are
/// not saturated and f32 rounding stays ~1e-6.
struct HeRandomise;

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

/// The MFI of `cfg` with [`HeRandomise`]d parameters (device seeded with `seed`), saved
/// into a fresh folder.
fn saved_random_model(cfg: &ModelConfig, seed: u64) -> (Mfi, tempfile::TempDir, Device) {
    let device = Device::flex();
    device.seed(seed);
    let model = Mfi::init(cfg, &device).map(&mut HeRandomise);
    let dir = common::tempdir();
    save_model(dir.path(), &model, cfg).unwrap();
    (model, dir, device)
}

/// The numpy reference: MFI's inference from the tensor names documented in
/// `a2fseg::model::mfi`, written from the method's definition: every branch runs (a
/// missing modality on a zero image, code 0), interaction blocks after each downsampling
/// and after every decoder level but the last, and the mean of the four branches' logits
/// and the fused logits.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
P, eps, slope = cfg["poolings"], cfg["norm_epsilon"], cfg["leaky_slope"]
MODS = ["t1", "t1c", "t2", "flair"]

def conv(x, name, stride=1):
    # x [C, D, H, W]; weight [O, C, k, k, k]; zero padding k // 2; bias [O].
    w, b = W[name + ".weight"], W[name + ".bias"]
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k, k), axis=(1, 2, 3))
    win = win[:, ::stride, ::stride, ::stride]
    return np.einsum("cdhwijk,ocijk->odhw", win, w) + b[:, None, None, None]

def up_conv(x, name):
    # Transposed conv, kernel 2, stride 2: output voxel (2d + i, 2h + j, 2w + l).
    w, b = W[name + ".weight"], W[name + ".bias"]   # [C, O, 2, 2, 2]
    c, d, h, wd = x.shape
    out = np.zeros((w.shape[1], 2 * d, 2 * h, 2 * wd))
    for i in range(2):
        for j in range(2):
            for l in range(2):
                out[:, i::2, j::2, l::2] = np.einsum("cdhw,co->odhw", x, w[:, :, i, j, l])
    return out + b[:, None, None, None]

def group_norm(x, name):
    c = x.shape[0]
    g = max(c // 8, 1)
    y = x.reshape(g, -1)
    y = (y - y.mean(axis=1, keepdims=True)) / np.sqrt(y.var(axis=1, keepdims=True) + eps)
    y = y.reshape(x.shape)
    return y * W[name + ".gamma"][:, None, None, None] + W[name + ".beta"][:, None, None, None]

def res_block(x, name):
    y = x
    for i in range(2):
        y = conv(np.maximum(group_norm(y, f"{name}.norms.{i}"), 0), f"{name}.convs.{i}")
    return x + y

def interact(feats, code, name):
    # feats: 4 arrays [c, D, H, W]; code: 4 availabilities.
    c = feats[0].shape[0]
    g = [f.mean(axis=(1, 2, 3)) for f in feats]
    out = []
    for i in range(4):
        logits = []
        for j in range(4):
            v = np.concatenate([g[j], g[i], np.full(2 * c, code[j])])
            hdn = v @ W[name + ".relation.0.weight"] + W[name + ".relation.0.bias"]
            hdn = np.where(hdn > 0, hdn, slope * hdn)
            logits.append(hdn @ W[name + ".relation.1.weight"] + W[name + ".relation.1.bias"])
        r = np.exp(np.array(logits))          # [4 sources, c]
        r = r / r.sum(axis=0, keepdims=True)  # softmax over the sources
        out.append(feats[i] + sum(r[j][:, None, None, None] * feats[j] for j in range(4)))
    return out

def forward(images, code):
    skips = [[] for _ in MODS]
    x = []
    for n, m in enumerate(MODS):
        pre = f"branches.{m}"
        c0 = res_block(conv(images[n], pre + ".input"), pre + ".encoder.0")
        skips[n].append(c0)
        x.append(conv(c0, pre + ".downs.0", stride=2))
    for s in range(1, P + 1):
        x = interact(x, code, f"down_interactions.{s - 1}")
        for n, m in enumerate(MODS):
            c = res_block(x[n], f"branches.{m}.encoder.{s}")
            if s < P:
                skips[n].append(c)
                c = conv(c, f"branches.{m}.downs.{s}", stride=2)
            x[n] = c
    for l in reversed(range(P)):
        for n, m in enumerate(MODS):
            pre = f"branches.{m}"
            u = up_conv(conv(x[n], f"{pre}.ups.{l}.mix"), f"{pre}.ups.{l}.up") + skips[n][l]
            x[n] = res_block(u, f"{pre}.decoder.{l}")
        if l >= 1:
            x = interact(x, code, f"up_interactions.{l - 1}")
    outs = [conv(x[n], f"branches.{m}.output") for n, m in enumerate(MODS)]
    fused = conv(np.concatenate(outs), "fuse")
    logits = (sum(outs) + fused) / 5
    return 1 / (1 + np.exp(-logits))

worst, checked = 0.0, 0
batch = io["input.t1"].shape[0]
for b in range(batch):
    for key in io:
        if key.startswith("probs."):
            subset = key[len("probs."):].split("+")
            code = [1.0 if m in subset else 0.0 for m in MODS]
            images = [io["input." + m][b] * code[n] for n, m in enumerate(MODS)]
            ours = forward(images, code)
            assert ours.shape == io[key][b].shape, (key, ours.shape)
            worst = max(worst, float(np.abs(ours - io[key][b]).max()))
            checked += 1
print(worst, checked)
"#;

fn run_case(cfg: ModelConfig, dims: [usize; 5], subsets: &[&[Modality]], seed: u64) {
    let (model, dir, device) = saved_random_model(&cfg, seed);
    let mut io = BTreeMap::new();
    let mut encodings = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        encodings.push((m, model.encode(m, x).unwrap()));
    }
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
            to_vec(probabilities(&cfg, logits)),
        );
    }
    write_tensors(&dir.path().join("io.safetensors"), &io);
    let printed = common::run_python(SCRIPT, &[dir.path().to_str().unwrap()]);
    let mut fields = printed.split_whitespace();
    let worst: f64 = fields.next().unwrap().parse().unwrap();
    let checked: usize = fields.next().unwrap().parse().unwrap();
    eprintln!(
        "MFI {} poolings: {checked} outputs, largest difference from numpy {worst:e}",
        cfg.poolings
    );
    assert_eq!(checked, dims[0] * subsets.len());
    assert!(worst <= 1e-4, "largest difference from numpy: {worst}");
}

#[test]
fn inference_matches_numpy_reference() {
    if !common::python_has(&["numpy", "safetensors"]) {
        return;
    }
    use Modality::*;
    let tiny = ModelConfig::of(Arch::Mfi, Preset::Small)
        .with_poolings(2)
        .with_base_features(8)
        .with_max_features(32)
        .with_patch_size([4, 4, 4]);
    let subsets: [&[Modality]; 4] = [&[T2], &[T1c, Flair], &[T1, T1c, T2], &[T1, T1c, T2, Flair]];
    // D ≠ H ≠ W to catch axis mix-ups.
    run_case(tiny.clone(), [2, 1, 4, 8, 12], &subsets, 1);
    run_case(
        tiny.with_poolings(3)
            .with_max_features(16)
            .with_patch_size([8, 8, 8]),
        [1, 1, 8, 16, 8],
        &subsets[..2],
        2,
    );
}
