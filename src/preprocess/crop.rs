//! Cropping to the head and z-score normalisation.

use serde::{Deserialize, Serialize};

use crate::volume::Grid;

/// An axis-aligned box of voxels: `start` and `dims` in `[x, y, z]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CropBox {
    /// First voxel of the box.
    pub start: [usize; 3],
    /// Size of the box.
    pub dims: [usize; 3],
}

impl CropBox {
    /// The box covering a whole grid of `dims`.
    pub fn full(dims: [usize; 3]) -> CropBox {
        CropBox {
            start: [0; 3],
            dims,
        }
    }

    /// The bounding box of the voxels that are non-zero in at least one of `grids` (all of
    /// dims `dims`), grown by `margin` voxels on each side and clipped to the grid. NaN
    /// counts as non-zero. With no non-zero voxel at all, the whole grid.
    ///
    /// Panics if a grid's dims differ from `dims` (callers check grids first).
    pub fn nonzero(dims: [usize; 3], grids: &[&Grid<f32>], margin: usize) -> CropBox {
        let mut lo = dims;
        let mut hi = [0usize; 3];
        let mut any = false;
        for g in grids {
            assert_eq!(g.dims(), dims, "CropBox::nonzero: grids of different dims");
            let data = g.data();
            let mut i = 0;
            for z in 0..dims[2] {
                for y in 0..dims[1] {
                    let row = &data[i..i + dims[0]];
                    i += dims[0];
                    let Some(first) = row.iter().position(|&v| v != 0.0) else {
                        continue;
                    };
                    let last = row.iter().rposition(|&v| v != 0.0).unwrap_or(first);
                    any = true;
                    lo[0] = lo[0].min(first);
                    hi[0] = hi[0].max(last + 1);
                    lo[1] = lo[1].min(y);
                    hi[1] = hi[1].max(y + 1);
                    lo[2] = lo[2].min(z);
                    hi[2] = hi[2].max(z + 1);
                }
            }
        }
        if !any {
            return CropBox::full(dims);
        }
        let start = std::array::from_fn(|a| lo[a].saturating_sub(margin));
        let end: [usize; 3] = std::array::from_fn(|a| (hi[a] + margin).min(dims[a]));
        CropBox {
            start,
            dims: std::array::from_fn(|a| end[a] - start[a]),
        }
    }

    /// Whether the box lies inside a grid of `dims`.
    pub fn fits(&self, dims: [usize; 3]) -> bool {
        (0..3).all(|a| self.start[a] + self.dims[a] <= dims[a])
    }

    /// The part of `grid` inside the box. Panics if the box does not fit the grid.
    pub fn crop<T: Copy>(&self, grid: &Grid<T>) -> Grid<T> {
        let d = grid.dims();
        assert!(
            self.fits(d),
            "crop box {self:?} does not fit a grid of {d:?}"
        );
        let [sx, sy, sz] = self.start;
        let [cx, cy, cz] = self.dims;
        let mut out = Vec::with_capacity(cx * cy * cz);
        let data = grid.data();
        for z in sz..sz + cz {
            for y in sy..sy + cy {
                let i = grid.index(sx, y, z);
                out.extend_from_slice(&data[i..i + cx]);
            }
        }
        Grid::from_vec(self.dims, out).expect("cropped size matches")
    }

    /// A grid of `full_dims` filled with `fill`, with `cropped` (of the box's dims) pasted
    /// back at the box: the inverse of [`CropBox::crop`] inside the box. Panics if the
    /// dims do not match the box.
    pub fn uncrop<T: Copy>(&self, cropped: &Grid<T>, full_dims: [usize; 3], fill: T) -> Grid<T> {
        assert_eq!(
            cropped.dims(),
            self.dims,
            "uncrop: grid is not of the box's dims"
        );
        assert!(
            self.fits(full_dims),
            "crop box {self:?} does not fit {full_dims:?}"
        );
        let mut out = Grid::filled(full_dims, fill);
        let [sx, sy, sz] = self.start;
        let [cx, cy, cz] = self.dims;
        let src = cropped.data();
        for z in 0..cz {
            for y in 0..cy {
                let o = out.index(sx, sy + y, sz + z);
                let s = cropped.index(0, y, z);
                out.data_mut()[o..o + cx].copy_from_slice(&src[s..s + cx]);
            }
        }
        out
    }
}

/// Mean and standard deviation of the non-zero voxels (computed in f64), and their number.
pub fn nonzero_stats(grid: &Grid<f32>) -> (f64, f64, usize) {
    let mut n = 0usize;
    let mut sum = 0.0f64;
    for &v in grid.data() {
        if v != 0.0 {
            n += 1;
            sum += f64::from(v);
        }
    }
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    let mean = sum / n as f64;
    let mut ss = 0.0f64;
    for &v in grid.data() {
        if v != 0.0 {
            let d = f64::from(v) - mean;
            ss += d * d;
        }
    }
    (mean, (ss / n as f64).sqrt(), n)
}

/// Z-score normalisation over the brain: the non-zero voxels get `(v - mean) / std` with
/// mean and std of the non-zero voxels; voxels that are zero (outside the brain after skull
/// stripping) stay exactly zero. A constant image (std 0) is only centred.
pub fn zscore_nonzero(grid: &Grid<f32>) -> Grid<f32> {
    let (mean, std, _) = nonzero_stats(grid);
    let scale = if std > 0.0 { 1.0 / std } else { 1.0 };
    grid.map(|v| {
        if v == 0.0 {
            0.0
        } else {
            ((f64::from(v) - mean) * scale) as f32
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_with(dims: [usize; 3], points: &[([usize; 3], f32)]) -> Grid<f32> {
        let mut g = Grid::zeros(dims);
        for &([x, y, z], v) in points {
            g.set(x, y, z, v);
        }
        g
    }

    #[test]
    fn bounding_box_is_the_union_over_grids() {
        let dims = [6, 5, 4];
        let a = grid_with(dims, &[([1, 2, 1], 1.0)]);
        let b = grid_with(dims, &[([4, 1, 2], -3.0), ([3, 3, 2], 2.0)]);
        let bx = CropBox::nonzero(dims, &[&a, &b], 0);
        assert_eq!(bx.start, [1, 1, 1]);
        assert_eq!(bx.dims, [4, 3, 2]);
        let m = CropBox::nonzero(dims, &[&a, &b], 1);
        assert_eq!(m.start, [0, 0, 0]);
        assert_eq!(m.dims, [6, 5, 4]);
        let empty = Grid::<f32>::zeros(dims);
        assert_eq!(CropBox::nonzero(dims, &[&empty], 0), CropBox::full(dims));
    }

    #[test]
    fn crop_then_uncrop_restores_inside_and_fills_outside() {
        let dims = [5, 4, 3];
        let g = Grid::from_vec(dims, (0..60).map(|v| v as f32).collect()).unwrap();
        let bx = CropBox {
            start: [1, 2, 1],
            dims: [3, 2, 2],
        };
        let c = bx.crop(&g);
        assert_eq!(c.dims(), [3, 2, 2]);
        assert_eq!(c.get(0, 0, 0), g.get(1, 2, 1));
        assert_eq!(c.get(2, 1, 1), g.get(3, 3, 2));
        let u = bx.uncrop(&c, dims, -1.0);
        for z in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    let inside = (1..4).contains(&x) && (2..4).contains(&y) && (1..3).contains(&z);
                    let want = if inside { g.get(x, y, z) } else { -1.0 };
                    assert_eq!(u.get(x, y, z), want);
                }
            }
        }
    }

    #[test]
    fn zscore_over_nonzero_voxels_keeps_background_zero() {
        let g = Grid::from_vec([5, 1, 1], vec![0.0f32, 2.0, 4.0, 6.0, 0.0]).unwrap();
        let z = zscore_nonzero(&g);
        let s = (8.0f64 / 3.0).sqrt();
        assert_eq!(z.get(0, 0, 0), 0.0);
        assert_eq!(z.get(4, 0, 0), 0.0);
        assert!((f64::from(z.get(1, 0, 0)) + 2.0 / s).abs() < 1e-6);
        assert!(z.get(2, 0, 0).abs() < 1e-6);
        let (mean, std, n) = nonzero_stats(&z);
        assert_eq!(n, 2, "the mean voxel became exactly zero");
        assert!(mean.abs() < 1e-6 && std > 0.0);
        let c = zscore_nonzero(&Grid::from_vec([2, 1, 1], vec![3.0f32, 3.0]).unwrap());
        assert_eq!(c.data(), &[0.0, 0.0]);
    }
}
