//! Sampling a [`CaseModel`] on a voxel grid: labels, tissue map, and the four images with
//! bias field, the acquisition's blur and Rician noise.

use ndarray::{ArrayView3, ArrayViewMut3, Axis};
use ndarray_ndimage::{BorderMode, gaussian_filter1d};
use rayon::prelude::*;

use super::model::CaseModel;
use super::noise::gaussian_pair;
use crate::volume::Grid;

/// Partial-volume edge width (mm) of the anatomy on voxels of `spacing` mm.
pub(crate) fn partial_volume(spacing: [f64; 3]) -> f64 {
    0.4 * (spacing[0] * spacing[1] * spacing[2]).cbrt()
}

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
    let pv = partial_volume(spacing);
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
                    let clean = model.intensities(&s);
                    for (m, out) in img.iter_mut().enumerate() {
                        out[i] = (clean[m] * acq.bias(m, q) * acq.gain[m]) as f32;
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
    let inside: Vec<bool> = tissues.iter().map(|&t| t > 0).collect();
    for (m, img) in images.iter_mut().enumerate() {
        let sigma = model.acquisition.blur_mm[m];
        blur_inside(
            img,
            &inside,
            dims,
            std::array::from_fn(|a| sigma[a] / spacing[a]),
        );
        add_rician_noise(img, &inside, dims, model, m);
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

/// Blurs `img` (x fastest, `dims`) inside the brain by a Gaussian of s.d. `sigma` voxels per
/// axis, normalised by the blurred brain mask so that the brain's edge does not darken (the
/// blur of a sequence acquired at a coarser resolution, as BraTS's are, then skull-stripped).
/// Axes with s.d. below 0.2 voxel, or too short for the kernel, are left as they are.
fn blur_inside(img: &mut [f32], inside: &[bool], dims: [usize; 3], sigma: [f64; 3]) {
    let [nx, ny, nz] = dims;
    let shape = (nz, ny, nx);
    let view = |v: &[f32]| {
        ArrayView3::from_shape(shape, v)
            .expect("image matches its grid")
            .to_owned()
    };
    let mut values = view(img);
    let mask: Vec<f32> = inside.iter().map(|&b| f32::from(u8::from(b))).collect();
    let mut weight = view(&mask);
    let mut blurred = false;
    for (axis, &s) in sigma.iter().enumerate() {
        // ndarray axis 0 is z, 2 is x.
        let ax = Axis(2 - axis);
        const TRUNCATE: usize = 3;
        if s < 0.2 || (TRUNCATE as f64 * s + 0.5) as usize >= dims[axis] {
            continue;
        }
        let s = s as f32;
        values = gaussian_filter1d(&values, s, ax, 0, BorderMode::Constant(0.0), TRUNCATE);
        weight = gaussian_filter1d(&weight, s, ax, 0, BorderMode::Constant(0.0), TRUNCATE);
        blurred = true;
    }
    if !blurred {
        return;
    }
    let mut out = ArrayViewMut3::from_shape(shape, img).expect("image matches its grid");
    ndarray::Zip::from(&mut out)
        .and(&values)
        .and(&weight)
        .and(&ArrayView3::from_shape(shape, &mask).expect("mask matches its grid"))
        .for_each(|o, &v, &w, &m| {
            if m > 0.0 {
                *o = v / w.max(1e-6);
            }
        });
}

/// Adds Rician noise of modality `m`'s level to `img` inside the brain: the magnitude of the
/// clean value plus complex Gaussian noise, per voxel a hash of its index (independent of
/// the thread count). Never exactly 0 inside the brain, so cropping to non-zero voxels keeps
/// the whole brain; exactly 0 outside.
fn add_rician_noise(
    img: &mut [f32],
    inside: &[bool],
    dims: [usize; 3],
    model: &CaseModel,
    m: usize,
) {
    let acq = &model.acquisition;
    let sigma = acq.noise[m] * acq.gain[m];
    let slice = dims[0] * dims[1];
    img.par_chunks_mut(slice.max(1))
        .enumerate()
        .for_each(|(z, chunk)| {
            for (j, v) in chunk.iter_mut().enumerate() {
                let index = z * slice + j;
                if !inside[index] {
                    *v = 0.0;
                    continue;
                }
                let (n1, n2) = gaussian_pair(acq.noise_seed[m], index as u64);
                let re = f64::from(*v) + sigma * n1;
                let im = sigma * n2;
                *v = ((re * re + im * im).sqrt() as f32).max(f32::MIN_POSITIVE);
            }
        });
}
