//! Unit tests of RFNet: parameter counts, shapes, independence from missing modalities,
//! the inference path against the training forward, the loss and its warm-up.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::summary::counts;
use super::*;
use crate::modality::Subset;

fn tiny() -> ModelConfig {
    Rfnet::preset(Preset::Small)
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(16)
        .with_patch_size([8, 8, 8])
}

fn image(device: &Device, dims: [usize; 5]) -> Tensor<5> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
}

fn max_abs_diff(a: Tensor<5>, b: Tensor<5>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn native_size_has_the_official_parameter_count() {
    let c = counts(&Rfnet::preset(Preset::Paper));
    assert_eq!(c.encoder, 1_466_496);
    assert_eq!(c.auxiliary_decoder, 586_388);
    assert_eq!(c.inference, 8_398_572);
    assert_eq!(c.total, 8_984_960);
    let text = <Rfnet as Network>::describe(&Rfnet::preset(Preset::Paper)).to_text();
    assert!(text.starts_with("RFNet: targets classes"), "{text}");
    assert!(
        text.contains("8,984,960") && text.contains("586,388"),
        "{text}"
    );
    assert!(text.contains("fused.fusions.3.weights.0.hidden"), "{text}");
}

#[test]
fn description_matches_the_built_network() {
    let device = Device::flex();
    for cfg in [
        Rfnet::preset(Preset::Small),
        Rfnet::preset(Preset::Paper),
        tiny(),
        tiny().with_max_features(8),
    ] {
        let model = Rfnet::new(&cfg, &device);
        let summary = <Rfnet as Network>::describe(&cfg);
        assert_eq!(summary.parameters_total, model.num_params());
        let c = counts(&cfg);
        assert_eq!(c.encoder, model.encoders.t2.num_params());
        assert_eq!(c.fused_decoder, model.fused.num_params());
        assert_eq!(c.auxiliary_decoder, model.auxiliary.num_params());
        let layer_sum: usize = summary.layers.iter().map(|l| l.parameters).sum();
        assert_eq!(layer_sum, c.encoder + c.fused_decoder + c.auxiliary_decoder);
    }
}

#[test]
fn presets_and_bad_configurations() {
    for p in [Preset::Small, Preset::Paper, Preset::Authors] {
        Rfnet::validate(&Rfnet::preset(p)).unwrap();
    }
    assert_eq!(Rfnet::preset(Preset::Paper).patch_size, [80; 3]);
    assert_eq!(Rfnet::preset(Preset::Paper).region_fusion_start_epoch, 20);
    assert!(Rfnet::validate(&tiny().with_targets(Targets::Regions)).is_err());
    assert!(Rfnet::validate(&tiny().with_base_features(6).with_max_features(24)).is_err());
    // 4³ with 2 poolings leaves 1 voxel at the deepest level: no reflection padding.
    assert!(Rfnet::validate(&tiny().with_patch_size([4, 4, 4])).is_err());
    // A configuration written before the RFNet field existed still loads, with its default.
    let mut json: serde_json::Value = serde_json::from_str(&tiny().to_json()).unwrap();
    json.as_object_mut()
        .unwrap()
        .remove("region_fusion_start_epoch");
    let loaded = ModelConfig::from_json(&json.to_string()).unwrap();
    assert_eq!(loaded.region_fusion_start_epoch, 20);
}

/// Encodings are per level and shaped as documented; decode gives 4 class logits.
#[test]
fn shapes() {
    let device = Device::flex();
    device.seed(1);
    let cfg = tiny();
    let model = Rfnet::new(&cfg, &device);
    let e = model
        .encode(Modality::T2, image(&device, [2, 1, 8, 12, 16]))
        .unwrap();
    let dims: Vec<[usize; 5]> = e.iter().map(|t| t.dims()).collect();
    assert_eq!(
        dims,
        vec![[2, 4, 8, 12, 16], [2, 8, 4, 6, 8], [2, 16, 2, 3, 4]]
    );
    let out = model.decode(&[(Modality::T2, e)]).unwrap();
    assert_eq!(out.logits.dims(), [2, 4, 8, 12, 16]);
    assert!(out.attention.is_none());
    assert!(
        model
            .encode(Modality::T1, image(&device, [1, 1, 4, 8, 8]))
            .is_err()
    );
    assert!(
        model
            .encode(Modality::T1, image(&device, [1, 2, 8, 8, 8]))
            .is_err()
    );
    assert!(model.decode(&[]).is_err());
}

/// The training forward with per-sample masks: a modality masked out of sample 0 does not
/// change sample 0's fused output whatever its image, while sample 1 (which has it) does;
/// and `decode` of the encodings of sample 0's subset gives the same logits as the
/// training forward.
#[test]
fn masked_modalities_do_not_change_the_output_and_decode_equals_training_forward() {
    let device = Device::flex();
    device.seed(2);
    let cfg = tiny();
    let model = Rfnet::new(&cfg, &device);
    let dims = [2, 1, 8, 8, 8];
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&device, dims)))
        .collect();
    let subset0 = Subset::from_modalities([Modality::T1c, Modality::Flair]);
    let step = TrainInputs {
        sample_subsets: vec![subset0, Subset::FULL],
        ..TrainInputs::new(
            Subset::FULL,
            images.clone(),
            Tensor::zeros([2, 8, 8, 8], &device),
            0,
        )
    };
    let mask = step.sample_mask(&device);
    let forward = |images: &[(Modality, Tensor<5>)]| {
        let features: Vec<_> = images
            .iter()
            .map(|(m, x)| (*m, model.features(*m, x.clone()).unwrap()))
            .collect();
        model.forward_masked(&features, mask.clone()).logits
    };
    let before = forward(&images);
    let mut changed = images.clone();
    changed[0].1 = image(&device, dims).mul_scalar(5.0); // T1, missing from sample 0
    let after = forward(&changed);
    let sample = |t: Tensor<5>, b: usize| t.narrow(0, b, 1);
    assert!(max_abs_diff(sample(before.clone(), 0), sample(after.clone(), 0)) < 1e-6);
    assert!(max_abs_diff(sample(before.clone(), 1), sample(after, 1)) > 1e-4);

    let encodings: Vec<_> = images
        .iter()
        .filter(|(m, _)| subset0.contains(*m))
        .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
        .collect();
    let decoded = model.decode(&encodings).unwrap().logits;
    assert!(max_abs_diff(sample(decoded, 0), sample(before, 0)) < 1e-5);
}

/// The loss: the fused term counts from `region_fusion_start_epoch` on; before, its
/// parameters still get (zero) gradients; the detached region maps get no gradient from
/// the fused output.
#[test]
fn loss_warm_up_and_detached_maps() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let cfg = tiny().with_region_fusion_start_epoch(2);
    let model = Rfnet::new(&cfg, &device);
    let dims = [2, 1, 8, 8, 8];
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&device, dims)))
        .collect();
    let classes: Tensor<4, Int> =
        Tensor::<4>::random([2, 8, 8, 8], Distribution::Uniform(0.0, 4.0), &device)
            .floor()
            .int();
    let step = TrainInputs {
        sample_subsets: vec![Subset::from_modalities([Modality::T2]), Subset::FULL],
        ..TrainInputs::new(Subset::FULL, images.clone(), classes, 0)
    };
    let scalar = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
    for (epoch, counted) in [(1, false), (2, true)] {
        let loss = model.loss(&step.clone().with_epoch(epoch)).unwrap();
        assert_eq!(loss.terms.len(), 3);
        assert!(loss.terms.iter().all(|t| t.is_finite() && *t > 0.0));
        let expected = loss.terms[1] + loss.terms[2] + if counted { loss.terms[0] } else { 0.0 };
        let total = scalar(loss.total.clone());
        assert!(
            (total - expected).abs() < 1e-4 * expected,
            "{total} vs {expected}"
        );
        let grads = loss.total.backward();
        let seg = model
            .fused
            .seg
            .weight
            .val()
            .grad(&grads)
            .expect("in the graph");
        let seg_norm = seg.abs().max().into_scalar::<f32>();
        assert_eq!(
            seg_norm == 0.0,
            !counted,
            "epoch {epoch}: fused head gradient {seg_norm}"
        );
    }
    // Only the fused output: the maps' generators are cut off by the detach.
    let features: Vec<_> = images
        .iter()
        .map(|(m, x)| (*m, model.features(*m, x.clone()).unwrap()))
        .collect();
    let out = model.forward_masked(&features, step.sample_mask(&device));
    let grads = out.logits.sum().backward();
    for s in 0..3 {
        let g = model.fused.maps[s].out.weight.val().grad(&grads);
        assert!(
            g.is_none_or(|g| g.abs().max().into_scalar::<f32>() == 0.0),
            "scale {s}: the region maps got a gradient from the fused output"
        );
    }
    assert!(
        model.fused.fusions[0].weights[0]
            .hidden
            .weight
            .val()
            .grad(&grads)
            .is_some()
    );
}

/// The modal-weight layers are He-initialised like the units (standard deviation
/// `√(2 / (1 + a²)) / √fan_in` before the LeakyReLU, `1 / √fan_in` before the sigmoid), with
/// zero biases, not left at `Linear`'s default uniform initialisation.
#[test]
fn modal_weight_layers_are_he_initialised() {
    let device = Device::flex();
    device.seed(4);
    let cfg = Rfnet::preset(Preset::Small);
    let c = cfg.features()[1];
    let fusion = RegionFusion::new(c, &cfg, &device);
    let std = |t: Tensor<2>| {
        let n = t.dims().iter().product::<usize>() as f64;
        let mean = t.clone().mean().into_scalar::<f32>() as f64;
        let sq = t.square().sum().into_scalar::<f32>() as f64 / n;
        (sq - mean * mean).sqrt()
    };
    let a = cfg.leaky_slope;
    for w in &fusion.weights {
        let fan_in = (4 * c + 1) as f64;
        let want = (2.0 / (1.0 + a * a)).sqrt() / fan_in.sqrt();
        let got = std(w.hidden.weight.val());
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "hidden: std {got}, He {want}"
        );
        let want = 1.0 / (layers::WEIGHT_HIDDEN as f64).sqrt();
        let got = std(w.out.weight.val());
        assert!((got / want - 1.0).abs() < 0.25, "out: std {got}, He {want}");
        for b in [&w.hidden.bias, &w.out.bias] {
            let b = b.as_ref().expect("a bias").val();
            assert_eq!(b.abs().max().into_scalar::<f32>(), 0.0);
        }
    }
}
