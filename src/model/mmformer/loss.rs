//! mmFormer's training loss, as the official code computes it (RFNet's loss without its
//! warm-up):
//!
//! `L = ℓ(fused) + Σ_m ℓ(auxiliary_m) + Σ_{l=1..L} ℓ(up_{2^l}(deep_l))`, where `ℓ` is
//! [`weighted_ce_soft_dice`] on softmax probabilities, the auxiliary outputs are those of
//! every modality the batch has (masked ones included), and the deep-supervision
//! probabilities are upsampled to full size with aligned corners.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::super::arch::{StepLoss, TrainInputs};
use super::super::loss::weighted_ce_soft_dice;
use super::super::ops::upsample_trilinear_aligned;
use super::Mmformer;
use super::transformer::Dropout;
use crate::modality::Subset;

/// Names of the loss terms, for the training log.
pub const TERMS: [&str; 3] = ["fused", "auxiliary", "deep_supervision"];

/// The sum of scalar `terms` (each `[1]`), or `None` if there are none.
fn sum_of(terms: Vec<Tensor<1>>) -> Option<Tensor<1>> {
    terms.into_iter().reduce(|a, b| a + b)
}

impl Mmformer {
    /// The loss of one training step: `step.images` `[B, 1, D, H, W]` every modality the
    /// batch has, `step.sample_subsets` each sample's drawn subset (the fusion's mask),
    /// `step.classes` `[B, D, H, W]`. Dropout draws come from the step's seed.
    pub fn loss(&self, step: &TrainInputs) -> Result<StepLoss> {
        let Some((_, x0)) = step.images.first() else {
            bail!("a training step needs at least one image");
        };
        let b = x0.dims()[0];
        if step.sample_subsets.len() != b {
            bail!(
                "{} sample subsets for a batch of {b}",
                step.sample_subsets.len()
            );
        }
        let available = Subset::from_modalities(step.images.iter().map(|(m, _)| *m));
        step.check_sample_subsets(available)?;
        let device = x0.device();
        let drop = Dropout::new(step, self.config.mmformer.dropout, 0);
        let out = self.forward_train(&step.images, step.sample_mask(&device), Some(&drop))?;
        let classes = step.classes.clone();
        let fused = weighted_ce_soft_dice(softmax(out.fused.logits, 1), classes.clone());
        let auxiliary = sum_of(
            out.auxiliary
                .into_iter()
                .map(|(_, lg)| weighted_ce_soft_dice(softmax(lg, 1), classes.clone()))
                .collect(),
        );
        let deep = sum_of(
            out.fused
                .deep
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let up = upsample_trilinear_aligned(p, 1 << (i + 1));
                    weighted_ce_soft_dice(up, classes.clone())
                })
                .collect(),
        );
        let scalar = |t: &Option<Tensor<1>>| {
            t.as_ref()
                .map_or(0.0, |t| t.clone().into_scalar::<f32>() as f64)
        };
        let terms = vec![
            fused.clone().into_scalar::<f32>() as f64,
            scalar(&auxiliary),
            scalar(&deep),
        ];
        let mut total = fused;
        for t in [auxiliary, deep].into_iter().flatten() {
            total = total + t;
        }
        Ok(StepLoss { total, terms })
    }
}
