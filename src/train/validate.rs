//! Validation during training: the Dice of WT, TC and ET of each validation case predicted
//! from all its modalities (all four unless the case lacks some) by the inference predictor
//! ([`crate::infer::Predictor`]: Gaussian-weighted sliding window with the training patch,
//! step 0.5, no mirroring), averaged over the cases. The Dice is [`crate::metrics::dice`]
//! on the region masks, so a checkpoint's validation Dice is what `a2fseg evaluate` reports
//! for subset `1111` (default step and mirroring) on the same cases, up to float noise.
//! The label maps get the predictor's default post-processing (the brain mask); whether to
//! keep only the largest tumour component is decided once, after the last epoch
//! ([`crate::infer::postprocess::determine`]).
//!
//! The score is computed inside the crop box of each case; it equals the full-grid score
//! because predictions are background outside that box and the reference lies inside the
//! brain.

use std::borrow::Cow;

use anyhow::{Context, Result};
use burn::tensor::Device;

use crate::infer::{Predictor, Tta};
use crate::metrics::region_dice;
use crate::model::Network;
use crate::preprocess::PreprocessedCase;

/// Sliding-window step of validation (as `evaluate`'s default).
pub const STEP: f64 = 0.5;

/// Mean Dice `[WT, TC, ET]` over the `count` cases `case(0..count)` (each with its
/// segmentation) of `model` (a non-autodiff copy, `model.valid()`) predicting from every
/// modality each case has. Cases are asked for one at a time.
pub fn validate<'a>(
    model: impl Network,
    count: usize,
    case: impl Fn(usize) -> Result<Cow<'a, PreprocessedCase>>,
    device: &Device,
) -> Result<[f64; 3]> {
    let predictor = Predictor::new(model, device.clone(), STEP, Tta::OFF)?;
    let mut total = [0f64; 3];
    for i in 0..count {
        let case = case(i)?;
        let truth = case.truth("validation")?;
        let pred = predictor
            .predict_case(&case, case.available())
            .with_context(|| format!("cannot validate on case {}", case.id))?;
        let d = region_dice(&case.crop.crop(&pred.classes), truth);
        for r in 0..3 {
            total[r] += d[r];
        }
    }
    let n = count.max(1) as f64;
    Ok(total.map(|t| t / n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Grid;

    fn grid(v: &[u8]) -> Grid<u8> {
        Grid::from_vec([v.len(), 1, 1], v.to_vec()).unwrap()
    }

    #[test]
    fn dice_of_regions() {
        // truth: NCR, ED, ET, bg; pred: ET, ED, ET, bg.
        let d = region_dice(&grid(&[3, 2, 3, 0]), &grid(&[1, 2, 3, 0]));
        assert_eq!(d[0], 1.0); // WT identical
        assert_eq!(d[1], 1.0); // TC = {0, 2} in both
        assert!((d[2] - 2.0 / 3.0).abs() < 1e-12); // ET {0,2} vs {2}
        assert_eq!(region_dice(&grid(&[0, 0]), &grid(&[0, 0])), [1.0; 3]);
        assert_eq!(region_dice(&grid(&[0, 2]), &grid(&[0, 0]))[0], 0.0);
    }
}
