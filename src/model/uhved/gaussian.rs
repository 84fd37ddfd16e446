//! The latent Gaussians of U-HVED: the product of the available modalities' Gaussians with
//! the N(0, 1) prior expert, the reparameterised sample, and the KL divergences of its loss.
//!
//! Formulas (per voxel and channel; ε = 1e-7 as the official code):
//! - precision of modality m: `T_m = 1 / (exp(lv_m) + ε)`;
//! - product with the prior over the modalities S: `μ = Σ_S μ_m T_m / (Σ_S T_m + 1)`,
//!   `var = 1 / (Σ_S T_m + 1)`, `lv = log(var + ε)`;
//! - `KL(p₁‖p₂) = ½ · mean(−1 + lv₂ − lv₁ + (v₁ + (μ₁ − μ₂)²) / (v₂ + ε))` with
//!   `v = exp(lv)`, the mean over every element (batch, channel, voxel).

use burn::tensor::Tensor;

/// The ε of the precisions, the log-variance of the product and the KL's denominator.
pub const EPS: f64 = 1e-7;

/// A diagonal Gaussian per element: mean and log-variance, both `[B, c, D, H, W]`.
#[derive(Debug, Clone)]
pub struct Gaussian {
    /// Mean.
    pub mu: Tensor<5>,
    /// Log-variance.
    pub logvar: Tensor<5>,
}

impl Gaussian {
    /// One expert's share of a product: its precision `T = 1 / (exp(lv) + ε)` and `μ · T`.
    pub fn expert(&self) -> Expert {
        let precision = self.logvar.clone().exp().add_scalar(EPS).recip();
        Expert {
            weighted_mean: self.mu.clone() * precision.clone(),
            precision,
        }
    }

    /// The reparameterised sample `μ + exp(lv / 2) · e` for standard normal noise `e` of
    /// the same shape (training draws it from [`super::super::TrainInputs::standard_normal`]).
    pub fn sample(&self, e: Tensor<5>) -> Tensor<5> {
        self.mu.clone() + self.logvar.clone().mul_scalar(0.5).exp() * e
    }

    /// `KL(self ‖ other)`, shape `[1]` (see the module docs).
    pub fn kl(&self, other: &Gaussian) -> Tensor<1> {
        let v1 = self.logvar.clone().exp();
        let v2 = other.logvar.clone().exp();
        let diff = self.mu.clone() - other.mu.clone();
        let ratio = (v1 + diff.clone() * diff) / v2.add_scalar(EPS);
        (other.logvar.clone() - self.logvar.clone() + ratio)
            .sub_scalar(1.0)
            .mean()
            .mul_scalar(0.5)
    }

    /// `KL(self ‖ N(0, 1))`, shape `[1]`: [`Gaussian::kl`] with `μ₂ = 0`, `lv₂ = 0`.
    pub fn kl_to_prior(&self) -> Tensor<1> {
        let v1 = self.logvar.clone().exp();
        let ratio = (v1 + self.mu.clone() * self.mu.clone()).div_scalar(1.0 + EPS);
        (ratio - self.logvar.clone())
            .sub_scalar(1.0)
            .mean()
            .mul_scalar(0.5)
    }
}

/// One modality's terms of a product of Gaussians (see [`Gaussian::expert`]), so that many
/// subsets can be fused from one exponential per modality.
#[derive(Debug, Clone)]
pub struct Expert {
    /// `T_m = 1 / (exp(lv_m) + ε)`.
    pub precision: Tensor<5>,
    /// `μ_m · T_m`.
    pub weighted_mean: Tensor<5>,
}

/// The product of `experts` (non-empty) with the N(0, 1) prior expert:
/// `μ = Σ μ_m T_m / (Σ T_m + 1)`, `lv = log(1 / (Σ T_m + 1) + ε)`.
///
/// # Panics
/// If `experts` is empty (every subset has a modality).
pub fn product_with_prior<'a>(experts: impl IntoIterator<Item = &'a Expert>) -> Gaussian {
    let mut it = experts.into_iter();
    let first = it
        .next()
        .expect("a product of Gaussians needs at least one expert");
    let (precision, weighted) = it.fold(
        (first.precision.clone(), first.weighted_mean.clone()),
        |(p, w), e| (p + e.precision.clone(), w + e.weighted_mean.clone()),
    );
    let total = precision.add_scalar(1.0);
    let var = total.clone().recip();
    Gaussian {
        mu: weighted / total,
        logvar: var.add_scalar(EPS).log(),
    }
}
