//! Surfaces of binary masks, surface distances and the 95th-percentile Hausdorff distance.
//!
//! Conventions (the ones of medpy's `hd95`, which BraTS evaluations use):
//! - The surface of a mask is the mask minus its erosion by the 6-connected cross. Outside
//!   the volume counts as background (scipy's `binary_erosion` with `border_value=0`), so a
//!   mask voxel on the volume's border is always a surface voxel.
//! - The distance of a surface voxel of one mask is the exact Euclidean distance, with the
//!   voxel spacing, to the nearest surface voxel of the other mask.
//! - HD95 is the 95th percentile, with linear interpolation (numpy's default), of the
//!   distances of both directions pooled together.

use rayon::prelude::*;

use super::edt::squared_edt;
use crate::volume::Grid;

/// The surface voxels of `mask` (dims `[nx, ny, nz]`, x fastest): mask voxels with at least
/// one of their 6 face neighbours outside the mask or outside the volume.
pub fn surface(mask: &Grid<bool>) -> Grid<bool> {
    let dims = mask.dims();
    let data = surface_of(mask.data(), dims);
    Grid::from_vec(dims, data).unwrap_or_else(|| unreachable!("surface keeps the mask's length"))
}

/// [`surface`] on a raw buffer of `dims`, x fastest.
fn surface_of(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let slice = nx * ny;
    let mut out = vec![false; mask.len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(slice)
        .enumerate()
        .for_each(|(z, out_slice)| {
            for y in 0..ny {
                for x in 0..nx {
                    let i = x + nx * (y + ny * z);
                    if !mask[i] {
                        continue;
                    }
                    let interior = x > 0
                        && x + 1 < nx
                        && y > 0
                        && y + 1 < ny
                        && z > 0
                        && z + 1 < nz
                        && mask[i - 1]
                        && mask[i + 1]
                        && mask[i - nx]
                        && mask[i + nx]
                        && mask[i - slice]
                        && mask[i + slice];
                    out_slice[x + nx * y] = !interior;
                }
            }
        });
    out
}

/// The distances (in spacing units, e.g. mm) from every surface voxel of `from` to the
/// nearest surface voxel of `to`, in voxel order (x fastest). Empty when either mask is
/// empty (there is no distance to measure).
///
/// # Panics
/// If the two masks have different dims.
pub fn surface_distances(from: &Grid<bool>, to: &Grid<bool>, spacing: [f64; 3]) -> Vec<f64> {
    match SurfacePair::new(from, to) {
        Some(pair) => pair.distances(true, spacing),
        None => Vec::new(),
    }
}

/// The 95th-percentile Hausdorff distance between `pred` and `gt` (spacing units): the 95th
/// percentile, linearly interpolated, of the surface distances pred → gt and gt → pred
/// pooled together (medpy's `hd95`). Both masks empty → 0; exactly one empty → `penalty`.
///
/// # Panics
/// If the two masks have different dims.
pub fn hd95(pred: &Grid<bool>, gt: &Grid<bool>, spacing: [f64; 3], penalty: f64) -> f64 {
    let pred_any = pred.data().iter().any(|&v| v);
    let gt_any = gt.data().iter().any(|&v| v);
    match (pred_any, gt_any) {
        (false, false) => 0.0,
        (true, false) | (false, true) => penalty,
        (true, true) => {
            let pair = SurfacePair::new(pred, gt)
                .unwrap_or_else(|| unreachable!("both masks are non-empty"));
            let (mut a, b) = rayon::join(
                || pair.distances(true, spacing),
                || pair.distances(false, spacing),
            );
            a.extend(b);
            percentile_linear(&mut a, 95.0)
        }
    }
}

/// The `q`-th percentile (0..=100) of `values` with linear interpolation between the two
/// nearest ranks, as numpy's `percentile` computes it by default: the value at fractional
/// rank `(n − 1)·q/100` of the sorted values. Reorders `values`. NaN for an empty slice.
pub fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = (rank.floor() as usize).min(n - 1);
    let t = rank - lo as f64;
    let (_, &mut a, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    if lo + 1 >= n || t == 0.0 {
        return a;
    }
    let b = right.iter().copied().fold(f64::INFINITY, f64::min);
    // numpy's lerp: exact at both ends, computed from the nearer end.
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Two non-empty masks cropped to the bounding box of their union, with their surfaces.
///
/// Cropping changes no distance: every surface voxel of both masks lies inside the box, and
/// a voxel on the box's edge has its outside neighbour outside both masks, so it is a
/// surface voxel in the crop exactly when it is one in the full volume.
struct SurfacePair {
    dims: [usize; 3],
    /// Surface of the first mask, in the crop.
    a: Vec<bool>,
    /// Surface of the second mask, in the crop.
    b: Vec<bool>,
}

impl SurfacePair {
    /// `None` when either mask is empty.
    fn new(a: &Grid<bool>, b: &Grid<bool>) -> Option<Self> {
        let dims = a.dims();
        assert_eq!(
            dims,
            b.dims(),
            "masks of different dims: {:?} and {:?}",
            dims,
            b.dims()
        );
        let (lo_a, hi_a) = bounding_box(a)?;
        let (lo_b, hi_b) = bounding_box(b)?;
        let lo: [usize; 3] = std::array::from_fn(|i| lo_a[i].min(lo_b[i]));
        let hi: [usize; 3] = std::array::from_fn(|i| hi_a[i].max(hi_b[i]));
        let cdims: [usize; 3] = std::array::from_fn(|i| hi[i] - lo[i] + 1);
        let crop = |g: &Grid<bool>| {
            let mut out = Vec::with_capacity(cdims.iter().product());
            for z in lo[2]..=hi[2] {
                for y in lo[1]..=hi[1] {
                    let start = g.index(lo[0], y, z);
                    out.extend_from_slice(&g.data()[start..start + cdims[0]]);
                }
            }
            out
        };
        Some(SurfacePair {
            dims: cdims,
            a: surface_of(&crop(a), cdims),
            b: surface_of(&crop(b), cdims),
        })
    }

    /// Distances from the first mask's surface to the second's (`forward`) or back.
    fn distances(&self, forward: bool, spacing: [f64; 3]) -> Vec<f64> {
        let (from, to) = if forward {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        let sq = squared_edt(to, self.dims, spacing);
        from.iter()
            .zip(&sq)
            .filter(|(f, _)| **f)
            .map(|(_, d)| d.sqrt())
            .collect()
    }
}

/// Inclusive bounding box `(min, max)` of the set voxels, `None` if there is none.
fn bounding_box(mask: &Grid<bool>) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, _] = mask.dims();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for (i, _) in mask.data().iter().enumerate().filter(|(_, v)| **v) {
        let c = [i % nx, (i / nx) % ny, i / (nx * ny)];
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
        any = true;
    }
    any.then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(dims: [usize; 3], set: &[[usize; 3]]) -> Grid<bool> {
        let mut g = Grid::filled(dims, false);
        for &[x, y, z] in set {
            g.set(x, y, z, true);
        }
        g
    }

    fn cube(dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Grid<bool> {
        let mut g = Grid::filled(dims, false);
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                for x in lo[0]..=hi[0] {
                    g.set(x, y, z, true);
                }
            }
        }
        g
    }

    #[test]
    fn surface_of_a_cube_is_its_shell() {
        let s = surface(&cube([5, 5, 5], [1, 1, 1], [3, 3, 3]));
        let count = s.data().iter().filter(|&&v| v).count();
        assert_eq!(count, 27 - 1);
        assert!(!s.get(2, 2, 2));
        assert!(s.get(1, 2, 2));
    }

    #[test]
    fn mask_voxels_on_the_volume_border_are_surface() {
        // A full volume: erosion with background outside leaves only the centre voxel.
        let s = surface(&Grid::filled([3, 3, 3], true));
        assert_eq!(s.data().iter().filter(|&&v| v).count(), 26);
        assert!(!s.get(1, 1, 1));
        // Thin along z: every voxel touches the border.
        let s = surface(&Grid::filled([4, 4, 1], true));
        assert!(s.data().iter().all(|&v| v));
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 10], 95) = 4 + 0.8 * 6 = 8.8
        let mut v = vec![10.0, 2.0, 4.0, 1.0, 3.0];
        assert!((percentile_linear(&mut v, 95.0) - 8.8).abs() < 1e-12);
        let mut v = vec![3.0];
        assert_eq!(percentile_linear(&mut v, 95.0), 3.0);
        let mut v = vec![0.0, 1.0];
        assert!((percentile_linear(&mut v, 95.0) - 0.95).abs() < 1e-12);
        assert!(percentile_linear(&mut [], 95.0).is_nan());
    }

    #[test]
    fn hd95_of_single_voxels_is_their_distance() {
        let a = mask([6, 4, 4], &[[0, 0, 0]]);
        let b = mask([6, 4, 4], &[[3, 0, 1]]);
        let d = hd95(&a, &b, [1.0, 1.0, 2.0], 373.13);
        assert!((d - 13f64.sqrt()).abs() < 1e-12, "{d}");
    }

    #[test]
    fn hd95_hand_computed_with_anisotropic_spacing() {
        // Two 1-voxel-thick slabs along x, offset by 2 in z at 2.5 mm: every surface voxel
        // of each is exactly 5 mm from the other's.
        let a = cube([4, 3, 5], [0, 0, 0], [3, 2, 0]);
        let b = cube([4, 3, 5], [0, 0, 2], [3, 2, 2]);
        assert!((hd95(&a, &b, [0.5, 0.8, 2.5], 1.0) - 5.0).abs() < 1e-12);
        // Identical masks: 0.
        assert_eq!(hd95(&a, &a, [0.5, 0.8, 2.5], 1.0), 0.0);
    }

    #[test]
    fn hd95_empty_cases() {
        let e = Grid::filled([3, 3, 3], false);
        let m = mask([3, 3, 3], &[[1, 1, 1]]);
        assert_eq!(hd95(&e, &e, [1.0; 3], 373.13), 0.0);
        assert_eq!(hd95(&m, &e, [1.0; 3], 373.13), 373.13);
        assert_eq!(hd95(&e, &m, [1.0; 3], 42.0), 42.0);
        assert!(surface_distances(&e, &m, [1.0; 3]).is_empty());
    }

    #[test]
    fn surface_distances_are_directional() {
        // a: a 3-voxel line; b: its first voxel. From a: 0, 1, 2; from b: 0.
        let a = mask([5, 1, 1], &[[0, 0, 0], [1, 0, 0], [2, 0, 0]]);
        let b = mask([5, 1, 1], &[[0, 0, 0]]);
        assert_eq!(
            surface_distances(&a, &b, [1.5, 1.0, 1.0]),
            vec![0.0, 1.5, 3.0]
        );
        assert_eq!(surface_distances(&b, &a, [1.5, 1.0, 1.0]), vec![0.0]);
        // Pooled: [0, 1.5, 3, 0] → rank 2.85 of [0, 0, 1.5, 3] → 1.5 + 0.85 · 1.5.
        let d = hd95(&a, &b, [1.5, 1.0, 1.0], 0.0);
        assert!((d - (1.5 + 0.85 * 1.5)).abs() < 1e-12, "{d}");
    }
}
