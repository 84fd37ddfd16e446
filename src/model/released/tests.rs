//! Tests of the released network on tiny shapes.

use burn::module::Module;
use burn::tensor::{Distribution, Int, Tensor};

use super::*;
use crate::model::loss::head_loss;
use crate::model::tests::{Poison, device, grad_count, image, max_abs_diff, values};

/// A tiny network: 2 poolings, features 4-8-8, 8³ inputs.
fn tiny() -> ModelConfig {
    ModelConfig::new()
        .with_arch(Arch::A2fsegReleased)
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(8)
        .with_patch_size([8, 8, 8])
}

fn classes(d: &Device, b: usize) -> Tensor<4, Int> {
    Tensor::<4, Int>::random([b, 8, 8, 8], Distribution::Uniform(0.0, 4.0), d)
}

#[test]
fn counts_match_the_built_network_and_the_released_code() {
    for (preset, variant) in [
        (Preset::Small, ReleasedVariant::Channel),
        (Preset::Small, ReleasedVariant::Post),
        (Preset::Paper, ReleasedVariant::Channel),
    ] {
        let cfg = <A2fsegReleased as Network>::preset(preset).with_released_variant(variant);
        let parts = ReleasedParameters::of(&cfg);
        let s = describe(&cfg);
        let model = A2fsegReleased::new(&cfg, &device());
        assert_eq!(s.parameters_total, model.num_params(), "{preset}");
        assert_eq!(parts.total(), model.num_params(), "{preset}");
        assert_eq!(parts.msfes, model.msfe.num_params(), "{preset}");
        assert_eq!(parts.fusion_decoder, model.fusion_decoder.num_params());
        assert_eq!(parts.attention, model.attention.num_params());
        assert_eq!(parts.head, model.head.num_params());
        assert_eq!(s.parameters_per_msfe, model.msfe.t1.num_params());
    }
    // The released code's model class at its native size, measured by building it.
    let paper = ReleasedParameters::of(&<A2fsegReleased as Network>::preset(Preset::Paper));
    assert_eq!(
        paper,
        ReleasedParameters {
            msfes: 124_782_336,
            fusion_decoder: 17_170_464,
            attention: 332_288,
            head: 55_488,
        }
    );
    assert_eq!(paper.total(), 142_340_576);
    let post = <A2fsegReleased as Network>::preset(Preset::Paper)
        .with_released_variant(ReleasedVariant::Post);
    assert_eq!(ReleasedParameters::of(&post).total(), 125_170_112);
    let s = describe(&<A2fsegReleased as Network>::preset(Preset::Paper));
    // Four MSFEs and four attention modules cost more than the shared decoder and head.
    assert!(s.macs_by_modalities[3].macs > 4 * s.macs_per_msfe);
    assert!(s.macs_by_modalities[0].macs > s.macs_per_msfe);
}

#[test]
fn absent_modalities_are_not_run() {
    let d = device();
    let inputs: Vec<(Modality, Tensor<5>)> = [Modality::Flair, Modality::T1c]
        .into_iter()
        .map(|m| (m, image(&d, [8, 8, 8])))
        .collect();
    // Poison the MSFEs and attention modules of the absent T1 and T2: the outputs stay
    // finite only if they are never run.
    let mut model = A2fsegReleased::new(&tiny(), &d);
    model.attention.t1 = model.attention.t1.clone().map(&mut Poison);
    model.msfe.t1 = model.msfe.t1.clone().map(&mut Poison);
    model.attention.t2 = model.attention.t2.clone().map(&mut Poison);
    model.msfe.t2 = model.msfe.t2.clone().map(&mut Poison);
    let out = model.forward(&inputs).unwrap();
    let mods: Vec<Modality> = out.per_modality.iter().map(|(m, _)| *m).collect();
    assert_eq!(mods, vec![Modality::T1c, Modality::Flair]);
    assert_eq!(out.fusion_decoder.len(), 2);
    assert_eq!(out.fusion_decoder[1].dims(), [1, 3, 4, 4, 4]);
    assert_eq!(out.logits.dims(), [1, 3, 8, 8, 8]);
    assert!(values(out.logits).iter().all(|v| v.is_finite()));
    for t in out.fusion_decoder {
        assert!(values(t).iter().all(|v| v.is_finite()));
    }
    // Control: a poisoned modality that is given does poison the output.
    let out = model
        .forward(&[(Modality::T1, image(&d, [8, 8, 8]))])
        .unwrap();
    assert!(values(out.logits).iter().any(|v| v.is_nan()));
}

#[test]
fn a_missing_modalitys_input_changes_no_output() {
    let d = device();
    let model = A2fsegReleased::new(&tiny(), &d);
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&d, [8, 8, 8])))
        .collect();
    let subset = [Modality::T1c, Modality::Flair];
    let decode = |images: &[(Modality, Tensor<5>)]| {
        let encodings: Vec<(Modality, Encoding)> = images
            .iter()
            .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
            .filter(|(m, _)| subset.contains(m))
            .collect();
        model.decode(&encodings).unwrap()
    };
    let before = decode(&images);
    // Other images for the two missing modalities.
    let mut changed = images.clone();
    for (m, x) in changed.iter_mut() {
        if !subset.contains(m) {
            *x = x.clone().mul_scalar(-3.0).add_scalar(1.0);
        }
    }
    let after = decode(&changed);
    assert_eq!(values(before.logits.clone()), values(after.logits));
    // Encode + decode is the training forward pass on the subset alone.
    let only: Vec<_> = images
        .iter()
        .filter(|(m, _)| subset.contains(m))
        .cloned()
        .collect();
    let forward = model.forward(&only).unwrap();
    let diff = max_abs_diff(&values(before.logits), &values(forward.logits));
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn attention_is_a_softmax_over_the_available_modalities() {
    let d = device();
    let model = A2fsegReleased::new(&tiny(), &d);
    let images: Vec<(Modality, Tensor<5>)> = [Modality::T1, Modality::T2, Modality::Flair]
        .iter()
        .map(|&m| (m, image(&d, [8, 8, 8])))
        .collect();
    let out = model.forward(&images).unwrap();
    assert_eq!(out.attention.len(), 3);
    let total = out
        .attention
        .iter()
        .map(|(_, w)| w.clone())
        .reduce(|a, b| a + b)
        .unwrap();
    assert_eq!(total.dims(), [1, 4, 8, 8, 8]);
    let ones = vec![1.0; 4 * 512];
    assert!(max_abs_diff(&values(total), &ones) < 1e-5);
    let w = values(out.attention[0].1.clone());
    assert!(w.iter().all(|&w| w > 0.0 && w < 1.0));
    // One modality: its weight is 1 everywhere.
    let out = model.forward(&images[1..2]).unwrap();
    assert!(max_abs_diff(&values(out.attention[0].1.clone()), &ones) < 1e-6);
}

#[test]
fn encodings_are_the_pyramid_and_bad_ones_are_errors() {
    let d = device();
    let model = A2fsegReleased::new(&tiny(), &d);
    let e = model.encode(Modality::T2, image(&d, [8, 16, 8])).unwrap();
    let dims: Vec<[usize; 5]> = e.iter().map(|t| t.dims()).collect();
    assert_eq!(
        dims,
        vec![[1, 4, 8, 16, 8], [1, 8, 4, 8, 4], [1, 8, 2, 4, 2]]
    );
    let err = |r: Result<FusedOutput>| r.unwrap_err().to_string();
    assert!(err(model.decode(&[])).contains("no modality"));
    let short = vec![(Modality::T2, e[..2].to_vec())];
    assert!(err(model.decode(&short)).contains("encoding is 3 tensor(s), got 2"));
    let twice = vec![(Modality::T2, e.clone()), (Modality::T2, e.clone())];
    assert!(err(model.decode(&twice)).contains("twice"));
    let other = model.encode(Modality::T1, image(&d, [8, 8, 8])).unwrap();
    let mixed = vec![(Modality::T2, e), (Modality::T1, other)];
    assert!(err(model.decode(&mixed)).contains("level 0"));
    let odd = model.encode(Modality::T1, image(&d, [8, 8, 6]));
    assert!(odd.unwrap_err().to_string().contains("multiple of"));
}

#[test]
fn loss_is_per_sample_and_covers_every_branch_that_ran() {
    let d = device().autodiff();
    let cfg = tiny();
    let model = A2fsegReleased::new(&cfg, &d);
    let x = |_| Tensor::random([2, 1, 8, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let inputs = vec![(Modality::T1, x(0)), (Modality::Flair, x(1))];
    let y = classes(&d, 2);
    let out = model.forward(&inputs).unwrap();
    let step = model
        .training_loss(TrainInputs::new(
            Subset::from_modalities(inputs.iter().map(|(m, _)| *m)),
            inputs.clone(),
            y.clone(),
            0,
        ))
        .unwrap();
    assert_eq!(model.loss_terms(), &["modality", "fusion_decoder", "final"]);
    let total = step.total.clone().into_scalar::<f32>() as f64;
    let sum: f64 = step.terms.iter().sum();
    assert!((total - sum).abs() < 1e-4 * total.abs(), "{total} vs {sum}");
    // The final term: w₀ times the mean over samples of each sample's head loss.
    let w0 = cfg.deep_supervision_weights()[0];
    let per_sample: f64 = (0..2)
        .map(|i| {
            let one = |t: Tensor<5>| t.narrow(0, i, 1);
            head_loss(&cfg, one(out.logits.clone()), y.clone().narrow(0, i, 1)).into_scalar::<f32>()
                as f64
        })
        .sum::<f64>()
        / 2.0;
    assert!((step.terms[2] - w0 * per_sample).abs() < 1e-5, "{step:?}");
    // Gradients reach the available MSFEs, their attention modules, the fusion decoder and
    // the head; nothing of the absent modalities.
    let grads = step.total.backward();
    for m in Modality::ALL {
        let (msfe, _) = grad_count(model.msfe.get(m), &grads);
        let (att, att_without) = grad_count(model.attention.get(m), &grads);
        if m == Modality::T1 || m == Modality::Flair {
            assert!(msfe > 10 && att_without == 0, "{m}");
        } else {
            assert_eq!((msfe, att), (0, 0), "{m} is absent but got gradients");
        }
    }
    // Every fusion-decoder parameter but its lowest head (loss weight 0) learns.
    let (with, without) = grad_count(&model.fusion_decoder, &grads);
    assert_eq!(without, 1);
    assert!(with > 10);
    assert_eq!(grad_count(&model.head, &grads).1, 0);
}

#[test]
fn per_sample_dice_differs_from_batch_dice() {
    let d = device();
    let cfg = tiny();
    // Sample 0 has tumour everywhere, sample 1 none: the batch Dice pools them, the
    // per-sample Dice does not.
    let logits = Tensor::random([2, 3, 8, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let y = Tensor::cat(
        vec![
            Tensor::<4, Int>::full([1, 8, 8, 8], 3, &d),
            Tensor::<4, Int>::zeros([1, 8, 8, 8], &d),
        ],
        0,
    );
    let per_sample = loss::per_sample_head_loss(&cfg, logits.clone(), y.clone());
    let batch = head_loss(&cfg, logits.clone(), y.clone());
    let (a, b) = (per_sample.into_scalar::<f32>(), batch.into_scalar::<f32>());
    assert!((a - b).abs() > 0.05, "{a} {b}");
    // With one sample they agree.
    let one = |t: Tensor<5>| t.narrow(0, 0, 1);
    let a = loss::per_sample_head_loss(&cfg, one(logits.clone()), y.clone().narrow(0, 0, 1));
    let b = head_loss(&cfg, one(logits), y.narrow(0, 0, 1));
    assert_eq!(a.into_scalar::<f32>(), b.into_scalar::<f32>());
}

#[test]
fn the_post_variant_attends_to_the_mean_without_a_fusion_decoder() {
    let d = device().autodiff();
    let cfg = tiny().with_released_variant(ReleasedVariant::Post);
    let model = A2fsegReleased::new(&cfg, &d);
    assert!(model.fusion_decoder.is_none());
    let inputs: Vec<(Modality, Tensor<5>)> = [Modality::T1c, Modality::T2]
        .into_iter()
        .map(|m| (m, image(&d, [8, 8, 8])))
        .collect();
    // The encoding is F_m alone, and encode + decode is the training forward pass.
    let encodings: Vec<(Modality, Encoding)> = inputs
        .iter()
        .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
        .collect();
    assert!(encodings.iter().all(|(_, e)| e.len() == 1));
    assert_eq!(encodings[0].1[0].dims(), [1, 4, 8, 8, 8]);
    let fused = model.decode(&encodings).unwrap();
    let out = model.forward(&inputs).unwrap();
    assert!(out.fusion_decoder.is_empty());
    let diff = max_abs_diff(&values(fused.logits), &values(out.logits.clone()));
    assert!(diff < 1e-5, "{diff}");
    // A sigmoid before the softmax: the scores lie in (0, 1), so no weight of two modalities
    // leaves (1 / (1 + e), e / (1 + e)).
    let e = std::f32::consts::E;
    let w = values(out.attention[0].1.clone());
    assert!(w.iter().all(|&w| w > 1.0 / (1.0 + e) && w < e / (1.0 + e)));
    let step = model
        .training_loss(TrainInputs::new(
            Subset::from_modalities(inputs.iter().map(|(m, _)| *m)),
            inputs,
            classes(&d, 1),
            0,
        ))
        .unwrap();
    assert_eq!(step.terms[1], 0.0);
    assert!(step.terms[0] > 0.0 && step.terms[2] > 0.0);
    let grads = step.total.backward();
    assert_eq!(grad_count(&model.attention.t2, &grads).1, 0);
}
