//! U-HVED's inference, recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json`, must match to 1e-4 for subsets of 1, 2, 3 and 4 modalities.

mod common;

use common::reference::{Randomise, insert_subset_probabilities, run_reference, to_vec};

use std::collections::BTreeMap;

use a2fseg::Modality;
use a2fseg::model::{ModelConfig, Network, Targets, Uhved, save_model};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};

/// The numpy reference: U-HVED's inference from the tensor names documented in
/// `a2fseg::model::uhved`, written from the method's definition (TensorFlow's
/// `resize_bilinear` sampling for the ×2 upsampling: output j reads input j / 2).
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
slope, eps, P, clip = cfg["leaky_slope"], cfg["norm_epsilon"], cfg["poolings"], cfg["logvar_clip"]

def conv(x, w):
    # x [C, D, H, W], w [O, C, k, k, k]; zero padding k // 2, no bias.
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k, k), axis=(1, 2, 3))
    return np.einsum("cdhwijk,ocijk->odhw", win, w)

def leaky(x):
    return np.where(x > 0, x, slope * x)

def norm(x, name):
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * W[name + ".gamma"][:, None, None, None] + W[name + ".beta"][:, None, None, None]

def block(x, prefix):
    for i in range(2):
        x = conv(leaky(norm(x, f"{prefix}.convs.{i}.norm")), W[f"{prefix}.convs.{i}.conv.weight"])
    return x

def pool(x):
    c, d, h, w = x.shape
    return x.reshape(c, d // 2, 2, h // 2, 2, w // 2, 2).max(axis=(2, 4, 6))

def resize_axis(x, axis):
    n = x.shape[axis]
    src = np.arange(2 * n) * (n / (2 * n))
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac

def upsample(x):
    for axis in (1, 2, 3):
        x = resize_axis(x, axis)
    return x

def encode(x, m):
    x = leaky(conv(x, W[f"encoders.{m}.input.weight"]))
    latents = []
    for s in range(P + 1):
        if s > 0:
            x = pool(x)
        x = block(x, f"encoders.{m}.blocks.{s}")
        half = x.shape[0] // 2
        latents.append((x[:half], np.clip(x[half:], -clip, clip)))
    return latents

def fuse(latents):
    out = []
    for s in range(P + 1):
        t = [1 / (np.exp(lv) + 1e-7) for (_, lv) in (l[s] for l in latents)]
        num = sum(mu * ti for (mu, _), ti in zip((l[s] for l in latents), t))
        out.append(num / (sum(t) + 1))
    return out

def segment(z):
    x = z[P]
    for l in reversed(range(P)):
        x = block(np.concatenate([upsample(x), z[l]]), f"segmentation.levels.{l}")
    logits = conv(x, W["segmentation.output.weight"])
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)

worst, checked = 0.0, 0
mods = ["t1", "t1c", "t2", "flair"]
batch = io["input.t1"].shape[0]
for b in range(batch):
    lat = {m: encode(io["input." + m][b], m) for m in mods}
    for m in mods:
        for s in range(P + 1):
            for j, name in enumerate(("mu", "logvar")):
                ref = io[f"latent.{m}.{s}.{name}"][b]
                assert ref.shape == lat[m][s][j].shape
                worst = max(worst, float(np.abs(ref - lat[m][s][j]).max()))
                checked += 1
    for key in io:
        if key.startswith("probs."):
            subset = key[len("probs."):].split("+")
            ours = segment(fuse([lat[m] for m in subset]))
            assert ours.shape == io[key][b].shape, (key, ours.shape)
            worst = max(worst, float(np.abs(ours - io[key][b]).max()))
            checked += 1
print(worst, checked)
"#;

fn run_case(cfg: ModelConfig, dims: [usize; 5], subsets: &[&[Modality]], seed: u64) {
    let device = Device::flex();
    device.seed(seed);
    let model = Uhved::init(&cfg, &device).map(&mut Randomise);
    let dir = common::tempdir();
    save_model(dir.path(), &model, &cfg).unwrap();
    let mut io = BTreeMap::new();
    let mut encodings = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        let e = model.encode(m, x).unwrap();
        for (k, t) in e.iter().enumerate() {
            let name = if k % 2 == 0 { "mu" } else { "logvar" };
            io.insert(
                format!("latent.{}.{}.{name}", m.key(), k / 2),
                to_vec(t.clone()),
            );
        }
        encodings.push((m, e));
    }
    insert_subset_probabilities(&model, &encodings, subsets, &mut io);
    let (worst, checked) = run_reference(dir.path(), SCRIPT, &io);
    eprintln!(
        "U-HVED {} poolings: {checked} outputs, largest difference from numpy {worst:e}",
        cfg.poolings
    );
    // Every latent and every subset's probabilities, for every case of the batch.
    assert_eq!(
        checked,
        dims[0] * (4 * 2 * (cfg.poolings + 1) + subsets.len())
    );
    assert!(worst <= 1e-4, "largest difference from numpy: {worst}");
}

#[test]
fn inference_matches_numpy_reference() {
    if !common::python_has(&["numpy", "safetensors"]) {
        return;
    }
    use Modality::*;
    let tiny = ModelConfig::new()
        .with_arch(a2fseg::model::Arch::Uhved)
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(16)
        .with_targets(Targets::Classes)
        .with_patch_size([4, 4, 4]);
    let subsets: [&[Modality]; 4] = [&[T2], &[T1c, Flair], &[T1, T1c, T2], &[T1, T1c, T2, Flair]];
    // D ≠ H ≠ W to catch axis mix-ups.
    run_case(tiny.clone(), [2, 1, 4, 8, 12], &subsets, 1);
    run_case(
        tiny.with_poolings(3)
            .with_base_features(2)
            .with_patch_size([8, 8, 8]),
        [1, 1, 8, 16, 8],
        &subsets[..2],
        2,
    );
}
