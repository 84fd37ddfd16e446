//! Resampling a case to the voxel spacing a model was trained on, and grids back to the
//! input's grid, as nnU-Net does: images with third-order splines (a case whose spacing is
//! more than [`ANISOTROPY_RATIO`] times coarser along one axis: in-plane splines, that axis
//! nearest-neighbour), probabilities back linearly, labels nearest-neighbour.
//!
//! The interpolation is `ndarray-ndimage`'s `zoom` (scipy.ndimage.zoom's algorithm: spline
//! prefilter, corner-aligned grids, so the first and last voxel centres of an axis stay in
//! place); `tests/resample_reference.rs` checks it against scipy.

use ndarray::{Array3, s};
use ndarray_ndimage::{BorderMode, zoom};

use crate::dataset::LoadedCase;
use crate::volume::{Geometry, Grid};

/// An axis whose spacing is more than this many times the finest axis' is resampled on its
/// own, nearest-neighbour (nnU-Net's anisotropy threshold): splines across thick slices
/// invent structure between them.
pub const ANISOTROPY_RATIO: f64 = 3.0;

/// Relative difference of spacing along any axis below which a case is used as it is.
pub const SPACING_TOLERANCE: f64 = 0.01;

/// Whether a grid of spacing `from` must be resampled to be at `to` (mm, x y z).
pub fn needs_resampling(from: [f64; 3], to: [f64; 3]) -> bool {
    from.iter()
        .zip(&to)
        .any(|(f, t)| (f.abs() - t).abs() > SPACING_TOLERANCE * t)
}

/// The dims of a grid of `dims` voxels of spacing `from` resampled to spacing `to`: the same
/// physical extent, rounded (at least 1 voxel; an axis of 1 voxel keeps 1).
pub fn resampled_dims(dims: [usize; 3], from: [f64; 3], to: [f64; 3]) -> [usize; 3] {
    std::array::from_fn(|a| {
        if dims[a] <= 1 {
            dims[a]
        } else {
            ((dims[a] as f64 * from[a].abs() / to[a]).round() as usize).max(2)
        }
    })
}

/// The axis resampled on its own for spacings `from` → `to`: the coarsest axis of
/// whichever is anisotropic (coarsest axis more than [`ANISOTROPY_RATIO`] times the finest),
/// the input's first.
pub fn anisotropic_axis(from: [f64; 3], to: [f64; 3]) -> Option<usize> {
    [from.map(f64::abs), to].into_iter().find_map(|s| {
        let (lo, hi) = (
            s.iter().copied().fold(f64::INFINITY, f64::min),
            s.iter().copied().fold(0.0, f64::max),
        );
        (hi > ANISOTROPY_RATIO * lo)
            .then(|| (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0))
    })
}

/// `grid` resampled to `dims` with a spline of `order` (0 nearest, 1 linear, 3 cubic) along
/// the axes `axes` (the others keep their length; an axis of 1 voxel keeps it).
fn zoom_axes(grid: &Grid<f32>, dims: [usize; 3], order: usize, axes: [bool; 3]) -> Grid<f32> {
    let from = grid.dims();
    let target: [usize; 3] = std::array::from_fn(|a| {
        if axes[a] && from[a] > 1 {
            dims[a]
        } else {
            from[a]
        }
    });
    if target == from {
        return grid.clone();
    }
    // `zoom` maps the end points of each axis onto each other, which an axis of one voxel
    // does not have (0 / 0): such an axis is given a copy of its voxel, and dropped after.
    let grown = from.map(|n| n.max(2));
    let data = if grown == from {
        Array3::from_shape_vec((from[2], from[1], from[0]), grid.data().to_vec())
            .expect("a grid's data has its dims' length")
    } else {
        Array3::from_shape_fn((grown[2], grown[1], grown[0]), |(z, y, x)| {
            grid.get(x.min(from[0] - 1), y.min(from[1] - 1), z.min(from[2] - 1))
        })
    };
    // ndarray order (z, y, x); the factor that makes `round(len * factor)` the target.
    // Only axes of more than one voxel change length; a grown axis keeps its two voxels.
    let factor = |a: usize| {
        if from[a] == 1 {
            1.0
        } else {
            target[a] as f64 / from[a] as f64
        }
    };
    let out = zoom(
        &data,
        [factor(2), factor(1), factor(0)],
        order,
        BorderMode::Nearest,
        true,
    );
    let out = out.slice(s![..target[2], ..target[1], ..target[0]]);
    Grid::from_vec(target, out.iter().copied().collect()).expect("sliced to the target dims")
}

/// An image of spacing `from` resampled to `dims` (spacing `to`): third-order splines, the
/// axis [`anisotropic_axis`] names nearest-neighbour on its own. Voxels whose
/// nearest-neighbour value is 0 stay exactly 0, so the background of a skull-stripped scan
/// stays the zero the brain mask and the normalisation rely on (splines ring around edges).
pub fn resample_image(
    image: &Grid<f32>,
    dims: [usize; 3],
    from: [f64; 3],
    to: [f64; 3],
) -> Grid<f32> {
    let mut out = match anisotropic_axis(from, to) {
        Some(axis) => {
            let in_plane = std::array::from_fn(|a| a != axis);
            let planes = zoom_axes(image, dims, 3, in_plane);
            zoom_axes(&planes, dims, 0, std::array::from_fn(|a| a == axis))
        }
        None => zoom_axes(image, dims, 3, [true; 3]),
    };
    let nearest = zoom_axes(image, dims, 0, [true; 3]);
    for (o, n) in out.data_mut().iter_mut().zip(nearest.data()) {
        if *n == 0.0 {
            *o = 0.0;
        }
    }
    out
}

/// A probability (or attention) map resampled linearly to `dims`.
pub fn resample_linear(grid: &Grid<f32>, dims: [usize; 3]) -> Grid<f32> {
    zoom_axes(grid, dims, 1, [true; 3])
}

/// A label map resampled nearest-neighbour to `dims`.
pub fn resample_labels(labels: &Grid<u8>, dims: [usize; 3]) -> Grid<u8> {
    let as_f32 = Grid::from_vec(
        labels.dims(),
        labels.data().iter().map(|&v| f32::from(v)).collect(),
    )
    .expect("same dims");
    let out = zoom_axes(&as_f32, dims, 0, [true; 3]);
    Grid::from_vec(dims, out.data().iter().map(|&v| v.round() as u8).collect()).expect("same dims")
}

/// `case` resampled to spacing `to` (mm, x y z; see [`resample_image`]); its geometry keeps
/// the world position of the first and last voxel centres of each axis.
pub fn resample_case(case: &LoadedCase, to: [f64; 3]) -> LoadedCase {
    let from = case.geometry.spacing;
    let old = case.geometry.dims;
    let dims = resampled_dims(old, from, to);
    let mut affine = case.geometry.affine;
    for (a, (&o, &n)) in old.iter().zip(&dims).enumerate() {
        let scale = if n > 1 {
            (o - 1) as f64 / (n - 1) as f64
        } else {
            1.0
        };
        for row in affine.iter_mut().take(3) {
            row[a] *= scale;
        }
    }
    LoadedCase {
        id: case.id.clone(),
        geometry: Geometry::from_affine(dims, affine),
        images: case
            .images
            .each_ref()
            .map(|g| g.as_ref().map(|g| resample_image(g, dims, from, to))),
        classes: case.classes.as_ref().map(|c| resample_labels(c, dims)),
        convention: case.convention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_decides_dims_and_anisotropy() {
        assert!(!needs_resampling([1.0, -1.0, 1.005], [1.0, 1.0, 1.0]));
        assert!(needs_resampling([1.0, 1.0, 3.0], [1.0, 1.0, 1.0]));
        assert_eq!(
            resampled_dims([32, 32, 11], [1.0, 1.0, 3.0], [1.0; 3]),
            [32, 32, 33]
        );
        assert_eq!(
            resampled_dims([10, 1, 4], [0.5, 2.0, 1.0], [1.0; 3]),
            [5, 1, 4]
        );
        assert_eq!(anisotropic_axis([1.0, 1.0, 3.0], [1.0; 3]), None);
        assert_eq!(anisotropic_axis([0.5, 0.5, 5.0], [1.0; 3]), Some(2));
        assert_eq!(anisotropic_axis([1.0; 3], [4.0, 1.0, 1.0]), Some(0));
    }

    #[test]
    fn resampling_keeps_values_background_and_extent() {
        // A smooth ramp inside a zero background, 3 mm slices to 1 mm.
        let dims = [12, 10, 6];
        let mut g = Grid::<f32>::zeros(dims);
        for z in 1..5 {
            for y in 2..8 {
                for x in 2..10 {
                    g.set(x, y, z, 10.0 + x as f32 + 0.5 * y as f32 + z as f32);
                }
            }
        }
        let to = resampled_dims(dims, [1.0, 1.0, 3.0], [1.0; 3]);
        assert_eq!(to, [12, 10, 18]);
        let r = resample_image(&g, to, [1.0, 1.0, 3.0], [1.0; 3]);
        assert_eq!(r.dims(), to);
        // In-plane untouched (zoom 1), corners aligned, background kept exactly 0.
        for x in 0..12 {
            for y in 0..10 {
                assert_eq!(r.get(x, y, 0), g.get(x, y, 0));
                assert_eq!(r.get(x, y, 17), g.get(x, y, 5));
            }
        }
        assert_eq!(r.get(0, 0, 9), 0.0);
        assert!(r.get(5, 5, 9) > 10.0);
        // Linear resampling of a constant is that constant; labels stay labels.
        let c = resample_linear(&Grid::filled([5, 4, 3], 0.25), [9, 7, 5]);
        assert!(c.data().iter().all(|&v| (v - 0.25).abs() < 1e-6));
        let l = resample_labels(&Grid::from_vec([2, 1, 1], vec![1u8, 3]).unwrap(), [5, 1, 1]);
        assert_eq!(l.data(), &[1, 1, 3, 3, 3]);
        // Shrinking: a linear ramp stays the ramp at the new, corner-aligned positions.
        let ramp = Grid::from_vec([9, 2, 1], (0..18).map(|i| (i % 9) as f32).collect()).unwrap();
        let r = resample_linear(&ramp, [5, 2, 1]);
        assert_eq!(r.dims(), [5, 2, 1]);
        for (x, v) in r.data()[..5].iter().enumerate() {
            assert!((v - 2.0 * x as f32).abs() < 1e-5, "{:?}", r.data());
        }
    }
}
