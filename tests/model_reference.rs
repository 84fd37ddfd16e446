//! The forward pass of fixed tiny models, recomputed independently in numpy from the saved
//! `model.safetensors` and `config.json`, must match to 1e-4.

mod common;

use a2fseg::Modality;
use a2fseg::model::{A2fseg, Fusion, ModelConfig, Targets};
use common::reference::{
    check_against_numpy, random_inputs, saved_random_model, tiny_config, to_vec,
};

/// The forward pass of A2FSeg after [`common::reference::NUMPY_LAYERS`].
const SCRIPT: &str = r#"
present = [m for m in mods if "input." + m in io]
batch = io["input." + present[0]].shape[0]
for b in range(batch):
    feats = {}
    for m in present:
        levels, logits = msfe(io["input." + m][b], m)
        feats[m] = levels[0]
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
    let (model, dir, device) = saved_random_model::<A2fseg>(&cfg, seed);
    let (inputs, mut io) = random_inputs(present, &device);
    let out = model.forward(&inputs).unwrap();
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
    let what = format!("fusion {}, targets {}", cfg.fusion, cfg.targets);
    check_against_numpy(dir.path(), SCRIPT, &io, inputs.len(), &what);
}

fn tiny() -> ModelConfig {
    tiny_config()
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
