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
    assert_eq!(phantom_spacing([96, 96, 96]), [2.0; 3]);
    let s = phantom_spacing([240, 240, 155])[0];
    assert!((0.95..=1.0).contains(&s), "{s}");
    let a = phantom_affine([96, 96, 96]);
    assert_eq!(a[0][0], -2.0);
    assert_eq!(a[1][3], 190.0);
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
        assert!(
            share > 0.7,
            "case {i}: only {share} of the core border is edema"
        );
    }
}

#[test]
fn contrasts_follow_real_mri() {
    let mut checked_et = 0;
    for i in 0..5 {
        let c = generate_case(2, i, [48, 48, 48]);
        let [t1, t1c, t2, flair] = &c.images;
        let wm = healthy(&c, 3);
        let gm = healthy(&c, 2);
        let csf = healthy(&c, 1);
        let ed = mask(&c.classes, |k| k == 2);
        let et = mask(&c.classes, |k| k == 3);
        let m = |img, msk: &[bool]| mean(img, msk).unwrap();
        // T1: WM > GM > CSF; edema darker than WM.
        assert!(
            m(t1, &wm) > m(t1, &gm) && m(t1, &gm) > m(t1, &csf),
            "case {i} T1 order"
        );
        assert!(m(t1, &ed) < 0.95 * m(t1, &wm), "case {i} edema dark on T1");
        // CSF dark on FLAIR, bright on T2.
        assert!(
            m(flair, &csf) < 0.6 * m(flair, &wm),
            "case {i} CSF dark on FLAIR"
        );
        assert!(m(t2, &csf) > 1.5 * m(t2, &wm), "case {i} CSF bright on T2");
        // Edema bright on FLAIR and T2.
        assert!(
            m(flair, &ed) > 1.3 * m(flair, &wm),
            "case {i} edema on FLAIR"
        );
        assert!(m(t2, &ed) > 1.3 * m(t2, &wm), "case {i} edema on T2");
        if let Some(et_t1c) = mean(t1c, &et) {
            checked_et += 1;
            // ET lights up on T1c (against WM and the surrounding edema), not on T1.
            let (wm_t1c, ed_t1c) = (m(t1c, &wm), m(t1c, &ed));
            assert!(
                et_t1c > 1.15 * wm_t1c,
                "case {i} ET on T1c: {et_t1c} vs WM {wm_t1c}"
            );
            assert!(
                et_t1c > 1.3 * ed_t1c,
                "case {i} ET on T1c: {et_t1c} vs edema {ed_t1c}"
            );
            assert!(m(t1, &et) < m(t1, &wm), "case {i} ET not bright on T1");
            let ncr = mask(&c.classes, |k| k == 1);
            if let Some(ncr_t1c) = mean(t1c, &ncr) {
                assert!(ncr_t1c < 0.8 * et_t1c, "case {i} necrosis dark on T1c");
                assert!(m(t1, &ncr) < m(t1, &wm), "case {i} necrosis dark on T1");
            }
        }
    }
    assert!(checked_et >= 2, "too few cases with ET to check");
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
        let c = generate_case(3, i, [48, 48, 48]);
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
    // The default geometry's brain is smaller along z (about 115 mm).
    let (fit, _) = brain_box(&generate_case(2, 0, [80, 96, 75]));
    assert!((fit[2] as f64 * 2.0) < 128.0, "{fit:?}");
}
