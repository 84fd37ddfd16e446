//! How the viewer ([`super::viewer`]) embeds a volume in its page: cropped to the brain box
//! ([`crop_geometry`]), as uint8 (images linearly quantised to [`IMAGE_STEPS`] grey steps,
//! [`quantise_image`]; attention weights in steps of 1/255, [`quantise_attention`]; labels
//! as they are), continuous volumes predictively coded ([`predictive_residuals`]: noisy
//! images compress about 15 % smaller as residuals), as a gzip NIfTI in base64. The page's
//! script undoes the coding ([`Coding`]).

use anyhow::Result;
use base64::Engine;
use serde_json::{Value, json};

use super::slices::intensity_window;
use super::viewer::AttentionMap;
use crate::preprocess::CropBox;
use crate::volume::{Geometry, Grid, Uint8Scaling, encode_u8_gz};

/// Quantile (of the non-zero voxels) mapped to the brightest stored value of an image;
/// brighter voxels are clipped to it.
const IMAGE_TOP_QUANTILE: f64 = 0.999;

/// The box of the non-zero voxels of `grid` (NaN counts as non-zero), if any.
pub(super) fn nonzero_box<T: Copy + PartialEq + Default>(grid: &Grid<T>) -> Option<CropBox> {
    let [nx, ny, nz] = grid.dims();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for z in 0..nz {
        for y in 0..ny {
            let start = grid.index(0, y, z);
            let row = &grid.data()[start..start + nx];
            if let Some(first) = row.iter().position(|&v| v != T::default()) {
                let last = row
                    .iter()
                    .rposition(|&v| v != T::default())
                    .unwrap_or(first);
                for (a, (l, h)) in [(first, last + 1), (y, y + 1), (z, z + 1)]
                    .into_iter()
                    .enumerate()
                {
                    lo[a] = lo[a].min(l);
                    hi[a] = hi[a].max(h);
                }
            }
        }
    }
    (lo[0] != usize::MAX).then(|| CropBox {
        start: lo,
        dims: std::array::from_fn(|a| hi[a] - lo[a]),
    })
}

/// The geometry of the sub-grid `crop` of `geometry`: same axes and spacing, origin moved
/// to the box's first voxel, so the cropped volumes sit where the full ones do.
pub fn crop_geometry(geometry: &Geometry, crop: &CropBox) -> Geometry {
    let mut affine = geometry.affine;
    for (r, row) in affine.iter_mut().take(3).enumerate() {
        let shift: f64 = (0..3)
            .map(|a| geometry.affine[r][a] * crop.start[a] as f64)
            .sum();
        row[3] += shift;
    }
    Geometry::from_affine(crop.dims, affine)
}

/// Grey steps of an embedded image (7 bits): an MRI's noise spans many of them (measured on
/// BraTS-geometry phantoms: a noise deviation of 11–17 steps of 255), so rounding to 127
/// steps adds an error (deviation 0.6 of the 255 steps) that cannot be seen, and saves about
/// 1 bit per brain voxel (a tenth of a real-size page).
pub const IMAGE_STEPS: u8 = 127;

/// An image as uint8: `lo` (the smallest finite value) to the [`IMAGE_TOP_QUANTILE`] of the
/// non-zero voxels in `steps` equal steps (stored 0..=steps; brighter voxels clipped, NaN and
/// infinities 0), with that scale in the header and the PNG figures' grey window
/// ([`super::slices::intensity_window`]) as display window.
pub fn quantise_image(image: &Grid<f32>, steps: u8) -> (Grid<u8>, Uint8Scaling) {
    let top = f32::from(steps.max(1));
    let finite = || image.data().iter().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f32::INFINITY, f32::min);
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let mut nonzero: Vec<f32> = finite().filter(|&v| v != 0.0).collect();
    let hi = if nonzero.is_empty() {
        lo
    } else {
        let k = ((nonzero.len() - 1) as f64 * IMAGE_TOP_QUANTILE).round() as usize;
        *nonzero.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let step = if hi > lo { (hi - lo) / top } else { 1.0 };
    let stored = image.map(|v| {
        if v.is_finite() {
            ((v - lo) / step).round().clamp(0.0, top) as u8
        } else {
            0
        }
    });
    let (wlo, whi) = intensity_window(image);
    let scaling = Uint8Scaling {
        slope: f64::from(step),
        inter: f64::from(lo),
        window: Some((f64::from(wlo), f64::from(whi))),
    };
    (stored, scaling)
}

/// Attention weights in [0, 1] as uint8 in steps of 1/255, displayed from an equal share
/// `1 / fused` (transparent below) to 1.
pub fn quantise_attention(map: &AttentionMap) -> (Grid<u8>, Uint8Scaling) {
    let stored = map.weights.map(|w| {
        if w.is_finite() {
            (w.clamp(0.0, 1.0) * 255.0).round() as u8
        } else {
            0
        }
    });
    let scaling = Uint8Scaling {
        slope: 1.0 / 255.0,
        inter: 0.0,
        window: Some((1.0 / map.fused.max(1) as f64, 1.0)),
    };
    (stored, scaling)
}

/// How a volume's voxels are stored, as the page's script reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// The voxels as they are (label maps: few values, long runs, gzip does well).
    Plain,
    /// [`predictive_residuals`] of the voxels (images and attention maps).
    Predictive,
}

/// The residuals of predicting each voxel of `voxels` (x fastest, then y, then z) from the
/// mean of its three preceding neighbours `(x−1, y, z)`, `(x, y−1, z)`, `(x, y, z−1)` (0
/// outside the grid), rounded down, modulo 256. Decoding in the same order recovers every
/// voxel exactly; a noisy image's residuals cluster around 0 and so compress better than its
/// values.
pub fn predictive_residuals(voxels: &Grid<u8>) -> Grid<u8> {
    let [nx, ny, nz] = voxels.dims();
    let v = voxels.data();
    let mut out = Vec::with_capacity(v.len());
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = voxels.index(x, y, z);
                let a = if x > 0 { u16::from(v[i - 1]) } else { 0 };
                let b = if y > 0 { u16::from(v[i - nx]) } else { 0 };
                let c = if z > 0 { u16::from(v[i - nx * ny]) } else { 0 };
                out.push(v[i].wrapping_sub(((a + b + c) / 3) as u8));
            }
        }
    }
    Grid::from_vec(voxels.dims(), out).expect("same dims")
}

/// `voxels` cropped to `crop`, stored with `coding` in a gzip NIfTI with `geometry` (the
/// crop's) and the scaling `s`, as JSON: `{"nii": base64, "coding": "plain" | "predictive"}`.
pub fn embed(
    geometry: &Geometry,
    crop: &CropBox,
    voxels: &Grid<u8>,
    s: Uint8Scaling,
    coding: Coding,
) -> Result<Value> {
    let cropped = crop.crop(voxels);
    let (stored, name) = match coding {
        Coding::Plain => (cropped, "plain"),
        Coding::Predictive => (predictive_residuals(&cropped), "predictive"),
    };
    let bytes = encode_u8_gz(geometry, &stored, s)?;
    Ok(json!({
        "nii": base64::engine::general_purpose::STANDARD.encode(bytes),
        "coding": name,
    }))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A grid of `dims` with unequal spacing and an offset origin (also the viewer's tests').
    pub(in crate::report) fn geometry(dims: [usize; 3]) -> Geometry {
        Geometry::from_affine(
            dims,
            [
                [1.0, 0.0, 0.0, -10.0],
                [0.0, 2.0, 0.0, 5.0],
                [0.0, 0.0, 1.5, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        )
    }

    #[test]
    fn crop_geometry_keeps_voxels_where_they_were() {
        let g = geometry([20, 16, 12]);
        let crop = CropBox {
            start: [2, 3, 4],
            dims: [5, 6, 7],
        };
        let cg = crop_geometry(&g, &crop);
        assert_eq!(cg.dims, [5, 6, 7]);
        // Voxel (0,0,0) of the crop is voxel (2,3,4) of the grid: x = 1·2 − 10, y = 2·3 + 5,
        // z = 1.5·4.
        assert_eq!(
            [cg.affine[0][3], cg.affine[1][3], cg.affine[2][3]],
            [-8.0, 11.0, 6.0]
        );
        assert_eq!(cg.spacing, g.spacing);
    }

    #[test]
    fn images_quantise_to_255_steps_with_their_scale() {
        let img = Grid::from_vec([4, 1, 1], vec![0.0, 12.0, 60.0, f32::NAN]).unwrap();
        let (q, s) = quantise_image(&img, 255);
        // lo = 0, hi = the top quantile of {12, 60} = 60: steps of 60/255.
        assert_eq!(q.data(), &[0, 51, 255, 0]);
        for (&stored, &v) in q.data().iter().zip(&img.data()[..3]) {
            let back = s.slope * f64::from(stored) + s.inter;
            assert!(
                (back - f64::from(v)).abs() <= s.slope / 2.0 + 1e-9,
                "{back} vs {v}"
            );
        }
        assert_eq!(s.window, Some((12.0, 60.0)));
        let a = AttentionMap {
            label: "T1".into(),
            weights: Grid::from_vec([3, 1, 1], vec![0.0, 0.5, 1.0]).unwrap(),
            fused: 4,
        };
        let (q, s) = quantise_attention(&a);
        assert_eq!(q.data(), &[0, 128, 255]);
        assert_eq!(s.window, Some((0.25, 1.0)));
    }

    /// Decodes `residuals` as the page's script does (`viewer.js`, `unpredict`).
    fn unpredict(residuals: &Grid<u8>) -> Vec<u8> {
        let [nx, ny, _] = residuals.dims();
        let mut v = residuals.data().to_vec();
        for i in 0..v.len() {
            let (x, y, z) = (i % nx, i / nx % ny, i / (nx * ny));
            let a = if x > 0 { u16::from(v[i - 1]) } else { 0 };
            let b = if y > 0 { u16::from(v[i - nx]) } else { 0 };
            let c = if z > 0 { u16::from(v[i - nx * ny]) } else { 0 };
            v[i] = v[i].wrapping_add(((a + b + c) / 3) as u8);
        }
        v
    }

    #[test]
    fn predictive_coding_is_lossless_and_centres_smooth_volumes_on_zero() {
        let dims = [9, 7, 5];
        let mut g = Grid::<u8>::zeros(dims);
        for z in 0..5 {
            for y in 0..7 {
                for x in 0..9 {
                    g.set(x, y, z, (x * 31 + y * 7 + z * 3) as u8 ^ (x * y) as u8);
                }
            }
        }
        assert_eq!(unpredict(&predictive_residuals(&g)), g.data());
        // A ramp of slope 2 along each axis: every inner voxel is predicted within 2.
        let ramp = Grid::from_vec(
            dims,
            (0..9 * 7 * 5)
                .map(|i| {
                    let (x, y, z) = (i % 9, i / 9 % 7, i / 63);
                    (100 + 2 * (x + y + z)) as u8
                })
                .collect(),
        )
        .unwrap();
        let r = predictive_residuals(&ramp);
        assert_eq!(r.get(0, 0, 0), 100);
        assert_eq!(r.get(4, 3, 2), 2);
        assert_eq!(unpredict(&r), ramp.data());
    }

    #[test]
    fn embedded_volumes_say_their_coding() {
        let g = Grid::from_vec([3, 2, 1], vec![5, 6, 7, 8, 9, 10]).unwrap();
        let crop = CropBox::full([3, 2, 1]);
        let geo = geometry([3, 2, 1]);
        let plain = embed(&geo, &crop, &g, Uint8Scaling::IDENTITY, Coding::Plain).unwrap();
        let coded = embed(&geo, &crop, &g, Uint8Scaling::IDENTITY, Coding::Predictive).unwrap();
        assert_eq!(
            (plain["coding"].as_str(), coded["coding"].as_str()),
            (Some("plain"), Some("predictive"))
        );
        assert_ne!(plain["nii"], coded["nii"]);
    }
}
