//! The parts the released code adds to the four MSFEs: the fusion decoder, the attention
//! module of each modality and the concatenating head.

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::tensor::activation::{leaky_relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use crate::kernels::conv3d_module;
use crate::modality::Modality;
use crate::model::config::{ModelConfig, ReleasedVariant};
use crate::model::msfe::{ConvBlock, DecoderStage, conv3d, decoder_stages, segmentation_heads};

/// A second U-Net decoder (the released code's "average fusion"): the MSFE decoder's
/// stages and deep-supervision heads, fed with modality means instead of one encoder's
/// skips. Tensor names `fusion_decoder.decoder.{l}.…` and `fusion_decoder.heads.{l}.weight`
/// as in an MSFE.
#[derive(Module, Debug)]
pub struct FusionDecoder {
    /// `poolings` stages; `decoder[l]` produces level `l` (`1 / 2^l` resolution).
    pub decoder: Vec<DecoderStage>,
    /// 1×1×1 heads without bias, `heads[l]` on level `l` (only `heads[0]` without deep
    /// supervision).
    pub heads: Vec<Conv3d>,
}

impl FusionDecoder {
    /// A freshly initialised fusion decoder for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        FusionDecoder {
            decoder: decoder_stages(cfg, device),
            heads: segmentation_heads(cfg, device),
        }
    }

    /// Decodes the modality-mean pyramid `means` (`poolings + 1` tensors, element `l`
    /// `[B, f(l), D/2^l, H/2^l, W/2^l]`, the last one the mean bottleneck): the bottleneck is
    /// upsampled and concatenated with the mean of level `l` at each stage. Returns the
    /// stage outputs, full resolution first (element 0 is F_fd `[B, C, D, H, W]`).
    pub fn forward(&self, means: &[Tensor<5>]) -> Vec<Tensor<5>> {
        let levels = self.decoder.len();
        assert_eq!(
            means.len(),
            levels + 1,
            "the fusion decoder reads one mean per level and the mean bottleneck"
        );
        let mut x = means[levels].clone();
        let mut outs = Vec::with_capacity(levels);
        for l in (0..levels).rev() {
            x = self.decoder[l].forward(x, means[l].clone());
            outs.push(x.clone());
        }
        outs.reverse();
        outs
    }

    /// The logits of each head on its level of `levels` (from [`FusionDecoder::forward`]),
    /// full resolution first: `[B, K, D/2^l, H/2^l, W/2^l]`.
    pub fn head_logits(&self, levels: &[Tensor<5>]) -> Vec<Tensor<5>> {
        self.heads
            .iter()
            .zip(levels)
            .map(|(h, f)| conv3d_module(h, f.clone()))
            .collect()
    }
}

/// The attention module of one modality: Conv3³(2C → C, bias) → InstanceNorm → LeakyReLU
/// → Conv3³(C → C, bias) → LeakyReLU (sigmoid in the `post` variant), on `[F_m; F_fd]`
/// (`[F_m; F̄]` in `post`). Tensor names
/// `attention.{m}.block.conv.weight` `[C, 2C, 3, 3, 3]`, `….block.conv.bias`,
/// `….block.norm.gamma` / `.beta` `[C]`, `attention.{m}.conv.weight` `[C, C, 3, 3, 3]`,
/// `attention.{m}.conv.bias` `[C]`.
#[derive(Module, Debug)]
pub struct ModalityAttention {
    /// The first convolution with its normalisation and activation.
    pub block: ConvBlock,
    /// The second convolution (its LeakyReLU has the slope of the blocks, 0.01 as PyTorch's
    /// default that the released code uses there).
    pub conv: Conv3d,
    /// End in a sigmoid instead of the LeakyReLU (the `post` variant).
    #[module(skip)]
    pub sigmoid: bool,
}

impl ModalityAttention {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.feature_channels();
        ModalityAttention {
            block: ConvBlock::new(2 * c, c, 1, cfg, device),
            conv: conv3d(c, c, 3, 1, true, cfg.leaky_slope, device),
            sigmoid: cfg.released_variant == ReleasedVariant::Post,
        }
    }

    /// The unnormalised attention `[B, C, D, H, W]` of a modality from its feature and the
    /// reference feature (F_fd, or F̄ in `post`), both `[B, C, D, H, W]`.
    pub fn forward(&self, feature: Tensor<5>, reference: Tensor<5>) -> Tensor<5> {
        let x = self.block.forward(Tensor::cat(vec![feature, reference], 1));
        let x = conv3d_module(&self.conv, x);
        if self.sigmoid {
            sigmoid(x)
        } else {
            leaky_relu(x, self.block.slope)
        }
    }
}

/// The attention modules of the four modalities (`attention.t1`, `attention.t1c`,
/// `attention.t2`, `attention.flair`).
#[derive(Module, Debug)]
pub struct Attentions {
    /// Attention of T1.
    pub t1: ModalityAttention,
    /// Attention of T1c.
    pub t1c: ModalityAttention,
    /// Attention of T2.
    pub t2: ModalityAttention,
    /// Attention of FLAIR.
    pub flair: ModalityAttention,
}

impl Attentions {
    /// Freshly initialised attention modules, one per modality.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Attentions {
            t1: ModalityAttention::new(cfg, device),
            t1c: ModalityAttention::new(cfg, device),
            t2: ModalityAttention::new(cfg, device),
            flair: ModalityAttention::new(cfg, device),
        }
    }

    /// The module of modality `m`.
    pub fn get(&self, m: Modality) -> &ModalityAttention {
        match m {
            Modality::T1 => &self.t1,
            Modality::T1c => &self.t1c,
            Modality::T2 => &self.t2,
            Modality::Flair => &self.flair,
        }
    }

    /// Attention fusion over the available modalities: A_m = attention_m([F_m; R]),
    /// Ŵ = softmax over the modalities of the A_m (per voxel and channel), F̂ = Σ_m Ŵ_m ⊙ F_m.
    /// `features`: the available F_m `[B, C, D, H, W]` (non-empty); `fused`: the reference
    /// R (F_fd, or F̄ in `post`). Returns F̂
    /// `[B, C, D, H, W]` and the maps Ŵ_m `[B, C, D, H, W]` in the order of `features`. With
    /// one modality Ŵ is 1 and F̂ is its feature.
    pub fn fuse(
        &self,
        features: &[(Modality, Tensor<5>)],
        fused: &Tensor<5>,
    ) -> (Tensor<5>, Vec<(Modality, Tensor<5>)>) {
        let scores: Vec<Tensor<5>> = features
            .iter()
            .map(|(m, f)| self.get(*m).forward(f.clone(), fused.clone()))
            .collect();
        // [B, N, C, D, H, W]: softmax over the modality axis (max-shifted by Burn; the
        // LeakyReLU scores are unbounded).
        let weights = softmax(Tensor::stack::<6>(scores, 1), 1);
        let maps: Vec<(Modality, Tensor<5>)> = features
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (*m, weights.clone().narrow(1, i, 1).squeeze_dim::<5>(1)))
            .collect();
        let out = maps
            .iter()
            .zip(features)
            .map(|((_, w), (_, f))| w.clone() * f.clone())
            .reduce(|a, b| a + b)
            .expect("at least one available modality");
        (out, maps)
    }
}

/// The concatenating head: Conv3³ on `[F̂; F_fd]` (`[F̂; F̄]` in `post`) (2C → C, bias) → InstanceNorm →
/// LeakyReLU, then a 1×1×1 convolution without bias (C → K). Tensor names
/// `head.block.conv.weight` `[C, 2C, 3, 3, 3]`, `head.block.conv.bias`,
/// `head.block.norm.gamma` / `.beta` `[C]`, `head.output.weight` `[K, C, 1, 1, 1]`.
#[derive(Module, Debug)]
pub struct ConcatHead {
    /// The 3×3×3 block on the concatenation.
    pub block: ConvBlock,
    /// The 1×1×1 output convolution.
    pub output: Conv3d,
}

impl ConcatHead {
    /// A freshly initialised head for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.feature_channels();
        ConcatHead {
            block: ConvBlock::new(2 * c, c, 1, cfg, device),
            output: conv3d(c, cfg.out_channels(), 1, 1, false, cfg.leaky_slope, device),
        }
    }

    /// Final logits `[B, K, D, H, W]` from F̂ and the reference (F_fd or F̄), both
    /// `[B, C, D, H, W]`.
    pub fn forward(&self, attended: Tensor<5>, reference: Tensor<5>) -> Tensor<5> {
        let x = self
            .block
            .forward(Tensor::cat(vec![attended, reference], 1));
        conv3d_module(&self.output, x)
    }
}
