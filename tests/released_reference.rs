//! The inference forward pass of fixed tiny `a2fseg-released` networks (encode each modality,
//! decode the subset), recomputed independently in numpy from the saved `model.safetensors`
//! and `config.json`, must match to 1e-4 for subsets of 1, 2, 3 and 4 modalities and for the
//! `post` variant; so must the training forward pass's deep-supervision logits.

mod common;

use a2fseg::Modality;
use a2fseg::model::{A2fsegReleased, Arch, ModelConfig, Network, ReleasedVariant, Targets};
use common::reference::{
    check_against_numpy, random_inputs, saved_random_model, tiny_config, to_vec,
};

/// The released network's fusion after [`common::reference::NUMPY_LAYERS`]: the fusion
/// decoder on the modality means, the attention, the head.
const SCRIPT: &str = r#"
present = [m for m in mods if "input." + m in io]
batch = io["input." + present[0]].shape[0]
for b in range(batch):
    pyr = {}
    for m in present:
        pyr[m], logits = msfe(io["input." + m][b], m)
        for l, lg in enumerate(logits):
            check(f"per_modality.{m}.{l}", lg, b)
    means = {l: sum(pyr[m][l] for m in present) / len(present) for l in range(P + 1)}
    post = cfg["released_variant"] == "post"
    if post:
        ref = means[0]
    else:
        fd = decoder(means[P], means, "fusion_decoder")
        for l, lg in enumerate(heads(fd, "fusion_decoder")):
            check(f"fusion_decoder.{l}", lg, b)
        ref = fd[0]
    scores = []
    for m in present:
        a = block(np.concatenate([pyr[m][0], ref]), f"attention.{m}.block")
        a = conv(a, W[f"attention.{m}.conv.weight"], W[f"attention.{m}.conv.bias"])
        scores.append(1 / (1 + np.exp(-a)) if post else lrelu(a))
    scores = np.stack(scores)
    e = np.exp(scores - scores.max(axis=0, keepdims=True))
    att = e / e.sum(axis=0, keepdims=True)
    fused = sum(att[i] * pyr[m][0] for i, m in enumerate(present))
    for i, m in enumerate(present):
        check("attention." + m, att[i], b)
    h = block(np.concatenate([fused, ref]), "head.block")
    check("logits", conv(h, W["head.output.weight"]), b)
print(worst, len(checked))
"#;

fn run_case(cfg: ModelConfig, present: &[Modality], seed: u64) {
    let (model, dir, device) = saved_random_model::<A2fsegReleased>(&cfg, seed);
    let (inputs, mut io) = random_inputs(present, &device);
    // Inference: encode each modality alone, then decode the subset.
    let encodings: Vec<_> = inputs
        .iter()
        .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
        .collect();
    let fused = model.decode(&encodings).unwrap();
    io.insert("logits".into(), to_vec(fused.logits));
    for (m, a) in fused.attention.iter().flatten() {
        io.insert(format!("attention.{}", m.key()), to_vec(a.clone()));
    }
    // Training: every deep-supervision head.
    let out = model.forward(&inputs).unwrap();
    for (m, logits) in &out.per_modality {
        for (l, t) in logits.iter().enumerate() {
            io.insert(format!("per_modality.{}.{l}", m.key()), to_vec(t.clone()));
        }
    }
    for (l, t) in out.fusion_decoder.iter().enumerate() {
        io.insert(format!("fusion_decoder.{l}"), to_vec(t.clone()));
    }
    let what = format!(
        "{}, {} modalities, targets {}",
        cfg.released_variant,
        present.len(),
        cfg.targets
    );
    check_against_numpy(dir.path(), SCRIPT, &io, inputs.len(), &what);
}

fn tiny() -> ModelConfig {
    tiny_config().with_arch(Arch::A2fsegReleased)
}

#[test]
fn forward_matches_numpy_reference() {
    if !common::python_has(&["numpy", "safetensors"]) {
        return;
    }
    run_case(tiny(), &[Modality::T2], 1);
    run_case(
        tiny()
            .with_targets(Targets::Classes)
            .with_deep_supervision(false)
            .with_leaky_slope(0.2),
        &[Modality::T1, Modality::Flair],
        2,
    );
    run_case(
        tiny().with_convs_per_stage(1),
        &[Modality::T1c, Modality::T2, Modality::Flair],
        3,
    );
    run_case(tiny(), &Modality::ALL, 4);
    run_case(
        tiny().with_released_variant(ReleasedVariant::Post),
        &[Modality::T1, Modality::T1c, Modality::Flair],
        5,
    );
}
