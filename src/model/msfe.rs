//! The modality-specific feature extractor (MSFE): an nnU-Net-style 3D U-Net with one input
//! channel, returning the C-channel feature F_m at input resolution and, for deep
//! supervision, the logits of a 1×1×1 segmentation head on each decoder level.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{Initializer, InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::{Device, Tensor};

use super::config::ModelConfig;
use crate::kernels::{conv_transpose3d_module, conv3d_module, instance_norm_leaky_relu};

/// He (Kaiming) normal initialisation for a LeakyReLU of slope `a`, as nnU-Net's
/// `InitWeights_He(1e-2)`: std = sqrt(2 / (1 + a²)) / sqrt(fan_in).
pub(crate) fn he_init(a: f64) -> Initializer {
    Initializer::KaimingNormal {
        gain: (2.0 / (1.0 + a * a)).sqrt(),
        fan_out_only: false,
    }
}

/// A 3D convolution with He-initialised weights and (if any) zero bias, padding `k / 2`.
pub(crate) fn conv3d(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    bias: bool,
    slope: f64,
    device: &Device,
) -> Conv3d {
    let p = kernel / 2;
    let mut conv = Conv3dConfig::new([cin, cout], [kernel; 3])
        .with_stride([stride; 3])
        .with_padding(PaddingConfig3d::Explicit(p, p, p))
        .with_bias(bias)
        .with_initializer(he_init(slope))
        .init(device);
    if bias {
        conv.bias = Some(Initializer::Zeros.init([cout], device));
    }
    conv
}

/// Conv3d(k3, bias) → InstanceNorm(affine) → LeakyReLU, the nnU-Net building block.
///
/// Tensors: `conv.weight` `[out, in, 3, 3, 3]`, `conv.bias` `[out]`, `norm.gamma` and
/// `norm.beta` `[out]`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution (stride 1, or 2 for the first block of a downsampling stage).
    pub conv: Conv3d,
    /// Instance normalisation with learned scale and shift.
    pub norm: InstanceNorm,
    /// Negative slope of the activation.
    #[module(skip)]
    pub slope: f64,
}

impl ConvBlock {
    /// A freshly initialised block: `cin` → `cout` channels, the convolution's stride `stride`.
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Self {
        ConvBlock {
            conv: conv3d(cin, cout, 3, stride, true, cfg.leaky_slope, device),
            norm: InstanceNormConfig::new(cout)
                .with_epsilon(cfg.norm_epsilon)
                .with_affine(true)
                .init(device),
            slope: cfg.leaky_slope,
        }
    }

    /// `[B, in, D, H, W]` → `[B, out, D/s, H/s, W/s]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        instance_norm_leaky_relu(&self.norm, conv3d_module(&self.conv, x), self.slope)
    }
}

/// One encoder stage: `convs_per_stage` blocks, the first with stride 2 except in stage 0.
#[derive(Module, Debug)]
pub struct EncoderStage {
    /// The blocks in order.
    pub convs: Vec<ConvBlock>,
}

impl EncoderStage {
    /// Applies the blocks in order.
    pub fn forward(&self, mut x: Tensor<5>) -> Tensor<5> {
        for c in &self.convs {
            x = c.forward(x);
        }
        x
    }
}

/// One decoder stage producing level `l`: upsample the level-`l+1` feature with a
/// transposed convolution, concatenate `[upsampled; skip]` on channels, then the blocks.
#[derive(Module, Debug)]
pub struct DecoderStage {
    /// ConvTranspose3d(k2, s2, no bias); weight `[in, out, 2, 2, 2]` (PyTorch layout).
    pub up: ConvTranspose3d,
    /// The blocks; the first takes `2 · features(l)` channels.
    pub convs: Vec<ConvBlock>,
}

impl DecoderStage {
    /// `below` `[B, f(l+1), D/2, H/2, W/2]`, `skip` `[B, f(l), D, H, W]` → `[B, f(l), D, H, W]`.
    pub fn forward(&self, below: Tensor<5>, skip: Tensor<5>) -> Tensor<5> {
        let mut x = Tensor::cat(vec![conv_transpose3d_module(&self.up, below), skip], 1);
        for c in &self.convs {
            x = c.forward(x);
        }
        x
    }
}

/// The `poolings` decoder stages of a U-Net of `cfg`, freshly initialised; stage `l`
/// upsamples `f(l+1)` → `f(l)` channels and its first block reads `[upsampled; skip]`
/// (`2 · f(l)` channels). Shared by the MSFE and the released code's fusion decoder.
pub(crate) fn decoder_stages(cfg: &ModelConfig, device: &Device) -> Vec<DecoderStage> {
    let f = cfg.features();
    (0..cfg.poolings)
        .map(|l| {
            let up = ConvTranspose3dConfig::new([f[l + 1], f[l]], [2; 3])
                .with_stride([2; 3])
                .with_bias(false)
                .with_initializer(he_init(cfg.leaky_slope))
                .init(device);
            let convs = (0..cfg.convs_per_stage)
                .map(|i| {
                    let inc = if i == 0 { 2 * f[l] } else { f[l] };
                    ConvBlock::new(inc, f[l], 1, cfg, device)
                })
                .collect();
            DecoderStage { up, convs }
        })
        .collect()
}

/// The 1×1×1 segmentation heads (no bias) on decoder levels `0..cfg.heads_per_msfe()`:
/// head `l` maps `f(l)` → K channels.
pub(crate) fn segmentation_heads(cfg: &ModelConfig, device: &Device) -> Vec<Conv3d> {
    let f = cfg.features();
    (0..cfg.heads_per_msfe())
        .map(|l| {
            conv3d(
                f[l],
                cfg.out_channels(),
                1,
                1,
                false,
                cfg.leaky_slope,
                device,
            )
        })
        .collect()
}

/// A modality-specific feature extractor (one per modality, same architecture, own weights).
#[derive(Module, Debug)]
pub struct Msfe {
    /// `poolings + 1` stages; stage `s` works at `1 / 2^s` of the input resolution.
    pub encoder: Vec<EncoderStage>,
    /// `poolings` stages; `decoder[l]` produces level `l` (`1 / 2^l` resolution), so
    /// `decoder[0]` outputs F_m.
    pub decoder: Vec<DecoderStage>,
    /// 1×1×1 segmentation heads without bias (nnU-Net), `heads[l]` on decoder level `l`;
    /// one per level with deep supervision, otherwise only `heads[0]`.
    pub heads: Vec<Conv3d>,
}

impl Msfe {
    /// A freshly initialised MSFE for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Msfe {
        let f = cfg.features();
        let encoder = (0..=cfg.poolings)
            .map(|s| {
                let cin = if s == 0 { 1 } else { f[s - 1] };
                let convs = (0..cfg.convs_per_stage)
                    .map(|i| {
                        let stride = if s > 0 && i == 0 { 2 } else { 1 };
                        let inc = if i == 0 { cin } else { f[s] };
                        ConvBlock::new(inc, f[s], stride, cfg, device)
                    })
                    .collect();
                EncoderStage { convs }
            })
            .collect();
        let decoder = decoder_stages(cfg, device);
        let heads = segmentation_heads(cfg, device);
        Msfe {
            encoder,
            decoder,
            heads,
        }
    }

    /// Decoder outputs, full resolution first: level `l` is `[B, f(l), D/2^l, H/2^l, W/2^l]`.
    /// Only the first `levels` are kept (the deeper ones are computed but dropped); with
    /// `bottleneck`, the last encoder stage's output `[B, f(P), D/2^P, H/2^P, W/2^P]`
    /// follows them.
    fn decode(&self, x: Tensor<5>, levels: usize, bottleneck: bool) -> Vec<Tensor<5>> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = x;
        for (s, stage) in self.encoder.iter().enumerate() {
            x = stage.forward(x);
            if s + 1 < self.encoder.len() {
                skips.push(x.clone());
            }
        }
        let deepest = bottleneck.then(|| x.clone());
        let mut outs: Vec<Tensor<5>> = Vec::with_capacity(levels + 1);
        for l in (0..self.decoder.len()).rev() {
            let skip = skips.pop().expect("one skip per decoder level");
            x = self.decoder[l].forward(x, skip);
            if l < levels {
                outs.push(x.clone());
            }
        }
        outs.reverse();
        outs.extend(deepest);
        outs
    }

    /// The head logits of decoder levels `levels` (full resolution first), one per head:
    /// `[B, K, D/2^l, H/2^l, W/2^l]` for head `l`.
    fn head_logits(&self, levels: &[Tensor<5>]) -> Vec<Tensor<5>> {
        self.heads
            .iter()
            .zip(levels)
            .map(|(h, f)| conv3d_module(h, f.clone()))
            .collect()
    }

    /// The feature F_m `[B, C, D, H, W]` of an input `[B, 1, D, H, W]` (no heads).
    pub fn features(&self, x: Tensor<5>) -> Tensor<5> {
        self.decode(x, 1, false).remove(0)
    }

    /// The feature F_m `[B, C, D, H, W]` and the head logits, full resolution first
    /// (`[B, K, D/2^l, H/2^l, W/2^l]` for head `l`).
    pub fn forward(&self, x: Tensor<5>) -> (Tensor<5>, Vec<Tensor<5>>) {
        let levels = self.decode(x, self.heads.len(), false);
        let logits = self.head_logits(&levels);
        (levels[0].clone(), logits)
    }

    /// Every decoder level's output and the bottleneck of an input `[B, 1, D, H, W]`
    /// (no heads): `poolings + 1` tensors, element `l` at `1 / 2^l` resolution,
    /// `[B, f(l), D/2^l, H/2^l, W/2^l]`; element 0 is F_m and element `poolings` the
    /// bottleneck (the last encoder stage's output). The released code's fusion decoder
    /// reads all of them.
    pub fn pyramid(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.decode(x, self.decoder.len(), true)
    }

    /// [`Msfe::pyramid`] and the head logits of its decoder levels, full resolution first.
    pub fn forward_pyramid(&self, x: Tensor<5>) -> (Vec<Tensor<5>>, Vec<Tensor<5>>) {
        let pyramid = self.pyramid(x);
        let logits = self.head_logits(&pyramid);
        (pyramid, logits)
    }
}
