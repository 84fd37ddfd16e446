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
use crate::kernels::{conv3d_module, module_padding};
use crate::modality::{Modality, Subset};

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

/// Final logits and attention maps of one subset: [`adaptive`] followed by the head.
pub type SubsetFusion = (Tensor<5>, Vec<(Modality, Tensor<5>)>);

/// [`adaptive`] and the 1×1×1 `head` (no bias) for each of `subsets`, from the features
/// `[B, C, D, H, W]` of their union (sorted, each subset non-empty and within the union),
/// sharing the work between subsets. For attention maps of one channel only (`[B, 1, D, H,
/// W]`): the results equal per-subset fusion up to float rounding.
///
/// Two identities move the convolutions out of the per-subset loop:
/// - conv_m([F̄; F_m]) = conv_m^F̄(F̄) + conv_m^F(F_m) + b_m, where conv_m^F̄ and conv_m^F are
///   conv_m's weights on its first and last C input channels, and F̄ is the subset's mean,
///   so conv_m^F̄(F̄) is the mean of conv_m^F̄(F_k): each conv runs once per feature map
///   (conv_m^F̄(F_k) for every pair m, k of the union, stacked into one convolution per k,
///   and conv_m^F(F_m));
/// - the head is linear and Ŵ_m is one number per voxel, so head(Σ_m Ŵ_m F_m) =
///   Σ_m Ŵ_m head(F_m).
///
/// What is left per subset works on maps of 1 and K channels instead of C (the 15 subsets
/// of a window cost about one fusion instead of 15).
pub fn adaptive_subsets(
    convs: &AttentionConvs,
    head: &Conv3d,
    features: &[(Modality, Tensor<5>)],
    subsets: &[Subset],
) -> Vec<SubsetFusion> {
    let index = |m: Modality| {
        features
            .iter()
            .position(|(k, _)| *k == m)
            .expect("every subset lies within the encoded modalities")
    };
    // Every conv_m is built from one configuration (`AttentionConvs::new`): the same kernel,
    // stride and padding.
    let first = convs.get(features[0].0);
    let stride = first.stride;
    let padding = module_padding(first)
        .expect("attention convolutions have explicit padding, no dilation, one group");
    // conv_m's weights `[A, 2C, k, k, k]` on F̄ (the first C input channels) and on F_m.
    let c = features[0].1.dims()[1];
    let (mean_halves, own_halves): (Vec<Tensor<5>>, Vec<Tensor<5>>) = features
        .iter()
        .map(|(m, _)| {
            let w = convs.get(*m).weight.val();
            let [a, c2, kd, kh, kw] = w.dims();
            (
                w.clone().slice([0..a, 0..c, 0..kd, 0..kh, 0..kw]),
                w.slice([0..a, c..c2, 0..kd, 0..kh, 0..kw]),
            )
        })
        .unzip();
    // conv_m^F̄(F_k) for every m of the union, as channel `index(m)` of one map per k.
    let mean_weights = Tensor::cat(mean_halves, 0);
    let to_mean: Vec<Tensor<5>> = features
        .iter()
        .map(|(_, f)| {
            crate::kernels::conv3d(f.clone(), mean_weights.clone(), None, stride, padding)
        })
        .collect();
    // conv_m^F(F_m) + b_m.
    let own: Vec<Tensor<5>> = features
        .iter()
        .zip(own_halves)
        .map(|((m, f), w)| {
            let bias = convs.get(*m).bias.as_ref().map(|b| b.val());
            crate::kernels::conv3d(f.clone(), w, bias, stride, padding)
        })
        .collect();
    let heads: Vec<Tensor<5>> = features
        .iter()
        .map(|(_, f)| conv3d_module(head, f.clone()))
        .collect();
    subsets
        .iter()
        .map(|s| {
            let members: Vec<usize> = s.modalities().map(index).collect();
            let n = members.len() as f64;
            let exps: Vec<Tensor<5>> = members
                .iter()
                .map(|&m| {
                    let mean_part =
                        sum(members.iter().map(|&k| to_mean[k].clone().narrow(1, m, 1)))
                            .div_scalar(n);
                    sigmoid(own[m].clone() + mean_part).exp()
                })
                .collect();
            let denom = sum(exps.iter().cloned());
            let weights: Vec<(Modality, Tensor<5>)> = members
                .iter()
                .zip(exps)
                .map(|(&m, e)| (features[m].0, e / denom.clone()))
                .collect();
            let logits = sum(members
                .iter()
                .zip(&weights)
                .map(|(&m, (_, w))| w.clone() * heads[m].clone()));
            (logits, weights)
        })
        .collect()
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
