//! Sliding-window inference over a (cropped) case, generic over the function that maps an
//! input patch to output channels, so it works for the network and for test closures alike.
//!
//! Windows have the model's patch size and advance by `step × patch` (default 0.5) along
//! each axis; the last window of each axis is flush with the volume's border. On an axis
//! where the volume is smaller than the patch, the single window starts at 0 and the input
//! patch is zero-padded beyond the volume (the normalised images are zero outside the
//! brain). Outputs are blended with the Gaussian importance map ([`gaussian_importance`]),
//! optionally averaged over mirrored passes ([`Tta`]); a single window covering the volume
//! (the whole-volume plan, [`super::plan`]) has nothing to blend and is kept as it is. Memory: one accumulation buffer per
//! output channel plus one weight buffer, each the volume's size; a window's output is
//! added and dropped at once.

use anyhow::{Result, bail, ensure};

use super::gaussian::gaussian_importance;
use super::tta::{Tta, flip_in_place};
use crate::volume::Grid;

/// Window start offsets along one axis of `len` voxels for a patch of `patch` voxels and a
/// step of `step × patch` (0 < step ≤ 1): evenly spread, first at 0, last at `len - patch`
/// (flush with the border), as few as the step allows. A single `0` when `len ≤ patch`.
pub fn window_starts(len: usize, patch: usize, step: f64) -> Vec<usize> {
    if len <= patch || patch == 0 {
        return vec![0];
    }
    let span = (len - patch) as f64;
    let stride = (patch as f64 * step).max(1.0);
    let steps = (span / stride).ceil() as usize + 1;
    let actual = span / (steps - 1) as f64;
    (0..steps)
        .map(|i| ((i as f64 * actual).round() as usize).min(len - patch))
        .collect()
}

/// Sliding-window settings: patch size `[x, y, z]`, step fraction and test-time mirroring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    /// Patch size `[x, y, z]` in voxels (the model's training patch).
    pub patch: [usize; 3],
    /// Step between windows as a fraction of the patch (0 < step ≤ 1).
    pub step: f64,
    /// Test-time mirroring.
    pub tta: Tta,
}

impl SlidingWindow {
    /// Checked settings: a non-empty patch and `0 < step ≤ 1`.
    pub fn new(patch: [usize; 3], step: f64, tta: Tta) -> Result<Self> {
        ensure!(
            patch.iter().all(|&p| p > 0),
            "the patch size {patch:?} has an empty axis"
        );
        if !(step > 0.0 && step <= 1.0) {
            bail!("--step must be in (0, 1], got {step}");
        }
        Ok(SlidingWindow { patch, step, tta })
    }

    /// The start `[x, y, z]` of every window over a volume of `dims`, x fastest.
    pub fn windows(&self, dims: [usize; 3]) -> Vec<[usize; 3]> {
        let s: Vec<Vec<usize>> = (0..3)
            .map(|a| window_starts(dims[a], self.patch[a], self.step))
            .collect();
        let mut out = Vec::with_capacity(s[0].len() * s[1].len() * s[2].len());
        for &z in &s[2] {
            for &y in &s[1] {
                for &x in &s[0] {
                    out.push([x, y, z]);
                }
            }
        }
        out
    }

    /// Number of network passes over a volume of `dims` (windows × mirrorings).
    pub fn passes(&self, dims: [usize; 3]) -> usize {
        self.windows(dims).len() * self.tta.flips().len()
    }

    /// Runs `f` over every window of the volume `inputs` (all of `dims`) and returns the
    /// `channels` blended output channels, each of `dims`.
    ///
    /// `f` receives one buffer per input channel of the patch's voxels (x fastest, i.e. the
    /// C-order tensor `[pz, py, px]`; zero beyond the volume) and returns `channels × patch`
    /// values, channel after channel in the same voxel order. `on_window` is called after
    /// each window with (windows done, windows total).
    pub fn run<F, P>(
        &self,
        dims: [usize; 3],
        inputs: &[&Grid<f32>],
        channels: usize,
        mut f: F,
        mut on_window: P,
    ) -> Result<Vec<Grid<f32>>>
    where
        F: FnMut(&[Vec<f32>]) -> Result<Vec<f32>>,
        P: FnMut(usize, usize),
    {
        for (i, g) in inputs.iter().enumerate() {
            ensure!(
                g.dims() == dims,
                "input channel {i} has dims {:?}, expected {dims:?}",
                g.dims()
            );
        }
        let mut acc: Vec<Grid<f32>> = (0..channels).map(|_| Grid::zeros(dims)).collect();
        if dims.contains(&0) {
            return Ok(acc);
        }
        let mut weight: Grid<f32> = Grid::zeros(dims);
        let [px, py, pz] = self.patch;
        let np = px * py * pz;
        let flips = self.tta.flips();
        let windows = self.windows(dims);
        // One window: uniform weights, so its outputs pass through exactly.
        let gauss = if windows.len() == 1 {
            Grid::from_vec(self.patch, vec![1.0; np]).expect("px·py·pz weights")
        } else {
            gaussian_importance(self.patch)
        };
        let total = windows.len();
        for (wi, start) in windows.into_iter().enumerate() {
            // The part of the window inside the volume: [start, start + extent).
            let extent: [usize; 3] = std::array::from_fn(|a| self.patch[a].min(dims[a] - start[a]));
            let patches: Vec<Vec<f32>> = inputs
                .iter()
                .map(|g| extract(g, start, extent, self.patch))
                .collect();
            let mut sum: Vec<f32> = Vec::new();
            for flip in &flips {
                let mut out = if *flip == [false; 3] {
                    f(&patches)?
                } else {
                    let mut flipped = patches.clone();
                    for p in &mut flipped {
                        flip_in_place(p, self.patch, *flip);
                    }
                    f(&flipped)?
                };
                ensure!(
                    out.len() == channels * np,
                    "the window function returned {} values, expected {} channels × {np}",
                    out.len(),
                    channels
                );
                flip_in_place(&mut out, self.patch, *flip);
                if sum.is_empty() {
                    sum = out;
                } else {
                    sum.iter_mut().zip(&out).for_each(|(s, o)| *s += o);
                }
            }
            let scale = 1.0 / flips.len() as f32;
            for z in 0..extent[2] {
                for y in 0..extent[1] {
                    let local = px * (y + py * z);
                    let global = weight.index(start[0], start[1] + y, start[2] + z);
                    let g = &gauss.data()[local..local + extent[0]];
                    weight.data_mut()[global..global + extent[0]]
                        .iter_mut()
                        .zip(g)
                        .for_each(|(w, g)| *w += g);
                    for (k, a) in acc.iter_mut().enumerate() {
                        let o = &sum[k * np + local..k * np + local + extent[0]];
                        a.data_mut()[global..global + extent[0]]
                            .iter_mut()
                            .zip(o.iter().zip(g))
                            .for_each(|(a, (o, g))| *a += o * scale * g);
                    }
                }
            }
            on_window(wi + 1, total);
        }
        for a in &mut acc {
            a.data_mut()
                .iter_mut()
                .zip(weight.data())
                .for_each(|(a, w)| *a /= w);
        }
        Ok(acc)
    }
}

/// Copies the window at `start` of `extent` voxels (inside the volume) into a zeroed patch
/// buffer of `patch` voxels (x fastest).
fn extract(g: &Grid<f32>, start: [usize; 3], extent: [usize; 3], patch: [usize; 3]) -> Vec<f32> {
    let [px, py, pz] = patch;
    let mut out = vec![0.0f32; px * py * pz];
    for z in 0..extent[2] {
        for y in 0..extent[1] {
            let src = g.index(start[0], start[1] + y, start[2] + z);
            let dst = px * (y + py * z);
            out[dst..dst + extent[0]].copy_from_slice(&g.data()[src..src + extent[0]]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: [usize; 3]) -> Grid<f32> {
        let n = dims.iter().product::<usize>();
        Grid::from_vec(dims, (0..n).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap()
    }

    #[test]
    fn starts_cover_the_axis_and_end_flush() {
        assert_eq!(window_starts(10, 16, 0.5), vec![0]);
        assert_eq!(window_starts(16, 16, 0.5), vec![0]);
        assert_eq!(window_starts(24, 16, 0.5), vec![0, 8]);
        assert_eq!(window_starts(25, 16, 0.5), vec![0, 5, 9]);
        assert_eq!(window_starts(100, 16, 1.0).last(), Some(&84));
        for (len, p, step) in [(155, 128, 0.5), (240, 128, 0.5), (37, 8, 0.3), (9, 8, 1.0)] {
            let s = window_starts(len, p, step);
            assert_eq!(s[0], 0);
            assert_eq!(*s.last().unwrap(), len - p);
            for w in s.windows(2) {
                assert!(w[1] > w[0] && w[1] - w[0] <= (p as f64 * step).ceil() as usize);
            }
        }
    }

    #[test]
    fn windows_cover_every_voxel() {
        let sw = SlidingWindow::new([8, 6, 4], 0.5, Tta::OFF).unwrap();
        for dims in [[20, 13, 9], [5, 6, 3], [8, 30, 4]] {
            let mut hits: Grid<u32> = Grid::zeros(dims);
            for s in sw.windows(dims) {
                for z in s[2]..(s[2] + 4).min(dims[2]) {
                    for y in s[1]..(s[1] + 6).min(dims[1]) {
                        for x in s[0]..(s[0] + 8).min(dims[0]) {
                            hits.set(x, y, z, hits.get(x, y, z) + 1);
                        }
                    }
                }
            }
            assert!(hits.data().iter().all(|&h| h > 0), "{dims:?}");
        }
    }

    #[test]
    fn constant_closure_gives_constant_output() {
        let sw = SlidingWindow::new([8, 8, 8], 0.5, Tta::OFF).unwrap();
        let dims = [19, 11, 5];
        let img = ramp(dims);
        let np = 512;
        let out = sw
            .run(
                dims,
                &[&img],
                2,
                |_| Ok([vec![0.25; np], vec![-3.0; np]].concat()),
                |_, _| {},
            )
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].data().iter().all(|v| (v - 0.25).abs() < 1e-5));
        assert!(out[1].data().iter().all(|v| (v + 3.0).abs() < 1e-5));
    }

    #[test]
    fn identity_closure_reconstructs_the_input() {
        let dims = [21, 9, 14];
        let a = ramp(dims);
        let b = a.map(|v| 2.0 * v + 1.0);
        for tta in [Tta::OFF, Tta::ALL] {
            let sw = SlidingWindow::new([8, 6, 16], 0.5, tta).unwrap();
            let mut calls = 0;
            let out = sw
                .run(
                    dims,
                    &[&a, &b],
                    2,
                    |p| {
                        calls += 1;
                        Ok(p.concat())
                    },
                    |_, _| {},
                )
                .unwrap();
            assert_eq!(calls, sw.passes(dims));
            for (o, i) in out.iter().zip([&a, &b]) {
                for (x, y) in o.data().iter().zip(i.data()) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn a_single_window_passes_through_exactly() {
        let dims = [7, 8, 5];
        let a = ramp(dims);
        let sw = SlidingWindow::new([8, 8, 8], 0.5, Tta::OFF).unwrap();
        let out = sw
            .run(dims, &[&a], 1, |p| Ok(p.concat()), |_, _| {})
            .unwrap();
        assert_eq!(out[0].data(), a.data());
    }

    #[test]
    fn tta_with_a_flip_equivariant_closure_equals_no_tta() {
        // A pointwise nonlinearity plus a mirror-symmetric 3-point blur along x commutes
        // with mirroring.
        let f = |p: &[Vec<f32>]| -> Result<Vec<f32>> {
            let [px, py, pz] = [6usize, 6, 6];
            let src = &p[0];
            let mut out = vec![0.0; px * py * pz];
            for i in 0..out.len() {
                let x = i % px;
                let l = if x > 0 { src[i - 1] } else { 0.0 };
                let r = if x + 1 < px { src[i + 1] } else { 0.0 };
                out[i] = (l + 2.0 * src[i] + r).tanh();
            }
            Ok(out)
        };
        let dims = [13, 10, 7];
        let img = ramp(dims);
        let plain = SlidingWindow::new([6, 6, 6], 0.5, Tta::OFF).unwrap();
        let mirrored = SlidingWindow::new([6, 6, 6], 0.5, Tta::ALL).unwrap();
        let a = plain.run(dims, &[&img], 1, f, |_, _| {}).unwrap();
        let b = mirrored.run(dims, &[&img], 1, f, |_, _| {}).unwrap();
        for (x, y) in a[0].data().iter().zip(b[0].data()) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_settings_and_outputs_are_errors() {
        assert!(SlidingWindow::new([8, 8, 8], 0.0, Tta::OFF).is_err());
        assert!(SlidingWindow::new([8, 8, 8], 1.5, Tta::OFF).is_err());
        assert!(SlidingWindow::new([8, 0, 8], 0.5, Tta::OFF).is_err());
        let sw = SlidingWindow::new([4, 4, 4], 0.5, Tta::OFF).unwrap();
        let img: Grid<f32> = Grid::zeros([4, 4, 4]);
        assert!(
            sw.run([4, 4, 4], &[&img], 2, |_| Ok(vec![0.0; 64]), |_, _| {})
                .is_err()
        );
        assert!(
            sw.run([5, 4, 4], &[&img], 1, |_| Ok(vec![0.0; 64]), |_, _| {})
                .is_err()
        );
    }
}
