//! RFNet's building blocks: the conv–norm–activation unit, the per-modality encoder, the
//! decoder level, the region-map generator and the region-aware fusion.
//!
//! Every unit is Conv3d (with bias) → InstanceNorm (no learned scale or shift) →
//! LeakyReLU(`leaky_slope`), the official `general_conv3d`, whose convolution pads by
//! reflection (its default padding mode): so do all of ours, in the encoders, the decoders,
//! the region-map generators and the fusions (a 1×1×1 convolution pads nothing).

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::nn::{Initializer, InstanceNorm, InstanceNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{leaky_relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use super::super::config::ModelConfig;
use super::super::msfe::{conv3d, he_init};
use super::super::ops::upsample_trilinear_aligned;
use super::super::reflect::{ReflectConv3d, ReflectConv3dConfig};
use crate::kernels::conv3d_module;

/// Number of modalities the fusion weighs (the official code's `num_modals`).
pub const MODALITIES: usize = 4;
/// Number of classes, hence of region maps (background, NCR/NET, edema, ET).
pub const CLASSES: usize = 4;
/// Hidden width of each region's modal-weight MLP (fixed in the official code).
pub const WEIGHT_HIDDEN: usize = 128;
/// Channels of the region-map generators' last hidden unit (fixed in the official code).
pub const MAP_HIDDEN: usize = 16;
/// Added to a region map's mean before it divides the pooled features (official: 1e-7).
pub const MAP_MEAN_EPS: f64 = 1e-7;

/// Conv3d with reflection padding → InstanceNorm (no affine) → LeakyReLU. Tensors:
/// `conv.conv.weight`, `conv.conv.bias`; the norm has none.
#[derive(Module, Debug)]
pub struct Unit {
    /// The reflection-padded convolution.
    pub conv: ReflectConv3d,
    /// Instance normalisation without learned scale or shift.
    pub norm: InstanceNorm,
    /// Negative slope of the activation.
    #[module(skip)]
    pub slope: f64,
}

impl Unit {
    /// A unit `cin → cout` with a cubic `kernel` (3 or 1) and `stride`, He-initialised for
    /// the LeakyReLU that follows, zero bias.
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Self {
        Unit {
            conv: ReflectConv3dConfig::new([cin, cout], kernel)
                .with_stride(stride)
                .init_with_slope(cfg.leaky_slope, device),
            norm: InstanceNormConfig::new(cout)
                .with_epsilon(cfg.norm_epsilon)
                .with_affine(false)
                .init(device),
            slope: cfg.leaky_slope,
        }
    }

    /// `[B, in, D, H, W]` → `[B, out, D', H', W']`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        leaky_relu(self.norm.forward(self.conv.forward(x)), self.slope)
    }
}

/// Applies units in sequence.
fn chain(units: &[Unit], x: Tensor<5>) -> Tensor<5> {
    units.iter().fold(x, |x, u| u.forward(x))
}

/// `1×1 (cin → mid) → 3³ (mid → mid) → 1×1 (mid → cout)`: the shape of the region-map
/// embedding and of both fusion branches.
fn bottleneck(
    cin: usize,
    mid: usize,
    cout: usize,
    cfg: &ModelConfig,
    device: &Device,
) -> Vec<Unit> {
    vec![
        Unit::new(cin, mid, 1, 1, cfg, device),
        Unit::new(mid, mid, 3, 1, cfg, device),
        Unit::new(mid, cout, 1, 1, cfg, device),
    ]
}

/// One encoder level: `x = c1(x)` (stride 2 except at full resolution), then
/// `x = x + c3(c2(x))`; all 3³ reflection-padded units of `f(s)` channels.
#[derive(Module, Debug)]
pub struct EncoderLevel {
    /// The entry unit (`f(s−1) → f(s)`, 1 → `f(0)` at full resolution).
    pub c1: Unit,
    /// First unit of the residual branch.
    pub c2: Unit,
    /// Second unit of the residual branch.
    pub c3: Unit,
}

/// One modality's encoder: `poolings + 1` [`EncoderLevel`]s.
#[derive(Module, Debug)]
pub struct Encoder {
    /// `levels.{s}` works at `1 / 2^s` of the input resolution.
    pub levels: Vec<EncoderLevel>,
}

impl Encoder {
    /// A freshly initialised encoder for `cfg` (channels `cfg.features()`).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let levels = (0..f.len())
            .map(|s| {
                let (cin, stride) = if s == 0 { (1, 1) } else { (f[s - 1], 2) };
                EncoderLevel {
                    c1: Unit::new(cin, f[s], 3, stride, cfg, device),
                    c2: Unit::new(f[s], f[s], 3, 1, cfg, device),
                    c3: Unit::new(f[s], f[s], 3, 1, cfg, device),
                }
            })
            .collect();
        Encoder { levels }
    }

    /// The features of every level of an image `[B, 1, D, H, W]`, full resolution first:
    /// level `s` is `[B, f(s), D/2^s, H/2^s, W/2^s]`.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut out = Vec::with_capacity(self.levels.len());
        let mut x = x;
        for level in &self.levels {
            x = level.c1.forward(x);
            x = x.clone() + level.c3.forward(level.c2.forward(x));
            out.push(x.clone());
        }
        out
    }
}

/// One decoder level `s` (producing scale `s`): `up` (3³, `f(s+1) → f(s)`) after the
/// aligned trilinear ×2 upsampling, `merge` (3³, `2·f(s) → f(s)`) on the concatenation
/// with the level's skip feature, `out` (1×1, `f(s) → f(s)`); reflection padding.
#[derive(Module, Debug)]
pub struct DecoderLevel {
    /// The unit after the upsampling.
    pub up: Unit,
    /// The unit on the concatenation.
    pub merge: Unit,
    /// The 1×1×1 output unit.
    pub out: Unit,
}

impl DecoderLevel {
    /// The levels `s = 0..poolings` of a decoder for `cfg`.
    pub fn all(cfg: &ModelConfig, device: &Device) -> Vec<DecoderLevel> {
        let f = cfg.features();
        (0..cfg.poolings)
            .map(|s| DecoderLevel {
                up: Unit::new(f[s + 1], f[s], 3, 1, cfg, device),
                merge: Unit::new(2 * f[s], f[s], 3, 1, cfg, device),
                out: Unit::new(f[s], f[s], 1, 1, cfg, device),
            })
            .collect()
    }

    /// `up(upsample×2(x))`: `[B, f(s+1), …]` → `[B, f(s), 2×…]`.
    pub fn upsample(&self, x: Tensor<5>) -> Tensor<5> {
        self.up.forward(upsample_trilinear_aligned(x, 2))
    }

    /// `out(merge([first; second]))`, both `[B, f(s), …]`.
    pub fn merge(&self, first: Tensor<5>, second: Tensor<5>) -> Tensor<5> {
        self.out
            .forward(self.merge.forward(Tensor::cat(vec![first, second], 1)))
    }
}

/// The auxiliary decoder, shared by the four modalities (training only): from one
/// modality's own encoder features, per level `s = poolings − 1 .. 0`:
/// `x = merge([upsample(x); skip_s])`, then a 1×1×1 convolution to the 4 class logits.
#[derive(Module, Debug)]
pub struct Decoder {
    /// `levels.{s}` produces scale `s`.
    pub levels: Vec<DecoderLevel>,
    /// The 1×1×1 segmentation convolution `[4, f(0), 1, 1, 1]` with bias.
    pub seg: Conv3d,
}

impl Decoder {
    /// A freshly initialised auxiliary decoder.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Decoder {
            levels: DecoderLevel::all(cfg, device),
            seg: conv3d(cfg.base_features, CLASSES, 1, 1, true, 1.0, device),
        }
    }

    /// Class logits `[B, 4, D, H, W]` from one modality's features (full resolution first).
    pub fn forward(&self, features: &[Tensor<5>]) -> Tensor<5> {
        let mut x = features[self.levels.len()].clone();
        for s in (0..self.levels.len()).rev() {
            let up = self.levels[s].upsample(x);
            x = self.levels[s].merge(up, features[s].clone());
        }
        conv3d_module(&self.seg, x)
    }
}

/// The region-map generator of one level (`C = f(s)` channels): an embedding of the masked
/// concatenation of the four modalities' features `[B, 4C, …]`, `1×1 (C/4) → 3³ (C/4) →
/// 1×1 (C)`; at the deepest level it alone, elsewhere concatenated after the decoder's
/// feature `[B, C, …]`, feeds `1×1 (→ 16)` and a 1×1×1 convolution (with bias) to the four
/// class maps, a softmax over classes.
#[derive(Module, Debug)]
pub struct RegionMaps {
    /// The embedding units.
    pub embed: Vec<Unit>,
    /// The 1×1×1 unit to [`MAP_HIDDEN`] channels.
    pub hidden: Unit,
    /// The 1×1×1 convolution to the [`CLASSES`] maps.
    pub out: Conv3d,
}

impl RegionMaps {
    /// The generator of a level with `c` channels; `deepest` has no decoder input.
    pub fn new(c: usize, deepest: bool, cfg: &ModelConfig, device: &Device) -> Self {
        let hidden_in = if deepest { c } else { 2 * c };
        RegionMaps {
            embed: bottleneck(MODALITIES * c, c / 4, c, cfg, device),
            hidden: Unit::new(hidden_in, MAP_HIDDEN, 1, 1, cfg, device),
            out: conv3d(MAP_HIDDEN, CLASSES, 1, 1, true, 1.0, device),
        }
    }

    /// Class maps `[B, 4, …]` (softmax over classes) from the masked concatenation
    /// `[B, 4C, …]` and, except at the deepest level, the decoder's feature `[B, C, …]`.
    pub fn forward(&self, masked: Tensor<5>, decoder: Option<Tensor<5>>) -> Tensor<5> {
        let e = chain(&self.embed, masked);
        let x = match decoder {
            Some(d) => Tensor::cat(vec![d, e], 1),
            None => e,
        };
        softmax(conv3d_module(&self.out, self.hidden.forward(x)), 1)
    }
}

/// One region's modal weights: from the four modalities' pooled region features
/// `mean(y_k ⊙ P) / (mean(P) + ε)` (`[B, C]` each, canonical modality order) and
/// `mean(P) + ε`, `Linear(4C + 1 → 128) → LeakyReLU(0.2) → Linear(128 → 4) → sigmoid`:
/// one weight per modality. (The official code writes the two layers as 1×1×1
/// convolutions on a 1³ volume: the same parameters.)
#[derive(Module, Debug)]
pub struct ModalWeights {
    /// The hidden layer `[4C + 1, 128]`.
    pub hidden: Linear,
    /// The output layer `[128, 4]`.
    pub out: Linear,
    /// Negative slope of the hidden activation.
    #[module(skip)]
    pub slope: f64,
}

impl ModalWeights {
    /// He-initialised like every other layer (for the LeakyReLU after `hidden`, gain 1
    /// before the sigmoid, as the segmentation convolutions), zero biases.
    fn new(c: usize, cfg: &ModelConfig, device: &Device) -> Self {
        let layer = |cin: usize, cout: usize, slope: f64| {
            let mut l = LinearConfig::new(cin, cout)
                .with_initializer(he_init(slope))
                .init(device);
            l.bias = Some(Initializer::Zeros.init([cout], device));
            l
        };
        ModalWeights {
            hidden: layer(MODALITIES * c + 1, WEIGHT_HIDDEN, cfg.leaky_slope),
            out: layer(WEIGHT_HIDDEN, MODALITIES, 1.0),
            slope: cfg.leaky_slope,
        }
    }

    /// `[B, 4C + 1]` → weights in (0, 1) `[B, 4]`.
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        sigmoid(
            self.out
                .forward(leaky_relu(self.hidden.forward(pooled), self.slope)),
        )
    }
}

/// The region-aware fusion of one level (`C = f(s)`): per class region `r`, the modal
/// weights `w_{r,k}` ([`ModalWeights`]) and the region feature `Σ_k w_{r,k}·(y_k ⊙ P_r)`;
/// the four region features concatenated → `1×1 (C) → 3³ (C) → 1×1 (C/2)`, beside the
/// shortcut on the masked concatenation `[y_1; …; y_4]` → `1×1 (C) → 3³ (C) → 1×1 (C/2)`;
/// the output is `[region; shortcut]`, `[B, C, …]`.
#[derive(Module, Debug)]
pub struct RegionFusion {
    /// `weights.{r}`: the modal weights of class region `r`.
    pub weights: Vec<ModalWeights>,
    /// The units on the concatenated region features.
    pub region: Vec<Unit>,
    /// The units on the masked concatenation.
    pub shortcut: Vec<Unit>,
}

impl RegionFusion {
    /// The fusion of a level with `c` channels.
    pub fn new(c: usize, cfg: &ModelConfig, device: &Device) -> Self {
        RegionFusion {
            weights: (0..CLASSES)
                .map(|_| ModalWeights::new(c, cfg, device))
                .collect(),
            region: bottleneck(CLASSES * c, c, c / 2, cfg, device),
            shortcut: bottleneck(MODALITIES * c, c, c / 2, cfg, device),
        }
    }

    /// The fused feature `[B, C, …]` from the four masked features `y_k` `[B, C, …]`
    /// (canonical modality order) and the (detached) class maps `[B, 4, …]`.
    pub fn forward(&self, masked: &[Tensor<5>], maps: Tensor<5>) -> Tensor<5> {
        let [b, c, d, h, w] = masked[0].dims();
        let n = d * h * w;
        let spatial_mean =
            |t: Tensor<5>, ch: usize| t.reshape([b, ch, n]).mean_dim(2).reshape([b, ch]);
        let regions: Vec<Tensor<5>> = self
            .weights
            .iter()
            .enumerate()
            .map(|(r, weights)| {
                let p = maps.clone().narrow(1, r, 1);
                let p_mean = spatial_mean(p.clone(), 1).add_scalar(MAP_MEAN_EPS);
                let parts: Vec<Tensor<5>> = masked.iter().map(|y| y.clone() * p.clone()).collect();
                let mut pooled: Vec<Tensor<2>> = parts
                    .iter()
                    .map(|part| spatial_mean(part.clone(), c) / p_mean.clone())
                    .collect();
                pooled.push(p_mean);
                let wts = weights.forward(Tensor::cat(pooled, 1));
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(k, part)| part * wts.clone().narrow(1, k, 1).reshape([b, 1, 1, 1, 1]))
                    .reduce(|a, x| a + x)
                    .expect("four modalities")
            })
            .collect();
        let region = chain(&self.region, Tensor::cat(regions, 1));
        let shortcut = chain(&self.shortcut, Tensor::cat(masked.to_vec(), 1));
        Tensor::cat(vec![region, shortcut], 1)
    }
}

/// The fused decoder: per level a [`RegionMaps`] generator and a [`RegionFusion`], and the
/// [`DecoderLevel`]s between them, then the segmentation convolution.
#[derive(Module, Debug)]
pub struct FusedDecoder {
    /// `maps.{s}`: the region-map generator of scale `s`.
    pub maps: Vec<RegionMaps>,
    /// `fusions.{s}`: the region-aware fusion of scale `s`.
    pub fusions: Vec<RegionFusion>,
    /// `levels.{s}` produces scale `s`.
    pub levels: Vec<DecoderLevel>,
    /// The 1×1×1 segmentation convolution `[4, f(0), 1, 1, 1]` with bias.
    pub seg: Conv3d,
}

/// What the fused decoder computes: the final class logits `[B, 4, D, H, W]` and the class
/// maps of every scale `s` (`[B, 4, D/2^s, …]`, probabilities), full resolution first.
#[derive(Debug, Clone)]
pub struct FusedForward {
    /// The final logits.
    pub logits: Tensor<5>,
    /// The region maps, one per scale.
    pub maps: Vec<Tensor<5>>,
}

impl FusedDecoder {
    /// A freshly initialised fused decoder.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let deepest = f.len() - 1;
        FusedDecoder {
            maps: (0..f.len())
                .map(|s| RegionMaps::new(f[s], s == deepest, cfg, device))
                .collect(),
            fusions: f
                .iter()
                .map(|&c| RegionFusion::new(c, cfg, device))
                .collect(),
            levels: DecoderLevel::all(cfg, device),
            seg: conv3d(cfg.base_features, CLASSES, 1, 1, true, 1.0, device),
        }
    }

    /// The forward pass from the masked features: `masked[s][k]` is modality `k`'s
    /// (canonical order, zero when missing) feature of scale `s` `[B, f(s), …]`. The region
    /// maps are detached before the fusion uses them: only their own loss trains them.
    pub fn forward(&self, masked: &[Vec<Tensor<5>>]) -> FusedForward {
        let deepest = self.levels.len();
        let mut maps = vec![None; deepest + 1];
        let p = self.maps[deepest].forward(Tensor::cat(masked[deepest].clone(), 1), None);
        let mut x = self.fusions[deepest].forward(&masked[deepest], p.clone().detach());
        maps[deepest] = Some(p);
        for s in (0..deepest).rev() {
            let up = self.levels[s].upsample(x);
            let p = self.maps[s].forward(Tensor::cat(masked[s].clone(), 1), Some(up.clone()));
            let fused = self.fusions[s].forward(&masked[s], p.clone().detach());
            maps[s] = Some(p);
            x = self.levels[s].merge(fused, up);
        }
        FusedForward {
            logits: conv3d_module(&self.seg, x),
            maps: maps.into_iter().map(|m| m.expect("every scale")).collect(),
        }
    }
}
