//! Validation during training: full-modality Dice of WT, TC and ET on the validation
//! cases, predicted by a simple sliding window over the cropped case (windows of the
//! training patch size, half-patch steps, plain averaging of probabilities; cases smaller
//! than a patch are zero-padded). The full predictor with Gaussian weighting and mirroring
//! is `crate::infer`'s; this one only has to rank checkpoints.

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};

use super::sampler::TrainCase;
use crate::labels::{Region, TumourClass};
use crate::model::{self, A2fseg};

/// Window start positions along one axis of length `len` for windows of `size` with a
/// step of half a window; the last window ends at `max(len, size)`.
pub fn window_starts(len: usize, size: usize) -> Vec<usize> {
    let span = len.max(size) - size;
    if span == 0 {
        return vec![0];
    }
    let step = (size / 2).max(1);
    let n = span.div_ceil(step) + 1;
    (0..n)
        .map(|i| ((i as f64 * span as f64 / (n - 1) as f64).round()) as usize)
        .collect()
}

/// The class map (TumourClass indices, dims of the case) the model predicts for `case`
/// from all four modalities. `model` should be a non-autodiff copy (`model.valid()`).
pub fn predict_case(
    model: &A2fseg,
    case: &TrainCase,
    patch: [usize; 3],
    device: &Device,
) -> Result<Vec<u8>> {
    let cfg = model.config().clone();
    let dims = case.dims();
    let k = cfg.targets.channels();
    let n = dims.iter().product::<usize>();
    let mut acc = vec![0f32; k * n];
    let mut count = vec![0u32; n];
    let starts: Vec<Vec<usize>> = (0..3).map(|a| window_starts(dims[a], patch[a])).collect();
    let pn = patch.iter().product::<usize>();
    for &z0 in &starts[2] {
        for &y0 in &starts[1] {
            for &x0 in &starts[0] {
                let inputs: Vec<_> = crate::modality::Modality::ALL
                    .iter()
                    .map(|&m| {
                        let grid = &case.images[m.index()];
                        let mut buf = vec![0f32; pn];
                        for_each_voxel(dims, patch, [x0, y0, z0], |o, s| buf[o] = grid.data()[s]);
                        let t = Tensor::<5>::from_data(
                            TensorData::new(buf, [1, 1, patch[2], patch[1], patch[0]]),
                            device,
                        );
                        (m, t)
                    })
                    .collect();
                let out = model.forward(&inputs)?;
                let probs = model::probabilities(&cfg, out.fused);
                let p: Vec<f32> = probs
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                for_each_voxel(dims, patch, [x0, y0, z0], |o, s| {
                    for c in 0..k {
                        acc[c * n + s] += p[c * pn + o];
                    }
                    count[s] += 1;
                });
            }
        }
    }
    for c in 0..k {
        for (v, &cnt) in acc[c * n..(c + 1) * n].iter_mut().zip(&count) {
            *v /= cnt.max(1) as f32;
        }
    }
    let probs = Tensor::<5>::from_data(
        TensorData::new(acc, [1, k, dims[2], dims[1], dims[0]]),
        device,
    );
    Ok(model::decode_classes(&cfg, probs))
}

/// Calls `f(window_index, case_index)` for every voxel of the window at `start` that lies
/// inside the case.
fn for_each_voxel(
    dims: [usize; 3],
    patch: [usize; 3],
    start: [usize; 3],
    mut f: impl FnMut(usize, usize),
) {
    for oz in 0..patch[2] {
        let z = start[2] + oz;
        if z >= dims[2] {
            break;
        }
        for oy in 0..patch[1] {
            let y = start[1] + oy;
            if y >= dims[1] {
                break;
            }
            for ox in 0..patch[0] {
                let x = start[0] + ox;
                if x >= dims[0] {
                    break;
                }
                f(
                    ox + patch[0] * (oy + patch[1] * oz),
                    x + dims[0] * (y + dims[1] * z),
                );
            }
        }
    }
}

/// Dice of WT, TC, ET between two class maps; a region empty in both scores 1.
pub fn region_dice(pred: &[u8], truth: &[u8]) -> [f64; 3] {
    let mut inter = [0usize; 3];
    let mut sum = [0usize; 3];
    for (&p, &t) in pred.iter().zip(truth) {
        let (p, t) = (class(p).regions(), class(t).regions());
        for r in 0..3 {
            inter[r] += (p[r] && t[r]) as usize;
            sum[r] += p[r] as usize + t[r] as usize;
        }
    }
    std::array::from_fn(|r| {
        if sum[r] == 0 {
            1.0
        } else {
            2.0 * inter[r] as f64 / sum[r] as f64
        }
    })
}

fn class(v: u8) -> TumourClass {
    TumourClass::from_index(v as usize).unwrap_or(TumourClass::Background)
}

/// Mean full-modality Dice `[WT, TC, ET]` over `cases`.
pub fn validate(
    model: &A2fseg,
    cases: &[TrainCase],
    patch: [usize; 3],
    device: &Device,
) -> Result<[f64; 3]> {
    let mut total = [0f64; 3];
    for case in cases {
        let pred = predict_case(model, case, patch, device)?;
        let d = region_dice(&pred, case.classes.data());
        for r in Region::ALL {
            total[r.index()] += d[r.index()];
        }
    }
    let n = cases.len().max(1) as f64;
    Ok(total.map(|t| t / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_axis_with_half_overlap() {
        assert_eq!(window_starts(10, 16), vec![0]);
        assert_eq!(window_starts(16, 16), vec![0]);
        assert_eq!(window_starts(24, 16), vec![0, 8]);
        assert_eq!(window_starts(25, 16), vec![0, 5, 9]);
        for len in 16..80 {
            let s = window_starts(len, 16);
            assert_eq!(*s.last().unwrap(), len - 16);
            assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 8));
        }
    }

    #[test]
    fn dice_of_regions() {
        // truth: NCR, ED, ET, bg; pred: ET, ED, ET, bg.
        let d = region_dice(&[3, 2, 3, 0], &[1, 2, 3, 0]);
        assert_eq!(d[0], 1.0); // WT identical
        assert_eq!(d[1], 1.0); // TC = {0, 2} in both
        assert!((d[2] - 2.0 / 3.0).abs() < 1e-12); // ET {0,2} vs {2}
        assert_eq!(region_dice(&[0, 0], &[0, 0]), [1.0; 3]);
        assert_eq!(region_dice(&[0, 2], &[0, 0])[0], 0.0);
    }
}
