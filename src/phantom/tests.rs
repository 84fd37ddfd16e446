//! Property tests of generated cases: determinism, label structure, contrasts, variety and
//! difficulty.

use super::*;

/// Voxel indices where `pred` holds.
fn mask<T: Copy>(g: &Grid<T>, pred: impl Fn(T) -> bool) -> Vec<bool> {
    g.data().iter().map(|&v| pred(v)).collect()
}

/// Mean of `img` over `m` (None when `m` is empty).
fn mean(img: &Grid<f32>, m: &[bool]) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for (&v, &k) in img.data().iter().zip(m) {
        if k {
            s += v as f64;
            n += 1;
        }
    }
    (n > 0).then(|| s / n as f64)
}

fn dice(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let total = a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count();
    if total == 0 {
        1.0
    } else {
        2.0 * inter as f64 / total as f64
    }
}

/// Healthy tissue `t` (1 CSF, 2 GM, 3 WM) well away from the tumour.
fn healthy(c: &PhantomCase, t: u8) -> Vec<bool> {
    let [nx, ny, _] = c.classes.dims();
    let ctr = c.tumour.centre_voxel;
    let far = 1.8 * c.tumour.edema_radius_mm / c.geometry.spacing[0] + 2.0;
    c.tissues
        .data()
        .iter()
        .zip(c.classes.data())
        .enumerate()
        .map(|(i, (&tis, &cls))| {
            let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
            let d2 = (x as f64 - ctr[0]).powi(2)
                + (y as f64 - ctr[1]).powi(2)
                + (z as f64 - ctr[2]).powi(2);
            tis == t && cls == 0 && d2 > far * far
        })
        .collect()
}

#[test]
fn spacing_scales_with_the_shape() {
    // The default geometry is BraTS's: 1 mm on its grid, 3 mm on 80×80×52.
    assert_eq!(phantom_spacing([240, 240, 155]), [1.0; 3]);
    assert_eq!(phantom_spacing([80, 80, 52]), [3.0; 3]);
    let a = phantom_affine([80, 80, 52]);
    assert_eq!(a[0][0], -3.0);
    assert_eq!(a[1][3], 237.0);
}

#[test]
fn same_seed_same_case_other_seed_or_index_other_case() {
    let dims = [20, 24, 18];
    let a = generate_case(5, 3, dims);
    let b = generate_case(5, 3, dims);
    assert_eq!(a.id, "BraTS20_Training_004");
    assert_eq!(a.images, b.images);
    assert_eq!(a.classes, b.classes);
    assert_eq!(a.tumour, b.tumour);
    let c = generate_case(6, 3, dims);
    let d = generate_case(5, 4, dims);
    assert_ne!(a.images[0], c.images[0]);
    assert_ne!(a.images[0], d.images[0]);
    assert_ne!(a.tumour, c.tumour);
}

#[test]
fn rendering_does_not_depend_on_the_thread_count() {
    let dims = [16, 16, 16];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let a = one.install(|| generate_case(9, 0, dims));
    let b = generate_case(9, 0, dims);
    assert_eq!(a.images, b.images);
}

#[test]
fn background_is_zero_and_the_brain_is_not() {
    let c = generate_case(1, 0, [32, 32, 32]);
    for img in &c.images {
        for (&v, &t) in img.data().iter().zip(c.tissues.data()) {
            assert!(v.is_finite());
            assert_eq!(v > 0.0, t > 0, "zero exactly outside the brain");
        }
    }
    // Skull-stripped: the border of the grid is empty, so cropping has work to do.
    let [nx, ny, nz] = c.tissues.dims();
    for z in [0, nz - 1] {
        for y in 0..ny {
            for x in 0..nx {
                assert_eq!(c.tissues.get(x, y, z), 0);
            }
        }
    }
    let brain = c.tissues.data().iter().filter(|&&t| t > 0).count();
    let frac = brain as f64 / c.tissues.len() as f64;
    assert!((0.1..0.6).contains(&frac), "brain fills {frac} of the grid");
}

#[test]
fn labels_are_nested_in_one_tumour() {
    for i in 0..4 {
        let c = generate_case(11, i, [40, 40, 40]);
        let [nx, ny, nz] = c.classes.dims();
        let ctr = c.tumour.centre_voxel;
        let reach = 2.5 * c.tumour.edema_radius_mm / c.geometry.spacing[0] + 1.0;
        let mut core_border = 0;
        let mut core_border_in_wt = 0;
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let k = c.classes.get(x, y, z);
                    assert!(k <= 3);
                    if k == 0 {
                        continue;
                    }
                    assert!(c.tissues.get(x, y, z) > 0, "tumour inside the brain");
                    let d = ((x as f64 - ctr[0]).powi(2)
                        + (y as f64 - ctr[1]).powi(2)
                        + (z as f64 - ctr[2]).powi(2))
                    .sqrt();
                    assert!(
                        d < reach,
                        "case {i}: tumour voxel {d} voxels from its centre"
                    );
                    if k == 2 {
                        continue;
                    }
                    // Neighbours of the core that are not core: edema, rarely background
                    // (where the core reaches the cortex or a ventricle).
                    let nb = [
                        (x.wrapping_sub(1), y, z),
                        (x + 1, y, z),
                        (x, y.wrapping_sub(1), z),
                        (x, y + 1, z),
                        (x, y, z.wrapping_sub(1)),
                        (x, y, z + 1),
                    ];
                    for (a, b, cc) in nb {
                        if a < nx && b < ny && cc < nz {
                            let kn = c.classes.get(a, b, cc);
                            if kn == 0 || kn == 2 {
                                core_border += 1;
                                core_border_in_wt += (kn == 2) as usize;
                            }
                        }
                    }
                }
            }
        }
        assert!(core_border > 0, "case {i} has a core");
        let share = core_border_in_wt as f64 / core_border as f64;
        // Real cores touch the cortex or a ventricle in places, and edema follows white
        // matter, so not all of the border is edema.
        assert!(
            share > 0.5,
            "case {i}: only {share} of the core border is edema"
        );
    }
}

/// Mean z-score of `img` over `region`, the image z-scored over the brain (its non-zero
/// voxels) as preprocessing does; `None` when `region` is empty.
fn mean_z(img: &Grid<f32>, region: &[bool]) -> Option<f64> {
    let brain: Vec<bool> = img.data().iter().map(|&v| v != 0.0).collect();
    let mu = mean(img, &brain)?;
    let var = img
        .data()
        .iter()
        .zip(&brain)
        .filter(|(_, b)| **b)
        .map(|(&v, _)| (v as f64 - mu).powi(2))
        .sum::<f64>()
        / brain.iter().filter(|b| **b).count() as f64;
    Some((mean(img, region)? - mu) / var.sqrt())
}

#[test]
fn contrasts_follow_real_mri() {
    let mut checked_et = 0;
    for i in 0..6 {
        let c = generate_case(2, i, [80, 80, 52]);
        let [t1, t1c, t2, flair] = &c.images;
        let wm = healthy(&c, 3);
        let gm = healthy(&c, 2);
        let csf = healthy(&c, 1);
        let ed = mask(&c.classes, |k| k == 2);
        let et = mask(&c.classes, |k| k == 3);
        let ncr = mask(&c.classes, |k| k == 1);
        let m = |img, msk: &[bool]| mean(img, msk).unwrap();
        // Healthy tissue as in real MRI: T1 WM > GM > CSF; CSF dark on FLAIR, bright on T2.
        assert!(
            m(t1, &wm) > m(t1, &gm) && m(t1, &gm) > m(t1, &csf),
            "case {i} T1 order"
        );
        assert!(
            m(flair, &csf) < 0.6 * m(flair, &wm),
            "case {i} CSF dark on FLAIR"
        );
        assert!(m(t2, &csf) > 1.5 * m(t2, &wm), "case {i} CSF bright on T2");
        // Edema and the core are bright on FLAIR against the brain.
        let z = |img, msk: &[bool]| mean_z(img, msk).unwrap();
        assert!(
            z(flair, &ed) > 0.4,
            "case {i} edema on FLAIR: z {}",
            z(flair, &ed)
        );
        if let Some(ncr_flair) = mean_z(flair, &ncr) {
            assert!(ncr_flair > 0.4, "case {i} core on FLAIR: z {ncr_flair}");
        }
        if let Some(et_t1c) = mean_z(t1c, &et) {
            checked_et += 1;
            // ET lights up on T1c, against the brain and against the core it surrounds.
            assert!(et_t1c > 0.3, "case {i} ET on T1c: z {et_t1c}");
            if let Some(ncr_t1c) = mean_z(t1c, &ncr) {
                assert!(
                    et_t1c > ncr_t1c + 0.3,
                    "case {i} ET {et_t1c} vs core {ncr_t1c} on T1c"
                );
            }
        }
    }
    assert!(checked_et >= 3, "too few cases with ET to check");
}

/// Real BraTS 2019/2021 (11 skull-stripped 1 mm cases, measured as `dataset stats` does):
/// mean z-score and its s.d. across cases, per modality (T1, T1c, T2, FLAIR) and region
/// (NCR, edema, ET). The README shows this table beside the phantoms'.
const REAL_Z: [[(f64, f64); 3]; 4] = [
    [(-0.13, 0.85), (0.13, 0.37), (0.08, 0.58)],
    [(-0.38, 0.63), (-0.23, 0.29), (1.94, 0.77)],
    [(1.43, 0.85), (0.57, 0.46), (0.54, 0.49)],
    [(2.61, 0.60), (1.96, 0.70), (2.09, 0.93)],
];

/// Standard deviation of `img` over `m` (None below 20 voxels).
fn sd(img: &Grid<f32>, m: &[bool]) -> Option<f64> {
    let mu = mean(img, m)?;
    let (mut s2, mut n) = (0.0, 0usize);
    for (&v, &k) in img.data().iter().zip(m) {
        if k {
            s2 += (v as f64 - mu).powi(2);
            n += 1;
        }
    }
    (n >= 20).then(|| (s2 / n as f64).sqrt())
}

#[test]
fn the_core_is_heterogeneous_and_the_edema_smooth() {
    // Version 5: on T2 and FLAIR, the voxels of each core label vary more about their mean
    // than the edema's do, though the edema's fade towards its border adds to its spread.
    let (mut core, mut edema) = ([0.0; 2], [0.0; 2]);
    for i in 0..4 {
        let c = generate_case(5, i, [80, 80, 52]);
        let ed = mask(&c.classes, |k| k == 2);
        for (j, img) in [&c.images[2], &c.images[3]].into_iter().enumerate() {
            // Spreads relative to the edema's mean, so cases of any gain weigh alike.
            let scale = mean(img, &ed).unwrap();
            edema[j] += sd(img, &ed).unwrap() / scale;
            let parts: Vec<f64> = [1u8, 3]
                .iter()
                .filter_map(|&k| sd(img, &mask(&c.classes, |v| v == k)))
                .collect();
            core[j] += parts.iter().sum::<f64>() / parts.len() as f64 / scale;
        }
    }
    // Without the core's texture (version 4) the ratios were 1.11 (T2) and 0.84 (FLAIR);
    // with it, 1.52 and 1.23.
    for (j, (name, ratio)) in [("T2", 1.3), ("FLAIR", 1.1)].into_iter().enumerate() {
        assert!(
            core[j] > ratio * edema[j],
            "{name}: core spread {} against edema {}",
            core[j] / 4.0,
            edema[j] / 4.0
        );
    }
}

#[test]
fn region_statistics_match_real_brats() {
    use crate::dataset::{LoadedCase, stats};
    use crate::labels::LabelConvention;
    let per_case: Vec<_> = (0..24)
        .map(|i| {
            let c = generate_case(9, i, [60, 60, 39]);
            let case = LoadedCase {
                id: c.id.clone(),
                geometry: c.geometry.clone(),
                images: c.images.clone().map(Some),
                classes: Some(c.classes.clone()),
                convention: LabelConvention::Brats,
            };
            stats::case_stats(&case).unwrap()
        })
        .collect();
    let table = stats::summarise(per_case, LabelConvention::Brats).unwrap();
    for (m, row) in table.z.iter().enumerate() {
        for (r, cell) in [&row.ncr, &row.edema, &row.et].into_iter().enumerate() {
            let got = cell.expect("every region occurs");
            let (mean, sd) = REAL_Z[m][r];
            let got_sd = got.sd.unwrap();
            eprintln!(
                "{} region {r}: {:+.2} ± {:.2} (real {mean:+.2} ± {sd:.2})",
                row.modality, got.mean, got_sd
            );
            // Within one real s.d. of the real mean, spread across cases close to the
            // real one or wider (24 cases at 4 mm: some sampling slack).
            assert!((got.mean - mean).abs() <= sd, "{} region {r}", row.modality);
            assert!(
                got_sd >= 0.7 * sd,
                "{} region {r}: s.d. {got_sd}",
                row.modality
            );
        }
    }
}

#[test]
fn tumours_vary_and_some_do_not_enhance() {
    let cases: Vec<_> = (0..30).map(|i| generate_case(4, i, [24, 24, 24])).collect();
    let radii: Vec<f64> = cases.iter().map(|c| c.tumour.edema_radius_mm).collect();
    let lo = radii.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = radii.iter().cloned().fold(0.0, f64::max);
    assert!(hi / lo > 1.8, "edema radii {lo}..{hi}");
    let low: Vec<_> = cases
        .iter()
        .filter(|c| c.tumour.grade == Grade::Low)
        .collect();
    assert!(
        !low.is_empty() && low.len() < 12,
        "{} low-grade of 30",
        low.len()
    );
    for c in &low {
        assert!(
            !c.classes.data().contains(&3),
            "{}: low grade without ET",
            c.id
        );
    }
    let with_et = cases
        .iter()
        .filter(|c| c.classes.data().contains(&3))
        .count();
    assert!(with_et >= 15, "{with_et} cases with ET");
    // Positions differ: centres spread over the brain.
    let xs: Vec<f64> = cases.iter().map(|c| c.tumour.centre_voxel[0]).collect();
    assert!(
        xs.iter().any(|&x| x < 11.0) && xs.iter().any(|&x| x > 13.0),
        "both hemispheres"
    );
}

/// Best Dice of `img > t` against `truth` over thresholds relative to the brain median.
fn best_threshold_dice(img: &Grid<f32>, brain: &[bool], truth: &[bool]) -> f64 {
    let mut v: Vec<f32> = img
        .data()
        .iter()
        .zip(brain)
        .filter(|(_, b)| **b)
        .map(|(x, _)| *x)
        .collect();
    v.sort_by(f32::total_cmp);
    let median = v[v.len() / 2] as f64;
    (0..150)
        .map(|k| {
            let t = median * (0.5 + 0.02 * k as f64);
            let pred: Vec<bool> = img.data().iter().map(|&x| x as f64 > t).collect();
            dice(&pred, truth)
        })
        .fold(0.0, f64::max)
}

#[test]
fn an_intensity_threshold_is_not_enough() {
    let (mut wt, mut et, mut n_et) = (0.0, 0.0, 0);
    let n = 4;
    for i in 0..n {
        let c = generate_case(3, i, [80, 80, 52]);
        let brain = mask(&c.tissues, |t| t > 0);
        let wt_truth = mask(&c.classes, |k| k > 0);
        let et_truth = mask(&c.classes, |k| k == 3);
        wt += best_threshold_dice(&c.images[3], &brain, &wt_truth);
        if et_truth.iter().any(|&b| b) {
            et += best_threshold_dice(&c.images[1], &brain, &et_truth);
            n_et += 1;
        }
    }
    let (wt, et) = (wt / n as f64, et / n_et.max(1) as f64);
    eprintln!("oracle-threshold Dice: WT on FLAIR {wt:.3}, ET on T1c {et:.3}");
    // FLAIR carries the whole tumour and T1c the enhancing part, but thresholds alone
    // (even with a per-case oracle threshold) must not solve the task.
    assert!(wt > 0.4 && wt < 0.95, "WT {wt}");
    assert!(n_et == 0 || (et > 0.2 && et < 0.95), "ET {et}");
}

/// The bounding box `[x, y, z]` (voxels) of the brain (tissue > 0), and whether it touches
/// the grid's border.
fn brain_box(c: &PhantomCase) -> ([usize; 3], bool) {
    let dims = c.tissues.dims();
    let mut lo = dims;
    let mut hi = [0usize; 3];
    for (i, &t) in c.tissues.data().iter().enumerate() {
        if t > 0 {
            let p = [
                i % dims[0],
                (i / dims[0]) % dims[1],
                i / (dims[0] * dims[1]),
            ];
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
    }
    let touches = (0..3).any(|a| lo[a] == 0 || hi[a] + 1 == dims[a]);
    (std::array::from_fn(|a| hi[a] + 1 - lo[a]), touches)
}

#[test]
fn brats_geometry_draws_a_brats_sized_brain_on_1_mm() {
    // One case on BraTS's own grid: 1 mm voxels, a brain box of about 140×175×140.
    let c = generate_case_with(1, 0, BRATS_SHAPE, PhantomGeometry::Brats);
    assert_eq!(c.geometry.spacing, [1.0; 3]);
    assert_eq!(c.geometry.dims, [240, 240, 155]);
    let (b, touches) = brain_box(&c);
    eprintln!("brats geometry, 1 mm: brain box {b:?}");
    assert!(!touches, "the brain reaches the border: {b:?}");
    for (a, (&got, want)) in b.iter().zip([140.0, 175.0, 140.0]).enumerate() {
        let ratio = got as f64 / want;
        assert!((0.92..=1.08).contains(&ratio), "axis {a}: {got} voxels");
    }
    // More cases at 2 mm (the same geometry on a 120×120×78 grid): the box in millimetres
    // stays near the target, varies between cases, and the brain stays inside the grid.
    let mut boxes = Vec::new();
    for i in 0..6 {
        let c = generate_case_with(2, i, [120, 120, 78], PhantomGeometry::Brats);
        assert_eq!(c.geometry.spacing, [2.0; 3]);
        let (b, touches) = brain_box(&c);
        assert!(!touches, "case {i}: the brain reaches the border: {b:?}");
        boxes.push(b.map(|v| v as f64 * 2.0));
        // The same draws as the default geometry: the same kind of tumour.
        let fit = generate_case(2, i, [24, 24, 24]);
        assert_eq!(c.tumour.grade, fit.tumour.grade);
        assert_eq!(c.tumour.edema_radius_mm, fit.tumour.edema_radius_mm);
    }
    eprintln!("brats geometry, 2 mm: brain boxes (mm) {boxes:?}");
    for (a, want) in [140.0, 175.0, 140.0].into_iter().enumerate() {
        let sizes: Vec<f64> = boxes.iter().map(|b| b[a]).collect();
        let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
        assert!((mean / want - 1.0).abs() < 0.05, "axis {a}: mean {mean} mm");
        let (lo, hi) = sizes
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(hi > lo, "axis {a}: every case has the same size {lo}");
        assert!(
            lo > 0.88 * want && hi < 1.1 * want,
            "axis {a}: {lo}..{hi} mm"
        );
    }
    // The fit geometry's brain is smaller along z (about 115 mm).
    let (fit, _) = brain_box(&generate_case_with(
        2,
        0,
        [80, 96, 75],
        PhantomGeometry::Fit,
    ));
    assert!((fit[2] as f64 * 2.0) < 128.0, "{fit:?}");
}
