//! The Gaussian importance map that weights each sliding-window prediction.
//!
//! A network sees less context near a patch's border, so its predictions there are less
//! reliable; when windows overlap, each voxel's prediction is the average of the windows'
//! predictions weighted by this map, which peaks at the patch centre. As in nnU-Net (and
//! the A2FSeg authors' code), σ = patch / 8 per axis.

use crate::volume::Grid;

/// The importance map of a patch of `patch = [px, py, pz]` voxels (x fastest).
///
/// `g(x, y, z) = exp(-Σ_a (p_a - c_a)² / (2 σ_a²))` with centre `c_a = (n_a - 1) / 2` (so the
/// map is symmetric under mirroring, which keeps test-time mirroring exact) and
/// `σ_a = n_a / 8`; normalised to a maximum of 1. No value is zero (the smallest is raised
/// to the smallest positive normal `f32`), so every voxel a window covers gets weight.
pub fn gaussian_importance(patch: [usize; 3]) -> Grid<f32> {
    let axis = |n: usize| -> Vec<f64> {
        let c = (n as f64 - 1.0) / 2.0;
        let sigma = (n as f64 / 8.0).max(f64::MIN_POSITIVE);
        (0..n)
            .map(|i| {
                let d = i as f64 - c;
                (-d * d / (2.0 * sigma * sigma)).exp()
            })
            .collect()
    };
    let (gx, gy, gz) = (axis(patch[0]), axis(patch[1]), axis(patch[2]));
    let mut data = Vec::with_capacity(patch.iter().product());
    for &wz in &gz {
        for &wy in &gy {
            for &wx in &gx {
                data.push(wx * wy * wz);
            }
        }
    }
    let max = data.iter().copied().fold(0.0f64, f64::max);
    let data = data
        .into_iter()
        .map(|v| ((v / max) as f32).max(f32::MIN_POSITIVE))
        .collect();
    Grid::from_vec(patch, data).expect("the buffer has the patch's size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_at_the_centre_is_positive_and_symmetric() {
        let g = gaussian_importance([8, 6, 5]);
        let max = g.data().iter().copied().fold(0.0f32, f32::max);
        assert!((max - 1.0).abs() < 1e-6);
        assert!(g.data().iter().all(|&v| v > 0.0 && v.is_finite()));
        // Centre (odd axis z = 2) beats the corner.
        assert!(g.get(3, 2, 2) > g.get(0, 0, 0));
        for z in 0..5 {
            for y in 0..6 {
                for x in 0..8 {
                    let v = g.get(x, y, z);
                    assert_eq!(v, g.get(7 - x, y, z));
                    assert_eq!(v, g.get(x, 5 - y, z));
                    assert_eq!(v, g.get(x, y, 4 - z));
                }
            }
        }
    }

    #[test]
    fn sigma_is_an_eighth_of_the_patch() {
        // Along x on a 16-voxel axis: σ = 2, centre 7.5; value at 7.5 ± 2 is e^-0.5 relative
        // to the centre. Compare voxels 5 and 7 (distances 2.5 and 0.5).
        let g = gaussian_importance([16, 1, 1]);
        let expected = (-(2.5f64 * 2.5 - 0.5 * 0.5) / 8.0).exp() as f32;
        assert!((g.get(5, 0, 0) / g.get(7, 0, 0) - expected).abs() < 1e-5);
    }

    #[test]
    fn large_patches_have_no_zero() {
        let g = gaussian_importance([128, 128, 128]);
        assert!(g.data().iter().all(|&v| v > 0.0));
    }
}
