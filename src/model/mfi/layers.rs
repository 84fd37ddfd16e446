//! MFI's building blocks: the GroupNorm residual block, the additive up-step, one modality's
//! U-Net branch and the modality interaction block.
//!
//! Every convolution and linear layer has a bias and Burn's default initialisation
//! (uniform ±1/√fan_in, as PyTorch's default, which the official code keeps); group norms
//! start at identity.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::activation::{leaky_relu, relu, softmax};
use burn::tensor::{Device, Tensor};

use super::super::config::ModelConfig;
use crate::kernels::{conv_transpose3d_module, conv3d_module};

/// Channels per group of every group norm: a block of `c` channels normalises `c / 8`
/// groups (at least one).
pub const CHANNELS_PER_GROUP: usize = 8;

/// The number of groups of a group norm over `c` channels.
pub fn groups(c: usize) -> usize {
    (c / CHANNELS_PER_GROUP).max(1)
}

/// A cubic convolution `cin → cout` with bias, zero padding `kernel / 2`.
pub(crate) fn conv(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    device: &Device,
) -> Conv3d {
    let p = kernel / 2;
    Conv3dConfig::new([cin, cout], [kernel; 3])
        .with_stride([stride; 3])
        .with_padding(PaddingConfig3d::Explicit(p, p, p))
        .init(device)
}

/// `x + Conv(ReLU(GN(Conv(ReLU(GN(x))))))`: two pre-activation 3×3×3 convolutions of `c`
/// channels and the identity shortcut.
///
/// Tensors: `norms.{i}.gamma` / `.beta` `[c]`; `convs.{i}.weight` `[c, c, 3, 3, 3]`,
/// `convs.{i}.bias` `[c]`, `i = 0, 1`.
#[derive(Module, Debug)]
pub struct ResBlock {
    /// The group norm before each convolution (`c / 8` groups, learned scale and shift).
    pub norms: Vec<GroupNorm>,
    /// The two convolutions.
    pub convs: Vec<Conv3d>,
}

impl ResBlock {
    /// A block of `c` channels.
    pub fn new(c: usize, cfg: &ModelConfig, device: &Device) -> Self {
        ResBlock {
            norms: (0..2)
                .map(|_| {
                    GroupNormConfig::new(groups(c), c)
                        .with_epsilon(cfg.norm_epsilon)
                        .init(device)
                })
                .collect(),
            convs: (0..2).map(|_| conv(c, c, 3, 1, device)).collect(),
        }
    }

    /// `[B, c, D, H, W]` → `[B, c, D, H, W]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y = self
            .norms
            .iter()
            .zip(&self.convs)
            .fold(x.clone(), |y, (n, c)| conv3d_module(c, relu(n.forward(y))));
        x + y
    }
}

/// The up-step of the decoder: a 1×1×1 convolution (`cin → cin`), a 2³ transposed
/// convolution with stride 2 (`cin → cout`), then the encoder's skip feature is *added*.
///
/// Tensors: `mix.weight` `[cin, cin, 1, 1, 1]`, `mix.bias` `[cin]`; `up.weight`
/// `[cin, cout, 2, 2, 2]` (PyTorch's transposed layout), `up.bias` `[cout]`.
#[derive(Module, Debug)]
pub struct UpAdd {
    /// The 1×1×1 convolution.
    pub mix: Conv3d,
    /// The transposed convolution.
    pub up: ConvTranspose3d,
}

impl UpAdd {
    /// `cin` channels at half resolution to `cout` at full resolution.
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        UpAdd {
            mix: conv(cin, cin, 1, 1, device),
            up: ConvTranspose3dConfig::new([cin, cout], [2; 3])
                .with_stride([2; 3])
                .init(device),
        }
    }

    /// `x` `[B, cin, D, H, W]` and `skip` `[B, cout, 2D, 2H, 2W]` → `[B, cout, 2D, 2H, 2W]`.
    pub fn forward(&self, x: Tensor<5>, skip: Tensor<5>) -> Tensor<5> {
        conv_transpose3d_module(&self.up, conv3d_module(&self.mix, x)) + skip
    }
}

/// One modality's U-Net with `poolings + 1` levels of `f(s)` channels (`f` =
/// [`ModelConfig::features`]): an input 3×3×3 convolution to `f(0)`, a [`ResBlock`] per
/// level, a stride-2 3×3×3 convolution between levels (no norm); the decoder's [`UpAdd`]
/// and [`ResBlock`] per level below the deepest, and the 1×1×1 output convolution to K
/// logits. The branches interact between these steps (see [`super::Mfi::forward`]).
#[derive(Module, Debug)]
pub struct Branch {
    /// `[f(0), 1, 3, 3, 3]`.
    pub input: Conv3d,
    /// `encoder.{s}` at level `s = 0..=poolings`.
    pub encoder: Vec<ResBlock>,
    /// `downs.{s}`: `f(s) → f(s + 1)`, stride 2, `s = 0..poolings`.
    pub downs: Vec<Conv3d>,
    /// `ups.{l}`: from level `l + 1` to level `l`, `l = 0..poolings`.
    pub ups: Vec<UpAdd>,
    /// `decoder.{l}` at level `l = 0..poolings`.
    pub decoder: Vec<ResBlock>,
    /// `[K, f(0), 1, 1, 1]`.
    pub output: Conv3d,
}

impl Branch {
    /// A freshly initialised branch of `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let f = cfg.features();
        let p = cfg.poolings;
        Branch {
            input: conv(1, f[0], 3, 1, device),
            encoder: f.iter().map(|&c| ResBlock::new(c, cfg, device)).collect(),
            downs: (0..p).map(|s| conv(f[s], f[s + 1], 3, 2, device)).collect(),
            ups: (0..p).map(|l| UpAdd::new(f[l + 1], f[l], device)).collect(),
            decoder: (0..p).map(|l| ResBlock::new(f[l], cfg, device)).collect(),
            output: conv(f[0], cfg.out_channels(), 1, 1, device),
        }
    }
}

/// The modality interaction block on features of `c` channels. For target modality `i`
/// and source `j`, with `g_m` `[B, c]` the global average of `F_m` and `a_j` the
/// availability code of `j` repeated over `2c` entries, the relation MLP maps
/// `[g_j; g_i; a_j]` (`4c`) through Linear(4c → 2c) → LeakyReLU → Linear(2c → c); a softmax
/// over the sources `j` gives per-channel weights `R_ij`, and `F_i ← F_i + Σ_j R_ij ⊙ F_j`.
/// One MLP serves every target (the official block registers three more that it never
/// calls; they are left out here).
///
/// Tensors: `relation.{0,1}.weight` `[in, out]` (Burn's layout: PyTorch's transposed) and
/// `.bias` `[out]`.
#[derive(Module, Debug)]
pub struct Interaction {
    /// Linear(4c → 2c), then Linear(2c → c).
    pub relation: Vec<Linear>,
    /// Negative slope of the LeakyReLU between them.
    #[module(skip)]
    pub slope: f64,
}

impl Interaction {
    /// A block for features of `c` channels.
    pub fn new(c: usize, cfg: &ModelConfig, device: &Device) -> Self {
        Interaction {
            relation: vec![
                LinearConfig::new(4 * c, 2 * c).init(device),
                LinearConfig::new(2 * c, c).init(device),
            ],
            slope: cfg.leaky_slope,
        }
    }

    /// The weights `R` `[B, 4 (target i), 4 (source j), c]`, softmax-normalised over `j`,
    /// from the four features `[B, c, D, H, W]` (canonical order) and the availability code
    /// `code` `[B, 4]` (1 available, 0 missing).
    pub fn weights(&self, features: &[Tensor<5>], code: Tensor<2>) -> Tensor<4> {
        let [b, c, d, h, w] = features[0].dims();
        let v = d * h * w;
        // g: [B, 4, c], the global average of each modality's feature.
        let g: Tensor<3> = Tensor::stack(
            features
                .iter()
                .map(|x| x.clone().reshape([b, c, v]).mean_dim(2).reshape([b, c]))
                .collect(),
            1,
        );
        let n = features.len();
        let source = g.clone().unsqueeze_dim::<4>(1).expand([b, n, n, c]);
        let target = g.unsqueeze_dim::<4>(2).expand([b, n, n, c]);
        let a = code.reshape([b, 1, n, 1]).expand([b, n, n, 2 * c]);
        let input = Tensor::cat(vec![source, target, a], 3);
        let hidden = leaky_relu(self.relation[0].forward(input), self.slope);
        softmax(self.relation[1].forward(hidden), 2)
    }

    /// The four features after the interaction, each `[B, c, D, H, W]`.
    pub fn forward(&self, features: Vec<Tensor<5>>, code: Tensor<2>) -> Vec<Tensor<5>> {
        let dims = features[0].dims();
        let [b, c, d, h, w] = dims;
        let n = features.len();
        let r = self.weights(&features, code);
        // All sources: [B, 4, c, voxels].
        let stacked: Tensor<4> = Tensor::stack(
            features
                .iter()
                .map(|x| x.clone().reshape([b, c, d * h * w]))
                .collect(),
            1,
        );
        features
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let weights = r.clone().narrow(1, i, 1).reshape([b, n, c, 1]);
                let mixed = (stacked.clone() * weights).sum_dim(1).reshape(dims);
                x + mixed
            })
            .collect()
    }
}
