//! Unit tests of U-HVED: parameter counts, the fused posterior, independence from missing
//! modalities, the loss and its gradients.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::summary::counts;
use super::*;
use crate::modality::Subset;
use crate::model::tests::{assert_missing_images_do_not_matter, assert_seam_rejects_bad_inputs};

fn tiny() -> ModelConfig {
    ModelConfig::new()
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(16)
        .with_targets(Targets::Classes)
        .with_patch_size([8, 8, 8])
}

fn image(device: &Device, dims: [usize; 5]) -> Tensor<5> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

#[test]
fn native_size_has_the_official_parameter_count() {
    let c = counts(&Uhved::preset(Preset::Paper));
    assert_eq!(c.encoder, 221_560);
    assert_eq!(c.image_decoder, 72_860);
    assert_eq!(c.segmentation_decoder, 72_872);
    assert_eq!(c.total, 1_250_552);
    let text = <Uhved as Network>::describe(&Uhved::preset(Preset::Paper)).to_text();
    assert!(text.starts_with("U-HVED: targets classes"), "{text}");
    assert!(
        text.contains("1,250,552") && text.contains("221,560"),
        "{text}"
    );
    assert!(
        text.contains("segmentation.levels.2.convs.0.conv"),
        "{text}"
    );
}

#[test]
fn description_matches_the_built_network() {
    let device = Device::flex();
    for cfg in [
        Uhved::preset(Preset::Small),
        Uhved::preset(Preset::Paper),
        tiny(),
        tiny().with_targets(Targets::Regions).with_poolings(1),
    ] {
        let model = Uhved::new(&cfg, &device);
        let summary = <Uhved as Network>::describe(&cfg);
        assert_eq!(summary.parameters_total, model.num_params());
        let c = counts(&cfg);
        assert_eq!(c.encoder, model.encoders.t1.num_params());
        assert_eq!(c.image_decoder, model.reconstructions.flair.num_params());
        assert_eq!(c.segmentation_decoder, model.segmentation.num_params());
        let layer_sum: usize = summary.layers.iter().map(|l| l.parameters).sum();
        assert_eq!(
            layer_sum,
            c.encoder + c.image_decoder + c.segmentation_decoder
        );
    }
}

#[test]
fn presets_and_bad_configurations() {
    for p in [Preset::Small, Preset::Paper, Preset::Authors] {
        Uhved::validate(&Uhved::preset(p)).unwrap();
    }
    assert_eq!(Uhved::preset(Preset::Paper).patch_size, [112; 3]);
    assert!(Uhved::validate(&tiny().with_base_features(3)).is_err());
    assert!(Uhved::validate(&tiny().with_logvar_clip(f64::NAN)).is_err());
    // A configuration written before the U-HVED fields existed still loads, with defaults.
    let mut json: serde_json::Value = serde_json::from_str(&tiny().to_json()).unwrap();
    for key in ["kl_weight", "reconstruction_weight", "logvar_clip"] {
        json.as_object_mut().unwrap().remove(key);
    }
    let old = ModelConfig::from_json(&json.to_string()).unwrap();
    assert_eq!(
        (old.kl_weight, old.reconstruction_weight, old.logvar_clip),
        (0.1, 0.1, 50.0)
    );
}

#[test]
fn encoding_has_mean_and_logvar_per_scale() {
    let device = Device::flex();
    let model = Uhved::new(&tiny(), &device);
    let enc = model
        .encode(Modality::T2, image(&device, [2, 1, 8, 4, 12]))
        .unwrap();
    let shapes: Vec<[usize; 5]> = enc.iter().map(|t| t.dims()).collect();
    assert_eq!(
        shapes,
        vec![
            [2, 2, 8, 4, 12],
            [2, 2, 8, 4, 12],
            [2, 4, 4, 2, 6],
            [2, 4, 4, 2, 6],
            [2, 8, 2, 1, 3],
            [2, 8, 2, 1, 3]
        ]
    );
    assert_seam_rejects_bad_inputs(&model, &device);
}

/// With one modality, the fused posterior is the analytic product of N(μ, σ²) with
/// N(0, 1): N(μ / (1 + σ²), σ² / (1 + σ²)).
#[test]
fn one_modality_posterior_is_the_product_with_the_prior() {
    let device = Device::flex();
    device.seed(3);
    let model = Uhved::new(&tiny(), &device);
    let latents = model
        .latents(Modality::T1c, image(&device, [1, 1, 8, 8, 8]))
        .unwrap();
    let fused = model.fuse(&[(Modality::T1c, latents.clone())]).unwrap();
    for (g, q) in latents.into_iter().zip(fused) {
        let (mu, lv) = (values(g.mu), values(g.logvar));
        let (qmu, qlv) = (values(q.mu), values(q.logvar));
        for i in 0..mu.len() {
            let var = (lv[i] as f64).exp();
            let mu_post = mu[i] as f64 / (1.0 + var);
            let var_post = var / (1.0 + var);
            assert!(
                (qmu[i] as f64 - mu_post).abs() < 1e-5,
                "{} vs {mu_post}",
                qmu[i]
            );
            assert!(
                (qlv[i] as f64 - var_post.ln()).abs() < 1e-4,
                "{} vs {}",
                qlv[i],
                var_post.ln()
            );
        }
    }
}

/// Inference from a subset does not depend on the other modalities' images; a different
/// subset gives a different output.
#[test]
fn missing_modalities_do_not_change_the_output() {
    let device = Device::flex();
    device.seed(5);
    let model = Uhved::new(&tiny(), &device);
    assert_missing_images_do_not_matter(&model, &device);
}

fn classes(device: &Device, dims: [usize; 4]) -> Tensor<4, Int> {
    Tensor::<4>::random(dims, Distribution::Uniform(0.0, 4.0), device).int()
}

fn inputs(
    subset: &[Modality],
    images: &[(Modality, Tensor<5>)],
    classes: &Tensor<4, Int>,
    noise_seed: u64,
) -> TrainInputs {
    TrainInputs::new(
        Subset::from_modalities(subset.iter().copied()),
        images.to_vec(),
        classes.clone(),
        noise_seed,
    )
}

#[test]
fn loss_samples_and_reaches_every_part() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let model = Uhved::new(&tiny(), &device);
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&device, [1, 1, 8, 8, 8])))
        .collect();
    let y = classes(&device, [1, 8, 8, 8]);
    let step = |seed| {
        model
            .loss(&inputs(&[Modality::T1c], &images, &y, seed))
            .unwrap()
    };
    let a = step(1);
    assert_eq!(a.terms, step(1).terms, "one noise seed, one sample");
    assert_ne!(a.terms, step(2).terms, "the sample is random");
    assert_eq!(
        a.terms[1],
        step(3).terms[1],
        "the KL term does not depend on the sample"
    );
    assert_eq!(a.terms.len(), model.loss_terms().len());
    assert!(
        a.terms.iter().all(|t| t.is_finite() && *t > 0.0),
        "{:?}",
        a.terms
    );
    let total = values(a.total.clone())[0] as f64;
    let expect = a.terms[0] + 0.1 * a.terms[1] + 0.1 * a.terms[2];
    assert!((total - expect).abs() < 1e-4 * expect.abs().max(1.0));
    let grads = a.total.backward();
    // A modality outside the drawn subset still learns (KL and reconstruction), and so does
    // every decoder.
    let grad_norm = |w: Tensor<5>| {
        let g = w.grad(&grads).expect("gradient");
        values(g.abs().sum())[0]
    };
    assert!(grad_norm(model.encoders.flair.input.weight.val()) > 0.0);
    assert!(grad_norm(model.encoders.t1c.blocks[2].convs[1].conv.weight.val()) > 0.0);
    assert!(grad_norm(model.reconstructions.t2.output.weight.val()) > 0.0);
    assert!(grad_norm(model.segmentation.levels[0].convs[0].conv.weight.val()) > 0.0);
    // The drawn subset must be among the batch's modalities.
    let bad = model.loss(&inputs(&[Modality::T1], &images[1..], &y, 1));
    assert!(bad.is_err());
}

/// With every image available, the KL term is the documented mean over subsets, computed
/// here directly from the per-subset products.
#[test]
fn kl_term_follows_the_formula() {
    let device = Device::flex();
    device.seed(13);
    let model = Uhved::new(&tiny(), &device);
    let images: Vec<(Modality, Tensor<5>)> = [Modality::T1, Modality::Flair]
        .iter()
        .map(|&m| (m, image(&device, [1, 1, 8, 8, 8])))
        .collect();
    let y = classes(&device, [1, 8, 8, 8]);
    let step = model
        .loss(&inputs(&[Modality::Flair], &images, &y, 0))
        .unwrap();
    let latents: Vec<(Modality, Vec<Gaussian>)> = images
        .iter()
        .map(|(m, x)| (*m, model.latents(*m, x.clone()).unwrap()))
        .collect();
    let q = |set: &[Modality]| {
        let chosen: Vec<_> = latents
            .iter()
            .filter(|(m, _)| set.contains(m))
            .cloned()
            .collect();
        model.fuse(&chosen).unwrap()
    };
    let (d, t1, both) = (
        q(&[Modality::Flair]),
        q(&[Modality::T1]),
        q(&[Modality::T1, Modality::Flair]),
    );
    let scalar = |t: Tensor<1>| values(t)[0] as f64;
    let mut kl = 0.0;
    for s in 0..3 {
        let inter = (scalar(d[s].kl(&t1[s])) + scalar(d[s].kl(&both[s]))) / 2.0;
        let prior = (scalar(d[s].kl_to_prior())
            + scalar(t1[s].kl_to_prior())
            + scalar(both[s].kl_to_prior()))
            / 3.0;
        kl += (inter + prior) / 3.0;
    }
    assert!(
        (step.terms[1] - kl).abs() < 1e-4 * kl.max(1.0),
        "{} vs {kl}",
        step.terms[1]
    );
}
