//! RFNet (Ding et al., ICCV 2021), region-aware fusion for incomplete multi-modal brain
//! tumour segmentation, as its official code computes it.
//!
//! - Four encoders, one per modality ([`Encoder`]), `poolings + 1` levels of `f(s)`
//!   channels (16, 32, 64, 128 at the native size): `x = c1(x)` (stride 2 from the second
//!   level), then `x = x + c3(c2(x))`; every unit Conv3³ (reflection padding) →
//!   InstanceNorm (no affine) → LeakyReLU(0.2).
//! - A missing modality is represented by zeroing its features with a per-sample mask at
//!   every level (the input itself is not zeroed, and the encoders run on whatever they
//!   get); so in inference a missing modality's encoder need not run at all: its features
//!   are zeros.
//! - The fused decoder ([`FusedDecoder`]): per level, a region-map generator
//!   ([`RegionMaps`]: four class maps P_r from the masked concatenation and, below the
//!   deepest level, the decoder's feature), the maps *detached*, then the region-aware
//!   fusion ([`RegionFusion`]: per region the modal weights w_{r,k} and
//!   `Σ_k w_{r,k}·(y_k ⊙ P_r)`, fused by convolutions, beside a shortcut on the masked
//!   concatenation); the decoder upsamples by aligned-corner trilinear ×2
//!   ([`upsample_trilinear_aligned`](super::ops::upsample_trilinear_aligned)); a 4-class
//!   softmax head.
//! - The auxiliary decoder ([`Decoder`], training only) is *one* decoder shared by the four
//!   modalities, run on each modality's own (unmasked) features.
//! - The loss ([`loss`](mod@loss)): weighted CE + soft Dice of the fused output, of the four
//!   auxiliary outputs and of the four levels' region maps (upsampled); the fused term
//!   counts from epoch `region_fusion_start_epoch` on.
//!
//! The encoding of a modality is its encoder's features at every level: they depend on
//! that modality alone, so `evaluate` runs each encoder once per window and decodes all 15
//! subsets from the encodings (everything but the encoders depends on the subset).
//!
//! With `base_features` 16 and 3 poolings (the native size) it has 8,984,960 parameters,
//! exactly the official model's (8,398,572 at inference; auxiliary decoder 586,388).
//! `convs_per_stage`, `deep_supervision`, `fusion`, `dice_smooth` and the `attention_*`
//! and U-HVED settings of [`ModelConfig`] do not apply to RFNet.
//!
//! # Tensor names (`model.safetensors`)
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; `s` a scale (0 = full resolution), `C = f(s)`. A
//! unit `U` (reflection-padded convolution, norm, activation) holds `U.conv.conv.weight` /
//! `.bias`; norms hold nothing.
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `encoders.{m}.levels.{s}.c1` / `.c2` / `.c3` | `[C, f(s−1) or C, 3, 3, 3]` | encoder units (c1 of scale 0 reads 1 channel; stride 2 for s > 0) |
//! | `{d}.levels.{s}.up` / `.merge` / `.out` | `[C, f(s+1), 3³]` / `[C, 2C, 3³]` / `[C, C, 1³]` | decoder level `s`, `{d}` = `auxiliary` or `fused` |
//! | `{d}.seg.weight` / `.bias` | `[4, f(0), 1, 1, 1]` / `[4]` | segmentation convolution |
//! | `fused.maps.{s}.embed.{0,1,2}` | `[C/4, 4C, 1³]`, `[C/4, C/4, 3³]`, `[C, C/4, 1³]` | region-map embedding |
//! | `fused.maps.{s}.hidden` | `[16, C or 2C, 1³]` | `C` at the deepest level |
//! | `fused.maps.{s}.out.weight` / `.bias` | `[4, 16, 1, 1, 1]` / `[4]` | class maps |
//! | `fused.fusions.{s}.weights.{r}.hidden.weight` / `.bias` | `[4C + 1, 128]` / `[128]` | region `r`'s modal-weight layer (input: the four modalities' pooled features, canonical order, then the map mean) |
//! | `fused.fusions.{s}.weights.{r}.out.weight` / `.bias` | `[128, 4]` / `[4]` | one weight per modality, canonical order |
//! | `fused.fusions.{s}.region.{0,1,2}` | `[C, 4C, 1³]`, `[C, C, 3³]`, `[C/2, C, 1³]` | on the four regions' features |
//! | `fused.fusions.{s}.shortcut.{0,1,2}` | `[C, 4C, 1³]`, `[C, C, 3³]`, `[C/2, C, 1³]` | on the masked concatenation |

pub mod layers;
pub mod loss;
pub mod summary;
#[cfg(test)]
mod tests;

use crate::model::arch::distinct_modalities;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::arch::{Encoding, Network, StepLoss, TrainInputs};
use super::config::{Arch, ModelConfig, Preset, Targets};
use super::network::FusedOutput;
use super::per_modality::PerModality;
use super::summary::ModelSummary;
use crate::modality::Modality;
pub use layers::{Decoder, Encoder, FusedDecoder, FusedForward, RegionFusion, RegionMaps};

/// The whole RFNet. Build it with [`Network::init`].
#[derive(Module, Debug)]
pub struct Rfnet {
    /// The modality encoders.
    pub encoders: PerModality<Encoder>,
    /// The fused decoder with the region-map generators and region-aware fusions.
    pub fused: FusedDecoder,
    /// The auxiliary decoder shared by the modalities (training only).
    pub auxiliary: Decoder,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// The training recipe of the official code, for the trainer's defaults: Adam with AMSGrad,
/// lr 2e-4, weight decay 1e-4, poly decay (power 0.9), 300 epochs × 150 iterations, batch
/// 2, 80³ patches, a subset drawn uniformly from the 15 per sample.
pub mod recipe {
    /// Adam's learning rate.
    pub const LEARNING_RATE: f64 = 2e-4;
    /// L2 weight decay of the optimiser.
    pub const WEIGHT_DECAY: f64 = 1e-4;
    /// Training epochs.
    pub const EPOCHS: usize = 300;
    /// Iterations per epoch.
    pub const ITERATIONS_PER_EPOCH: usize = 150;
    /// Batch size.
    pub const BATCH: usize = 2;
    /// Patch side (voxels).
    pub const PATCH: usize = 80;
    /// Epochs before the fused output's loss counts.
    pub const REGION_FUSION_START_EPOCH: usize = 20;
}

impl Rfnet {
    /// A freshly initialised network on `device`. Panics only on an invalid configuration:
    /// call [`Rfnet::validate`] first for user input.
    pub fn new(config: &ModelConfig, device: &Device) -> Rfnet {
        if let Err(e) = Self::validate(config) {
            panic!("invalid RFNet configuration: {e:#}");
        }
        Rfnet {
            encoders: PerModality::new(|_| Encoder::new(config, device)),
            fused: FusedDecoder::new(config, device),
            auxiliary: Decoder::new(config, device),
            config: config.clone(),
        }
    }

    /// Checks that `config` describes a buildable RFNet: valid as a [`ModelConfig`],
    /// `classes` targets (4-class softmax), every level's channels a multiple of 4 (the
    /// region-map embedding has C/4, the fusion branches C/2), and at least 2 voxels per
    /// side at the deepest level (reflection padding needs them).
    pub fn validate(config: &ModelConfig) -> Result<()> {
        config.validate()?;
        if config.targets != Targets::Classes {
            bail!("RFNet predicts 4 classes with a softmax: targets must be classes");
        }
        if config.features().iter().any(|f| f % 4 != 0) {
            bail!(
                "RFNet's region maps embed C/4 channels: every level's channels must be a \
                 multiple of 4, got {:?}",
                config.features()
            );
        }
        Self::check_deepest(config, config.patch_size)
            .map_err(|e| anyhow::anyhow!("patch_size: {e}"))
    }

    fn check_deepest(config: &ModelConfig, size: [usize; 3]) -> Result<()> {
        if size.iter().any(|&s| s >> config.poolings < 2) {
            bail!(
                "RFNet's reflection padding needs at least 2 voxels per side at the deepest \
                 level: sizes must be at least {} (2·2^poolings), got {size:?}",
                2 << config.poolings
            );
        }
        Ok(())
    }

    /// Checks one image `[B, 1, D, H, W]`: one channel, sizes multiples of `2^poolings`, at
    /// least 2 voxels per side at the deepest level.
    fn check_image(&self, m: Modality, x: &Tensor<5>) -> Result<()> {
        let d = x.dims();
        if d[1] != 1 {
            bail!("{m}: expected an image [B, 1, D, H, W], got a tensor of shape {d:?}");
        }
        let size = [d[4], d[3], d[2]];
        self.config.check_size(size)?;
        Self::check_deepest(&self.config, size)
    }

    /// The features of modality `m` at every level from its image `[B, 1, D, H, W]`, full
    /// resolution first (see [`Encoder::forward`]).
    pub fn features(&self, m: Modality, x: Tensor<5>) -> Result<Vec<Tensor<5>>> {
        self.check_image(m, &x)?;
        Ok(self.encoders.get(m).forward(x))
    }

    /// The fused decoder's pass (final logits and region maps) from the features of the
    /// modalities present (`features[i]`: a modality and its levels, full resolution first)
    /// masked per sample by `mask` `[B, 4]` (canonical order; 1 available, 0 missing): the
    /// training forward, and with a mask of ones the inference one.
    pub fn forward_masked(
        &self,
        features: &[(Modality, Vec<Tensor<5>>)],
        mask: Tensor<2>,
    ) -> FusedForward {
        self.fused.forward(&self.masked(features, mask))
    }

    /// The fused decoder's inputs: per scale, the four modalities' features in canonical
    /// order, each multiplied by its column of `mask` `[B, 4]` (1 available, 0 missing);
    /// a modality without features is zero.
    fn masked(
        &self,
        features: &[(Modality, Vec<Tensor<5>>)],
        mask: Tensor<2>,
    ) -> Vec<Vec<Tensor<5>>> {
        let scales = self.config.poolings + 1;
        let b = mask.dims()[0];
        (0..scales)
            .map(|s| {
                let like = features[0].1[s].clone();
                Modality::ALL
                    .iter()
                    .map(|&m| match features.iter().find(|(fm, _)| *fm == m) {
                        Some((_, f)) => {
                            let column = mask
                                .clone()
                                .narrow(1, m.index(), 1)
                                .reshape([b, 1, 1, 1, 1]);
                            f[s].clone() * column
                        }
                        None => like.zeros_like(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// RFNet behind the method seam. The encoding of a modality is its encoder's features at
/// every level, full resolution first (`[B, f(s), D/2^s, H/2^s, W/2^s]`); they do not
/// depend on the other modalities. `decode` zeroes the missing modalities' features.
impl Network for Rfnet {
    const ARCH: Arch = Arch::Rfnet;

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
        self.features(m, x)
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        distinct_modalities(encodings.iter().map(|(m, _)| *m), "RFNet")?;
        let scales = self.config.poolings + 1;
        if let Some((m, e)) = encodings.iter().find(|(_, e)| e.len() != scales) {
            bail!("{m}: expected features at {scales} levels, got {}", e.len());
        }
        let dims0 = encodings[0].1[0].dims();
        if let Some((m, e)) = encodings.iter().find(|(_, e)| e[0].dims() != dims0) {
            bail!(
                "{m}: feature shape {:?} differs from {}'s {dims0:?}; all modalities must share one grid",
                e[0].dims(),
                encodings[0].0
            );
        }
        let device = encodings[0].1[0].device();
        let mask: Tensor<2> = Tensor::ones([dims0[0], 4], &device);
        Ok(FusedOutput {
            logits: self.forward_masked(encodings, mask).logits,
            attention: None,
        })
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        Rfnet::new(config, device)
    }

    /// The network configuration of `preset`: the native size (base 16, 3 poolings, four
    /// classes, LeakyReLU 0.2, 80³ patches, fused term from epoch 20) for `paper` and
    /// `authors`; for `small` base 8 on 32³ patches with the warm-up scaled to the short
    /// schedule (3 of 50 epochs, as 20 of 300).
    fn preset(preset: Preset) -> ModelConfig {
        let native = ModelConfig::new()
            .with_arch(Arch::Rfnet)
            .with_poolings(3)
            .with_base_features(16)
            .with_max_features(128)
            .with_leaky_slope(0.2)
            .with_deep_supervision(false)
            .with_targets(Targets::Classes)
            .with_region_fusion_start_epoch(recipe::REGION_FUSION_START_EPOCH);
        match preset {
            Preset::Paper | Preset::Authors => native.with_patch_size([recipe::PATCH; 3]),
            Preset::Small => native
                .with_base_features(8)
                .with_max_features(64)
                .with_patch_size([32, 32, 32])
                .with_region_fusion_start_epoch(3),
        }
    }

    /// The auxiliary decoder runs on every modality the batch has, so training loads all
    /// of them; the drawn subsets only mask the fused decoder's inputs.
    fn trains_on_all_modalities(_config: &ModelConfig) -> bool {
        true
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        summary::describe(config)
    }
}
