//! A2FSeg as the authors released it (`--arch a2fseg-released`): the network of their public
//! code, which differs from the paper's (our [`A2fseg`](super::A2fseg)).
//!
//! - Four MSFEs as in the paper (one nnU-Net U-Net per modality with deep-supervision heads);
//!   each also hands on its bottleneck and every decoder level's output
//!   ([`Msfe::pyramid`]).
//! - "Average fusion" is a whole second U-Net decoder, the fusion decoder: its input is the
//!   modality-mean of the available bottlenecks and its skip at level `l` the modality-mean
//!   of the MSFE decoder outputs at level `l`; it has its own deep-supervision heads. Its
//!   last output is F_fd `[B, C, D, H, W]`.
//! - Attention per modality: Conv3³(2C → C) → InstanceNorm → LeakyReLU → Conv3³(C → C) →
//!   LeakyReLU on `[F_m; F_fd]` (C maps, not 1; LeakyReLU, not sigmoid), a softmax over the
//!   available modalities per voxel and channel, F̂ = Σ_m Ŵ_m ⊙ F_m.
//! - Head: Conv3³ on `[F̂; F_fd]` (2C → C) → InstanceNorm → LeakyReLU, then a 1×1×1
//!   convolution without bias (C → K).
//! - Loss ([`loss`](mod@loss)): the final output weighted by w₀ of the deep-supervision
//!   vector, plus the deep-supervision loss of every branch that ran (each MSFE and the
//!   fusion decoder).
//!
//! Initialisation is nnU-Net's He normal everywhere; the released code leaves its attention
//! modules and head at PyTorch's default (uniform) initialisation, the only difference from
//! its network.
//!
//! A missing modality is not an input: its MSFE and attention module do not run, and it is
//! in no mean and no softmax.
//!
//! The `post` variant (`released_variant: post`, the released `_post` file) has no fusion
//! decoder: the attention reads `[F_m; F̄]` and ends in a sigmoid instead of the LeakyReLU,
//! and the head reads `[F̂; F̄]`, with F̄ the mean of the available MSFE features; its
//! encoding of a modality is F_m alone.
//!
//! Configuration fields read: `poolings`, `base_features`, `max_features`,
//! `convs_per_stage`, `leaky_slope`, `norm_epsilon`, `deep_supervision`, `targets`,
//! `dice_smooth`, `patch_size`, `released_variant`; `fusion`, `attention_channels` and `attention_kernel`
//! belong to [`A2fseg`](super::A2fseg) and are ignored.
//!
//! # Tensor names
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `msfe.{m}.…` | | the MSFEs, named as in [`weights`](super::weights) |
//! | `fusion_decoder.decoder.{l}.up.weight` | `[f(l+1), f(l), 2, 2, 2]` | transposed conv producing level `l` (no bias) |
//! | `fusion_decoder.decoder.{l}.convs.{i}.conv.weight` / `.bias`, `.norm.gamma` / `.beta` | | its blocks; block 0 reads `[upsampled; mean of level l]` (`2·f(l)` channels) |
//! | `fusion_decoder.heads.{l}.weight` | `[K, f(l), 1, 1, 1]` | its deep-supervision head on level `l` (no bias); no `fusion_decoder` in `post` |
//! | `attention.{m}.block.conv.weight` / `.bias` | `[C, 2C, 3, 3, 3]`, `[C]` | first attention conv, input `[F_m; F_fd]` |
//! | `attention.{m}.block.norm.gamma` / `.beta` | `[C]` | its instance norm |
//! | `attention.{m}.conv.weight` / `.bias` | `[C, C, 3, 3, 3]`, `[C]` | second attention conv |
//! | `head.block.conv.weight` / `.bias` | `[C, 2C, 3, 3, 3]`, `[C]` | head conv, input `[F̂; F_fd]` |
//! | `head.block.norm.gamma` / `.beta` | `[C]` | its instance norm |
//! | `head.output.weight` | `[K, C, 1, 1, 1]` | final 1×1×1 conv (no bias) |
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; `f(l)` the channels of level `l`; C =
//! `base_features`; K = 3 regions (or 4 classes).
//!
//! # Training recipe of the released code
//!
//! SGD with Nesterov momentum 0.99, lr 0.01 with poly decay (exponent 0.9), weight decay
//! 3e-5, 800 epochs × 250 iterations, batch 1 (as the released trainer runs), gradient-norm
//! clipping at 12, 128³ patches with nnU-Net augmentation; odd epochs train on all four
//! modalities, even epochs on a subset whose size is drawn from {1, 2, 3}; 8-way mirroring at
//! test time.

pub mod loss;
mod parts;
pub(crate) mod summary;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use parts::{Attentions, ConcatHead, FusionDecoder, ModalityAttention};
pub use summary::{ReleasedParameters, describe};

use super::arch::{Encoding, Network, StepLoss, TrainInputs};
use super::config::{Arch, ModelConfig, Preset, ReleasedVariant};
use super::fusion;
use super::msfe::Msfe;
use super::network::{A2fseg, FusedOutput, Msfes};
use super::summary::ModelSummary;
use crate::modality::{Modality, Subset};

/// The network of the released code. Build it with [`A2fsegReleased::new`].
#[derive(Module, Debug)]
pub struct A2fsegReleased {
    /// The modality-specific feature extractors.
    pub msfe: Msfes,
    /// The second decoder on the modality means (absent in the `post` variant).
    pub fusion_decoder: Option<FusionDecoder>,
    /// One attention module per modality.
    pub attention: Attentions,
    /// The concatenating head.
    pub head: ConcatHead,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// Everything one training forward pass produces for the loss; logits, not probabilities.
#[derive(Debug, Clone)]
pub struct ReleasedOutput {
    /// For each available modality (canonical order): its MSFE's head logits, full
    /// resolution first (`[B, K, D/2^l, H/2^l, W/2^l]`).
    pub per_modality: Vec<(Modality, Vec<Tensor<5>>)>,
    /// The fusion decoder's head logits, full resolution first (none in `post`).
    pub fusion_decoder: Vec<Tensor<5>>,
    /// The final logits `[B, K, D, H, W]` of the concatenating head.
    pub logits: Tensor<5>,
    /// The attention maps Ŵ_m `[B, C, D, H, W]` of the available modalities.
    pub attention: Vec<(Modality, Tensor<5>)>,
}

/// What the fusion part computes from the pyramids of the available modalities.
struct Fused {
    /// The fusion decoder's outputs, full resolution first (none in `post`).
    levels: Vec<Tensor<5>>,
    /// Final logits `[B, K, D, H, W]`.
    logits: Tensor<5>,
    /// Ŵ_m `[B, C, D, H, W]`.
    attention: Vec<(Modality, Tensor<5>)>,
}

impl A2fsegReleased {
    /// A freshly initialised network (He initialisation) on `device`. Panics only on an
    /// invalid configuration: call [`ModelConfig::validate`] first for user input.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        if let Err(e) = config.validate() {
            panic!("invalid model configuration: {e:#}");
        }
        A2fsegReleased {
            msfe: Msfes {
                t1: Msfe::new(config, device),
                t1c: Msfe::new(config, device),
                t2: Msfe::new(config, device),
                flair: Msfe::new(config, device),
            },
            fusion_decoder: (config.released_variant == ReleasedVariant::Channel)
                .then(|| FusionDecoder::new(config, device)),
            attention: Attentions::new(config, device),
            head: ConcatHead::new(config, device),
            config: config.clone(),
        }
    }

    /// Checks images `[B, 1, D, H, W]`: non-empty, no modality twice, one shape, sizes
    /// multiples of `2^poolings`.
    fn check_images(&self, inputs: &[(Modality, Tensor<5>)]) -> Result<()> {
        let Some((first, x0)) = inputs.first() else {
            bail!("no modality given: A2FSeg needs at least one of T1, T1c, T2, FLAIR");
        };
        let dims0 = x0.dims();
        let mut seen = Subset::EMPTY;
        for (m, x) in inputs {
            ensure!(!seen.contains(*m), "modality {m} given twice");
            seen = seen.with(*m);
            let d = x.dims();
            ensure!(
                d[1] == 1,
                "{m}: expected an image [B, 1, D, H, W], got shape {d:?}"
            );
            ensure!(
                d == dims0,
                "{m}: shape {d:?} differs from {first}'s {dims0:?}; all modalities must share one grid"
            );
        }
        self.config.check_size([dims0[4], dims0[3], dims0[2]])
    }

    /// Tensors per encoding: `poolings + 1` (decoder levels and bottleneck), or 1 (F_m) in
    /// `post`.
    fn encoding_len(&self) -> usize {
        match self.fusion_decoder {
            Some(_) => self.config.poolings + 1,
            None => 1,
        }
    }

    /// Checks encodings from [`A2fsegReleased::pyramid`]: non-empty, no modality twice,
    /// [`A2fsegReleased::encoding_len`] tensors each with the channels of their level and
    /// one shape per level.
    fn check_pyramids(&self, pyramids: &[(Modality, Encoding)]) -> Result<()> {
        let Some((first, p0)) = pyramids.first() else {
            bail!("no modality given: A2FSeg needs at least one of T1, T1c, T2, FLAIR");
        };
        let f = self.config.features();
        let len = self.encoding_len();
        let mut seen = Subset::EMPTY;
        for (m, p) in pyramids {
            ensure!(!seen.contains(*m), "modality {m} given twice");
            seen = seen.with(*m);
            ensure!(
                p.len() == len,
                "{m}: an a2fseg-released ({}) encoding is {len} tensor(s), got {}",
                self.config.released_variant,
                p.len()
            );
            for (l, (t, t0)) in p.iter().zip(p0).enumerate() {
                let (d, d0) = (t.dims(), t0.dims());
                ensure!(
                    d[1] == f[l] && d == d0,
                    "{m}: level {l} has shape {d:?}; expected {} channels and {first}'s {d0:?}",
                    f[l]
                );
            }
        }
        Ok(())
    }

    /// Full forward pass for training: the MSFE of each given modality (and only those), the
    /// fusion decoder, the attention and the head, with every head's logits.
    ///
    /// `inputs`: the available modalities with images `[B, 1, D, H, W]` (D, H, W multiples
    /// of `2^poolings`).
    pub fn forward(&self, inputs: &[(Modality, Tensor<5>)]) -> Result<ReleasedOutput> {
        self.check_images(inputs)?;
        let mut inputs = inputs.to_vec();
        inputs.sort_by_key(|(m, _)| *m);
        let mut pyramids = Vec::with_capacity(inputs.len());
        let mut per_modality = Vec::with_capacity(inputs.len());
        for (m, x) in inputs {
            let (pyramid, logits) = self.msfe.get(m).forward_pyramid(x);
            pyramids.push((m, pyramid));
            per_modality.push((m, logits));
        }
        let fused = self.fuse_parts(&pyramids);
        Ok(ReleasedOutput {
            per_modality,
            fusion_decoder: self
                .fusion_decoder
                .as_ref()
                .map_or_else(Vec::new, |fd| fd.head_logits(&fused.levels)),
            logits: fused.logits,
            attention: fused.attention,
        })
    }

    /// The encoding of modality `m` from its image `[B, 1, D, H, W]`: its MSFE's
    /// [`Msfe::pyramid`] (decoder levels full resolution first, then the bottleneck), or its
    /// feature F_m alone in `post`; it does not depend on the other modalities.
    pub fn pyramid(&self, m: Modality, x: Tensor<5>) -> Result<Vec<Tensor<5>>> {
        self.check_images(&[(m, x.clone())])?;
        let msfe = self.msfe.get(m);
        Ok(match self.fusion_decoder {
            Some(_) => msfe.pyramid(x),
            None => vec![msfe.features(x)],
        })
    }

    /// The final logits and attention maps from the pyramids of the available modalities
    /// (from [`A2fsegReleased::pyramid`]).
    pub fn fuse(&self, pyramids: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        self.check_pyramids(pyramids)?;
        let mut pyramids = pyramids.to_vec();
        pyramids.sort_by_key(|(m, _)| *m);
        let fused = self.fuse_parts(&pyramids);
        Ok(FusedOutput {
            logits: fused.logits,
            attention: Some(fused.attention),
        })
    }

    /// Fusion decoder, attention and head on checked pyramids in canonical order.
    fn fuse_parts(&self, pyramids: &[(Modality, Vec<Tensor<5>>)]) -> Fused {
        let level = |l: usize| -> Vec<(Modality, Tensor<5>)> {
            pyramids.iter().map(|(m, p)| (*m, p[l].clone())).collect()
        };
        let (levels, reference) = match &self.fusion_decoder {
            Some(decoder) => {
                let means: Vec<Tensor<5>> = (0..=self.config.poolings)
                    .map(|l| fusion::average(&level(l)))
                    .collect();
                let levels = decoder.forward(&means);
                let fd = levels[0].clone();
                (levels, fd)
            }
            None => (Vec::new(), fusion::average(&level(0))),
        };
        let (attended, attention) = self.attention.fuse(&level(0), &reference);
        let logits = self.head.forward(attended, reference);
        Fused {
            levels,
            logits,
            attention,
        }
    }
}

/// The released network behind the method seam: the encoding of a modality is its MSFE's
/// pyramid (`poolings` decoder levels, full resolution first, then the bottleneck; F_m alone
/// in `post`).
impl Network for A2fsegReleased {
    const ARCH: Arch = Arch::A2fsegReleased;

    /// The attention of the fusion decoder (`C` maps per modality).
    fn has_attention(_config: &ModelConfig) -> bool {
        true
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn loss_terms(&self) -> &'static [&'static str] {
        &loss::TERMS
    }

    fn training_loss(&self, step: TrainInputs) -> Result<StepLoss> {
        let out = self.forward(&step.subset_images())?;
        Ok(loss::loss(&self.config, &out, step.classes))
    }

    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding> {
        self.pyramid(m, x)
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        self.fuse(encodings)
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        A2fsegReleased::new(config, device)
    }

    /// The MSFEs of A2FSeg's presets (the released code's are the paper's nnU-Net):
    /// `paper` and `authors` the native size (features 32-64-128-256-320-320, 5 poolings,
    /// 128³ patches), `small` features 8-16-32-64, 3 poolings, 32³ patches.
    fn preset(preset: Preset) -> ModelConfig {
        <A2fseg as Network>::preset(preset).with_arch(Arch::A2fsegReleased)
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        describe(config)
    }
}

#[cfg(test)]
mod tests;
