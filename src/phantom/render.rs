//! Sampling a [`CaseModel`] on a voxel grid: labels, tissue map, and the four images with
//! bias field and Rician noise.

use rayon::prelude::*;

use super::model::CaseModel;
use super::noise::gaussian_pair;
use crate::volume::Grid;

/// Rendered arrays of one case.
pub(crate) struct Rendered {
    pub images: [Grid<f32>; 4],
    pub classes: Grid<u8>,
    pub tissues: Grid<u8>,
}

/// Scanner millimetres of voxel `i` along an axis of `n` voxels of size `s` (grid centre = 0).
#[inline]
pub(crate) fn coordinate(i: usize, n: usize, s: f64) -> f64 {
    (i as f64 + 0.5 - n as f64 * 0.5) * s
}

/// One rendered z slice: classes, tissues and the four images.
type Slice = (Vec<u8>, Vec<u8>, [Vec<f32>; 4]);

/// Renders `model` on a grid of `dims` voxels of `spacing` mm, slice-parallel. The result
/// depends only on the model, never on the thread count.
pub(crate) fn render(model: &CaseModel, dims: [usize; 3], spacing: [f64; 3]) -> Rendered {
    let [nx, ny, nz] = dims;
    let pv = 0.4 * (spacing[0] * spacing[1] * spacing[2]).cbrt();
    let slice = nx * ny;
    let slices: Vec<Slice> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let mut classes = vec![0u8; slice];
            let mut tissues = vec![0u8; slice];
            let mut img: [Vec<f32>; 4] = [(); 4].map(|_| vec![0f32; slice]);
            let qz = coordinate(z, nz, spacing[2]);
            for y in 0..ny {
                let qy = coordinate(y, ny, spacing[1]);
                for x in 0..nx {
                    let q = [coordinate(x, nx, spacing[0]), qy, qz];
                    let s = model.sample(q, pv);
                    let i = x + nx * y;
                    classes[i] = s.class;
                    tissues[i] = s.tissue;
                    if !s.inside {
                        continue;
                    }
                    let acq = &model.acquisition;
                    let index = (x + nx * (y + ny * z)) as u64;
                    for (m, out) in img.iter_mut().enumerate() {
                        let clean = s.contrast[m] * acq.bias(m, q) * acq.gain[m];
                        let sigma = acq.noise[m] * acq.gain[m];
                        let (n1, n2) = gaussian_pair(acq.noise_seed[m], index);
                        let re = clean + sigma * n1;
                        let im = sigma * n2;
                        // Rician magnitude; never exactly 0 inside the brain, so cropping to
                        // non-zero voxels keeps the whole brain.
                        out[i] = ((re * re + im * im).sqrt() as f32).max(f32::MIN_POSITIVE);
                    }
                }
            }
            (classes, tissues, img)
        })
        .collect();
    let n = slice * nz;
    let mut classes = Vec::with_capacity(n);
    let mut tissues = Vec::with_capacity(n);
    let mut images: [Vec<f32>; 4] = [(); 4].map(|_| Vec::with_capacity(n));
    for (c, t, img) in slices {
        classes.extend_from_slice(&c);
        tissues.extend_from_slice(&t);
        for (dst, src) in images.iter_mut().zip(img) {
            dst.extend_from_slice(&src);
        }
    }
    fn grid<T>(dims: [usize; 3], v: Vec<T>) -> Grid<T> {
        Grid::from_vec(dims, v).expect("slice sizes add up to the grid")
    }
    Rendered {
        images: images.map(|v| grid(dims, v)),
        classes: grid(dims, classes),
        tissues: grid(dims, tissues),
    }
}
