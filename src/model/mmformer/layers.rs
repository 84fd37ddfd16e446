//! mmFormer's convolutional parts: the pre-norm convolution, the per-modality encoder, the
//! masked-concatenation fusion block, the fused decoder with its deep-supervision heads and
//! the auxiliary decoder.
//!
//! Every convolution has a bias; the instance norms have no scale or shift (PyTorch's
//! `InstanceNorm3d` default); LeakyReLU uses `leaky_slope` (0.2 in the presets). Level `l`
//! has `f(l) = base_features · 2^l` channels (capped by `max_features`) at `1 / 2^l` of the
//! input size, `l = 0..=L` with `L = poolings`.

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use burn::tensor::activation::{leaky_relu, softmax};
use burn::tensor::{Device, Tensor};

use super::super::config::ModelConfig;
use super::super::msfe::conv3d;
use super::super::ops::upsample_trilinear_aligned;
use super::super::reflect::{ReflectConv3d, ReflectConv3dConfig};
use crate::kernels::conv3d_module;

/// A plain (zero-padded) convolution with He-normal weights (gain √2) and zero bias.
pub(super) fn plain_conv(cin: usize, cout: usize, kernel: usize, device: &Device) -> Conv3d {
    conv3d(cin, cout, kernel, 1, true, 0.0, device)
}

/// InstanceNorm (no affine) → LeakyReLU → Conv (reflect padding, bias): the official
/// `general_conv3d_prenorm`; without the norm and activation ([`PreNormConv::without_norm`]) the
/// official encoder's first convolution `e1_c1` on the raw image. Tensors:
/// `conv.conv.weight` `[out, in, k, k, k]`, `conv.conv.bias` `[out]`.
#[derive(Module, Debug)]
pub struct PreNormConv {
    /// The normalisation of the input (no parameters), followed by the activation; `None`
    /// for the plain convolution.
    pub norm: Option<InstanceNorm>,
    /// The convolution.
    pub conv: ReflectConv3d,
    /// Negative slope of the activation.
    #[module(skip)]
    pub slope: f64,
}

impl PreNormConv {
    /// `cin → cout` channels, cubic `kernel`, `stride`.
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Self {
        PreNormConv {
            norm: Some(norm(cin, cfg, device)),
            conv: ReflectConv3dConfig::new([cin, cout], kernel)
                .with_stride(stride)
                .init_with_slope(0.0, device),
            slope: cfg.leaky_slope,
        }
    }

    /// The convolution alone, without the norm and activation before it.
    pub fn without_norm(self) -> Self {
        PreNormConv { norm: None, ..self }
    }

    /// `[B, in, D, H, W]` → `[B, out, D / stride, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = match &self.norm {
            Some(norm) => leaky_relu(norm.forward(x), self.slope),
            None => x,
        };
        self.conv.forward(x)
    }
}

fn norm(c: usize, cfg: &ModelConfig, device: &Device) -> InstanceNorm {
    InstanceNormConfig::new(c)
        .with_epsilon(cfg.norm_epsilon)
        .with_affine(false)
        .init(device)
}

/// One encoder level: `x = first(x)` (stride 2 from level 1), then `x = x + c3(c2(x))`: the
/// official `x = c1(x); x = x + c3(c2(x))`. Level 0's `first` is a plain convolution of
/// the image (the official `e1_c1` has no norm or activation before it).
#[derive(Module, Debug)]
pub struct EncoderLevel {
    /// `c1`: `f(l−1) → f(l)` (plain 1 → f(0) at level 0), 3³.
    pub first: PreNormConv,
    /// `c2`, `c3`: `f(l) → f(l)`, 3³.
    pub residual: Vec<PreNormConv>,
}

impl EncoderLevel {
    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.first.forward(x);
        let r = self.residual.iter().fold(x.clone(), |h, c| c.forward(h));
        x + r
    }
}

/// One modality's encoder: levels `0..=L`, returning every level's output (the skips and
/// the bottleneck).
#[derive(Module, Debug)]
pub struct Encoder {
    /// `levels.{l}`.
    pub levels: Vec<EncoderLevel>,
}

impl Encoder {
    /// A freshly initialised encoder for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let levels = (0..=cfg.poolings)
            .map(|l| {
                let first = if l == 0 {
                    PreNormConv::new(1, f[0], 3, 1, cfg, device).without_norm()
                } else {
                    PreNormConv::new(f[l - 1], f[l], 3, 2, cfg, device)
                };
                EncoderLevel {
                    first,
                    residual: (0..2)
                        .map(|_| PreNormConv::new(f[l], f[l], 3, 1, cfg, device))
                        .collect(),
                }
            })
            .collect();
        Encoder { levels }
    }

    /// `[B, 1, D, H, W]` → level `l`'s features `[B, f(l), D/2^l, H/2^l, W/2^l]`, `l = 0..=L`.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut out: Vec<Tensor<5>> = Vec::with_capacity(self.levels.len());
        let mut x = x;
        for level in &self.levels {
            x = level.forward(x);
            out.push(x.clone());
        }
        out
    }
}

/// One decoder level `l < L`: `up` after the ×2 upsampling of level `l + 1` (`f(l+1) →
/// f(l)`, 3³), `merge` of the concatenation (`2·f(l) → f(l)`, 3³), `out` (`f(l) → f(l)`, 1³).
#[derive(Module, Debug)]
pub struct DecoderLevel {
    /// `d{l}_c1`.
    pub up: PreNormConv,
    /// `d{l}_c2`.
    pub merge: PreNormConv,
    /// `d{l}_out`.
    pub out: PreNormConv,
}

impl DecoderLevel {
    fn new(l: usize, cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        DecoderLevel {
            up: PreNormConv::new(f[l + 1], f[l], 3, 1, cfg, device),
            merge: PreNormConv::new(2 * f[l], f[l], 3, 1, cfg, device),
            out: PreNormConv::new(f[l], f[l], 1, 1, cfg, device),
        }
    }
}

/// The auxiliary decoder (official `Decoder_sep`), one set of weights for every modality, on
/// one modality's unmasked encoder features (training only): per level `l = L−1 .. 0`,
/// `out(merge([up(upsample(x)); skip_l]))`, then a 1×1 conv to K logits.
#[derive(Module, Debug)]
pub struct Decoder {
    /// `levels.{l}` produces level `l`.
    pub levels: Vec<DecoderLevel>,
    /// The 1×1×1 output convolution `f(0) → K`.
    pub output: Conv3d,
}

impl Decoder {
    /// A freshly initialised decoder with K = `cfg.out_channels()` outputs.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Decoder {
            levels: (0..cfg.poolings)
                .map(|l| DecoderLevel::new(l, cfg, device))
                .collect(),
            output: plain_conv(cfg.features()[0], cfg.out_channels(), 1, device),
        }
    }

    /// Logits `[B, K, D, H, W]` from an encoder's levels `0..=L`.
    pub fn forward(&self, x: &[Tensor<5>]) -> Tensor<5> {
        let mut de = x[self.levels.len()].clone();
        for l in (0..self.levels.len()).rev() {
            let lv = &self.levels[l];
            let up = lv.up.forward(upsample_trilinear_aligned(de, 2));
            de = lv
                .out
                .forward(lv.merge.forward(Tensor::cat(vec![up, x[l].clone()], 1)));
        }
        conv3d_module(&self.output, de)
    }
}

/// The fusion of one level (official `fusion_prenorm`) on the masked concatenation of the
/// four modalities' features: pre-norm 1×1 (`4·f → f`), 3³ with zero padding (`f → f`),
/// 1×1 (`f → f`).
#[derive(Module, Debug)]
pub struct FusionBlock {
    /// The 1×1 reduction `4·f → f`.
    pub reduce: PreNormConv,
    /// The norm before the 3³ convolution.
    pub norm: InstanceNorm,
    /// The 3³ convolution, zero padding 1 (the official default padding of this block).
    pub conv: Conv3d,
    /// The closing 1×1 convolution.
    pub expand: PreNormConv,
    /// Negative slope of the middle activation.
    #[module(skip)]
    pub slope: f64,
}

impl FusionBlock {
    fn new(f: usize, cfg: &ModelConfig, device: &Device) -> Self {
        FusionBlock {
            reduce: PreNormConv::new(4 * f, f, 1, 1, cfg, device),
            norm: norm(f, cfg, device),
            conv: plain_conv(f, f, 3, device),
            expand: PreNormConv::new(f, f, 1, 1, cfg, device),
            slope: cfg.leaky_slope,
        }
    }

    /// `[B, 4·f, …]` → `[B, f, …]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.reduce.forward(x);
        let x = conv3d_module(&self.conv, leaky_relu(self.norm.forward(x), self.slope));
        self.expand.forward(x)
    }
}

/// The fused decoder's outputs.
#[derive(Debug, Clone)]
pub struct FusedDecoding {
    /// Final logits `[B, K, D, H, W]`.
    pub logits: Tensor<5>,
    /// Deep-supervision softmax probabilities of levels `1..=L` at their own resolution
    /// (`[B, K, D/2^l, H/2^l, W/2^l]`, entry `l − 1`).
    pub deep: Vec<Tensor<5>>,
}

/// The fused decoder (official `Decoder_fuse`): a [`FusionBlock`] per level on the masked
/// concatenations, from the bottleneck: `x = fusion_L(x_L)`; per level `l = L−1 .. 0`:
/// `x = out(merge([fusion_l(x_l); up(upsample(x))]))`; deep-supervision heads (1×1, softmax)
/// on the level `L .. 1` outputs, and a 1×1 output convolution at level 0.
#[derive(Module, Debug)]
pub struct FusedDecoder {
    /// `fusions.{l}`, `l = 0..=L`.
    pub fusions: Vec<FusionBlock>,
    /// `levels.{l}` produces level `l < L`.
    pub levels: Vec<DecoderLevel>,
    /// `heads.{l−1}`: the deep-supervision head of level `l = 1..=L` (`f(l) → K`).
    pub heads: Vec<Conv3d>,
    /// The 1×1×1 output convolution `f(0) → K`.
    pub output: Conv3d,
}

impl FusedDecoder {
    /// A freshly initialised fused decoder for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let k = cfg.out_channels();
        FusedDecoder {
            fusions: f
                .iter()
                .map(|&c| FusionBlock::new(c, cfg, device))
                .collect(),
            levels: (0..cfg.poolings)
                .map(|l| DecoderLevel::new(l, cfg, device))
                .collect(),
            heads: (1..=cfg.poolings)
                .map(|l| plain_conv(f[l], k, 1, device))
                .collect(),
            output: plain_conv(f[0], k, 1, device),
        }
    }

    /// The outputs from the masked concatenations of levels `0..=L` (`[B, 4·f(l), …]`; the
    /// bottleneck's is the inter-modal transformer's volume).
    pub fn forward(&self, x: &[Tensor<5>]) -> FusedDecoding {
        let top = self.levels.len();
        let mut de = self.fusions[top].forward(x[top].clone());
        let mut deep = vec![None; top];
        for l in (0..top).rev() {
            deep[l] = Some(softmax(conv3d_module(&self.heads[l], de.clone()), 1));
            let lv = &self.levels[l];
            let up = lv.up.forward(upsample_trilinear_aligned(de, 2));
            let fused = self.fusions[l].forward(x[l].clone());
            de = lv
                .out
                .forward(lv.merge.forward(Tensor::cat(vec![fused, up], 1)));
        }
        FusedDecoding {
            logits: conv3d_module(&self.output, de),
            deep: deep
                .into_iter()
                .map(|d| d.expect("every level has a head"))
                .collect(),
        }
    }
}
