//! mmFormer's inference, recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json` (multi-head attention written out as softmax(QKᵀ/√d)V per head, SciPy's
//! `zoom(order=1)` for the aligned-corner upsampling, NumPy's reflect padding), must match
//! to 1e-4 for several subsets and both token layouts.

mod common;

use common::reference::{
    Named, insert_subset_probabilities, run_reference, saved_random_model, to_vec,
};

use a2fseg::Modality;
use a2fseg::model::mmformer::{MmformerConfig, TokenLayout};
use a2fseg::model::{Arch, Mmformer, ModelConfig, Network, Targets, probabilities};
use burn::tensor::{Distribution, Tensor};

/// The numpy reference, from the method's description and the tensor names documented in
/// `a2fseg::model::mmformer`; every tensor is one sample, `[C, D, H, W]` or `[tokens, E]`.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import zoom
from scipy.special import erf
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
P, slope, eps = cfg["poolings"], cfg["leaky_slope"], cfg["norm_epsilon"]
T = cfg["mmformer"]
E, HEADS = T["embedding"], T["heads"]
mods = ["t1", "t1c", "t2", "flair"]

def conv(x, name, reflect=False, stride=1):
    w, b = W[name + ".weight"], W[name + ".bias"]
    k = w.shape[2]
    p = k // 2
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p), (p, p)), mode="reflect" if reflect else "constant")
    win = sliding_window_view(x, (k, k, k), axis=(1, 2, 3))[:, ::stride, ::stride, ::stride]
    return np.einsum("cdhwijk,ocijk->odhw", win, w) + b[:, None, None, None]

def act(x):
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return np.where(y > 0, y, slope * y)

def pre(x, name, stride=1):
    # InstanceNorm without affine, LeakyReLU, then the reflect-padded convolution.
    return conv(act(x), name + ".conv.conv", reflect=True, stride=stride)

def encoder(x, m):
    levels = []
    for l in range(P + 1):
        p = f"encoders.{m}.levels.{l}"
        if l == 0:
            # The first convolution reads the image itself: no norm or activation before it.
            x = conv(x, p + ".first.conv.conv", reflect=True)
        else:
            x = pre(x, p + ".first", stride=2)
        x = x + pre(pre(x, p + ".residual.0"), p + ".residual.1")
        levels.append(x)
    return levels

def layer_norm(x, name):
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * W[name + ".gamma"] + W[name + ".beta"]

def dense(x, name):
    # Burn stores a linear layer's weight as [in, out].
    y = x @ W[name + ".weight"]
    return y + W[name + ".bias"] if name + ".bias" in W else y

def attention(x, name):
    n, d = x.shape[0], E // HEADS
    split = lambda t: t.reshape(n, HEADS, d).transpose(1, 0, 2)
    q, k, v = (split(dense(x, f"{name}.{w}")) for w in ("query", "key", "value"))
    s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
    a = np.exp(s - s.max(axis=-1, keepdims=True))
    a = a / a.sum(axis=-1, keepdims=True)
    o = (a @ v).transpose(1, 0, 2).reshape(n, E)
    return dense(o, name + ".output")

def transformer(x, pos, name):
    for j in range(T["depth"]):
        p = f"{name}.layers.{j}"
        x = x + pos
        x = x + attention(layer_norm(x, p + ".attention_norm"), p + ".attention")
        h = dense(layer_norm(x, p + ".mlp_norm"), p + ".mlp_in")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = x + dense(h, p + ".mlp_out")
    return x

def to_tokens(v):
    return v.reshape(v.shape[0], -1).T

def intra(levels, m):
    t = to_tokens(conv(levels[P], f"tokenizers.{m}"))
    out = transformer(t, W[f"positions.{m}"][0], f"intra.{m}")
    return out.T.reshape((E,) + levels[P].shape[1:])

def fusion(x, l):
    p = f"decoder.fusions.{l}"
    x = pre(x, p + ".reduce")
    x = conv(act(x), p + ".conv")
    return pre(x, p + ".expand")

def upsample(x):
    return zoom(x, (1, 2, 2, 2), order=1)

def softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)

def segment(feats, avail):
    # feats[m] = (encoder levels, intra-modal volume); missing modalities read as zeros.
    pick = lambda m, t: t if m in avail else np.zeros_like(t)
    skips = [np.concatenate([pick(m, feats[m][0][l]) for m in mods]) for l in range(P)]
    grid = feats[mods[0]][1].shape[1:]
    N = int(np.prod(grid))
    tokens = np.concatenate([to_tokens(pick(m, feats[m][1])) for m in mods])
    pos = np.concatenate([W[f"positions.{m}"][0] for m in mods])
    out = transformer(tokens, pos, "inter")
    if T["token_layout"] == "intended":
        per_voxel = np.concatenate([out[k * N:(k + 1) * N] for k in range(4)], axis=1)
    else:
        per_voxel = out.reshape(N, 4 * E)
    de = fusion(conv(per_voxel.T.reshape((4 * E,) + grid), "detokenizer"), P)
    for l in reversed(range(P)):
        p = f"decoder.levels.{l}"
        up = pre(upsample(de), p + ".up")
        de = pre(pre(np.concatenate([fusion(skips[l], l), up]), p + ".merge"), p + ".out")
    return softmax(conv(de, "decoder.output"))

def auxiliary(levels):
    de = levels[P]
    for l in reversed(range(P)):
        p = f"auxiliary.levels.{l}"
        up = pre(upsample(de), p + ".up")
        de = pre(pre(np.concatenate([up, levels[l]]), p + ".merge"), p + ".out")
    return softmax(conv(de, "auxiliary.output"))

worst, checked = 0.0, 0
def check(ref, ours):
    global worst, checked
    assert ref.shape == ours.shape, (ref.shape, ours.shape)
    worst = max(worst, float((np.abs(ref - ours) / (1 + np.abs(ref))).max()))
    checked += 1

for b in range(io["input.t1"].shape[0]):
    feats = {}
    for m in mods:
        levels = encoder(io["input." + m][b], m)
        feats[m] = (levels, intra(levels, m))
        for l in range(P):
            check(io[f"encoding.{m}.{l}"][b], levels[l])
        check(io[f"encoding.{m}.{P}"][b], feats[m][1])
    check(io["auxiliary.t2"][b], auxiliary(feats["t2"][0]))
    for key in io:
        if key.startswith("probs."):
            check(io[key][b], segment(feats, key[len("probs."):].split("+")))
print(worst, checked)
"#;

fn run_case(cfg: ModelConfig, batch: usize, subsets: &[&[Modality]], seed: u64) {
    let (model, dir, device) = saved_random_model::<Mmformer>(&cfg, seed);
    let p = cfg.patch_size;
    let dims = [batch, 1, p[2], p[1], p[0]];
    let mut io = Named::new();
    let mut encodings = Vec::new();
    let mut images = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        let e = model.encode(m, x.clone()).unwrap();
        for (l, t) in e.iter().enumerate() {
            io.insert(format!("encoding.{}.{l}", m.key()), to_vec(t.clone()));
        }
        encodings.push((m, e));
        images.push((m, x));
    }
    // The auxiliary decoder through the training forward (no dropout without a step).
    let mask = Tensor::<2>::ones([batch, 4], &device);
    let train = model.forward_train(&images, mask, None).unwrap();
    let (_, aux) = train
        .auxiliary
        .into_iter()
        .find(|(m, _)| *m == Modality::T2)
        .unwrap();
    io.insert("auxiliary.t2".into(), to_vec(probabilities(&cfg, aux)));
    insert_subset_probabilities(&model, &encodings, subsets, &mut io);
    let (worst, checked) = run_reference(dir.path(), SCRIPT, &io);
    eprintln!(
        "mmFormer ({} layout): {checked} outputs, largest relative difference from numpy {worst:e}",
        cfg.mmformer.token_layout
    );
    // Every encoding, the auxiliary output and every subset's probabilities, per sample.
    assert_eq!(
        checked,
        batch * (4 * (cfg.poolings + 1) + 1 + subsets.len())
    );
    assert!(worst <= 1e-4, "largest difference from numpy: {worst}");
}

#[test]
fn inference_matches_numpy_reference() {
    if !common::python_has(&["numpy", "scipy", "safetensors"]) {
        return;
    }
    use Modality::*;
    // D ≠ H ≠ W (8, 12, 16 voxels; a 2×3×4 bottleneck of 24 tokens) to catch axis mix-ups.
    let tiny = ModelConfig::new()
        .with_arch(Arch::Mmformer)
        .with_poolings(2)
        .with_base_features(2)
        .with_max_features(8)
        .with_leaky_slope(0.2)
        .with_targets(Targets::Classes)
        .with_patch_size([16, 12, 8])
        .with_mmformer(
            MmformerConfig::new()
                .with_embedding(8)
                .with_heads(2)
                .with_mlp(12)
                .with_depth(2),
        );
    let subsets: [&[Modality]; 4] = [&[T2], &[T1c, Flair], &[T1, T1c, T2], &[T1, T1c, T2, Flair]];
    run_case(tiny.clone(), 2, &subsets, 1);
    let released = tiny
        .mmformer
        .clone()
        .with_token_layout(TokenLayout::Released);
    run_case(tiny.with_mmformer(released), 1, &subsets[..3], 2);
}
