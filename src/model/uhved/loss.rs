//! U-HVED's training loss, as the official code computes it:
//!
//! `L = L_seg + kl_weight · KL + reconstruction_weight · MSE`, with
//! - `L_seg`: for `classes` targets, cross-entropy + NiftyNet's Dice loss over all four
//!   classes (background included) with squared probabilities in the denominator,
//!   `1 − mean_c 2·Σ p·y / (Σ p² + Σ y + 1e-5)` per case, averaged over the batch; for
//!   `regions` targets, the crate's BCE + soft Dice ([`head_loss`]);
//! - `MSE`: mean squared error of the reconstructions of every modality the batch has,
//!   the ones missing from the drawn subset included (averaged over modalities);
//! - `KL`, averaged over the scales: the mean over the other subsets `S ≠ D` of
//!   `KL(q_D ‖ q_S)` plus the mean over all subsets of `KL(q_S ‖ N(0, 1))`, where `D` is
//!   the drawn subset, `q_S` the product with the prior over `S`, and the subsets range over
//!   the non-empty subsets of the batch's modalities (all 15 with complete cases).

use anyhow::{Result, bail};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use super::super::arch::{StepLoss, TrainInputs};
use super::super::config::Targets;
use super::super::loss::{head_loss, target_channels};
use super::Uhved;
use super::gaussian::{Expert, Gaussian, product_with_prior};
use crate::modality::{Modality, Subset};
use crate::model::arch::distinct_modalities;

/// Names of the loss terms, for the training log.
pub const TERMS: [&str; 3] = ["segmentation", "kl", "reconstruction"];

/// Smoothing of NiftyNet's Dice denominator.
const DICE_EPS: f64 = 1e-5;

/// Cross-entropy + NiftyNet's Dice over all `K` classes: `logits` `[B, K, D, H, W]`,
/// `classes` `[B, D, H, W]`; shape `[1]`.
pub fn ce_dice_all_classes(logits: Tensor<5>, classes: Tensor<4, Int>) -> Tensor<1> {
    let [b, k, d, h, w] = logits.dims();
    let y = target_channels(Targets::Classes, classes);
    let logp = log_softmax(logits, 1);
    let ce = (logp.clone() * y.clone())
        .sum()
        .neg()
        .div_scalar((b * d * h * w) as f64);
    let p = logp.exp();
    // Sums over the voxels of each case and class: [B, K].
    let per_case = |t: Tensor<5>| t.reshape([b, k, d * h * w]).sum_dim(2).reshape([b, k]);
    let inter = per_case(p.clone() * y.clone()).mul_scalar(2.0);
    let denom = per_case(p.clone() * p) + per_case(y);
    let dice = inter / denom.add_scalar(DICE_EPS);
    ce + dice.mean().neg().add_scalar(1.0)
}

/// The mean of scalar `terms` (each `[1]`), or `None` if there are none.
fn mean_of(terms: Vec<Tensor<1>>) -> Option<Tensor<1>> {
    let n = terms.len();
    let sum = terms.into_iter().reduce(|a, b| a + b)?;
    Some(sum.div_scalar(n as f64))
}

impl Uhved {
    /// The loss of one training step: `step.subset` (non-empty) is the drawn subset,
    /// `step.images` `[B, 1, D, H, W]` every modality the batch has (a superset of the
    /// subset), `step.classes` `[B, D, H, W]`. The reparameterised sample of scale `s` uses
    /// the noise stream `s` of [`TrainInputs::standard_normal`].
    pub fn loss(&self, step: &TrainInputs) -> Result<StepLoss> {
        let (subset, images) = (step.subset, &step.images);
        let available = distinct_modalities(images.iter().map(|(m, _)| *m), "U-HVED")?;
        if subset.is_empty() || !subset.is_subset_of(available) {
            bail!(
                "the drawn subset {subset} must be non-empty and among the batch's modalities \
                 {available}"
            );
        }
        let cfg = &self.config;
        let mut latents = Vec::with_capacity(images.len());
        for (m, x) in images {
            latents.push((*m, self.latents(*m, x.clone())?));
        }
        let dims0 = images[0].1.dims();
        if let Some((m, x)) = images.iter().find(|(_, x)| x.dims() != dims0) {
            bail!("{m}: shape {:?} differs from {dims0:?}", x.dims());
        }
        let experts: Vec<(Modality, Vec<Expert>)> = latents
            .iter()
            .map(|(m, l)| (*m, l.iter().map(Gaussian::expert).collect()))
            .collect();
        let product = |s: usize, set: Subset| {
            product_with_prior(
                experts
                    .iter()
                    .filter(|(m, _)| set.contains(*m))
                    .map(|(_, e)| &e[s]),
            )
        };
        let subsets: Vec<Subset> = Subset::all_nonempty()
            .filter(|s| s.is_subset_of(available))
            .collect();
        let scales = cfg.poolings + 1;
        let mut samples = Vec::with_capacity(scales);
        let mut kl_scales = Vec::with_capacity(scales);
        for s in 0..scales {
            let drawn = product(s, subset);
            let noise = step.standard_normal(s as u64, drawn.mu.dims(), &drawn.mu.device());
            samples.push(drawn.sample(noise));
            let mut inter = Vec::new();
            let mut prior = Vec::new();
            for &other in &subsets {
                let q = product(s, other);
                prior.push(q.kl_to_prior());
                if other != subset {
                    inter.push(drawn.kl(&q));
                }
            }
            let prior = mean_of(prior).expect("at least the drawn subset");
            kl_scales.push(match mean_of(inter) {
                Some(inter) => inter + prior,
                None => prior,
            });
        }
        let kl = mean_of(kl_scales).expect("at least one scale");

        let logits = self.segmentation.forward(&samples);
        let segmentation = match cfg.targets {
            Targets::Classes => ce_dice_all_classes(logits, step.classes.clone()),
            Targets::Regions => head_loss(cfg, logits, step.classes.clone()),
        };
        let reconstruction = mean_of(
            images
                .iter()
                .map(|(m, x)| {
                    let diff = self.reconstructions.get(*m).forward(&samples) - x.clone();
                    (diff.clone() * diff).mean()
                })
                .collect(),
        )
        .expect("at least one image");

        let total = segmentation.clone()
            + kl.clone().mul_scalar(cfg.kl_weight)
            + reconstruction.clone().mul_scalar(cfg.reconstruction_weight);
        let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        Ok(StepLoss {
            total,
            terms: vec![value(segmentation), value(kl), value(reconstruction)],
        })
    }
}
