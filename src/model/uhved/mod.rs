//! U-HVED (Dorent et al., MICCAI 2019), the hetero-modal variational encoder-decoder, as
//! its official NiftyNet code computes it.
//!
//! - Four encoders, one per modality ([`Encoder`]): a 1×1×1 conv to `f(0)` channels +
//!   LeakyReLU, then one block per scale `s = 0..=poolings` of `f(s) = base_features · 2^s`
//!   channels, each 2 × (InstanceNorm → LeakyReLU → Conv3³), with 2³ max-pooling between
//!   scales. The block's output at scale `s` splits on channels into a latent mean and a
//!   log-variance (clipped to ±`logvar_clip`), width `f(s) / 2`.
//! - Per scale, the product of the *available* modalities' Gaussians with the N(0, 1) prior
//!   expert ([`gaussian`]): a missing modality is simply not a factor. Training decodes a
//!   reparameterised sample (noise from [`TrainInputs::standard_normal`], so runs and resumes
//!   are reproducible), inference the mean (deterministic).
//! - Five decoders ([`Decoder`]): the reconstructions of T1, T1c, T2 and FLAIR (training
//!   only) and the segmentation, each from the samples at every scale.
//! - The loss ([`loss`](mod@loss)): CE + Dice of the segmentation, plus `kl_weight` · KL
//!   and `reconstruction_weight` · MSE of the reconstructed images.
//!
//! With `base_features` 8 and 3 poolings (the native size) it has 1,250,552 parameters,
//! exactly the official model's: encoders 4 × 221,560, image decoders 4 × 72,860,
//! segmentation decoder 72,872 (convolutions without bias, norms with scale and shift).
//! `convs_per_stage`, `max_features` (keep it ≥ `base_features · 2^poolings`),
//! `deep_supervision`, `fusion` and the `attention_*` settings of [`ModelConfig`] do not
//! apply to U-HVED.
//!
//! # Tensor names (`model.safetensors`)
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `encoders.{m}.input.weight` | `[f(0), 1, 1, 1, 1]` | input 1×1×1 conv |
//! | `encoders.{m}.blocks.{s}.convs.{i}.norm.gamma` / `.beta` | `[in]` | norm before conv `i` of scale `s` |
//! | `encoders.{m}.blocks.{s}.convs.{i}.conv.weight` | `[f(s), in, 3, 3, 3]` | conv `i` of scale `s`; `in` = `f(s−1)` (`f(0)` at `s = 0`) for `i = 0`, else `f(s)` |
//! | `{d}.levels.{l}.convs.0.norm.gamma` / `.beta` | `[f(l+1)/2 + f(l)/2]` | norm of the input `[upsampled; z_l]` of level `l` |
//! | `{d}.levels.{l}.convs.0.conv.weight` | `[f(l), f(l+1)/2 + f(l)/2, 3, 3, 3]` | first conv of level `l` |
//! | `{d}.levels.{l}.convs.1.norm.gamma` / `.beta` | `[f(l)]` | |
//! | `{d}.levels.{l}.convs.1.conv.weight` | `[f(l)/2, f(l), 3, 3, 3]` | second conv of level `l` |
//! | `{d}.output.weight` | `[out, f(0)/2, 1, 1, 1]` | output conv: `out` = 1 for an image, K for the segmentation |
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; `{d}` is `reconstructions.{m}` (an image decoder)
//! or `segmentation`; `l = 0..poolings`
//! (level `l` produces scale `l`); no tensor has a bias.

pub mod gaussian;
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
pub use gaussian::{Expert, Gaussian, product_with_prior};
pub use layers::{Block, Decoder, Encoder, PreActConv};

/// The whole U-HVED network. Build it with [`Network::init`].
#[derive(Module, Debug)]
pub struct Uhved {
    /// The modality encoders.
    pub encoders: PerModality<Encoder>,
    /// The image decoders, one per modality (training only).
    pub reconstructions: PerModality<Decoder>,
    /// The segmentation decoder (K channels).
    pub segmentation: Decoder,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// The training recipe of the official code, for the trainer's defaults: Adam, lr 1e-3
/// (divided by 4 every 10,000 iterations: the evident intent; the released code divides
/// every 10 iterations), weight decay 1e-5, batch 1, 112³ patches, 60,000 iterations;
/// per batch a subset size drawn uniformly from 1..=4, then a subset of that size.
pub mod recipe {
    /// Adam's learning rate.
    pub const LEARNING_RATE: f64 = 1e-3;
    /// The learning rate is divided by this factor …
    pub const LR_DECAY: f64 = 4.0;
    /// … every this many iterations (intended schedule).
    pub const LR_DECAY_EVERY: usize = 10_000;
    /// The released code's decay interval (a defect: the lr is ≈ 0 after 100 iterations).
    pub const LR_DECAY_EVERY_RELEASED: usize = 10;
    /// L2 weight decay of the optimiser.
    pub const WEIGHT_DECAY: f64 = 1e-5;
    /// Training iterations.
    pub const ITERATIONS: usize = 60_000;
    /// Batch size.
    pub const BATCH: usize = 1;
}

impl Uhved {
    /// A freshly initialised network (He initialisation, norms at identity) on `device`.
    /// Panics only on an invalid configuration: call [`Uhved::validate`] first for user
    /// input.
    pub fn new(config: &ModelConfig, device: &Device) -> Uhved {
        if let Err(e) = Self::validate(config) {
            panic!("invalid U-HVED configuration: {e:#}");
        }
        let k = config.out_channels();
        Uhved {
            encoders: PerModality::new(|_| Encoder::new(config, device)),
            reconstructions: PerModality::new(|_| Decoder::new(1, config, device)),
            segmentation: Decoder::new(k, config, device),
            config: config.clone(),
        }
    }

    /// Checks that `config` describes a buildable U-HVED: valid as a [`ModelConfig`], even
    /// channel counts at every scale (mean and log-variance halves), a non-negative clip.
    pub fn validate(config: &ModelConfig) -> Result<()> {
        config.validate()?;
        if config.features().iter().any(|f| f % 2 != 0) {
            bail!(
                "U-HVED splits every scale's channels into mean and log-variance halves: \
                 base_features must be even, got {}",
                config.base_features
            );
        }
        if config.logvar_clip.is_nan() || config.logvar_clip < 0.0 {
            bail!(
                "logvar_clip must be non-negative, got {}",
                config.logvar_clip
            );
        }
        Ok(())
    }

    /// Checks one image or a set of same-grid tensors: `[B, channels, D, H, W]`, sizes
    /// multiples of `2^poolings`.
    fn check_image(&self, m: Modality, x: &Tensor<5>) -> Result<()> {
        let d = x.dims();
        if d[1] != 1 {
            bail!("{m}: expected an image [B, 1, D, H, W], got a tensor of shape {d:?}");
        }
        self.config.check_size([d[4], d[3], d[2]])
    }

    /// The latent Gaussians of modality `m` from its image `[B, 1, D, H, W]`, full
    /// resolution first (see [`Encoder::forward`]).
    pub fn latents(&self, m: Modality, x: Tensor<5>) -> Result<Vec<Gaussian>> {
        self.check_image(m, &x)?;
        Ok(self.encoders.get(m).forward(x))
    }

    /// Per scale, the product with the prior of the given modalities' latents.
    fn fuse(&self, latents: &[(Modality, Vec<Gaussian>)]) -> Result<Vec<Gaussian>> {
        distinct_modalities(latents.iter().map(|(m, _)| *m), "U-HVED")?;
        let scales = self.config.poolings + 1;
        if let Some((m, l)) = latents.iter().find(|(_, l)| l.len() != scales) {
            bail!("{m}: expected latents at {scales} scales, got {}", l.len());
        }
        let dims0 = latents[0].1[0].mu.dims();
        if let Some((m, l)) = latents.iter().find(|(_, l)| l[0].mu.dims() != dims0) {
            bail!(
                "{m}: latent shape {:?} differs from {}'s {dims0:?}; all modalities must share one grid",
                l[0].mu.dims(),
                latents[0].0
            );
        }
        let experts: Vec<Vec<Expert>> = latents
            .iter()
            .map(|(_, l)| l.iter().map(Gaussian::expert).collect())
            .collect();
        Ok((0..scales)
            .map(|s| product_with_prior(experts.iter().map(|e| &e[s])))
            .collect())
    }
}

/// U-HVED behind the method seam. The encoding of a modality is its latents, mean and
/// log-variance per scale, full resolution first: `[μ_0, lv_0, μ_1, lv_1, …]`, scale `s`
/// `[B, f(s)/2, D/2^s, H/2^s, W/2^s]`; they do not depend on the other modalities.
impl Network for Uhved {
    const ARCH: Arch = Arch::Uhved;

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
        Ok(self
            .latents(m, x)?
            .into_iter()
            .flat_map(|g| [g.mu, g.logvar])
            .collect())
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        let latents = encodings
            .iter()
            .map(|(m, e)| {
                if e.len() % 2 != 0 {
                    bail!(
                        "a U-HVED encoding is mean/log-variance pairs, got {} tensors",
                        e.len()
                    );
                }
                let pairs = e
                    .chunks(2)
                    .map(|p| Gaussian {
                        mu: p[0].clone(),
                        logvar: p[1].clone(),
                    })
                    .collect();
                Ok((*m, pairs))
            })
            .collect::<Result<Vec<_>>>()?;
        let means: Vec<Tensor<5>> = self.fuse(&latents)?.into_iter().map(|g| g.mu).collect();
        Ok(FusedOutput {
            logits: self.segmentation.forward(&means),
            attention: None,
        })
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        Uhved::new(config, device)
    }

    /// The network configuration of `preset`: the native size (base 8, 3 poolings, four
    /// classes, 112³ patches) for `paper` and `authors`; the same network on 32³ patches
    /// for `small` (it is small already, and trains on the phantoms on a 2-core CPU).
    fn preset(preset: Preset) -> ModelConfig {
        let native = ModelConfig::new()
            .with_arch(Arch::Uhved)
            .with_poolings(3)
            .with_base_features(8)
            .with_max_features(64)
            .with_leaky_slope(0.01)
            .with_deep_supervision(false)
            .with_targets(Targets::Classes);
        match preset {
            Preset::Paper | Preset::Authors => native.with_patch_size([112, 112, 112]),
            Preset::Small => native.with_patch_size([32, 32, 32]),
        }
    }

    /// U-HVED reconstructs every modality the batch has, the missing ones of the drawn
    /// subset included, so training needs all of them.
    fn trains_on_all_modalities(_config: &ModelConfig) -> bool {
        true
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        summary::describe(config)
    }
}
