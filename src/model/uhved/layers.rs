//! U-HVED's building blocks: the pre-activation convolution, the per-modality encoder with
//! its latents at every scale, and the decoder shared in shape by the four image
//! reconstructions and the segmentation.
//!
//! All convolutions are bias-free and the instance norms learn scale and shift, as in the
//! official NiftyNet code; the parameter counts of [`super::describe`] follow from that.

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

use super::super::config::ModelConfig;
use super::super::msfe::conv3d;
use super::super::ops::{max_pool3d_2x, upsample_trilinear_2x};
use super::gaussian::Gaussian;
use crate::kernels::{conv3d_module, instance_norm_leaky_relu};

/// InstanceNorm(affine) → LeakyReLU → Conv3d(k3, no bias): one pre-activation convolution.
///
/// Tensors: `norm.gamma`, `norm.beta` `[in]`; `conv.weight` `[out, in, 3, 3, 3]`.
#[derive(Module, Debug)]
pub struct PreActConv {
    /// Instance normalisation of the input, with learned scale and shift.
    pub norm: InstanceNorm,
    /// The 3×3×3 convolution, zero padding 1, no bias.
    pub conv: Conv3d,
    /// Negative slope of the activation.
    #[module(skip)]
    pub slope: f64,
}

impl PreActConv {
    fn new(cin: usize, cout: usize, cfg: &ModelConfig, device: &Device) -> Self {
        PreActConv {
            norm: InstanceNormConfig::new(cin)
                .with_epsilon(cfg.norm_epsilon)
                .with_affine(true)
                .init(device),
            conv: conv3d(cin, cout, 3, 1, false, cfg.leaky_slope, device),
            slope: cfg.leaky_slope,
        }
    }

    /// `[B, in, D, H, W]` → `[B, out, D, H, W]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        conv3d_module(
            &self.conv,
            instance_norm_leaky_relu(&self.norm, x, self.slope),
        )
    }
}

/// Two pre-activation convolutions in sequence (the official block's residual flag is set
/// but the sum is never taken, so there is none here either).
#[derive(Module, Debug)]
pub struct Block {
    /// The two convolutions, `convs.0` then `convs.1`.
    pub convs: Vec<PreActConv>,
}

impl Block {
    /// `cin` → `mid` → `cout` channels.
    fn new(cin: usize, mid: usize, cout: usize, cfg: &ModelConfig, device: &Device) -> Self {
        Block {
            convs: vec![
                PreActConv::new(cin, mid, cfg, device),
                PreActConv::new(mid, cout, cfg, device),
            ],
        }
    }

    /// Applies both convolutions.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.convs.iter().fold(x, |x, c| c.forward(x))
    }
}

/// One modality's encoder: a 1×1×1 conv to `f(0)` channels + LeakyReLU, then one [`Block`]
/// per scale `s = 0..=poolings` with `f(s) = base_features · 2^s` channels, 2³ max-pooling
/// between scales. After block `s`, its output splits on channels into the latent mean
/// (first half) and log-variance (second half, clipped), width `f(s) / 2`.
#[derive(Module, Debug)]
pub struct Encoder {
    /// The 1×1×1 input convolution `[f(0), 1, 1, 1, 1]`, no bias.
    pub input: Conv3d,
    /// `blocks.{s}` works at `1 / 2^s` of the input resolution.
    pub blocks: Vec<Block>,
    /// Negative slope of the input activation.
    #[module(skip)]
    pub slope: f64,
    /// Log-variances are clipped to `[−logvar_clip, logvar_clip]`.
    #[module(skip)]
    pub logvar_clip: f64,
}

impl Encoder {
    /// A freshly initialised encoder for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let blocks = (0..=cfg.poolings)
            .map(|s| {
                let cin = if s == 0 { f[0] } else { f[s - 1] };
                Block::new(cin, f[s], f[s], cfg, device)
            })
            .collect();
        Encoder {
            input: conv3d(1, f[0], 1, 1, false, cfg.leaky_slope, device),
            blocks,
            slope: cfg.leaky_slope,
            logvar_clip: cfg.logvar_clip,
        }
    }

    /// The latent Gaussians of an image `[B, 1, D, H, W]`, full resolution first: scale `s`
    /// has mean and log-variance `[B, f(s)/2, D/2^s, H/2^s, W/2^s]`.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Gaussian> {
        let mut x = leaky_relu(conv3d_module(&self.input, x), self.slope);
        let mut latents = Vec::with_capacity(self.blocks.len());
        for (s, block) in self.blocks.iter().enumerate() {
            if s > 0 {
                x = max_pool3d_2x(x);
            }
            x = block.forward(x);
            let half = x.dims()[1] / 2;
            latents.push(Gaussian {
                mu: x.clone().narrow(1, 0, half),
                logvar: x
                    .clone()
                    .narrow(1, half, half)
                    .clamp(-self.logvar_clip, self.logvar_clip),
            });
        }
        latents
    }
}

/// A decoder from latent samples at every scale: from the deepest `z`, per level
/// `l = poolings − 1 .. 0`: trilinear ×2, concatenation `[upsampled; z_l]`, then a
/// [`Block`] `IN→LReLU→Conv(f(l))`, `IN→LReLU→Conv(f(l)/2)`; a final 1×1×1 conv (no bias)
/// to the output channels (1 for an image, K for the segmentation).
#[derive(Module, Debug)]
pub struct Decoder {
    /// `levels.{l}` produces scale `l` (`f(l) / 2` channels at `1 / 2^l` resolution).
    pub levels: Vec<Block>,
    /// The 1×1×1 output convolution `[out, f(0)/2, 1, 1, 1]`.
    pub output: Conv3d,
}

impl Decoder {
    /// A freshly initialised decoder with `out` output channels.
    pub fn new(out: usize, cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let levels = (0..cfg.poolings)
            .map(|l| {
                // Input: the level below (the deepest z, or level l + 1's output), both
                // f(l + 1) / 2 channels, then z_l.
                Block::new(f[l + 1] / 2 + f[l] / 2, f[l], f[l] / 2, cfg, device)
            })
            .collect();
        Decoder {
            levels,
            output: conv3d(f[0] / 2, out, 1, 1, false, cfg.leaky_slope, device),
        }
    }

    /// Output logits (or image) `[B, out, D, H, W]` from one sample per scale, full
    /// resolution first (`z[s]` `[B, f(s)/2, D/2^s, H/2^s, W/2^s]`).
    pub fn forward(&self, z: &[Tensor<5>]) -> Tensor<5> {
        let mut x = z[self.levels.len()].clone();
        for l in (0..self.levels.len()).rev() {
            x = Tensor::cat(vec![upsample_trilinear_2x(x), z[l].clone()], 1);
            x = self.levels[l].forward(x);
        }
        conv3d_module(&self.output, x)
    }
}
