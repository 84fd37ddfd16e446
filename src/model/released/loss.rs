//! The released code's loss: BCE + soft Dice per region (CE + Dice for `classes` targets)
//! on every output that ran, weighted by the deep-supervision vector w = (1, ½, ¼, ⅛, 0) /
//! 1.875 (for 5 poolings; [`ModelConfig::deep_supervision_weights`] in general):
//!
//! total = w₀ · L(final) + Σ_m Σ_l w_l · L(MSFE_m, level l) + Σ_l w_l · L(fusion decoder, l)
//!
//! The trainer of the released code builds one weight vector `[w₀] ++ w ++ w ++ …` and zips
//! it with the outputs `[final, MSFE heads of each available modality, fusion decoder
//! heads]`, which is this sum for any subset. Targets of level `l` are the class map
//! downsampled by nearest neighbour ([`downsample_nearest`]).
//!
//! Each head's term is [`head_loss`] of our A2FSeg, averaged over the samples of the batch:
//! the released code computes the Dice per sample (`batch_dice: False`), so the Dice is taken
//! per sample and channel and averaged, and the mean of per-sample BCE means equals the BCE
//! mean over the batch. Conventions kept from our A2FSeg:
//! - the Dice is `1 − (2·Σ p·y + s) / (Σ p + Σ y + s)` with `s` = `dice_smooth` (default
//!   1e-5); the released code uses `−2·Σ p·y / (Σ p + Σ y + 1e-8)` (smooth 0). The constant 1
//!   changes no gradient, and with sigmoid probabilities `Σ p > 0`, so both are finite; the
//!   smoothing term moves a Dice by less than 1e-5 / (Σ p + Σ y), far below training noise
//!   at any patch size, and keeps one configuration field with one meaning across methods;
//! - with `classes` targets the Dice leaves out the background as our A2FSeg does (the
//!   released code trains the three regions only, where every channel is a region).

use burn::tensor::{Int, Tensor, s};

use super::ReleasedOutput;
use crate::model::arch::StepLoss;
use crate::model::config::ModelConfig;
use crate::model::loss::{downsample_nearest, head_loss};

/// Names of the loss terms in the training log, in the order of [`StepLoss::terms`]: the
/// MSFEs' deep-supervision losses (summed over the available modalities), the fusion
/// decoder's, and the final output's (already multiplied by w₀). They add up to the total.
pub const TERMS: [&str; 3] = ["modality", "fusion_decoder", "final"];

/// [`head_loss`] per sample of the batch, averaged: `logits` `[B, K, D, H, W]`, `classes`
/// `[B, D, H, W]`.
pub fn per_sample_head_loss(
    cfg: &ModelConfig,
    logits: Tensor<5>,
    classes: Tensor<4, Int>,
) -> Tensor<1> {
    let b = logits.dims()[0];
    (0..b)
        .map(|i| {
            head_loss(
                cfg,
                logits.clone().slice(s![i..i + 1]),
                classes.clone().slice(s![i..i + 1]),
            )
        })
        .reduce(|a, t| a + t)
        .expect("a batch has at least one sample")
        .div_scalar(b as f64)
}

/// Σ_l w_l · L(head l) over the heads `logits` (full resolution first) with `weights`;
/// heads of weight 0 are not evaluated. `None` when every weight is 0.
fn deep_supervision(
    cfg: &ModelConfig,
    logits: &[Tensor<5>],
    targets: &[Tensor<4, Int>],
    weights: &[f64],
) -> Option<Tensor<1>> {
    logits
        .iter()
        .zip(targets)
        .zip(weights)
        .filter(|(_, w)| **w != 0.0)
        .map(|((lg, y), w)| per_sample_head_loss(cfg, lg.clone(), y.clone()).mul_scalar(*w))
        .reduce(|a, t| a + t)
}

/// The loss of `output` against `classes` `[B, D, H, W]` (TumourClass indices 0..=3): the
/// differentiable total and the values of [`TERMS`].
pub fn loss(cfg: &ModelConfig, output: &ReleasedOutput, classes: Tensor<4, Int>) -> StepLoss {
    let weights = cfg.deep_supervision_weights();
    let targets: Vec<Tensor<4, Int>> = (0..weights.len())
        .map(|l| downsample_nearest(classes.clone(), l))
        .collect();
    let modality = output
        .per_modality
        .iter()
        .filter_map(|(_, lg)| deep_supervision(cfg, lg, &targets, &weights))
        .reduce(|a, t| a + t);
    let fusion_decoder = deep_supervision(cfg, &output.fusion_decoder, &targets, &weights);
    let last =
        per_sample_head_loss(cfg, output.logits.clone(), targets[0].clone()).mul_scalar(weights[0]);
    let parts = [modality, fusion_decoder, Some(last)];
    let terms = parts
        .iter()
        .map(|t| {
            t.as_ref()
                .map_or(0.0, |t| t.clone().into_scalar::<f32>() as f64)
        })
        .collect();
    let total = parts
        .into_iter()
        .flatten()
        .reduce(|a, t| a + t)
        .expect("the final term is always there");
    StepLoss { total, terms }
}
