//! MFI's training loss, as the official code computes it: for every output (each branch's
//! logits, the fused logits and every deep-supervision output, all at input resolution),
//! `(1/3) Σ_r (1 − (2·Σ p_r·y_r + s) / (Σ p_r + Σ y_r + s) + 0.5 · BCE_r)` over the regions
//! WT, TC, ET, with the sums of the Dice over the whole batch, `s` = `dice_smooth` (1e-5)
//! and `BCE_r` the mean binary cross-entropy with logits; the total is the plain sum over
//! the outputs.

use anyhow::Result;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Int, Tensor};

use super::super::arch::{StepLoss, TrainInputs};
use super::super::config::Targets;
use super::super::loss::target_channels;
use super::Mfi;

/// Names of the loss terms, for the training log: the sum over the four branches, the
/// fused output, and the sum over the deep-supervision outputs.
pub const TERMS: [&str; 3] = ["branches", "fused", "deep"];

/// Weight of the binary cross-entropy beside the Dice.
pub const BCE_WEIGHT: f64 = 0.5;

/// The loss of one output: `logits` `[B, K, D, H, W]` against the region targets `y` (same
/// shape, 0/1), smoothing `smooth`; shape `[1]`.
pub fn dice_bce(logits: Tensor<5>, y: Tensor<5>, smooth: f64) -> Tensor<1> {
    let [b, k, d, h, w] = logits.dims();
    let n = b * d * h * w;
    // BCE with logits, stable form: max(x, 0) − x·y + log(1 + exp(−|x|)).
    let x = logits;
    let bce =
        x.clone().clamp_min(0.0) - x.clone() * y.clone() + x.clone().abs().neg().exp().log1p();
    let per_region = |t: Tensor<5>| t.swap_dims(0, 1).reshape([k, n]).sum_dim(1).reshape([k]);
    let bce = per_region(bce).div_scalar(n as f64);
    let p = sigmoid(x);
    let inter = per_region(p.clone() * y.clone());
    let dice = inter.mul_scalar(2.0).add_scalar(smooth)
        / (per_region(p) + per_region(y)).add_scalar(smooth);
    (dice.neg().add_scalar(1.0) + bce.mul_scalar(BCE_WEIGHT)).mean()
}

impl Mfi {
    /// The loss of one training step (see the module documentation): the drawn subset(s)
    /// give the zeroed inputs and the code ([`Mfi::masked_inputs`]), `step.classes`
    /// `[B, D, H, W]` the targets.
    pub fn loss(&self, step: &TrainInputs) -> Result<StepLoss> {
        let (images, code) = self.masked_inputs(step)?;
        let out = self.forward(images, code, true)?;
        Ok(self.output_loss(&out, step.classes.clone()))
    }

    /// The loss of every output of `out` against `classes` `[B, D, H, W]`.
    pub fn output_loss(&self, out: &super::MfiOutput, classes: Tensor<4, Int>) -> StepLoss {
        let y = target_channels(Targets::Regions, classes);
        let smooth = self.config.dice_smooth;
        let sum = |ts: &[Tensor<5>]| {
            ts.iter()
                .map(|t| dice_bce(t.clone(), y.clone(), smooth))
                .reduce(|a, b| a + b)
        };
        let branches = sum(&out.branches).expect("four branches");
        let fused = dice_bce(out.fused.clone(), y.clone(), smooth);
        let deep = sum(&out.deep);
        let value = |t: &Tensor<1>| t.clone().into_scalar::<f32>() as f64;
        let terms = vec![
            value(&branches),
            value(&fused),
            deep.as_ref().map_or(0.0, value),
        ];
        let total = match deep {
            Some(deep) => branches + fused + deep,
            None => branches + fused,
        };
        StepLoss { total, terms }
    }
}
