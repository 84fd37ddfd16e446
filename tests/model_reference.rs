//! The forward pass of fixed tiny models, recomputed independently in numpy from the saved
//! `model.safetensors` and `config.json`, must match to 1e-4.

mod common;

use common::reference::{Randomise, to_vec, write_tensors};

use std::collections::BTreeMap;

use a2fseg::Modality;
use a2fseg::model::{Fusion, ModelConfig, Targets, save_model};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};

const SCRIPT: &str = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file

folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(folder + "/model.safetensors").items()}
io = {k: v.astype(np.float64) for k, v in load_file(folder + "/io.safetensors").items()}
mods = ["t1", "t1c", "t2", "flair"]
slope, eps = cfg["leaky_slope"], cfg["norm_epsilon"]

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
    return np.where(y > 0, y, slope * y)

def msfe(x, m):
    P, n = cfg["poolings"], cfg["convs_per_stage"]
    skips = []
    for s in range(P + 1):
        for i in range(n):
            x = block(x, f"msfe.{m}.encoder.{s}.convs.{i}", 2 if (s > 0 and i == 0) else 1)
        if s < P:
            skips.append(x)
    levels = {}
    for l in reversed(range(P)):
        x = np.concatenate([up(x, W[f"msfe.{m}.decoder.{l}.up.weight"]), skips[l]], axis=0)
        for i in range(n):
            x = block(x, f"msfe.{m}.decoder.{l}.convs.{i}")
        levels[l] = x
    nheads = P if cfg["deep_supervision"] else 1
    logits = [conv(levels[l], W[f"msfe.{m}.heads.{l}.weight"]) for l in range(nheads)]
    return levels[0], logits

worst = 0.0
checked = set()
def check(name, ours, b):
    global worst
    checked.add(name)
    ref = io[name][b]
    assert ref.shape == ours.shape, (name, ref.shape, ours.shape)
    worst = max(worst, float(np.abs(ref - ours).max()))

present = [m for m in mods if "input." + m in io]
batch = io["input." + present[0]].shape[0]
for b in range(batch):
    feats = {}
    for m in present:
        f, logits = msfe(io["input." + m][b], m)
        feats[m] = f
        for l, lg in enumerate(logits):
            check(f"per_modality.{m}.{l}", lg, b)
    fs = [feats[m] for m in present]
    mean = sum(fs) / len(fs)
    check("average", conv(mean, W["fusion.average_head.weight"]), b)
    if cfg["fusion"] == "adaptive":
        e = {m: np.exp(1 / (1 + np.exp(-conv(np.concatenate([mean, feats[m]]),
                                               W[f"fusion.attention.{m}.weight"],
                                               W[f"fusion.attention.{m}.bias"]))))
             for m in present}
        z = sum(e.values())
        fused = sum((e[m] / z) * feats[m] for m in present)
        for m in present:
            check("attention." + m, e[m] / z, b)
        check("fused", conv(fused, W["fusion.fused_head.weight"]), b)
    elif cfg["fusion"] == "hemis":
        var = sum((f - mean) ** 2 for f in fs) / len(fs)
        check("fused", conv(np.concatenate([mean, var]), W["fusion.fused_head.weight"]), b)
    else:
        check("fused", conv(mean, W["fusion.average_head.weight"]), b)
print(worst, len(checked))
"#;

fn run_case(cfg: ModelConfig, present: &[Modality], seed: u64) {
    let device = Device::flex();
    device.seed(seed);
    let model = cfg.init(&device).map(&mut Randomise);
    let dir = common::tempdir();
    save_model(dir.path(), &model, &cfg).unwrap();
    // Input [B, 1, D, H, W] with D ≠ H ≠ W to catch axis mix-ups.
    let inputs: Vec<(Modality, Tensor<5>)> = present
        .iter()
        .map(|&m| {
            (
                m,
                Tensor::random([2, 1, 4, 8, 12], Distribution::Normal(0.0, 1.0), &device),
            )
        })
        .collect();
    let out = model.forward(&inputs).unwrap();
    let mut io = BTreeMap::new();
    for (m, x) in &inputs {
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
    }
    for (m, logits) in &out.per_modality {
        for (l, t) in logits.iter().enumerate() {
            io.insert(format!("per_modality.{}.{l}", m.key()), to_vec(t.clone()));
        }
    }
    io.insert("average".into(), to_vec(out.average.clone()));
    io.insert("fused".into(), to_vec(out.fused.clone()));
    for (m, a) in out.attention.iter().flatten() {
        io.insert(format!("attention.{}", m.key()), to_vec(a.clone()));
    }
    write_tensors(&dir.path().join("io.safetensors"), &io);
    let printed = common::run_python(SCRIPT, &[dir.path().to_str().unwrap()]);
    let mut fields = printed.split_whitespace();
    let worst: f64 = fields.next().unwrap().parse().unwrap();
    let checked: usize = fields.next().unwrap().parse().unwrap();
    eprintln!(
        "fusion {}, targets {}: {checked} outputs, largest difference from numpy {worst:e}",
        cfg.fusion, cfg.targets
    );
    // Every output the network produced was recomputed (all but the inputs).
    assert_eq!(checked, io.len() - inputs.len());
    assert!(worst < 1e-4, "largest difference from numpy: {worst}");
}

fn tiny() -> ModelConfig {
    ModelConfig::new()
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(6)
        .with_patch_size([4, 4, 4])
}

#[test]
fn forward_matches_numpy_reference() {
    if !common::python_has(&["numpy", "safetensors"]) {
        return;
    }
    run_case(tiny(), &[Modality::T1c, Modality::T2, Modality::Flair], 1);
    run_case(
        tiny()
            .with_attention_channels(4)
            .with_attention_kernel(1)
            .with_targets(Targets::Classes)
            .with_deep_supervision(false),
        &[Modality::T1, Modality::Flair],
        2,
    );
    run_case(
        tiny().with_fusion(Fusion::Hemis).with_convs_per_stage(1),
        &[Modality::T1, Modality::T1c],
        3,
    );
    run_case(tiny().with_fusion(Fusion::Average), &[Modality::T2], 4);
}
