//! RFNet's training loss, as the official code computes it:
//!
//! `L = [epoch ≥ region_fusion_start_epoch]·L(fused) + Σ_m L(auxiliary_m) + Σ_s L(maps_s)`,
//! each `L` the class-weighted cross-entropy (probabilities clamped at 0.005) + soft Dice
//! over the 4 classes ([`weighted_ce_soft_dice`]), where
//! - `fused`: the fused decoder's softmax output from the masked features;
//! - `auxiliary_m`: the shared auxiliary decoder on modality `m`'s own, unmasked features,
//!   for every modality the batch has;
//! - `maps_s`: the region maps of scale `s`, upsampled to full resolution (aligned-corner
//!   trilinear by `2^s`).
//!
//! Before the warm-up ends the fused term is multiplied by 0, not left out, as the official
//! code does: its parameters still receive (zero) gradients, so the optimiser's weight decay
//! and moments update them exactly as there.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::super::arch::{StepLoss, TrainInputs};
use super::super::loss::weighted_ce_soft_dice;
use super::super::ops::upsample_trilinear_aligned;
use super::Rfnet;
use crate::model::arch::distinct_modalities;

/// Names of the loss terms, for the training log (the fused term as computed, even while
/// its weight is 0).
pub const TERMS: [&str; 3] = ["fused", "auxiliary", "region_maps"];

/// The sum of scalar `terms` (each `[1]`).
fn sum(terms: Vec<Tensor<1>>) -> Tensor<1> {
    terms
        .into_iter()
        .reduce(|a, b| a + b)
        .expect("at least one term")
}

impl Rfnet {
    /// The loss of one training step: `step.images` `[B, 1, D, H, W]` hold every modality
    /// the batch has, `step.sample_subsets` each sample's drawn subset (its mask),
    /// `step.classes` `[B, D, H, W]`, `step.epoch` the epoch (from 0).
    pub fn loss(&self, step: &TrainInputs) -> Result<StepLoss> {
        let available = distinct_modalities(step.images.iter().map(|(m, _)| *m), "RFNet")?;
        step.check_sample_subsets(available)?;
        let dims0 = step.images[0].1.dims();
        if let Some((m, x)) = step.images.iter().find(|(_, x)| x.dims() != dims0) {
            bail!("{m}: shape {:?} differs from {dims0:?}", x.dims());
        }
        if step.sample_subsets.len() != dims0[0] {
            bail!(
                "{} sample subsets for a batch of {}",
                step.sample_subsets.len(),
                dims0[0]
            );
        }
        let mut features = Vec::with_capacity(step.images.len());
        for (m, x) in &step.images {
            features.push((*m, self.features(*m, x.clone())?));
        }
        let device = step.images[0].1.device();
        let fused = self.forward_masked(&features, step.sample_mask(&device));
        let classes = || step.classes.clone();

        let fused_loss = weighted_ce_soft_dice(softmax(fused.logits, 1), classes());
        let auxiliary = sum(features
            .iter()
            .map(|(_, f)| weighted_ce_soft_dice(softmax(self.auxiliary.forward(f), 1), classes()))
            .collect());
        let maps = sum(fused
            .maps
            .into_iter()
            .enumerate()
            .map(|(s, p)| weighted_ce_soft_dice(upsample_trilinear_aligned(p, 1 << s), classes()))
            .collect());
        let fused_weight = if step.epoch >= self.config.region_fusion_start_epoch {
            1.0
        } else {
            0.0
        };
        let total = fused_loss.clone().mul_scalar(fused_weight) + auxiliary.clone() + maps.clone();
        let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        Ok(StepLoss {
            total,
            terms: vec![value(fused_loss), value(auxiliary), value(maps)],
        })
    }
}
