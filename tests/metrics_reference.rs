//! Dice, HD95, sensitivity and specificity against medpy (`medpy.metric.binary`) on
//! generated blobby masks: isotropic and anisotropic spacing, masks touching the volume
//! border, tiny and scattered masks, and whole class maps scored region by region.

mod common;

use std::fs;
use std::path::Path;

use a2fseg::labels::Region;
use a2fseg::metrics::{MetricOptions, compare_masks, evaluate_case, region_mask};
use a2fseg::volume::Grid;

use common::Rng;

/// A blobby field: a sum of `n` Gaussian bumps with centres in `[lo, hi)` (fractions of each
/// dim, may lie outside the volume so that blobs are cut by the border) and radii in voxels.
fn field(
    dims: [usize; 3],
    rng: &mut Rng,
    n: usize,
    lo: f64,
    hi: f64,
    radius: [f64; 2],
) -> Vec<f64> {
    let bumps: Vec<([f64; 3], f64)> = (0..n)
        .map(|_| {
            let c = std::array::from_fn(|a| rng.uniform(lo, hi) * dims[a] as f64);
            (c, rng.uniform(radius[0], radius[1]))
        })
        .collect();
    let mut out = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let p = [x as f64, y as f64, z as f64];
                let v: f64 = bumps
                    .iter()
                    .map(|(c, r)| {
                        let d2: f64 = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum();
                        (-d2 / (r * r)).exp()
                    })
                    .sum();
                out.push(v);
            }
        }
    }
    out
}

/// Thresholds a field into a mask and flips about `salt` of the voxels at random, which
/// adds isolated voxels and holes.
fn mask_of(dims: [usize; 3], f: &[f64], threshold: f64, salt: f64, rng: &mut Rng) -> Grid<bool> {
    let data = f
        .iter()
        .map(|&v| (v > threshold) ^ (rng.uniform(0.0, 1.0) < salt))
        .collect();
    Grid::from_vec(dims, data).unwrap()
}

/// One comparison: a pair of masks with the spacing to measure them with.
struct Pair {
    name: String,
    pred: Grid<bool>,
    gt: Grid<bool>,
    spacing: [f64; 3],
}

/// Writes the pairs as raw bytes (x fastest) plus a manifest, runs medpy on them and returns
/// per pair `[dc, hd95, sensitivity, specificity]` (hd95 NaN when a mask is empty).
fn medpy_reference(dir: &Path, pairs: &[Pair]) -> Vec<[f64; 4]> {
    let mut manifest = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let write = |g: &Grid<bool>, tag: &str| {
            let path = dir.join(format!("{i}_{tag}.bin"));
            fs::write(
                &path,
                g.data().iter().map(|&b| b as u8).collect::<Vec<u8>>(),
            )
            .unwrap();
            path.display().to_string()
        };
        manifest.push(serde_json::json!({
            "dims": p.pred.dims(),
            "spacing": p.spacing,
            "pred": write(&p.pred, "pred"),
            "gt": write(&p.gt, "gt"),
        }));
    }
    let manifest_path = dir.join("manifest.json");
    fs::write(&manifest_path, serde_json::to_string(&manifest).unwrap()).unwrap();
    let script = r#"
import json, sys
import numpy as np
from medpy.metric import binary as mb
out = []
for case in json.load(open(sys.argv[1])):
    # Raw bytes are x fastest: Fortran order gives the array [x, y, z], as nibabel would.
    def load(p):
        return np.fromfile(p, dtype=np.uint8).reshape(case["dims"], order="F").astype(bool)
    pred, gt = load(case["pred"]), load(case["gt"])
    dc = mb.dc(pred, gt)
    if pred.any() and gt.any():
        hd = mb.hd95(pred, gt, voxelspacing=case["spacing"])
    else:
        hd = float("nan")
    sens = mb.sensitivity(pred, gt) if gt.any() else float("nan")
    spec = mb.specificity(pred, gt) if (~gt).any() else float("nan")
    out.append([dc, hd, sens, spec])
print(json.dumps(out))
"#;
    let text = common::run_python(script, &[manifest_path.to_str().unwrap()]);
    let text = text.replace("NaN", "null");
    let rows: Vec<Vec<Option<f64>>> = serde_json::from_str(text.trim()).unwrap();
    rows.into_iter()
        .map(|r| std::array::from_fn(|i| r[i].unwrap_or(f64::NAN)))
        .collect()
}

fn close(ours: f64, reference: f64) -> bool {
    (ours - reference).abs() <= 1e-6 * reference.abs() + 1e-12
}

/// The masks every comparison runs on.
fn pairs() -> Vec<Pair> {
    let mut rng = Rng(20231008);
    let mut pairs = Vec::new();
    let spacings = [
        [1.0, 1.0, 1.0],
        [0.8, 1.2, 3.0],
        [1.0, 0.5, 0.7],
        [2.0, 2.0, 1.0],
    ];
    for i in 0..8 {
        let dims = [[40, 36, 28], [33, 41, 17], [24, 24, 24], [50, 20, 12]][i % 4];
        let spacing = spacings[(i / 2) % 4];
        let f = field(dims, &mut rng, 4, 0.2, 0.8, [3.0, 8.0]);
        let gt = mask_of(dims, &f, 0.5, 0.0, &mut rng);
        // The prediction: the same field, shifted threshold, plus noise from other bumps.
        let g = field(dims, &mut rng, 2, 0.1, 0.9, [2.0, 5.0]);
        let h: Vec<f64> = f.iter().zip(&g).map(|(a, b)| a + 0.6 * b).collect();
        let pred = mask_of(dims, &h, rng.uniform(0.4, 0.8), 0.002, &mut rng);
        pairs.push(Pair {
            name: format!("blobs {i} {dims:?} {spacing:?}"),
            pred,
            gt,
            spacing,
        });
    }
    // Blobs centred on and beyond the border: cut by every face.
    for (i, &spacing) in spacings.iter().enumerate().take(4) {
        let dims = [30, 26, 14];
        let f = field(dims, &mut rng, 5, -0.2, 1.2, [5.0, 12.0]);
        let g = field(dims, &mut rng, 5, -0.2, 1.2, [5.0, 12.0]);
        pairs.push(Pair {
            name: format!("border {i} {spacing:?}"),
            pred: mask_of(dims, &f, 0.5, 0.0, &mut rng),
            gt: mask_of(dims, &g, 0.5, 0.0, &mut rng),
            spacing,
        });
    }
    // A mask filling the whole volume against a blob; a single voxel against a blob; a
    // one-voxel-thick slab on the border against scattered voxels.
    let dims = [20, 18, 9];
    let f = field(dims, &mut rng, 3, 0.3, 0.7, [3.0, 6.0]);
    let blob = mask_of(dims, &f, 0.5, 0.0, &mut rng);
    let mut single = Grid::filled(dims, false);
    single.set(19, 0, 4, true);
    let mut slab = Grid::filled(dims, false);
    for y in 0..dims[1] {
        for x in 0..dims[0] {
            slab.set(x, y, 0, true);
        }
    }
    let scattered = mask_of(dims, &vec![0.0; dims.iter().product()], 0.5, 0.01, &mut rng);
    for (name, pred, gt, spacing) in [
        (
            "full vs blob",
            Grid::filled(dims, true),
            blob.clone(),
            [1.0, 1.0, 2.5],
        ),
        ("single vs blob", single, blob.clone(), [0.9, 1.1, 3.3]),
        ("slab vs scattered", slab, scattered, [1.0, 1.0, 5.0]),
        ("identical", blob.clone(), blob, [1.0, 1.0, 1.0]),
    ] {
        pairs.push(Pair {
            name: name.to_string(),
            pred,
            gt,
            spacing,
        });
    }
    pairs
}

#[test]
fn binary_metrics_match_medpy() {
    if !common::python_has(&["numpy", "scipy", "medpy"]) {
        return;
    }
    let dir = common::tempdir();
    let pairs = pairs();
    let reference = medpy_reference(dir.path(), &pairs);
    for (p, r) in pairs.iter().zip(&reference) {
        let ours = compare_masks(&p.pred, &p.gt, p.spacing, 373.13);
        let [dc, hd, sens, spec] = *r;
        assert!(
            close(ours.dice, dc),
            "{}: dice {} vs medpy {dc}",
            p.name,
            ours.dice
        );
        assert!(
            !hd.is_nan(),
            "{}: every generated mask is non-empty",
            p.name
        );
        assert!(
            close(ours.hd95, hd),
            "{}: hd95 {} vs medpy {hd}",
            p.name,
            ours.hd95
        );
        if !sens.is_nan() {
            assert!(
                close(ours.sensitivity, sens),
                "{}: sensitivity {} vs {sens}",
                p.name,
                ours.sensitivity
            );
        }
        if !spec.is_nan() {
            assert!(
                close(ours.specificity, spec),
                "{}: specificity {} vs {spec}",
                p.name,
                ours.specificity
            );
        }
    }
}

#[test]
fn class_maps_match_medpy_region_by_region() {
    if !common::python_has(&["numpy", "scipy", "medpy"]) {
        return;
    }
    let mut rng = Rng(7);
    let dims = [36, 30, 20];
    let spacing = [0.9, 1.1, 2.0];
    // Nested regions: WT ⊃ TC ⊃ ET from one field at rising thresholds, then a second,
    // perturbed field for the prediction.
    let classes = |f: &[f64], rng: &mut Rng| {
        let data = f
            .iter()
            .map(|&v| {
                let v = v + rng.uniform(-0.05, 0.05);
                if v > 1.2 {
                    3
                } else if v > 0.8 {
                    1
                } else if v > 0.4 {
                    2
                } else {
                    0
                }
            })
            .collect();
        Grid::from_vec(dims, data).unwrap()
    };
    let f = field(dims, &mut rng, 6, 0.0, 1.0, [4.0, 9.0]);
    let g = field(dims, &mut rng, 3, 0.0, 1.0, [3.0, 6.0]);
    let h: Vec<f64> = f.iter().zip(&g).map(|(a, b)| a + 0.4 * b).collect();
    let gt = classes(&f, &mut rng);
    let pred = classes(&h, &mut rng);
    let m = evaluate_case(&pred, &gt, spacing, &MetricOptions::default());
    let pairs: Vec<Pair> = Region::ALL
        .iter()
        .map(|&r| Pair {
            name: r.name().to_string(),
            pred: region_mask(&pred, r),
            gt: region_mask(&gt, r),
            spacing,
        })
        .collect();
    let dir = common::tempdir();
    let reference = medpy_reference(dir.path(), &pairs);
    for (r, [dc, hd, _, _]) in Region::ALL.iter().zip(reference) {
        let ours = m.region(*r);
        assert!(
            ours.gt_voxels > 0 && ours.pred_voxels > 0,
            "{r}: empty region"
        );
        assert!(
            close(ours.dice, dc),
            "{r}: dice {} vs medpy {dc}",
            ours.dice
        );
        assert!(
            close(ours.hd95, hd),
            "{r}: hd95 {} vs medpy {hd}",
            ours.hd95
        );
    }
}
