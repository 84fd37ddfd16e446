//! RFNet's inference, recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json`, must match to 1e-4: every modality's encoder features, the shared
//! auxiliary decoder's output on each modality, and the fused output for subsets of 1, 2,
//! 3 and 4 modalities.

mod common;

use common::reference::{Randomise, insert_subset_probabilities, run_reference, to_vec};

use std::collections::BTreeMap;

use a2fseg::Modality;
use a2fseg::model::{ModelConfig, Network, Preset, Rfnet, save_model};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor};

/// The numpy reference: RFNet from its definition, with the tensor names documented in
/// `a2fseg::model::rfnet`. A missing modality's features are zero at every level.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
slope, eps, P = cfg["leaky_slope"], cfg["norm_epsilon"], cfg["poolings"]
MODS = ["t1", "t1c", "t2", "flair"]

def conv(x, w, b, stride=1):
    # x [C, D, H, W], w [O, C, k, k, k]: reflection padding k // 2 (the official
    # general_conv3d's padding mode), then a strided valid correlation.
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (p, p)), mode="reflect") if p else x
    win = sliding_window_view(xp, (k, k, k), axis=(1, 2, 3))[:, ::stride, ::stride, ::stride]
    return np.einsum("cdhwijk,ocijk->odhw", win, w) + b[:, None, None, None]

def leaky(x):
    return np.where(x > 0, x, slope * x)

def unit(x, name, stride=1):
    # Conv -> InstanceNorm without affine -> LeakyReLU.
    c = name + ".conv.conv"
    y = conv(x, W[c + ".weight"], W[c + ".bias"], stride)
    mu = y.mean(axis=(1, 2, 3), keepdims=True)
    var = y.var(axis=(1, 2, 3), keepdims=True)
    return leaky((y - mu) / np.sqrt(var + eps))

def softmax0(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)

def sigmoid(x):
    return 1 / (1 + np.exp(-x))

def up_axis(x, axis):
    # Linear x2 with aligned corners: output j samples input j (n - 1) / (2n - 1).
    n = x.shape[axis]
    m = 2 * n
    src = np.arange(m) * ((n - 1) / (m - 1))
    lo = np.minimum(np.floor(src).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac

def upsample(x):
    for axis in (1, 2, 3):
        x = up_axis(x, axis)
    return x

def encode(x, m):
    feats = []
    for s in range(P + 1):
        pre = f"encoders.{m}.levels.{s}"
        x = unit(x, pre + ".c1", 1 if s == 0 else 2)
        x = x + unit(unit(x, pre + ".c2"), pre + ".c3")
        feats.append(x)
    return feats

def region_maps(s, ys, dec):
    pre = f"fused.maps.{s}"
    e = np.concatenate(ys)
    for i in range(3):
        e = unit(e, f"{pre}.embed.{i}")
    h = e if dec is None else np.concatenate([dec, e])
    h = unit(h, pre + ".hidden")
    return softmax0(conv(h, W[pre + ".out.weight"], W[pre + ".out.bias"]))

def fusion(s, ys, maps):
    pre = f"fused.fusions.{s}"
    regions = []
    for r in range(4):
        p = maps[r]
        p_mean = p.mean() + 1e-7
        parts = [y * p for y in ys]
        pooled = np.concatenate([part.mean(axis=(1, 2, 3)) / p_mean for part in parts] + [[p_mean]])
        wh, bh = W[f"{pre}.weights.{r}.hidden.weight"], W[f"{pre}.weights.{r}.hidden.bias"]
        wo, bo = W[f"{pre}.weights.{r}.out.weight"], W[f"{pre}.weights.{r}.out.bias"]
        assert wh.shape == (pooled.shape[0], 128), wh.shape
        weights = sigmoid(leaky(pooled @ wh + bh) @ wo + bo)
        regions.append(sum(weights[k] * parts[k] for k in range(4)))
    a = np.concatenate(regions)
    b = np.concatenate(ys)
    for i in range(3):
        a = unit(a, f"{pre}.region.{i}")
        b = unit(b, f"{pre}.shortcut.{i}")
    return np.concatenate([a, b])

def fused(feats):
    # feats[m] = list of levels, or None for a missing modality (zero features).
    like = next(f for f in feats if f is not None)
    ys = [[f[s] if f is not None else np.zeros_like(like[s]) for f in feats] for s in range(P + 1)]
    x = fusion(P, ys[P], region_maps(P, ys[P], None))
    for s in reversed(range(P)):
        pre = f"fused.levels.{s}"
        up = unit(upsample(x), pre + ".up")
        f = fusion(s, ys[s], region_maps(s, ys[s], up))
        x = unit(unit(np.concatenate([f, up]), pre + ".merge"), pre + ".out")
    return softmax0(conv(x, W["fused.seg.weight"], W["fused.seg.bias"]))

def auxiliary(f):
    x = f[P]
    for s in reversed(range(P)):
        pre = f"auxiliary.levels.{s}"
        up = unit(upsample(x), pre + ".up")
        x = unit(unit(np.concatenate([up, f[s]]), pre + ".merge"), pre + ".out")
    return softmax0(conv(x, W["auxiliary.seg.weight"], W["auxiliary.seg.bias"]))

worst, checked = 0.0, 0
def compare(ours, key, b):
    global worst, checked
    ref = io[key][b]
    assert ref.shape == ours.shape, (key, ref.shape, ours.shape)
    worst = max(worst, float(np.abs(ref - ours).max()))
    checked += 1

batch = io["input.t1"].shape[0]
for b in range(batch):
    feats = {m: encode(io["input." + m][b], m) for m in MODS}
    for m in MODS:
        for s in range(P + 1):
            compare(feats[m][s], f"features.{m}.{s}", b)
        compare(auxiliary(feats[m]), f"auxiliary.{m}", b)
    for key in io:
        if key.startswith("probs."):
            subset = key[len("probs."):].split("+")
            compare(fused([feats[m] if m in subset else None for m in MODS]), key, b)
print(worst, checked)
"#;

fn run_case(cfg: ModelConfig, dims: [usize; 5], subsets: &[&[Modality]], seed: u64) {
    let device = Device::flex();
    device.seed(seed);
    let model = Rfnet::init(&cfg, &device).map(&mut Randomise);
    let dir = common::tempdir();
    save_model(dir.path(), &model, &cfg).unwrap();
    let mut io = BTreeMap::new();
    let mut encodings = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        let e = model.encode(m, x).unwrap();
        for (s, t) in e.iter().enumerate() {
            io.insert(format!("features.{}.{s}", m.key()), to_vec(t.clone()));
        }
        io.insert(
            format!("auxiliary.{}", m.key()),
            to_vec(softmax(model.auxiliary.forward(&e), 1)),
        );
        encodings.push((m, e));
    }
    insert_subset_probabilities(&model, &encodings, subsets, &mut io);
    let (worst, checked) = run_reference(dir.path(), SCRIPT, &io);
    eprintln!(
        "RFNet {} poolings: {checked} outputs, largest difference from numpy {worst:e}",
        cfg.poolings
    );
    // Every level's features and the auxiliary output of every modality, and every
    // subset's probabilities, for every case of the batch.
    assert_eq!(checked, dims[0] * (4 * (cfg.poolings + 2) + subsets.len()));
    assert!(worst <= 1e-4, "largest difference from numpy: {worst}");
}

#[test]
fn inference_matches_numpy_reference() {
    if !common::python_has(&["numpy", "safetensors"]) {
        return;
    }
    use Modality::*;
    let tiny = Rfnet::preset(Preset::Small)
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(16)
        .with_patch_size([8, 8, 8]);
    let subsets: [&[Modality]; 4] = [&[T2], &[T1c, Flair], &[T1, T1c, T2], &[T1, T1c, T2, Flair]];
    // D ≠ H ≠ W to catch axis mix-ups; the deepest level is 2 × 3 × 4.
    run_case(tiny.clone(), [2, 1, 8, 12, 16], &subsets, 1);
    run_case(
        tiny.with_poolings(1).with_patch_size([4, 4, 4]),
        [1, 1, 4, 6, 8],
        &subsets[..2],
        2,
    );
}
