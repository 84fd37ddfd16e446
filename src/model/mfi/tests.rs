//! Unit tests of MFI: parameter counts, shapes, the zero-image representation of a missing
//! modality, the agreement of inference with the training forward pass, the interaction
//! weights, the loss and its gradients.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::loss::dice_bce;
use super::summary::counts;
use super::*;
use crate::model::tests::{
    assert_missing_images_do_not_matter, assert_seam_rejects_bad_inputs, max_abs_diff,
};

/// Features 8-16-32, 16³ patches: every level has a whole number of norm groups.
fn tiny() -> ModelConfig {
    Mfi::preset(Preset::Small)
        .with_poolings(2)
        .with_base_features(8)
        .with_max_features(32)
        .with_patch_size([8, 8, 8])
}

fn image(device: &Device, dims: [usize; 5]) -> Tensor<5> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

fn classes(device: &Device, dims: [usize; 4]) -> Tensor<4, Int> {
    Tensor::<4>::random(dims, Distribution::Uniform(0.0, 4.0), device).int()
}

fn subset(mods: &[Modality]) -> Subset {
    Subset::from_modalities(mods.iter().copied())
}

#[test]
fn native_size_has_the_official_parameter_count() {
    let cfg = Mfi::preset(Preset::Paper);
    let c = counts(&cfg);
    assert_eq!(c.branch, 7_459_011);
    assert_eq!(c.interactions, 1_066_880);
    assert_eq!(c.fuse, 39);
    assert_eq!(c.deep, 15_558);
    assert_eq!(c.total, 30_918_521);
    // The official model also registers three unused relation MLPs per interaction block.
    let unused: usize = [64usize, 128, 256, 128, 64]
        .iter()
        .map(|&c| 3 * (4 * c * 2 * c + 2 * c + 2 * c * c + c))
        .sum();
    assert_eq!(c.total + unused, 34_119_161);
    let text = <Mfi as Network>::describe(&cfg).to_text();
    assert!(text.starts_with("MFI: targets regions"), "{text}");
    assert!(
        text.contains("30,918,521") && text.contains("7,459,011"),
        "{text}"
    );
    assert!(text.contains("up_interactions.1.relation.0"), "{text}");
}

#[test]
fn description_matches_the_built_network() {
    let device = Device::flex();
    for cfg in [
        Mfi::preset(Preset::Small),
        Mfi::preset(Preset::Paper),
        tiny(),
        tiny().with_deep_supervision(false).with_poolings(1),
    ] {
        let model = Mfi::new(&cfg, &device);
        let summary = <Mfi as Network>::describe(&cfg);
        assert_eq!(summary.parameters_total, model.num_params());
        let c = counts(&cfg);
        assert_eq!(c.branch, model.branches.t2.num_params());
        let inter: usize = model
            .down_interactions
            .iter()
            .chain(&model.up_interactions)
            .map(|i| i.num_params())
            .sum();
        assert_eq!(c.interactions, inter);
        assert_eq!(
            c.deep,
            model.deep.iter().map(|d| d.num_params()).sum::<usize>()
        );
        let layer_sum: usize = summary.layers.iter().map(|l| l.parameters).sum();
        assert_eq!(layer_sum, c.branch + c.interactions + c.fuse + c.deep);
    }
}

#[test]
fn presets_and_bad_configurations() {
    for p in [Preset::Small, Preset::Paper, Preset::Authors] {
        Mfi::validate(&Mfi::preset(p)).unwrap();
    }
    assert_eq!(
        Mfi::preset(Preset::Paper).features(),
        vec![32, 64, 128, 256]
    );
    assert_eq!(Mfi::preset(Preset::Small).patch_size, [32; 3]);
    let e = Mfi::validate(&tiny().with_targets(Targets::Classes)).unwrap_err();
    assert!(e.to_string().contains("regions"), "{e}");
    // 44 channels would be 5 groups of 8.8.
    let e = Mfi::validate(&tiny().with_base_features(22).with_max_features(88)).unwrap_err();
    assert!(e.to_string().contains("44 channels"), "{e}");
}

#[test]
fn encoding_is_the_stem_and_decode_gives_k_logits() {
    let device = Device::flex();
    let model = Mfi::new(&tiny(), &device);
    let enc = model
        .encode(Modality::T2, image(&device, [2, 1, 8, 4, 12]))
        .unwrap();
    let shapes: Vec<[usize; 5]> = enc.iter().map(|t| t.dims()).collect();
    assert_eq!(shapes, vec![[2, 8, 8, 4, 12], [2, 16, 4, 2, 6]]);
    let out = model.decode(&[(Modality::T2, enc)]).unwrap();
    assert_eq!(out.logits.dims(), [2, 3, 8, 4, 12]);
    assert!(out.attention.is_none());
    assert_seam_rejects_bad_inputs(&model, &device);
}

/// Inference from a subset does not depend on the other modalities' images (they are
/// zeroed); a different subset gives a different output.
#[test]
fn missing_modalities_do_not_change_the_output() {
    let device = Device::flex();
    device.seed(5);
    let model = Mfi::new(&tiny(), &device);
    let images = assert_missing_images_do_not_matter(&model, &device);
    // The training path sees the same: the hidden images are zeroed.
    let step = TrainInputs::new(
        subset(&[Modality::T1, Modality::T2]),
        images.clone(),
        classes(&device, [1, 8, 8, 8]),
        0,
    );
    let (inputs, code) = model.masked_inputs(&step).unwrap();
    assert_eq!(values(code), vec![1.0, 0.0, 1.0, 0.0]);
    assert!(values(inputs[1].clone()).iter().all(|v| *v == 0.0));
    assert_eq!(values(inputs[2].clone()), values(images[2].1.clone()));
}

/// `decode(encode(…))` equals the mean of the five outputs of the training forward pass
/// for the same subset; per-sample subsets in one batch give each sample its own result.
#[test]
fn inference_equals_the_training_forward() {
    let device = Device::flex();
    device.seed(7);
    let model = Mfi::new(&tiny(), &device);
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&device, [2, 1, 8, 8, 8])))
        .collect();
    let y = classes(&device, [2, 8, 8, 8]);
    let decode = |s: Subset, b: usize| {
        let enc: Vec<(Modality, Encoding)> = images
            .iter()
            .filter(|(m, _)| s.contains(*m))
            .map(|(m, x)| (*m, model.encode(*m, x.clone().narrow(0, b, 1)).unwrap()))
            .collect();
        values(model.decode(&enc).unwrap().logits)
    };
    let a = subset(&[Modality::T1c, Modality::Flair]);
    let step = TrainInputs::new(a, images.clone(), y.clone(), 0);
    let (inputs, code) = model.masked_inputs(&step).unwrap();
    let out = model.forward(inputs, code, true).unwrap();
    assert_eq!(
        out.deep.len(),
        4,
        "one deep-supervision level, four branches"
    );
    let train: Vec<f32> = values(out.final_logits().narrow(0, 0, 1));
    assert!(max_abs_diff(&train, &decode(a, 0)) < 1e-5);
    // Sample 0 keeps T1 only, sample 1 T2 and FLAIR.
    let (s0, s1) = (
        subset(&[Modality::T1]),
        subset(&[Modality::T2, Modality::Flair]),
    );
    let union = Subset::from_bits(s0.bits() | s1.bits());
    let mixed = TrainInputs {
        sample_subsets: vec![s0, s1],
        ..TrainInputs::new(union, images.clone(), y, 0)
    };
    let (inputs, code) = model.masked_inputs(&mixed).unwrap();
    assert_eq!(
        values(code.clone()),
        vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    );
    let logits = model
        .forward(inputs, code.clone(), false)
        .unwrap()
        .final_logits();
    assert!(max_abs_diff(&values(logits.clone().narrow(0, 0, 1)), &decode(s0, 0)) < 1e-5);
    assert!(max_abs_diff(&values(logits.narrow(0, 1, 1)), &decode(s1, 1)) < 1e-5);
}

/// The relation weights are a softmax over the sources, and the availability code changes
/// them.
#[test]
fn interaction_weights_sum_to_one_over_sources() {
    let device = Device::flex();
    device.seed(9);
    let block = Interaction::new(8, &tiny(), &device);
    let features: Vec<Tensor<5>> = (0..4).map(|_| image(&device, [2, 8, 2, 2, 2])).collect();
    let code = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [2, 4]), &device);
    let all = code(vec![1.0; 8]);
    let r = block.weights(&features, all.clone());
    assert_eq!(r.dims(), [2, 4, 4, 8]);
    let sums = values(r.clone().sum_dim(2));
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    let other = block.weights(
        &features,
        code(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    );
    assert!(
        max_abs_diff(
            &values(r.clone().narrow(0, 0, 1)),
            &values(other.clone().narrow(0, 0, 1))
        ) > 0.0
    );
    assert!(max_abs_diff(&values(r.narrow(0, 1, 1)), &values(other.narrow(0, 1, 1))) == 0.0);
    // F_i + Σ_j R_ij ⊙ F_j, checked at one voxel and channel.
    let out = block.forward(features.clone(), all.clone());
    let r = values(block.weights(&features, all));
    let f: Vec<Vec<f32>> = features.iter().map(|x| values(x.clone())).collect();
    let (b, i, ch, v) = (1, 2, 5, 3);
    let at = |b: usize, c: usize| b * 64 + c * 8 + v;
    let want = f[i][at(b, ch)]
        + (0..4)
            .map(|j| r[b * 128 + i * 32 + j * 8 + ch] * f[j][at(b, ch)])
            .sum::<f32>();
    let got = values(out[i].clone())[at(b, ch)];
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

/// The per-output loss equals a direct computation of the official formula.
#[test]
fn dice_bce_follows_the_formula() {
    let device = Device::flex();
    let logits = [0.5f32, -1.0, 2.0, 0.0, -0.3, 1.5];
    let target = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
    // [B = 2, K = 3, 1, 1, 1]: sample b, region k at index b·3 + k.
    let t =
        |v: &[f32]| Tensor::<5>::from_data(TensorData::new(v.to_vec(), [2, 3, 1, 1, 1]), &device);
    let got = values(dice_bce(t(&logits), t(&target), 1e-5))[0] as f64;
    let mut want = 0.0;
    for k in 0..3 {
        let (mut inter, mut sp, mut sy, mut bce) = (0.0, 0.0, 0.0, 0.0);
        for b in 0..2 {
            let (x, y) = (logits[b * 3 + k] as f64, target[b * 3 + k] as f64);
            let p = 1.0 / (1.0 + (-x).exp());
            inter += p * y;
            sp += p;
            sy += y;
            bce -= (y * p.ln() + (1.0 - y) * (1.0 - p).ln()) / 2.0;
        }
        want += (1.0 - (2.0 * inter + 1e-5) / (sp + sy + 1e-5) + 0.5 * bce) / 3.0;
    }
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn loss_sums_every_output_and_reaches_every_part() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let model = Mfi::new(&tiny(), &device);
    let images: Vec<(Modality, Tensor<5>)> = [Modality::T1, Modality::T2]
        .iter()
        .map(|&m| (m, image(&device, [1, 1, 8, 8, 8])))
        .collect();
    let y = classes(&device, [1, 8, 8, 8]);
    let step = TrainInputs::new(subset(&[Modality::T1, Modality::T2]), images, y, 0);
    let loss = model.loss(&step).unwrap();
    assert_eq!(loss.terms.len(), model.loss_terms().len());
    assert!(
        loss.terms.iter().all(|t| t.is_finite() && *t > 0.0),
        "{:?}",
        loss.terms
    );
    let total = values(loss.total.clone())[0] as f64;
    let sum: f64 = loss.terms.iter().sum();
    assert!((total - sum).abs() < 1e-4 * sum, "{total} vs {sum}");
    let grads = loss.total.backward();
    let norm = |w: Tensor<5>| values(w.grad(&grads).expect("gradient").abs().sum())[0];
    // A missing modality's branch still learns: its logits count, from a zero image.
    assert!(norm(model.branches.flair.decoder[0].convs[1].weight.val()) > 0.0);
    assert!(norm(model.branches.t1.input.weight.val()) > 0.0);
    assert!(norm(model.fuse.weight.val()) > 0.0);
    assert!(norm(model.deep[0].weight.val()) > 0.0);
    let rel = model.up_interactions[0].relation[0].weight.val();
    assert!(values(rel.grad(&grads).unwrap().abs().sum())[0] > 0.0);
}
