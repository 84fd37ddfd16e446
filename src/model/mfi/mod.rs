//! MFI (Zhao et al., MICCAI 2022: modality-adaptive feature interaction), as its official
//! code computes it.
//!
//! - Four U-Nets, one per modality ([`Branch`]), with `f(s)` channels at level `s`
//!   (32, 64, 128, 256 at the native size): an input 3×3×3 convolution, per level a
//!   GroupNorm residual block ([`ResBlock`]: 2 × (GroupNorm(c/8 groups) → ReLU → Conv3³) +
//!   identity), stride-2 convolutions down (no norm); up = 1×1×1 conv + 2³ transposed conv,
//!   *added* to the skip feature ([`UpAdd`]), then a residual block; a 1×1×1 output
//!   convolution to the three region logits.
//! - [`Interaction`] blocks mix the four branches after each downsampling and after every
//!   decoder level but the last (full-resolution) one, driven by the global average of each
//!   feature and the availability code.
//! - Outputs: each branch's logits, the fused logits (a 1×1×1 convolution over the four
//!   branches' logits concatenated) and, with `deep_supervision`, per branch the shared
//!   deep-supervision heads (3×3×3 conv to K, nearest-neighbour upsampling to the input size)
//!   on the up-step output of every decoder level but the last.
//! - A missing modality's input is zeroed and its availability code is 0; its branch still
//!   runs and its logits still count: inference averages the five logits (four branches,
//!   missing ones included, and the fused output), as the official code does.
//! - The loss ([`loss`](mod@loss)): the sum over every output of
//!   `(1/3) Σ_regions (soft Dice + 0.5 · BCE)`.
//!
//! The input convolution, the first residual block and the first downsampling of a branch
//! see only their own modality, so they are the encoding ([`Network::encode`]); everything
//! after the first interaction block runs in [`Network::decode`], for all four branches (a
//! missing one on a zero image).
//!
//! With base 32, 3 poolings and deep supervision (the native size) it has 30,918,521
//! parameters, exactly the official model's parameters in use: branches 4 × 7,459,011,
//! interaction blocks 1,066,880, fusion convolution 39, deep-supervision heads 15,558. The
//! official model registers 34,119,161: each of its five interaction blocks also holds three
//! relation MLPs that its forward pass never calls (3,200,640 parameters), left out here.
//! Only `regions` targets (sigmoid WT, TC, ET) are supported. `convs_per_stage`, `fusion`
//! and the `attention_*`, U-HVED and released-variant settings of [`ModelConfig`] do not
//! apply.
//!
//! # Tensor names (`model.safetensors`)
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `branches.{m}.input.weight` / `.bias` | `[f(0), 1, 3, 3, 3]` / `[f(0)]` | input convolution |
//! | `branches.{m}.encoder.{s}.norms.{i}.gamma` / `.beta` | `[f(s)]` | group norm `i` of the encoder block at level `s` |
//! | `branches.{m}.encoder.{s}.convs.{i}.weight` / `.bias` | `[f(s), f(s), 3, 3, 3]` / `[f(s)]` | convolution `i` of that block |
//! | `branches.{m}.downs.{s}.weight` / `.bias` | `[f(s+1), f(s), 3, 3, 3]` / `[f(s+1)]` | stride-2 convolution from level `s` |
//! | `branches.{m}.ups.{l}.mix.weight` / `.bias` | `[f(l+1), f(l+1), 1, 1, 1]` / `[f(l+1)]` | 1×1×1 conv of the up-step to level `l` |
//! | `branches.{m}.ups.{l}.up.weight` / `.bias` | `[f(l+1), f(l), 2, 2, 2]` / `[f(l)]` | its transposed convolution |
//! | `branches.{m}.decoder.{l}.norms.{i}.…`, `.convs.{i}.…` | as the encoder's, `f(l)` | decoder block at level `l` |
//! | `branches.{m}.output.weight` / `.bias` | `[K, f(0), 1, 1, 1]` / `[K]` | branch logits |
//! | `down_interactions.{k}.relation.{0,1}.weight` / `.bias` | `[4c, 2c]`, `[2c, c]` / `[2c]`, `[c]` | interaction after downsampling `k` (`c = f(k+1)`) |
//! | `up_interactions.{k}.relation.{0,1}.…` | as above, `c = f(k+1)` | interaction after the decoder block at level `k + 1` |
//! | `fuse.weight` / `.bias` | `[K, 4K, 1, 1, 1]` / `[K]` | fused logits from `[t1; t1c; t2; flair]` logits |
//! | `deep.{k}.weight` / `.bias` | `[K, f(k+1), 3, 3, 3]` / `[K]` | deep-supervision head of level `k + 1` (shared by the branches) |
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; `s = 0..=poolings`, `l = 0..poolings`,
//! `k = 0..poolings` for `down_interactions` and `0..poolings − 1` otherwise. Linear weights
//! are `[in, out]` (Burn's layout, PyTorch's transposed).

pub mod layers;
pub mod loss;
pub mod summary;
#[cfg(test)]
mod tests;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::tensor::{Device, Tensor, TensorData};

use super::arch::{Encoding, Network, StepLoss, TrainInputs};
use super::config::{Arch, ModelConfig, Preset, Targets};
use super::network::FusedOutput;
use super::ops::upsample_nearest;
use super::per_modality::PerModality;
use super::summary::ModelSummary;
use crate::kernels::conv3d_module;
use crate::modality::{Modality, Subset};
pub use layers::{Branch, Interaction, ResBlock, UpAdd};

/// The whole MFI network. Build it with [`Network::init`].
#[derive(Module, Debug)]
pub struct Mfi {
    /// The four modality U-Nets.
    pub branches: PerModality<Branch>,
    /// `down_interactions.{k}`: after the `k`-th downsampling (level `k + 1`).
    pub down_interactions: Vec<Interaction>,
    /// `up_interactions.{k}`: after the decoder block of level `k + 1`.
    pub up_interactions: Vec<Interaction>,
    /// The fused output: a 1×1×1 convolution over the branches' concatenated logits.
    pub fuse: Conv3d,
    /// `deep.{k}`: the deep-supervision head of decoder level `k + 1`, shared by the
    /// branches (empty without deep supervision).
    pub deep: Vec<Conv3d>,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// Every output of one forward pass, each `[B, K, D, H, W]` at input resolution.
#[derive(Debug, Clone)]
pub struct MfiOutput {
    /// Each branch's logits, canonical order (T1, T1c, T2, FLAIR).
    pub branches: Vec<Tensor<5>>,
    /// The fused logits.
    pub fused: Tensor<5>,
    /// The deep-supervision logits, upsampled: per decoder level from the deepest, the four
    /// branches in canonical order (empty unless requested and configured).
    pub deep: Vec<Tensor<5>>,
}

impl MfiOutput {
    /// The inference logits: the mean of the four branches' and the fused logits.
    pub fn final_logits(&self) -> Tensor<5> {
        let n = self.branches.len() + 1;
        self.branches
            .iter()
            .cloned()
            .fold(self.fused.clone(), |a, b| a + b)
            .div_scalar(n as f64)
    }
}

/// The training recipe of the official code, for the trainer's defaults: Adam with weight
/// decay 1e-5 (L2 added to the gradient, as PyTorch's Adam; no AMSGrad), lr 5e-5 with poly
/// decay (power 0.9) per epoch (the command-line default 5e-4 is overridden by a hard-coded
/// 5e-5), 1200 epochs, batch 1, 128³ patches; per sample each modality kept with
/// probability ½, an empty draw redrawn.
pub mod recipe {
    /// Adam's initial learning rate (the value the official training loop sets).
    pub const LEARNING_RATE: f64 = 5e-5;
    /// The official command line's learning rate, which the training loop overrides; the
    /// `small` recipe uses it, as its 2,500 steps at 5e-5 barely move the weights.
    pub const LEARNING_RATE_ARGUMENT: f64 = 5e-4;
    /// L2 weight decay of the optimiser.
    pub const WEIGHT_DECAY: f64 = 1e-5;
    /// Epochs.
    pub const EPOCHS: usize = 1200;
    /// Batch size.
    pub const BATCH: usize = 1;
    /// Patch size (voxels per side).
    pub const PATCH: usize = 128;
}

impl Mfi {
    /// A freshly initialised network on `device`. Panics only on an invalid configuration:
    /// call [`Mfi::validate`] first for user input.
    pub fn new(config: &ModelConfig, device: &Device) -> Mfi {
        if let Err(e) = Self::validate(config) {
            panic!("invalid MFI configuration: {e:#}");
        }
        let f = config.features();
        let p = config.poolings;
        let k = config.out_channels();
        Mfi {
            branches: PerModality::new(|_| Branch::new(config, device)),
            down_interactions: (1..=p)
                .map(|s| Interaction::new(f[s], config, device))
                .collect(),
            up_interactions: (1..p)
                .map(|l| Interaction::new(f[l], config, device))
                .collect(),
            fuse: layers::conv(4 * k, k, 1, 1, device),
            deep: if config.deep_supervision {
                (1..p)
                    .map(|l| layers::conv(f[l], k, 3, 1, device))
                    .collect()
            } else {
                Vec::new()
            },
            config: config.clone(),
        }
    }

    /// Checks that `config` describes a buildable MFI: valid as a [`ModelConfig`], `regions`
    /// targets, and every level's channels divisible into its `c / 8` norm groups.
    pub fn validate(config: &ModelConfig) -> Result<()> {
        config.validate()?;
        if config.targets != Targets::Regions {
            bail!(
                "MFI predicts the three regions WT, TC, ET with sigmoids: targets must be \
                 regions, got {}",
                config.targets
            );
        }
        if let Some(c) = config
            .features()
            .into_iter()
            .find(|&c| c % layers::groups(c) != 0)
        {
            bail!(
                "MFI's group norms split {c} channels into {} groups of {}: choose \
                 base_features and max_features so that every level's channels are a \
                 multiple of their group count",
                layers::groups(c),
                layers::CHANNELS_PER_GROUP
            );
        }
        Ok(())
    }

    /// The per-modality part of branch `m` from its image `[B, 1, D, H, W]`: the input
    /// convolution and first residual block (the level-0 skip `[B, f(0), D, H, W]`) and the
    /// first downsampling (`[B, f(1), D/2, H/2, W/2]`).
    pub fn stem(&self, m: Modality, x: Tensor<5>) -> Result<[Tensor<5>; 2]> {
        let d = x.dims();
        if d[1] != 1 {
            bail!("{m}: expected an image [B, 1, D, H, W], got a tensor of shape {d:?}");
        }
        self.config.check_size([d[4], d[3], d[2]])?;
        let b = self.branches.get(m);
        let c0 = b.encoder[0].forward(conv3d_module(&b.input, x));
        let p1 = conv3d_module(&b.downs[0], c0.clone());
        Ok([c0, p1])
    }

    /// The forward pass from the four branches' stems (canonical order, see [`Mfi::stem`])
    /// and the availability code `[B, 4]`; with `deep`, the deep-supervision outputs too.
    pub fn forward_from_stems(
        &self,
        stems: Vec<[Tensor<5>; 2]>,
        code: Tensor<2>,
        deep: bool,
    ) -> MfiOutput {
        let p = self.config.poolings;
        let branches: Vec<&Branch> = Modality::ALL
            .iter()
            .map(|&m| self.branches.get(m))
            .collect();
        let mut skips: Vec<Vec<Tensor<5>>> = Vec::with_capacity(4);
        let mut x: Vec<Tensor<5>> = Vec::with_capacity(4);
        for [c0, p1] in stems {
            skips.push(vec![c0]);
            x.push(p1);
        }
        for s in 1..=p {
            x = self.down_interactions[s - 1].forward(x, code.clone());
            for (i, b) in branches.iter().enumerate() {
                let c = b.encoder[s].forward(x[i].clone());
                x[i] = if s < p {
                    skips[i].push(c.clone());
                    conv3d_module(&b.downs[s], c)
                } else {
                    c
                };
            }
        }
        let mut deep_out = Vec::new();
        for l in (0..p).rev() {
            for (i, b) in branches.iter().enumerate() {
                let up = b.ups[l].forward(x[i].clone(), skips[i][l].clone());
                if deep && l >= 1 && !self.deep.is_empty() {
                    let logits = conv3d_module(&self.deep[l - 1], up.clone());
                    deep_out.push(upsample_nearest(logits, 1 << l));
                }
                x[i] = b.decoder[l].forward(up);
            }
            if l >= 1 {
                x = self.up_interactions[l - 1].forward(x, code.clone());
            }
        }
        let outputs: Vec<Tensor<5>> = branches
            .iter()
            .zip(x)
            .map(|(b, x)| conv3d_module(&b.output, x))
            .collect();
        let fused = conv3d_module(&self.fuse, Tensor::cat(outputs.clone(), 1));
        MfiOutput {
            branches: outputs,
            fused,
            deep: deep_out,
        }
    }

    /// The training forward pass: `images` `[B, 1, D, H, W]` in canonical order, missing
    /// ones (per sample) already zero, and the availability code `[B, 4]`.
    pub fn forward(
        &self,
        images: Vec<Tensor<5>>,
        code: Tensor<2>,
        deep: bool,
    ) -> Result<MfiOutput> {
        if images.len() != 4 {
            bail!(
                "MFI takes four images (zeros for a missing modality), got {}",
                images.len()
            );
        }
        let stems = Modality::ALL
            .into_iter()
            .zip(images)
            .map(|(m, x)| self.stem(m, x))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.forward_from_stems(stems, code, deep))
    }

    /// The four images of a training step in canonical order, each modality multiplied by
    /// its per-sample availability (zeros where a sample lacks it, or the batch has no
    /// image of it), and that availability code `[B, 4]`.
    pub fn masked_inputs(&self, step: &TrainInputs) -> Result<(Vec<Tensor<5>>, Tensor<2>)> {
        let Some((_, first)) = step.images.first() else {
            bail!("a training step needs at least one image");
        };
        let dims = first.dims();
        let device = first.device();
        if step.sample_subsets.len() != dims[0] {
            bail!(
                "{} per-sample subsets for a batch of {}",
                step.sample_subsets.len(),
                dims[0]
            );
        }
        let code = step.sample_mask(&device);
        let images = Modality::ALL
            .iter()
            .enumerate()
            .map(|(i, &m)| match step.images.iter().find(|(n, _)| *n == m) {
                Some((_, x)) if step.subset.contains(m) => {
                    let keep = code.clone().narrow(1, i, 1).reshape([dims[0], 1, 1, 1, 1]);
                    x.clone() * keep
                }
                _ => Tensor::zeros(dims, &device),
            })
            .collect();
        if let Some(s) = step
            .sample_subsets
            .iter()
            .find(|s| s.is_empty() || !s.is_subset_of(step.subset))
        {
            bail!(
                "a sample's subset {s} must be non-empty and within the step's {}",
                step.subset
            );
        }
        Ok((images, code))
    }
}

/// The availability code `[B, 4]` of `subset` for every sample of a batch of `b`.
fn subset_code(subset: Subset, b: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..b)
        .flat_map(|_| Modality::ALL.map(|m| if subset.contains(m) { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(values, [b, 4]), device)
}

/// MFI behind the method seam. The encoding of a modality is its stem (see [`Mfi::stem`]):
/// `[c0 [B, f(0), D, H, W], p1 [B, f(1), D/2, H/2, W/2]]`; the rest interacts across the
/// modalities and runs in `decode`, with zero images and code 0 for the missing ones.
impl Network for Mfi {
    const ARCH: Arch = Arch::Mfi;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn loss_terms(&self) -> &'static [&'static str] {
        &loss::TERMS
    }

    fn training_loss(&self, step: TrainInputs) -> Result<StepLoss> {
        self.loss(&step)
    }

    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding> {
        Ok(self.stem(m, x)?.to_vec())
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        let mut available = Subset::EMPTY;
        for (m, e) in encodings {
            if available.contains(*m) {
                bail!("modality {m} given twice");
            }
            if e.len() != 2 {
                bail!(
                    "an MFI encoding is a branch's two stem tensors, got {}",
                    e.len()
                );
            }
            available = available.with(*m);
        }
        let Some((_, first)) = encodings.first() else {
            bail!("no modality given: MFI needs at least one of T1, T1c, T2, FLAIR");
        };
        let [b, _, d, h, w] = first[0].dims();
        let device = first[0].device();
        let stems = Modality::ALL
            .iter()
            .map(|&m| match encodings.iter().find(|(n, _)| *n == m) {
                Some((_, e)) => Ok([e[0].clone(), e[1].clone()]),
                None => self.stem(m, Tensor::zeros([b, 1, d, h, w], &device)),
            })
            .collect::<Result<Vec<_>>>()?;
        let code = subset_code(available, b, &device);
        Ok(FusedOutput {
            logits: self.forward_from_stems(stems, code, false).final_logits(),
            attention: None,
        })
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        Mfi::new(config, device)
    }

    /// The network configuration of `preset`: the native size (features 32-64-128-256,
    /// deep supervision, regions, 128³ patches) for `paper` and `authors`; features
    /// 8-16-32-64 on 32³ patches for `small`.
    fn preset(preset: Preset) -> ModelConfig {
        let native = ModelConfig::new()
            .with_arch(Arch::Mfi)
            .with_poolings(3)
            .with_base_features(32)
            .with_max_features(256)
            .with_leaky_slope(0.01)
            .with_deep_supervision(true)
            .with_targets(Targets::Regions);
        match preset {
            Preset::Paper | Preset::Authors => native.with_patch_size([recipe::PATCH; 3]),
            Preset::Small => native
                .with_base_features(8)
                .with_max_features(64)
                .with_patch_size([32, 32, 32]),
        }
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        summary::describe(config)
    }
}
