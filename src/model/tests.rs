//! Tests of the network on tiny shapes.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor, TensorData};

use super::*;
use crate::modality::{Modality, Subset};

/// A tiny network: 2 poolings, features 4-8-8, 8³ inputs.
fn tiny() -> ModelConfig {
    ModelConfig::new()
        .with_poolings(2)
        .with_base_features(4)
        .with_max_features(8)
        .with_patch_size([8, 8, 8])
}

pub(crate) fn device() -> Device {
    Device::flex()
}

pub(crate) fn image(device: &Device, dims: [usize; 3]) -> Tensor<5> {
    Tensor::random(
        [1, 1, dims[2], dims[1], dims[0]],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

pub(crate) fn values(t: Tensor<5>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The method seam refuses bad inputs: `encode` of an image whose size is not a multiple of
/// `2^poolings` (6 voxels along D, for 2 poolings or more) or that has two channels, and
/// `decode` of no modality.
pub(crate) fn assert_seam_rejects_bad_inputs<N: Network>(model: &N, device: &Device) {
    for dims in [[1, 1, 6, 8, 8], [1, 2, 8, 8, 8]] {
        let x = Tensor::random(dims, Distribution::Normal(0.0, 1.0), device);
        assert!(model.encode(Modality::T2, x).is_err(), "{dims:?}");
    }
    assert!(model.decode(&[]).is_err());
}

/// Inference from T1 and T2 does not depend on the other modalities' images (redrawn ten
/// times larger), and T1 + FLAIR gives a different output. Returns the images, `[1, 1, 8, 8,
/// 8]` each in canonical order, as they are after the redraw.
pub(crate) fn assert_missing_images_do_not_matter<N: Network>(
    model: &N,
    device: &Device,
) -> Vec<(Modality, Tensor<5>)> {
    let dims = [1, 1, 8, 8, 8];
    let draw = || Tensor::random(dims, Distribution::Normal(0.0, 1.0), device);
    let present = [Modality::T1, Modality::T2];
    let run = |images: &[(Modality, Tensor<5>)], subset: &[Modality]| {
        let encodings: Vec<(Modality, Encoding)> = images
            .iter()
            .filter(|(m, _)| subset.contains(m))
            .map(|(m, x)| (*m, model.encode(*m, x.clone()).unwrap()))
            .collect();
        values(model.decode(&encodings).unwrap().logits)
    };
    let mut images: Vec<(Modality, Tensor<5>)> =
        Modality::ALL.iter().map(|&m| (m, draw())).collect();
    let before = run(&images, &present);
    for (m, x) in images.iter_mut() {
        if !present.contains(m) {
            *x = draw().mul_scalar(10.0);
        }
    }
    assert_eq!(before, run(&images, &present));
    assert_ne!(before, run(&images, &[Modality::T1, Modality::Flair]));
    images
}

/// Multiplies every parameter by NaN: any use of a poisoned module poisons the output.
pub(crate) struct Poison;

impl ModuleMapper for Poison {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.mul_scalar(f64::NAN))
    }
}

#[test]
fn absent_modalities_are_not_run() {
    let d = device();
    let mut model = tiny().init(&d);
    // Poison the MSFEs of the absent modalities: the output stays finite only if they are
    // never run.
    model.msfe.t1 = model.msfe.t1.clone().map(&mut Poison);
    model.msfe.t2 = model.msfe.t2.clone().map(&mut Poison);
    let inputs = vec![
        (Modality::Flair, image(&d, [8, 8, 8])),
        (Modality::T1c, image(&d, [8, 8, 8])),
    ];
    let out = model.forward(&inputs).unwrap();
    let mods: Vec<Modality> = out.per_modality.iter().map(|(m, _)| *m).collect();
    assert_eq!(mods, vec![Modality::T1c, Modality::Flair]);
    for (_, logits) in &out.per_modality {
        assert_eq!(logits.len(), 2);
        assert_eq!(logits[0].dims(), [1, 3, 8, 8, 8]);
        assert_eq!(logits[1].dims(), [1, 3, 4, 4, 4]);
    }
    assert_eq!(out.fused.dims(), [1, 3, 8, 8, 8]);
    assert!(values(out.fused).iter().all(|v| v.is_finite()));
    assert!(values(out.average).iter().all(|v| v.is_finite()));
    // Control: a poisoned modality that is given does poison the output.
    let out = model
        .forward(&[(Modality::T1, image(&d, [8, 8, 8]))])
        .unwrap();
    assert!(values(out.fused).iter().any(|v| v.is_nan()));
}

#[test]
fn one_modality_adaptive_fusion_returns_its_feature() {
    let d = device();
    let model = tiny().init(&d);
    let f = model
        .msfe_features(Modality::T2, image(&d, [8, 8, 8]))
        .unwrap();
    assert_eq!(f.dims(), [1, 4, 8, 8, 8]);
    let feats = vec![(Modality::T2, f.clone())];
    let mean = fusion::average(&feats);
    let convs = model.fusion.attention.as_ref().unwrap();
    let (fused, weights) = fusion::adaptive(convs, &feats, &mean);
    assert_eq!(max_abs_diff(&values(fused), &values(f.clone())), 0.0);
    assert!(values(weights[0].1.clone()).iter().all(|&w| w == 1.0));
    // And the full forward's final head sees exactly that feature.
    let out = model.fuse(&feats).unwrap();
    let direct = crate::kernels::conv3d_module(model.fusion.fused_head.as_ref().unwrap(), f);
    assert_eq!(max_abs_diff(&values(out.logits), &values(direct)), 0.0);
}

#[test]
fn attention_sums_to_one_over_available_modalities() {
    let d = device();
    for channels in [1, 4] {
        let model = tiny().with_attention_channels(channels).init(&d);
        let inputs: Vec<_> = [Modality::T1, Modality::T2, Modality::Flair]
            .into_iter()
            .map(|m| (m, image(&d, [8, 8, 8])))
            .collect();
        let out = model.forward(&inputs).unwrap();
        let att = out.attention.unwrap();
        assert_eq!(att.len(), 3);
        assert_eq!(att[0].1.dims(), [1, channels, 8, 8, 8]);
        let total = att
            .iter()
            .map(|(_, w)| w.clone())
            .reduce(|a, b| a + b)
            .unwrap();
        let ones = vec![1.0; 8 * 8 * 8 * channels];
        assert!(max_abs_diff(&values(total), &ones) < 1e-5);
        // The weights differ between modalities (a real choice, not a constant 1/N).
        let a = values(att[0].1.clone());
        assert!(a.iter().all(|&w| w > 0.0 && w < 1.0));
    }
}

/// Counts the parameters of a module that received a gradient.
struct GradCount<'a> {
    grads: &'a Gradients,
    with: usize,
    without: usize,
}

impl ModuleVisitor for GradCount<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match param.val().grad(self.grads) {
            Some(_) => self.with += 1,
            None => self.without += 1,
        }
    }
}

pub(crate) fn grad_count<M: Module>(m: &M, grads: &Gradients) -> (usize, usize) {
    let mut v = GradCount {
        grads,
        with: 0,
        without: 0,
    };
    m.visit(&mut v);
    (v.with, v.without)
}

#[test]
fn gradients_reach_exactly_the_available_msfes() {
    let d = device().autodiff();
    let cfg = tiny();
    let model = cfg.init(&d);
    let inputs = vec![
        (Modality::T1, image(&d, [8, 8, 8])),
        (Modality::Flair, image(&d, [8, 8, 8])),
    ];
    let out = model.forward(&inputs).unwrap();
    let classes = Tensor::<4, Int>::random([1, 8, 8, 8], Distribution::Uniform(0.0, 4.0), &d);
    let parts = loss(&cfg, &out, classes);
    assert!(parts.total.clone().into_scalar::<f32>().is_finite());
    let grads = parts.total.backward();
    for m in Modality::ALL {
        let msfe = model.msfe.get(m);
        let (with, without) = grad_count(msfe, &grads);
        if m == Modality::T1 || m == Modality::Flair {
            // Everything but the lowest deep-supervision head (loss weight 0).
            let (head_with, head_without) = grad_count(msfe.heads.last().unwrap(), &grads);
            assert_eq!((head_with, head_without), (0, 1), "{m}");
            assert_eq!(without, 1, "{m}");
            assert!(with > 10, "{m}");
        } else {
            assert_eq!(with, 0, "{m} is absent but got gradients");
        }
    }
    let (with, without) = grad_count(&model.fusion, &grads);
    assert!(with > 0);
    // The attention convs of the absent modalities (weight + bias each) get none.
    assert_eq!(without, 4);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = device();
    let model = tiny().init(&d);
    let e = model
        .forward(&[(Modality::T1, image(&d, [8, 8, 6]))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[8, 8, 6]") && e.contains("multiple of 2^2 = 4"),
        "{e}"
    );
    assert!(model.forward(&[]).is_err());
    let twice = vec![
        (Modality::T1, image(&d, [8, 8, 8])),
        (Modality::T1, image(&d, [8, 8, 8])),
    ];
    assert!(model.forward(&twice).is_err());
    let mismatch = vec![
        (Modality::T1, image(&d, [8, 8, 8])),
        (Modality::T2, image(&d, [8, 8, 4])),
    ];
    assert!(model.forward(&mismatch).is_err());
}

#[test]
fn save_load_round_trip_is_bit_identical() {
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    for fusion in Fusion::ALL {
        let cfg = tiny().with_fusion(fusion);
        let model = cfg.init(&d);
        let path = dir.path().join(fusion.name());
        save_model(&path, &model, &cfg).unwrap();
        let (loaded, cfg2) = load_model::<A2fseg>(&path, &d).unwrap();
        assert_eq!(cfg2, cfg);
        let x = vec![
            (Modality::T1c, image(&d, [8, 8, 8])),
            (Modality::T2, image(&d, [8, 8, 8])),
        ];
        let a = values(model.forward(&x).unwrap().fused);
        let b = values(loaded.forward(&x).unwrap().fused);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn a_damaged_weights_file_is_named_not_loaded() {
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    save_model(dir.path(), &cfg.init(&d), &cfg).unwrap();
    let weights = dir.path().join(WEIGHTS_FILE);
    let good = std::fs::read(&weights).unwrap();
    // The record is `sha256sum`'s format for the file as saved.
    let record = std::fs::read_to_string(dir.path().join(weights::CHECKSUM_FILE)).unwrap();
    assert!(record.ends_with("  model.safetensors\n"), "{record}");
    assert_eq!(record.split_whitespace().next().unwrap().len(), 64);
    // One flipped bit in the last tensor's data still parses as safetensors: only the
    // checksum catches it. A truncated file is caught too.
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    for damaged in [flipped, good[..good.len() - 7].to_vec()] {
        std::fs::write(&weights, &damaged).unwrap();
        let msg = format!("{:#}", load_model::<A2fseg>(dir.path(), &d).unwrap_err());
        assert!(msg.contains("model.safetensors is damaged"), "{msg}");
    }
    // A folder from before the record existed loads as before.
    std::fs::write(&weights, &good).unwrap();
    std::fs::remove_file(dir.path().join(weights::CHECKSUM_FILE)).unwrap();
    load_model::<A2fseg>(dir.path(), &d).unwrap();
}

#[test]
fn weights_have_readable_names() {
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    save_model(dir.path(), &cfg.init(&d), &cfg).unwrap();
    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    for expected in [
        "msfe.t1c.encoder.2.convs.1.conv.weight",
        "msfe.t1c.encoder.0.convs.0.norm.gamma",
        "msfe.flair.decoder.0.up.weight",
        "msfe.t2.decoder.1.convs.0.conv.bias",
        "msfe.t1.heads.1.weight",
        "fusion.attention.flair.weight",
        "fusion.average_head.weight",
        "fusion.fused_head.weight",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    let count: usize = names
        .iter()
        .map(|n| st.tensor(n).unwrap().shape().iter().product::<usize>())
        .sum();
    assert_eq!(count, cfg.init(&d).num_params());
}

#[test]
fn mismatched_config_is_an_error_naming_the_files() {
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    save_model(dir.path(), &cfg.init(&d), &cfg).unwrap();
    // Same file, different architecture in config.json.
    cfg.clone()
        .with_max_features(16)
        .with_base_features(8)
        .with_patch_size([8, 8, 8])
        .save_json(&dir.path().join(CONFIG_FILE))
        .unwrap();
    let e = format!("{:#}", load_model::<A2fseg>(dir.path(), &d).unwrap_err());
    assert!(
        e.contains("model.safetensors") && e.contains("config.json"),
        "{e}"
    );
    // A fusion strategy with other tensors.
    cfg.clone()
        .with_fusion(Fusion::Average)
        .save_json(&dir.path().join(CONFIG_FILE))
        .unwrap();
    let e = format!("{:#}", load_model::<A2fseg>(dir.path(), &d).unwrap_err());
    assert!(e.contains("unexpected"), "{e}");
    // A broken config file.
    std::fs::write(dir.path().join(CONFIG_FILE), "{").unwrap();
    let e = format!("{:#}", load_model::<A2fseg>(dir.path(), &d).unwrap_err());
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn paper_msfe_has_31_2_million_parameters() {
    // Lazy parameters: counting does not allocate the 125 M weights.
    let cfg = ModelConfig::preset("paper").unwrap();
    let model = cfg.init(&device());
    let msfe = &model.msfe.t1;
    let heads: usize = msfe.heads.iter().map(|h| h.num_params()).sum();
    // Encoder + decoder, the figure of the authors' nnU-Net Generic_UNet.
    assert_eq!(msfe.num_params() - heads, 31_193_184);
    // Five 1×1×1 deep-supervision heads without bias, 3 regions: (32+64+128+256+320)·3.
    assert_eq!(heads, 2_400);
}

#[test]
fn losses_are_finite_when_regions_are_absent() {
    let d = device().autodiff();
    for targets in Targets::ALL {
        for fusion in Fusion::ALL {
            let cfg = tiny().with_targets(targets).with_fusion(fusion);
            let model = cfg.init(&d);
            let out = model
                .forward(&[(Modality::T1c, image(&d, [8, 8, 8]))])
                .unwrap();
            let k = targets.channels();
            assert_eq!(out.fused.dims(), [1, k, 8, 8, 8]);
            let empty = Tensor::<4, Int>::zeros([1, 8, 8, 8], &d);
            let parts = loss(&cfg, &out, empty);
            let total = parts.total.clone().into_scalar::<f32>();
            assert!(
                total.is_finite() && total > 0.0,
                "{targets} {fusion}: {total}"
            );
            assert_eq!(parts.adaptive == 0.0, fusion == Fusion::Average);
            let sum = parts.modality + parts.average + parts.adaptive;
            assert!((sum - total).abs() < 1e-4 * total.max(1.0));
            let grads = parts.total.backward();
            let g = model.fusion.average_head.weight.val().grad(&grads).unwrap();
            assert!(
                g.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap()
                    .iter()
                    .all(|v| v.is_finite())
            );
        }
    }
}

#[test]
fn perfect_region_logits_give_a_small_loss() {
    let d = device();
    let cfg = tiny();
    // classes: 0, 1 (NCR), 2 (ED), 3 (ET) along x.
    let classes: Vec<i64> = (0..8 * 8 * 8).map(|i| (i % 4) as i64).collect();
    let classes = Tensor::<4, Int>::from_data(TensorData::new(classes, [1, 8, 8, 8]), &d);
    let y = loss::target_channels(Targets::Regions, classes.clone());
    let logits = y.clone().mul_scalar(40.0).sub_scalar(20.0);
    let l = loss::head_loss(&cfg, logits.clone(), classes.clone()).into_scalar::<f32>();
    assert!(l < 1e-3, "{l}");
    let wrong = loss::head_loss(&cfg, logits.neg(), classes).into_scalar::<f32>();
    assert!(wrong > 10.0, "{wrong}");
    // WT = 1,2,3; TC = 1,3; ET = 3.
    let yv = values(y);
    let n = 512;
    assert_eq!(&yv[0..4], &[0.0, 1.0, 1.0, 1.0]);
    assert_eq!(&yv[n..n + 4], &[0.0, 1.0, 0.0, 1.0]);
    assert_eq!(&yv[2 * n..2 * n + 4], &[0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn decoding_regions_and_classes() {
    let d = device();
    // Two voxels: (WT, TC, ET) = (0.9, 0.8, 0.2) → NCR; (0.9, 0.1, 0.7) → ET.
    let probs = Tensor::<5>::from_data(
        TensorData::new(vec![0.9f32, 0.9, 0.8, 0.1, 0.2, 0.7], [1, 3, 1, 1, 2]),
        &d,
    );
    let regions = tiny();
    assert_eq!(decode_classes(&regions, probs), vec![1, 3]);
    let classes = tiny().with_targets(Targets::Classes);
    let probs = Tensor::<5>::from_data(
        TensorData::new(
            vec![0.1f32, 0.7, 0.2, 0.1, 0.6, 0.1, 0.1, 0.1],
            [1, 4, 1, 1, 2],
        ),
        &d,
    );
    assert_eq!(decode_classes(&classes, probs), vec![2, 0]);
}

#[test]
fn deep_supervision_targets_are_nearest_downsampled() {
    let d = device();
    let v: Vec<i64> = (0..4 * 4 * 4).map(|i| i as i64).collect();
    let t = Tensor::<4, Int>::from_data(TensorData::new(v, [1, 4, 4, 4]), &d);
    let down = loss::downsample_nearest(t, 1);
    assert_eq!(down.dims(), [1, 2, 2, 2]);
    let got: Vec<i64> = down.into_data().convert::<i64>().try_into_vec().unwrap();
    assert_eq!(got, vec![0, 2, 8, 10, 32, 34, 40, 42]);
}

#[test]
fn device_names() {
    assert!(device_from_name("cpu").is_ok());
    assert!(device_from_name("FLEX").is_ok());
    assert!(device_from_name("tpu").is_err());
    assert!(device_from_name("cuda:x").is_err());
    #[cfg(not(feature = "cuda"))]
    assert!(
        device_from_name("cuda")
            .unwrap_err()
            .to_string()
            .contains("--features cuda")
    );
}

#[test]
fn a_loaded_model_trains_on_an_autodiff_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    save_model(dir.path(), &cfg.init(&device()), &cfg).unwrap();
    let d = device().autodiff();
    let (model, _) = load_model::<A2fseg>(dir.path(), &d).unwrap();
    let out = model
        .forward(&[(Modality::T2, image(&d, [8, 8, 8]))])
        .unwrap();
    let parts = loss(&cfg, &out, Tensor::<4, Int>::zeros([1, 8, 8, 8], &d));
    let grads = parts.total.backward();
    let (with, _) = grad_count(&model.msfe.t2, &grads);
    assert!(with > 10);
}

#[test]
fn shared_msfe_path_equals_the_full_forward() {
    let d = device();
    for fusion in Fusion::ALL {
        let model = tiny().with_fusion(fusion).init(&d);
        let inputs = vec![
            (Modality::T1, image(&d, [8, 8, 8])),
            (Modality::T2, image(&d, [8, 8, 8])),
        ];
        let full = model.forward(&inputs).unwrap();
        // Features in any order give the same fusion.
        let feats: Vec<_> = inputs
            .iter()
            .rev()
            .map(|(m, x)| (*m, model.msfe_features(*m, x.clone()).unwrap()))
            .collect();
        let fused = model.fuse(&feats).unwrap();
        assert_eq!(fused.attention.is_some(), fusion == Fusion::Adaptive);
        let diff = max_abs_diff(&values(full.fused), &values(fused.logits));
        assert!(diff < 1e-6, "{fusion}: {diff}");
    }
}

#[test]
fn weighted_ce_soft_dice_matches_a_direct_computation() {
    let d = device();
    let (b, k, n) = (2usize, 4usize, 5usize);
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) as f64) / (1u64 << 31) as f64
    };
    // Probabilities [B, K, 1, 1, N] normalised over K; classes [B, 1, 1, N].
    let mut p = vec![0f64; b * k * n];
    for bi in 0..b {
        for v in 0..n {
            let raw: Vec<f64> = (0..k).map(|_| next() + 0.001).collect();
            let total: f64 = raw.iter().sum();
            for c in 0..k {
                p[(bi * k + c) * n + v] = raw[c] / total;
            }
        }
    }
    // A near-zero probability on a true class exercises the clamp.
    p[2 * n] = 1e-4; // sample 0, class 2, voxel 0
    let y: Vec<i64> = vec![2, 0, 0, 1, 3, 0, 0, 2, 2, 1];
    let mut ce = 0.0;
    let (mut inter, mut psum, mut ysum) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
    for bi in 0..b {
        for c in 0..k {
            let count = (0..n).filter(|&v| y[bi * n + v] == c as i64).count() as f64;
            let wgt = 1.0 - count / n as f64;
            for v in 0..n {
                let pv = p[(bi * k + c) * n + v];
                let yv = f64::from(u8::from(y[bi * n + v] == c as i64));
                ce -= wgt * yv * pv.max(0.005).ln();
                inter[c] += pv * yv;
                psum[c] += pv;
                ysum[c] += yv;
            }
        }
    }
    ce /= (b * n) as f64;
    let dice: f64 = (0..k)
        .map(|c| 2.0 * inter[c] / (psum[c] + ysum[c] + 1e-7))
        .sum::<f64>()
        / k as f64;
    let expected = ce + 1.0 - dice;
    let probs = Tensor::<5>::from_data(
        TensorData::new(
            p.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [b, k, 1, 1, n],
        ),
        &d,
    );
    let classes = Tensor::<4, Int>::from_data(TensorData::new(y, [b, 1, 1, n]), &d);
    let got = loss::weighted_ce_soft_dice(probs, classes).into_scalar::<f32>() as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
}

/// `decode_subsets` of all 15 subsets from the four encodings equals decoding each subset
/// alone, logits and attention maps, for every fusion (adaptive with one-channel maps and
/// per-channel maps, kernel 1 and 3; average; HeMIS).
#[test]
fn decoding_many_subsets_equals_decoding_each() {
    let device = device();
    let configs = [
        tiny(),
        tiny().with_attention_kernel(1),
        tiny().with_attention_channels(4),
        tiny().with_fusion(Fusion::Average),
        tiny().with_fusion(Fusion::Hemis),
    ];
    for cfg in configs {
        let model = cfg.init(&device);
        let encodings: Vec<(Modality, Encoding)> = Modality::ALL
            .iter()
            .map(|&m| {
                (
                    m,
                    Network::encode(&model, m, image(&device, [8, 8, 8])).unwrap(),
                )
            })
            .collect();
        let subsets: Vec<Subset> = Subset::all_nonempty().collect();
        let many = Network::decode_subsets(&model, &encodings, &subsets).unwrap();
        assert_eq!(many.len(), 15);
        for (s, got) in subsets.iter().zip(many) {
            let alone: Vec<(Modality, Encoding)> = encodings
                .iter()
                .filter(|(m, _)| s.contains(*m))
                .cloned()
                .collect();
            let want = Network::decode(&model, &alone).unwrap();
            let d = max_abs_diff(&values(got.logits), &values(want.logits));
            assert!(
                d < 1e-5,
                "{:?} {}: logits differ by {d}",
                cfg.fusion,
                s.name()
            );
            match (got.attention, want.attention) {
                (Some(a), Some(b)) => {
                    assert_eq!(a.len(), b.len());
                    for ((ma, ta), (mb, tb)) in a.into_iter().zip(b) {
                        assert_eq!(ma, mb);
                        let d = max_abs_diff(&values(ta), &values(tb));
                        assert!(d < 1e-6, "{} attention of {ma}: {d}", s.name());
                    }
                }
                (None, None) => {}
                _ => panic!("{}: attention maps on one path only", s.name()),
            }
        }
        // A subset whose modalities were not all encoded is refused.
        let t1_only = &encodings[..1];
        assert!(Network::decode_subsets(&model, t1_only, &subsets[..2]).is_err());
    }
}
