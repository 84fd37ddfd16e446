//! Random training patches with foreground oversampling.
//!
//! A patch is placed by its centre in case voxel coordinates. With probability
//! `foreground_fraction`, decided for every patch on its own (so it really happens at batch
//! size 1, unlike the authors' code, which forces foreground only for the last third of a
//! batch and therefore never at batch size 1), the patch is centred on a random tumour
//! voxel; otherwise its corner is uniform over all positions that keep it inside the case,
//! or, where the case is smaller than the patch, that keep the case inside the patch.
//! Voxels of the patch outside the case are zero (images) and background (labels).

use anyhow::{Result, ensure};
use rand::{Rng, RngExt};

use super::augment::{self, Mat3};
use crate::modality::{Modality, Subset};
use crate::volume::Grid;

/// One preprocessed training case held in memory: the modalities it has (at least one)
/// and the class map (TumourClass indices), all of the same dims `[x, y, z]`.
#[derive(Debug, Clone)]
pub struct TrainCase {
    /// Case id.
    pub id: String,
    /// T1, T1c, T2, FLAIR; `None` where the case lacks the modality.
    pub images: [Option<Grid<f32>>; 4],
    /// Class map (0 background, 1 NCR, 2 ED, 3 ET).
    pub classes: Grid<u8>,
    /// Linear indices of the tumour voxels (class > 0), for foreground oversampling.
    pub foreground: Vec<u32>,
}

impl TrainCase {
    /// Builds a case with all four modalities, checking that the images and the class map
    /// share one shape.
    pub fn new(id: String, images: [Grid<f32>; 4], classes: Grid<u8>) -> Result<TrainCase> {
        Self::with_modalities(id, images.map(Some), classes)
    }

    /// Builds a case from the modalities it has (at least one), checking that the images
    /// and the class map share one shape.
    pub fn with_modalities(
        id: String,
        images: [Option<Grid<f32>>; 4],
        classes: Grid<u8>,
    ) -> Result<TrainCase> {
        let dims = classes.dims();
        ensure!(
            images.iter().any(Option::is_some),
            "case {id} has no image to train on"
        );
        for (m, img) in Modality::ALL.iter().zip(&images) {
            let Some(img) = img else { continue };
            ensure!(
                img.dims() == dims,
                "case {id}: {m} has shape {:?} but the segmentation has shape {dims:?}",
                img.dims()
            );
        }
        ensure!(!classes.is_empty(), "case {id} has an empty image");
        ensure!(
            classes.len() <= u32::MAX as usize,
            "case {id} is too large ({} voxels)",
            classes.len()
        );
        let foreground = classes
            .data()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(TrainCase {
            id,
            images,
            classes,
            foreground,
        })
    }

    /// `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.classes.dims()
    }

    /// The modalities the case has.
    pub fn available(&self) -> Subset {
        Subset::from_modalities(
            Modality::ALL
                .into_iter()
                .filter(|m| self.images[m.index()].is_some()),
        )
    }

    /// The image of `m`; `subset` planning guarantees it exists (see
    /// `super::loader::make_batch`).
    fn image(&self, m: Modality) -> &Grid<f32> {
        self.images[m.index()]
            .as_ref()
            .expect("a training subset only holds modalities its cases have")
    }
}

/// Where one patch is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchPlan {
    /// Index of the case in the training list.
    pub case: usize,
    /// Integer corner of the unaugmented patch (may be negative: padding).
    pub corner: [i64; 3],
    /// Whether the patch was centred on a tumour voxel.
    pub foreground: bool,
}

/// Draws the corner of a patch in a case of `dims`: centred on a tumour voxel with
/// probability `foreground_fraction` (if the case has any), uniform otherwise.
pub fn plan_patch<R: Rng + ?Sized>(
    rng: &mut R,
    case_index: usize,
    case: &TrainCase,
    patch: [usize; 3],
    foreground_fraction: f64,
) -> PatchPlan {
    let dims = case.dims();
    // Draw both alternatives' numbers unconditionally: the decision does not shift the
    // random values of later draws.
    let want_fg = rng.random_bool(foreground_fraction.clamp(0.0, 1.0));
    let fg_pick: u64 = rng.random();
    let uniform: [f64; 3] = std::array::from_fn(|_| rng.random());
    let bounds: [(i64, i64); 3] = std::array::from_fn(|a| {
        let slack = dims[a] as i64 - patch[a] as i64;
        (slack.min(0), slack.max(0))
    });
    if want_fg && !case.foreground.is_empty() {
        let idx = case.foreground[(fg_pick % case.foreground.len() as u64) as usize] as usize;
        let v = [
            idx % dims[0],
            (idx / dims[0]) % dims[1],
            idx / (dims[0] * dims[1]),
        ];
        let corner = std::array::from_fn(|a| {
            (v[a] as i64 - patch[a] as i64 / 2).clamp(bounds[a].0, bounds[a].1)
        });
        return PatchPlan {
            case: case_index,
            corner,
            foreground: true,
        };
    }
    let corner = std::array::from_fn(|a| {
        let (lo, hi) = bounds[a];
        let n = (hi - lo + 1) as f64;
        lo + ((uniform[a] * n) as i64).min(hi - lo)
    });
    PatchPlan {
        case: case_index,
        corner,
        foreground: false,
    }
}

/// One extracted patch: the requested modalities' images and the class map, each of
/// `patch` dims (x fastest, i.e. the tensor `[D, H, W]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// Image patches in canonical modality order, only for the requested modalities.
    pub images: Vec<(Modality, Vec<f32>)>,
    /// Class map patch.
    pub classes: Vec<u8>,
}

/// Cuts a patch of size `patch` at `plan` from `case`, transformed by `transform` (see
/// [`augment::sample_spatial`]) about the patch centre, for the modalities in `subset`
/// (which must be among the case's, [`TrainCase::available`]).
/// Pure mirroring copies voxels; any other transform interpolates images trilinearly and
/// labels by nearest neighbour. Outside the case: 0 and background.
pub fn extract_patch(
    case: &TrainCase,
    plan: &PatchPlan,
    patch: [usize; 3],
    transform: &Mat3,
    subset: Subset,
) -> Patch {
    let n = patch[0] * patch[1] * patch[2];
    let modalities: Vec<Modality> = subset.modalities().collect();
    let mut images: Vec<(Modality, Vec<f32>)> =
        modalities.iter().map(|&m| (m, vec![0f32; n])).collect();
    let mut classes = vec![0u8; n];
    let dims = case.dims();
    let mid: [f64; 3] = std::array::from_fn(|a| (patch[a] as f64 - 1.0) / 2.0);
    let centre: [f64; 3] = std::array::from_fn(|a| plan.corner[a] as f64 + mid[a]);

    if augment::is_mirror_only(transform) {
        // Integer copy: source = corner + o, or corner + (P − 1 − o) when mirrored.
        let src_index = |a: usize, o: usize| -> Option<usize> {
            let o = if transform[a][a] < 0.0 {
                patch[a] - 1 - o
            } else {
                o
            };
            let s = plan.corner[a] + o as i64;
            (s >= 0 && s < dims[a] as i64).then_some(s as usize)
        };
        let xs: Vec<Option<usize>> = (0..patch[0]).map(|o| src_index(0, o)).collect();
        for oz in 0..patch[2] {
            let Some(sz) = src_index(2, oz) else { continue };
            for oy in 0..patch[1] {
                let Some(sy) = src_index(1, oy) else { continue };
                let out_row = patch[0] * (oy + patch[1] * oz);
                let src_row = dims[0] * (sy + dims[1] * sz);
                for (ox, sx) in xs.iter().enumerate() {
                    let Some(sx) = sx else { continue };
                    let (o, s) = (out_row + ox, src_row + sx);
                    classes[o] = case.classes.data()[s];
                    for (m, img) in images.iter_mut() {
                        img[o] = case.image(*m).data()[s];
                    }
                }
            }
        }
        return Patch { images, classes };
    }

    for oz in 0..patch[2] {
        for oy in 0..patch[1] {
            for ox in 0..patch[0] {
                let off = [ox as f64 - mid[0], oy as f64 - mid[1], oz as f64 - mid[2]];
                let s: [f64; 3] = std::array::from_fn(|i| {
                    centre[i] + (0..3).map(|j| transform[i][j] * off[j]).sum::<f64>()
                });
                let o = ox + patch[0] * (oy + patch[1] * oz);
                // Nearest neighbour for labels.
                let r: [i64; 3] = std::array::from_fn(|a| s[a].round() as i64);
                if (0..3).all(|a| r[a] >= 0 && r[a] < dims[a] as i64) {
                    classes[o] = case
                        .classes
                        .get(r[0] as usize, r[1] as usize, r[2] as usize);
                }
                // Trilinear for images, zero outside.
                let f: [i64; 3] = std::array::from_fn(|a| s[a].floor() as i64);
                if (0..3).any(|a| f[a] + 1 < 0 || f[a] >= dims[a] as i64) {
                    continue;
                }
                let t: [f64; 3] = std::array::from_fn(|a| s[a] - f[a] as f64);
                for (m, img) in images.iter_mut() {
                    let grid = case.image(*m);
                    let mut acc = 0.0f64;
                    for corner in 0..8usize {
                        let mut w = 1.0;
                        let mut p = [0usize; 3];
                        let mut inside = true;
                        for a in 0..3 {
                            let bit = (corner >> a) & 1;
                            let c = f[a] + bit as i64;
                            w *= if bit == 1 { t[a] } else { 1.0 - t[a] };
                            if c < 0 || c >= dims[a] as i64 {
                                inside = false;
                            } else {
                                p[a] = c as usize;
                            }
                        }
                        if inside && w != 0.0 {
                            acc += w * grid.get(p[0], p[1], p[2]) as f64;
                        }
                    }
                    img[o] = acc as f32;
                }
            }
        }
    }
    Patch { images, classes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::augment::{AugmentConfig, IDENTITY, rotation, sample_spatial};
    use crate::train::rng;

    /// A case whose images equal their class map plus 10·modality index, with a small
    /// tumour block.
    fn case(dims: [usize; 3], tumour: ([usize; 3], [usize; 3])) -> TrainCase {
        let mut classes = Grid::<u8>::zeros(dims);
        let (lo, hi) = tumour;
        for z in lo[2]..hi[2] {
            for y in lo[1]..hi[1] {
                for x in lo[0]..hi[0] {
                    classes.set(x, y, z, 1 + ((x + y + z) % 3) as u8);
                }
            }
        }
        let images = std::array::from_fn(|m| classes.map(|c| c as f32 + 10.0 * m as f32));
        TrainCase::new("c".into(), images, classes).unwrap()
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let c = Grid::<u8>::zeros([4, 4, 4]);
        let mut imgs: [Grid<f32>; 4] = std::array::from_fn(|_| Grid::zeros([4, 4, 4]));
        imgs[2] = Grid::zeros([4, 4, 5]);
        let e = TrainCase::new("x".into(), imgs, c).unwrap_err().to_string();
        assert!(e.contains("T2") && e.contains("[4, 4, 5]"), "{e}");
    }

    #[test]
    fn a_third_of_patches_are_foreground_at_batch_size_one() {
        let c = case([40, 40, 40], ([30, 30, 30], [33, 33, 33]));
        let patch = [8, 8, 8];
        let n = 3000;
        let mut fg_plans = 0;
        let mut contains_tumour = 0;
        for i in 0..n {
            let mut r = rng::stream(5, &[rng::PATCH, 0, i, 0]);
            let p = plan_patch(&mut r, 0, &c, patch, 0.33);
            fg_plans += p.foreground as usize;
            let x = extract_patch(&c, &p, patch, &IDENTITY, Subset::FULL);
            let has = x.classes.iter().any(|&v| v > 0);
            contains_tumour += has as usize;
            if p.foreground {
                assert!(has, "a foreground patch must contain tumour");
            }
        }
        // Expected 990, sd ≈ 26.
        assert!((900..1080).contains(&fg_plans), "{fg_plans}");
        // Random patches rarely hit the small tumour: the rate is driven by oversampling.
        assert!(contains_tumour >= fg_plans && contains_tumour < fg_plans + 300);
    }

    #[test]
    fn small_cases_are_zero_padded_and_contained() {
        let c = case([5, 6, 7], ([1, 1, 1], [3, 3, 3]));
        let patch = [8, 8, 8];
        for i in 0..50 {
            let mut r = rng::stream(6, &[i]);
            let p = plan_patch(&mut r, 0, &c, patch, 0.5);
            for a in 0..3 {
                assert!(p.corner[a] <= 0 && p.corner[a] + 8 >= c.dims()[a] as i64);
            }
            let x = extract_patch(&c, &p, patch, &IDENTITY, Subset::FULL);
            // The whole case is inside the patch: every tumour voxel and the 5·6·7 voxels of
            // T2 (value 20 + class) are there; everything else is zero.
            let t2 = &x.images[2].1;
            assert_eq!(t2.iter().filter(|&&v| v >= 20.0).count(), 5 * 6 * 7);
            assert_eq!(t2.iter().filter(|&&v| v == 0.0).count(), 512 - 210);
            assert_eq!(
                x.classes.iter().filter(|&&v| v > 0).count(),
                c.foreground.len()
            );
        }
    }

    #[test]
    fn labels_stay_aligned_with_images_under_mirroring_and_quarter_turns() {
        let c = case([12, 10, 9], ([2, 2, 2], [9, 8, 7]));
        let patch = [6, 6, 6];
        let plan = PatchPlan {
            case: 0,
            corner: [3, 2, 1],
            foreground: false,
        };
        let cfg = AugmentConfig {
            mirror_p: 0.5,
            ..AugmentConfig::none()
        };
        let q = std::f64::consts::FRAC_PI_2;
        let mut transforms = vec![rotation(2, q), rotation(0, -q), rotation(1, 2.0 * q)];
        for i in 0..8 {
            transforms.push(sample_spatial(&mut rng::stream(9, &[i]), &cfg));
        }
        let reference = extract_patch(&c, &plan, patch, &IDENTITY, Subset::FULL);
        for t in &transforms {
            let x = extract_patch(&c, &plan, patch, t, Subset::from_bits(0b0110));
            assert_eq!(x.images.len(), 2);
            for (m, img) in &x.images {
                for (v, &cl) in img.iter().zip(&x.classes) {
                    assert!(
                        (v - (cl as f32 + 10.0 * m.index() as f32)).abs() < 1e-4,
                        "label/image mismatch under {t:?}"
                    );
                }
            }
            // Same content as the unaugmented patch, rearranged.
            let mut a = x.classes.clone();
            let mut b = reference.classes.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn rotation_and_scaling_keep_labels_in_place_of_image_structure() {
        // Under a general transform, images interpolate and labels do not, but a voxel whose
        // nearest source is deep inside a uniform block agrees.
        let mut classes = Grid::<u8>::zeros([20, 20, 20]);
        for z in 6..14 {
            for y in 6..14 {
                for x in 6..14 {
                    classes.set(x, y, z, 2);
                }
            }
        }
        let images = std::array::from_fn(|_| classes.map(|c| c as f32));
        let c = TrainCase::new("b".into(), images, classes).unwrap();
        let cfg = AugmentConfig {
            rotation_p: 1.0,
            scale_p: 1.0,
            mirror_p: 0.5,
            ..AugmentConfig::none()
        };
        let plan = PatchPlan {
            case: 0,
            corner: [4, 4, 4],
            foreground: false,
        };
        for i in 0..5 {
            let t = sample_spatial(&mut rng::stream(11, &[i]), &cfg);
            let x = extract_patch(&c, &plan, [12, 12, 12], &t, Subset::FULL);
            let img = &x.images[0].1;
            let centre = 6 + 12 * (6 + 12 * 6);
            assert_eq!(x.classes[centre], 2);
            assert!((img[centre] - 2.0).abs() < 1e-4);
            for (v, &cl) in img.iter().zip(&x.classes) {
                if *v == 2.0 {
                    assert_eq!(cl, 2);
                }
                if *v == 0.0 {
                    assert_eq!(cl, 0);
                }
            }
        }
    }
}
