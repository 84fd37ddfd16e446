//! Unit tests of mmFormer: parameter counts, shapes, independence from missing modalities,
//! the shared inference path against the training forward, the token layouts, the loss and
//! its seeded dropout.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::summary::counts;
use super::*;

/// 2 poolings, 8³ patches (2³ tokens), a narrow transformer.
fn tiny() -> ModelConfig {
    ModelConfig::new()
        .with_arch(Arch::Mmformer)
        .with_poolings(2)
        .with_base_features(2)
        .with_max_features(16)
        .with_leaky_slope(0.2)
        .with_targets(Targets::Classes)
        .with_patch_size([8, 8, 8])
        .with_mmformer(
            MmformerConfig::new()
                .with_embedding(8)
                .with_heads(2)
                .with_mlp(16),
        )
}

fn image(device: &Device, dims: [usize; 5]) -> Tensor<5> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

fn max_diff(a: Tensor<5>, b: Tensor<5>) -> f32 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A tiny network with random (non-zero) positional embeddings.
fn network(cfg: &ModelConfig, device: &Device) -> Mmformer {
    device.seed(3);
    let mut model = Mmformer::new(cfg, device);
    let n = Mmformer::tokens(cfg);
    let e = cfg.mmformer.embedding;
    model.positions = PerModality::new(|_| {
        Param::from_tensor(Tensor::random(
            [1, n, e],
            Distribution::Normal(0.0, 0.5),
            device,
        ))
    });
    model
}

#[test]
fn native_size_has_the_official_parameter_count_less_unused_layers() {
    let cfg = Mmformer::preset(Preset::Paper);
    let c = counts(&cfg);
    // The official model: 36,654,416, of which 262,656 in four unused 1×1 convolutions;
    // 35,798,404 at inference (without the auxiliary decoder).
    assert_eq!(c.total, 36_654_416 - 262_656);
    assert_eq!(c.total - c.auxiliary, 35_798_404);
    assert_eq!(c.auxiliary, 593_356);
    assert_eq!(
        (c.encoder, c.intra, c.inter, c.decoder),
        (1_473_216, 5_578_240, 6_299_136, 1_293_444)
    );
    assert_eq!(Mmformer::tokens(&cfg), 512);
    let text = <Mmformer as Network>::describe(&cfg).to_text();
    assert!(text.starts_with("mmFormer: targets classes"), "{text}");
    assert!(
        text.contains("36,391,760") && text.contains("512 tokens"),
        "{text}"
    );
    assert!(text.contains("intra.{m}.layers.0"), "{text}");
}

#[test]
fn description_matches_the_built_network() {
    let device = Device::flex();
    for cfg in [
        Mmformer::preset(Preset::Small),
        Mmformer::preset(Preset::Paper),
        tiny(),
    ] {
        let model = Mmformer::new(&cfg, &device);
        let summary = <Mmformer as Network>::describe(&cfg);
        assert_eq!(summary.parameters_total, model.num_params());
        let c = counts(&cfg);
        assert_eq!(c.encoder, model.encoders.t1.num_params());
        assert_eq!(
            c.intra,
            model.tokenizers.t2.num_params()
                + model.positions.t2.num_params()
                + model.intra.t2.num_params()
        );
        assert_eq!(
            c.inter,
            model.inter.num_params() + model.detokenizer.num_params()
        );
        assert_eq!(c.decoder, model.decoder.num_params());
        assert_eq!(c.auxiliary, model.auxiliary.num_params());
        let layer_sum: usize = summary.layers.iter().map(|l| l.parameters).sum();
        assert_eq!(
            layer_sum,
            c.encoder + c.intra + c.inter + c.decoder + c.auxiliary
        );
    }
}

#[test]
fn presets_and_bad_configurations() {
    for p in [Preset::Small, Preset::Paper, Preset::Authors] {
        Mmformer::validate(&Mmformer::preset(p)).unwrap();
    }
    assert_eq!(Mmformer::tokens(&Mmformer::preset(Preset::Small)), 64);
    assert!(Mmformer::validate(&tiny().with_targets(Targets::Regions)).is_err());
    // A bottleneck of 1 voxel per axis cannot be reflect-padded.
    assert!(Mmformer::validate(&tiny().with_patch_size([4, 4, 4])).is_err());
    let bad_heads = tiny().with_mmformer(MmformerConfig::new().with_embedding(8).with_heads(3));
    assert!(Mmformer::validate(&bad_heads).is_err());
    // A configuration written before the mmFormer field existed loads with its defaults.
    let mut json: serde_json::Value = serde_json::from_str(&tiny().to_json()).unwrap();
    assert_eq!(json["mmformer"]["token_layout"], "intended");
    json.as_object_mut().unwrap().remove("mmformer");
    let old = ModelConfig::from_json(&json.to_string()).unwrap();
    assert_eq!(old.mmformer, MmformerConfig::new());
    let released = tiny().with_mmformer(tiny().mmformer.with_token_layout(TokenLayout::Released));
    assert_eq!(
        ModelConfig::from_json(&released.to_json()).unwrap(),
        released
    );
}

#[test]
fn shapes_and_windows_of_another_size() {
    let device = Device::flex();
    let cfg = tiny();
    let model = network(&cfg, &device);
    let e = model
        .encode(Modality::T2, image(&device, [2, 1, 8, 8, 8]))
        .unwrap();
    let dims: Vec<[usize; 5]> = e.iter().map(|t| t.dims()).collect();
    assert_eq!(
        dims,
        vec![[2, 2, 8, 8, 8], [2, 4, 4, 4, 4], [2, 8, 2, 2, 2]]
    );
    let out = model.decode(&[(Modality::T2, e)]).unwrap();
    assert_eq!(out.logits.dims(), [2, 4, 8, 8, 8]);
    assert!(out.attention.is_none());
    let err = model
        .encode(Modality::T1, image(&device, [1, 1, 8, 8, 16]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("patch size [8, 8, 8]"), "{err}");
    assert!(model.decode(&[]).is_err());
}

#[test]
fn a_missing_modality_does_not_change_the_output() {
    let device = Device::flex();
    for layout in TokenLayout::ALL {
        let cfg = tiny().with_mmformer(tiny().mmformer.with_token_layout(layout));
        let model = network(&cfg, &device);
        let dims = [1, 1, 8, 8, 8];
        let t1c = model.encode(Modality::T1c, image(&device, dims)).unwrap();
        let flair = model.encode(Modality::Flair, image(&device, dims)).unwrap();
        let a = model
            .decode(&[
                (Modality::T1c, t1c.clone()),
                (Modality::Flair, flair.clone()),
            ])
            .unwrap()
            .logits;
        // The training forward with T2 present but masked out, twice with different T2
        // images: the fused output ignores it.
        let run = |t2: Tensor<5>| {
            let images = vec![
                (Modality::T1c, Tensor::zeros(dims, &device)),
                (Modality::T2, t2),
            ];
            let mask = Tensor::<2>::from_floats([[0.0, 1.0, 0.0, 0.0]], &device);
            model
                .forward_train(&images, mask, None)
                .unwrap()
                .fused
                .logits
        };
        let b1 = run(image(&device, dims));
        let b2 = run(image(&device, dims).mul_scalar(5.0));
        assert!(max_diff(b1, b2) < 1e-5, "{layout}");
        // Adding a third modality does change it (the check above can fail).
        let t1 = model.encode(Modality::T1, image(&device, dims)).unwrap();
        let c = model
            .decode(&[
                (Modality::T1, t1),
                (Modality::T1c, t1c),
                (Modality::Flair, flair),
            ])
            .unwrap()
            .logits;
        assert!(max_diff(a, c) > 1e-4, "{layout}");
    }
}

#[test]
fn decode_of_encodings_equals_the_training_forward() {
    let device = Device::flex();
    let cfg = tiny();
    let model = network(&cfg, &device);
    let dims = [2, 1, 8, 8, 8];
    let images: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .iter()
        .map(|&m| (m, image(&device, dims)))
        .collect();
    for subset in [
        Subset::from_bits(0b0100),
        Subset::from_bits(0b1011),
        Subset::from_bits(0b1111),
    ] {
        let encodings: Vec<(Modality, Encoding)> = images
            .iter()
            .filter(|(m, _)| subset.contains(*m))
            .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
            .collect();
        let inference = model.decode(&encodings).unwrap().logits;
        let mask = subset_mask(subset, 2, &device);
        let train = model.forward_train(&images, mask, None).unwrap();
        assert!(max_diff(inference, train.fused.logits) < 1e-5, "{subset}");
        assert_eq!(train.auxiliary.len(), 4);
        let deep: Vec<[usize; 5]> = train.fused.deep.iter().map(|d| d.dims()).collect();
        assert_eq!(deep, vec![[2, 4, 4, 4, 4], [2, 4, 2, 2, 2]]);
    }
}

#[test]
fn the_token_layouts_differ_and_agree_on_one_voxel_grid() {
    let device = Device::flex();
    let dims = [1, 1, 8, 8, 8];
    let x = image(&device, dims);
    let logits = |layout| {
        let cfg = tiny().with_mmformer(tiny().mmformer.with_token_layout(layout));
        let model = network(&cfg, &device);
        let e = model.encode(Modality::T1, x.clone()).unwrap();
        model.decode(&[(Modality::T1, e)]).unwrap().logits
    };
    let intended = logits(TokenLayout::Intended);
    let released = logits(TokenLayout::Released);
    assert!(max_diff(intended, released) > 1e-4);
}

fn step(subsets: Vec<Subset>, device: &Device, seed: u64) -> TrainInputs {
    let b = subsets.len();
    let images = Modality::ALL
        .iter()
        .map(|&m| (m, image(device, [b, 1, 8, 8, 8])))
        .collect();
    let classes = Tensor::<4, Int>::random([b, 8, 8, 8], Distribution::Uniform(0.0, 4.0), device);
    TrainInputs {
        subset: subsets
            .iter()
            .fold(Subset::EMPTY, |a, s| Subset::from_bits(a.bits() | s.bits())),
        sample_subsets: subsets,
        images,
        classes,
        noise_seed: seed,
        epoch: 0,
    }
}

#[test]
fn loss_terms_gradients_and_seeded_dropout() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let model = network(&tiny(), &ad);
    ad.seed(9);
    let inputs = step(
        vec![Subset::from_bits(0b0001), Subset::from_bits(0b0110)],
        &ad,
        4,
    );
    let l1 = model.training_loss(inputs.clone()).unwrap();
    assert_eq!(l1.terms.len(), 3);
    assert!(
        l1.terms.iter().all(|t| t.is_finite() && *t > 0.0),
        "{:?}",
        l1.terms
    );
    let total = l1.total.clone().into_scalar::<f32>() as f64;
    assert!((total - l1.terms.iter().sum::<f64>()).abs() < 1e-4);
    // The same seed gives the same dropout, another seed another one.
    let again = model.training_loss(inputs.clone()).unwrap().terms;
    assert_eq!(again, l1.terms);
    let other = model
        .training_loss(TrainInputs {
            noise_seed: 5,
            ..inputs.clone()
        })
        .unwrap()
        .terms;
    assert_ne!(other, l1.terms);
    let grads = l1.total.backward();
    let g = model
        .positions
        .flair
        .grad(&grads)
        .expect("a gradient for the embeddings");
    assert!(values(g).iter().any(|v| *v != 0.0));
    // A sample subset with a modality the batch lacks is an error.
    let mut lacking = inputs;
    let gone = lacking.sample_subsets[0].modalities().next().unwrap();
    lacking.images.retain(|(m, _)| *m != gone);
    assert!(model.training_loss(lacking).is_err());
}
