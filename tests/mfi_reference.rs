//! MFI's inference, recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json`, must match to 1e-4 for subsets of 1, 2, 3 and 4 modalities.
//!
//! The parameters are random at a trained network's scale
//! ([`common::reference::HeRandomise`]), not the N(0, 0.3) of `Randomise`: with those, MFI's
//! unnormalised paths (the residual sums, the interaction's `F_i + Σ_j R_ij F_j`, the
//! 1×1×1 and transposed convolutions of the up-steps) grow the features to ~3,000 and the
//! logits to ~1,000 at 2 poolings. numpy in float32 then agrees with float64 at every layer
//! to 1.5e-7 to 2.6e-6 relative (measured layer by layer), and the crate's logits agree with
//! float64 to 1e-5 relative; but that is up to 9e-3 absolute on such logits and 6.6e-4 on a
//! sigmoid near 0.5 (numpy's float32 forward: 4e-4), while nearly every other probability
//! is saturated at 0 or 1 and checks nothing.

mod common;

use common::reference::{
    HeRandomise, check_against_numpy, insert_subset_probabilities, saved_model_mapped, to_vec,
};

use a2fseg::Modality;
use a2fseg::model::{Arch, Mfi, ModelConfig, Network, Preset};
use burn::tensor::{Distribution, Tensor};

/// The numpy reference: MFI's inference from the tensor names documented in
/// `a2fseg::model::mfi`, written from the method's definition on the shared numpy layers
/// (`conv`, `up`): every branch runs (a missing modality on a zero image, code 0),
/// interaction blocks after each downsampling and after every decoder level but the last,
/// and the mean of the four branches' logits and the fused logits.
const SCRIPT: &str = r#"
def cv(x, name, stride=1):
    return conv(x, W[name + ".weight"], W[name + ".bias"], stride)

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
        y = cv(np.maximum(group_norm(y, f"{name}.norms.{i}"), 0), f"{name}.convs.{i}")
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
            hdn = lrelu(v @ W[name + ".relation.0.weight"] + W[name + ".relation.0.bias"])
            logits.append(hdn @ W[name + ".relation.1.weight"] + W[name + ".relation.1.bias"])
        r = np.exp(np.array(logits))          # [4 sources, c]
        r = r / r.sum(axis=0, keepdims=True)  # softmax over the sources
        out.append(feats[i] + sum(r[j][:, None, None, None] * feats[j] for j in range(4)))
    return out

def forward(images, code):
    skips = [[] for _ in mods]
    x = []
    for k, m in enumerate(mods):
        pre = f"branches.{m}"
        c0 = res_block(cv(images[k], pre + ".input"), pre + ".encoder.0")
        skips[k].append(c0)
        x.append(cv(c0, pre + ".downs.0", stride=2))
    for s in range(1, P + 1):
        x = interact(x, code, f"down_interactions.{s - 1}")
        for k, m in enumerate(mods):
            c = res_block(x[k], f"branches.{m}.encoder.{s}")
            if s < P:
                skips[k].append(c)
                c = cv(c, f"branches.{m}.downs.{s}", stride=2)
            x[k] = c
    for l in reversed(range(P)):
        for k, m in enumerate(mods):
            pre = f"branches.{m}.ups.{l}"
            u = up(cv(x[k], pre + ".mix"), W[pre + ".up.weight"])
            u = u + W[pre + ".up.bias"][:, None, None, None] + skips[k][l]
            x[k] = res_block(u, f"branches.{m}.decoder.{l}")
        if l >= 1:
            x = interact(x, code, f"up_interactions.{l - 1}")
    outs = [cv(x[k], f"branches.{m}.output") for k, m in enumerate(mods)]
    fused = cv(np.concatenate(outs), "fuse")
    logits = (sum(outs) + fused) / 5
    return 1 / (1 + np.exp(-logits))

for b in range(io["input.t1"].shape[0]):
    for key in io:
        if key.startswith("probs."):
            subset = key[len("probs."):].split("+")
            code = [1.0 if m in subset else 0.0 for m in mods]
            check(key, forward([io["input." + m][b] * code[k] for k, m in enumerate(mods)], code), b)
print(worst, len(checked))
"#;

fn run_case(cfg: ModelConfig, dims: [usize; 5], subsets: &[&[Modality]], seed: u64) {
    let (model, dir, device) = saved_model_mapped::<Mfi>(&cfg, seed, &mut HeRandomise);
    let mut io = common::reference::Named::new();
    let mut encodings = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        encodings.push((m, model.encode(m, x).unwrap()));
    }
    insert_subset_probabilities(&model, &encodings, subsets, &mut io);
    let what = format!("MFI {} poolings", cfg.poolings);
    check_against_numpy(dir.path(), SCRIPT, &io, Modality::ALL.len(), &what);
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
