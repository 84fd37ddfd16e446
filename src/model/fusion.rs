//! Fusion of the features of the available modalities (paper Eq. 1–3) and the HeMIS
//! alternative.
//!
//! Every function here takes only the features of the modalities that are present: an
//! absent modality is not an input, so it cannot contribute to a mean, a variance or a
//! softmax.

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::config::{Fusion, ModelConfig};
use super::msfe::conv3d;
use crate::kernels::conv3d_module;
use crate::modality::Modality;

/// F̄ = (1/N) Σ_m F_m over the N available features, each `[B, C, D, H, W]`.
pub fn average(features: &[(Modality, Tensor<5>)]) -> Tensor<5> {
    let n = features.len() as f64;
    sum(features.iter().map(|(_, f)| f.clone())).div_scalar(n)
}

/// Population variance (1/N) Σ_m (F_m − F̄)² of the available features (0 for one).
pub fn variance(features: &[(Modality, Tensor<5>)], mean: &Tensor<5>) -> Tensor<5> {
    let n = features.len() as f64;
    sum(features
        .iter()
        .map(|(_, f)| (f.clone() - mean.clone()).square()))
    .div_scalar(n)
}

fn sum(mut it: impl Iterator<Item = Tensor<5>>) -> Tensor<5> {
    let first = it.next().expect("at least one available modality");
    it.fold(first, |acc, t| acc + t)
}

/// The attention convolutions conv_m of Eq. 1, one per modality: `[F̄; F_m]` (2C channels)
/// → A channels (1 or C), kernel 1 or 3, with bias.
#[derive(Module, Debug)]
pub struct AttentionConvs {
    /// conv for T1.
    pub t1: Conv3d,
    /// conv for T1c.
    pub t1c: Conv3d,
    /// conv for T2.
    pub t2: Conv3d,
    /// conv for FLAIR.
    pub flair: Conv3d,
}

impl AttentionConvs {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.feature_channels();
        let mk = || {
            conv3d(
                2 * c,
                cfg.attention_channels,
                cfg.attention_kernel,
                1,
                true,
                cfg.leaky_slope,
                device,
            )
        };
        AttentionConvs {
            t1: mk(),
            t1c: mk(),
            t2: mk(),
            flair: mk(),
        }
    }

    /// The convolution of modality `m`.
    pub fn get(&self, m: Modality) -> &Conv3d {
        match m {
            Modality::T1 => &self.t1,
            Modality::T1c => &self.t1c,
            Modality::T2 => &self.t2,
            Modality::Flair => &self.flair,
        }
    }
}

/// Adaptive fusion (Eq. 1–3): W_m = σ(conv_m([F̄; F_m])), Ŵ_m = exp(W_m) / Σ_available
/// exp(W_j), F̂ = Σ_m Ŵ_m ⊙ F_m. Returns F̂ `[B, C, D, H, W]` and the normalised maps Ŵ_m
/// `[B, A, D, H, W]` (A = 1 broadcasts over channels).
///
/// Since W_m ∈ (0, 1), exp cannot overflow and the softmax needs no max shift; with one
/// modality Ŵ is exactly 1 and F̂ equals that modality's feature.
pub fn adaptive(
    convs: &AttentionConvs,
    features: &[(Modality, Tensor<5>)],
    mean: &Tensor<5>,
) -> (Tensor<5>, Vec<(Modality, Tensor<5>)>) {
    let exps: Vec<Tensor<5>> = features
        .iter()
        .map(|(m, f)| {
            let w = sigmoid(conv3d_module(
                convs.get(*m),
                Tensor::cat(vec![mean.clone(), f.clone()], 1),
            ));
            w.exp()
        })
        .collect();
    let denom = sum(exps.iter().cloned());
    let weights: Vec<(Modality, Tensor<5>)> = features
        .iter()
        .zip(exps)
        .map(|((m, _), e)| (*m, e / denom.clone()))
        .collect();
    let fused = sum(features
        .iter()
        .zip(&weights)
        .map(|((_, f), (_, w))| w.clone() * f.clone()));
    (fused, weights)
}

/// The fusion stage's parameters: attention convolutions (adaptive only) and the heads.
#[derive(Module, Debug)]
pub struct FusionModule {
    /// conv_m of Eq. 1 (present only for `adaptive`).
    pub attention: Option<AttentionConvs>,
    /// 1×1×1 head on F̄: C → K, no bias.
    pub average_head: Conv3d,
    /// 1×1×1 head on the fused feature: C → K on F̂ (`adaptive`), 2C → K on [F̄; Var]
    /// (`hemis`); absent for `average`, whose final output is the average head.
    pub fused_head: Option<Conv3d>,
}

impl FusionModule {
    /// A freshly initialised fusion stage for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.feature_channels();
        let k = cfg.out_channels();
        let head = |cin: usize| conv3d(cin, k, 1, 1, false, cfg.leaky_slope, device);
        let (attention, fused_head) = match cfg.fusion {
            Fusion::Adaptive => (Some(AttentionConvs::new(cfg, device)), Some(head(c))),
            Fusion::Average => (None, None),
            Fusion::Hemis => (None, Some(head(2 * c))),
        };
        FusionModule {
            attention,
            average_head: head(c),
            fused_head,
        }
    }
}
