//! Tests of [`super::Predictor`]: shared-encoding and per-subset paths, attention maps,
//! uncropping, inference plans, model folders.

use super::*;
use crate::labels::LabelConvention;
use crate::model::Fusion;
use crate::volume::Geometry;

/// A tiny randomly initialised network with 8³ patches.
pub(crate) fn tiny_predictor(fusion: Fusion, targets: Targets, tta: Tta) -> Predictor {
    let cfg = ModelConfig::new()
        .with_poolings(1)
        .with_base_features(4)
        .with_max_features(8)
        .with_convs_per_stage(1)
        .with_deep_supervision(false)
        .with_fusion(fusion)
        .with_targets(targets)
        .with_patch_size([8, 8, 8]);
    let device = Device::flex();
    let model = cfg.init(&device);
    Predictor::new(model, device, 0.5, tta).unwrap()
}

/// A preprocessed case with `subset`'s images over a crop of `dims` inside a larger grid.
pub(crate) fn tiny_case(subset: Subset, dims: [usize; 3]) -> PreprocessedCase {
    let n: usize = dims.iter().product();
    let full = [dims[0] + 3, dims[1] + 2, dims[2] + 1];
    let images = std::array::from_fn(|i| {
        subset.contains(Modality::ALL[i]).then(|| {
            let data = (0..n)
                .map(|v| ((v * (i + 3)) as f32 * 0.173).sin() * 2.0)
                .collect();
            Grid::from_vec(dims, data).unwrap()
        })
    });
    let mut affine = [[0.0; 4]; 4];
    for (a, row) in affine.iter_mut().enumerate() {
        row[a] = 1.0;
    }
    PreprocessedCase {
        id: "tiny".into(),
        images,
        classes: None,
        crop: CropBox {
            start: [1, 2, 0],
            dims,
        },
        geometry: Geometry::from_affine(full, affine),
        convention: LabelConvention::Brats,
    }
}

fn assert_same(a: &Prediction, b: &Prediction) {
    assert_eq!(a.subset, b.subset);
    for (x, y) in a.probabilities.iter().zip(&b.probabilities) {
        for (p, q) in x.data().iter().zip(y.data()) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }
    // Classes agree wherever no probability sits at the decision threshold.
    let near: Vec<bool> = (0..a.probabilities[0].len())
        .map(|v| {
            a.probabilities
                .iter()
                .any(|g| (g.data()[v] - 0.5).abs() < 1e-3)
        })
        .collect();
    let ca = a.crop.crop(&a.classes);
    let cb = b.crop.crop(&b.classes);
    for (v, (p, q)) in ca.data().iter().zip(cb.data()).enumerate() {
        assert!(near[v] || p == q);
    }
    assert_eq!(a.attention.len(), b.attention.len());
    for ((m, x), (n, y)) in a.attention.iter().zip(&b.attention) {
        assert_eq!(m, n);
        for (p, q) in x.data().iter().zip(y.data()) {
            assert!((p - q).abs() < 1e-4);
        }
    }
}

#[test]
fn shared_msfe_path_equals_separate_predictions() {
    let mut p = tiny_predictor(Fusion::Adaptive, Targets::Regions, Tta::OFF);
    p.keep_attention = true;
    let case = tiny_case(Subset::FULL, [11, 9, 8]);
    let subsets: Vec<Subset> = ["0001", "0101", "1110", "1111"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let all = p.predict_subsets(&case, &subsets).unwrap();
    assert_eq!(all.len(), 4);
    for (s, pred) in &all {
        let single = p.predict_case(&case, *s).unwrap();
        assert_same(pred, &single);
        assert_eq!(pred.attention.len(), if s.len() > 1 { s.len() } else { 0 });
    }
}

/// Every method's predictor keeps attention maps exactly when its network has them (as
/// `evaluate` asks): A2FSeg's adaptive fusion and a2fseg-released, not U-HVED, MFI or mmFormer.
#[test]
fn attention_maps_where_the_method_has_them() {
    for arch in crate::model::Arch::ALL {
        use crate::model::Arch;
        let mut cfg = crate::model::ModelConfig::of(arch, crate::model::Preset::Small)
            .with_patch_size([8, 8, 8]);
        if matches!(arch, Arch::Mmformer | Arch::Rfnet) {
            // Their reflection padding needs 2 voxels per side at the deepest level.
            cfg.poolings = 2;
        }
        let device = Device::flex();
        let mut p = crate::with_network!(arch, N => {
            Predictor::new(N::init(&cfg, &device), device.clone(), 0.5, Tta::OFF).unwrap()
        });
        assert_eq!(
            p.has_attention(),
            matches!(arch, Arch::A2fseg | Arch::A2fsegReleased),
            "{arch}"
        );
        p.keep_attention = p.has_attention();
        let subset: Subset = "0111".parse().unwrap();
        let pred = p
            .predict_case(&tiny_case(subset, [8, 8, 8]), subset)
            .unwrap();
        let maps = if p.has_attention() { 3 } else { 0 };
        assert_eq!(pred.attention.len(), maps, "{arch}");
    }
}

#[test]
fn prediction_is_uncropped_with_background_outside_and_sane_attention() {
    let mut p = tiny_predictor(Fusion::Adaptive, Targets::Classes, Tta::ALL);
    p.keep_attention = true;
    let subset: Subset = "0101".parse().unwrap();
    let case = tiny_case(subset, [6, 5, 4]);
    let pred = p.predict_case(&case, subset).unwrap();
    assert_eq!(pred.classes.dims(), case.geometry.dims);
    assert_eq!(pred.classes.get(0, 0, 0), 0);
    assert!(pred.classes.data().iter().all(|&c| c <= 3));
    assert_eq!(pred.probabilities.len(), 3);
    // Nested regions from class probabilities.
    for v in 0..pred.probabilities[0].len() {
        let [wt, tc, et] = [0, 1, 2].map(|r| pred.probabilities[r].data()[v]);
        assert!(wt + 1e-5 >= tc && tc + 1e-5 >= et && et >= 0.0 && wt <= 1.0 + 1e-5);
    }
    // Attention maps of the two modalities sum to one.
    assert_eq!(pred.attention.len(), 2);
    for v in 0..pred.attention[0].1.len() {
        let s = pred.attention[0].1.data()[v] + pred.attention[1].1.data()[v];
        assert!((s - 1.0).abs() < 1e-4, "{s}");
    }
    assert_eq!(pred.probabilities_full()[0].dims(), case.geometry.dims);
}

/// On a crop box equal to one patch, the whole-volume pass is the sliding window's one
/// window: the same input, no blending, so bit-identical outputs.
#[test]
fn whole_on_one_patch_equals_the_sliding_window() {
    let mut p = tiny_predictor(Fusion::Adaptive, Targets::Regions, Tta::OFF);
    p.keep_attention = true;
    let case = tiny_case(Subset::FULL, [8, 8, 8]);
    let sliding = p.predict_case(&case, Subset::FULL).unwrap();
    p.window = WindowChoice::Whole;
    let whole = p.predict_case(&case, Subset::FULL).unwrap();
    assert_eq!(
        (sliding.plan.plan, whole.plan.plan),
        (Plan::Sliding, Plan::Whole)
    );
    assert_eq!((sliding.plan.passes, whole.plan.passes), (1, 1));
    assert_eq!(whole.plan.window, [8, 8, 8]);
    assert_eq!(whole.classes, sliding.classes);
    for (a, b) in whole.probabilities.iter().zip(&sliding.probabilities) {
        assert_eq!(a.data(), b.data());
    }
    for ((_, a), (_, b)) in whole.attention.iter().zip(&sliding.attention) {
        assert_eq!(a.data(), b.data());
    }
}

/// A box larger than the patch: the whole plan pads it to the divisor (2) and runs one
/// pass; auto takes it under a large memory cap and the sliding window under a tiny one.
#[test]
fn whole_and_auto_plans_on_a_box_larger_than_the_patch() {
    let mut p = tiny_predictor(Fusion::Adaptive, Targets::Classes, Tta::OFF);
    let case = tiny_case(Subset::FULL, [13, 9, 8]);
    p.window = WindowChoice::Whole;
    let whole = p.predict_case(&case, Subset::FULL).unwrap();
    assert_eq!(whole.plan.window, [14, 10, 8]);
    assert_eq!(whole.plan.passes, 1);
    assert_eq!(whole.classes.dims(), case.geometry.dims);
    for v in 0..whole.probabilities[0].len() {
        let [wt, tc, et] = [0, 1, 2].map(|r| whole.probabilities[r].data()[v]);
        assert!(wt + 1e-5 >= tc && tc + 1e-5 >= et && et >= 0.0 && wt <= 1.0 + 1e-5);
    }
    p.window = WindowChoice::Sliding;
    let sliding = p.predict_case(&case, Subset::FULL).unwrap();
    assert_eq!(sliding.plan.passes, 6);
    assert!(whole.plan.macs < sliding.plan.macs);
    p.window = WindowChoice::Auto;
    p.max_memory = 1 << 40;
    let auto = p.predict_case(&case, Subset::FULL).unwrap();
    assert_eq!(auto.plan, whole.plan);
    assert_eq!(auto.classes, whole.classes);
    p.max_memory = sliding.plan.bytes;
    assert!(whole.plan.bytes > sliding.plan.bytes);
    let auto = p.predict_case(&case, Subset::FULL).unwrap();
    assert_eq!(auto.plan, sliding.plan);
    assert_eq!(auto.classes, sliding.classes);
}

#[test]
fn subsets_the_case_lacks_are_errors() {
    let p = tiny_predictor(Fusion::Average, Targets::Regions, Tta::OFF);
    let case = tiny_case("0011".parse().unwrap(), [8, 8, 8]);
    let e = p.predict_case(&case, Subset::FULL).unwrap_err().to_string();
    assert!(e.contains("lacks"), "{e}");
    assert!(p.predict_case(&case, Subset::EMPTY).is_err());
    assert!(p.predict_subsets(&case, &[]).unwrap().is_empty());
}

#[test]
fn model_folders_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints/best")).unwrap();
    std::fs::write(run.join("checkpoints/best/config.json"), "{}").unwrap();
    assert_eq!(
        resolve_model_dir(&run).unwrap(),
        run.join("checkpoints/best")
    );
    assert_eq!(
        resolve_model_dir(&run.join("checkpoints/best")).unwrap(),
        run.join("checkpoints/best")
    );
    assert!(resolve_model_dir(dir.path()).is_err());
    assert!(resolve_model_dir(&dir.path().join("nope")).is_err());
}

/// The interrupt check runs before every network pass, and its error stops the prediction
/// with that error.
#[test]
fn interrupt_is_asked_before_each_pass_and_stops_the_prediction() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let subset = Subset::from_bits(0b1010);
    let case = tiny_case(subset, [12, 8, 8]);
    let mut p = tiny_predictor(Fusion::Adaptive, Targets::Regions, Tta::OFF);
    p.window = WindowChoice::Sliding;
    let passes = p.window().unwrap().windows([12, 8, 8]).len();
    assert!(passes > 1, "the case must need several windows");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    p.interrupt = Some(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }));
    p.predict_case(&case, subset).unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), passes);

    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    p.interrupt = Some(Box::new(move || {
        if counter.fetch_add(1, Ordering::SeqCst) == 1 {
            anyhow::bail!("stopped by the host");
        }
        Ok(())
    }));
    let err = p.predict_case(&case, subset).unwrap_err();
    assert_eq!(err.to_string(), "stopped by the host");
    assert_eq!(asked.load(Ordering::SeqCst), 2, "no pass after the stop");
}
