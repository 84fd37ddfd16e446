//! mmFormer (Zhang et al., MICCAI 2022), multimodal medical transformer for incomplete
//! multimodal segmentation, as its official PyTorch code computes it.
//!
//! - Four conv encoders ([`Encoder`], one per modality, not shared): levels `l = 0..=L`
//!   (`L = poolings`) of `f(l) = base_features · 2^l` channels, pre-norm blocks InstanceNorm
//!   → LeakyReLU → Conv with reflect padding, `x = c1(x); x = x + c3(c2(x))` per level;
//!   level 0's `c1` convolves the image directly (no norm or activation before it).
//! - Intra-modal transformer per modality at the bottleneck ([`transformer`]): 1×1 conv
//!   `f(L) → E` (a *tokenizer*), the `N` bottleneck voxels as tokens, a learned positional
//!   embedding `[1, N, E]` (initialised to 0) added before every layer.
//!   `N = Π patch_size / 2^L` is a function of the configured patch size (8³ = 512 at 128³
//!   with 4 poolings, as the official code fixes it), so the network runs on windows of its
//!   patch size only.
//! - Missing modalities: their encoder features (every level) and their intra-modal tokens
//!   are zeroed by the `[B, 4]` availability mask; the four modalities are concatenated on
//!   channels in canonical order (T1, T1c, T2, FLAIR).
//! - Inter-modal transformer over the `4N` tokens of all modalities (missing ones zero,
//!   plus their positional embeddings; no attention mask), then back to a volume by
//!   [`TokenLayout`] (`intended`: voxel `n` holds the four modalities' tokens `n`; the
//!   official `released` `.view`) and a 1×1 conv `4E → 4·f(L)` (the *detokenizer*).
//! - The fused decoder ([`FusedDecoder`]): a masked-concatenation fusion per level,
//!   deep-supervision softmax heads at levels `1..=L`; the auxiliary decoder ([`Decoder`],
//!   one set of weights for all modalities) on each modality's unmasked encoder features,
//!   in training only.
//! - The loss ([`loss`](mod@loss)): RFNet's weighted CE + soft Dice on the fused output,
//!   on each modality's auxiliary output, and on each deep-supervision output upsampled
//!   (aligned corners) to full size; 4-class softmax targets only.
//!
//! Shared in inference ([`Network::encode`]): a modality's encoder levels `0..L−1` and its
//! intra-modal transformer's output depend on that modality alone; the masking, the
//! inter-modal transformer and the decoder run per subset in [`Network::decode`].
//!
//! At the native size (base 8, 4 poolings, E 512, 8 heads, MLP 4096, depth 1, 128³) it has
//! 36,391,760 parameters: the official model's 36,654,416 less its four 1×1 convolutions
//! `E → f(L)` that its forward never uses (4 × 65,664 = 262,656). At inference 35,798,404
//! (without the auxiliary decoder's 593,356).
//! `convs_per_stage`, `deep_supervision`, `fusion`, `dice_smooth` and the `attention_*`,
//! U-HVED and released-A2FSeg settings of [`ModelConfig`] do not apply to mmFormer.
//!
//! # Tensor names (`model.safetensors`)
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; a pre-norm convolution `P` has `P.conv.conv.weight`
//! `[out, in, k, k, k]` and `P.conv.conv.bias` `[out]` (its norm has no parameters).
//!
//! | name | what |
//! |------|------|
//! | `encoders.{m}.levels.{l}.first` | `c1`: 1 → f(0) (l = 0, no norm) or f(l−1) → f(l), stride 2 (3³) |
//! | `encoders.{m}.levels.{l}.residual.{0,1}` | `c2`, `c3`: f(l) → f(l) (3³) |
//! | `tokenizers.{m}.weight` / `.bias` | `[E, f(L), 1, 1, 1]` / `[E]` |
//! | `positions.{m}` | `[1, N, E]`, tokens in (D, H, W) row-major order |
//! | `intra.{m}.layers.{j}.…`, `inter.layers.{j}.…` | a transformer layer ([`TransformerLayer`]) |
//! | `detokenizer.weight` / `.bias` | `[4·f(L), 4E, 1, 1, 1]` / `[4·f(L)]` |
//! | `decoder.fusions.{l}.reduce` | 4·f(l) → f(l) (1³), `l = 0..=L` |
//! | `decoder.fusions.{l}.conv.weight` / `.bias` | f(l) → f(l), 3³ with zero padding, after a norm and LeakyReLU |
//! | `decoder.fusions.{l}.expand` | f(l) → f(l) (1³) |
//! | `{d}.levels.{l}.up` / `.merge` / `.out` | f(l+1) → f(l) (3³) / 2·f(l) → f(l) (3³) / f(l) → f(l) (1³), `l < L` |
//! | `decoder.heads.{l−1}.weight` / `.bias` | deep-supervision head of level `l = 1..=L`, `[K, f(l), 1, 1, 1]` |
//! | `{d}.output.weight` / `.bias` | `[K, f(0), 1, 1, 1]` |
//!
//! `{d}` is `decoder` (fused: merge input `[fusion_l; up]`) or `auxiliary` (merge input
//! `[up; encoder level l]`).

pub mod layers;
pub mod loss;
pub mod settings;
pub mod summary;
#[cfg(test)]
mod tests;
pub mod transformer;

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::nn::conv::Conv3d;
use burn::tensor::{Device, Tensor};

use super::arch::{Encoding, Network, StepLoss, TrainInputs};
use super::config::{Arch, ModelConfig, Preset, Targets};
use super::network::FusedOutput;
use super::per_modality::PerModality;
use super::summary::ModelSummary;
use crate::kernels::conv3d_module;
use crate::modality::{Modality, Subset};
pub use layers::{Decoder, Encoder, FusedDecoder, FusedDecoding, FusionBlock, PreNormConv};
pub use settings::{MmformerConfig, TokenLayout};
pub use transformer::{Dropout, Transformer, TransformerLayer};

/// The whole mmFormer network. Build it with [`Network::init`].
#[derive(Module, Debug)]
pub struct Mmformer {
    /// The modality encoders.
    pub encoders: PerModality<Encoder>,
    /// The 1×1 convolutions `f(L) → E` that make each modality's bottleneck into tokens.
    pub tokenizers: PerModality<Conv3d>,
    /// The learned positional embeddings `[1, N, E]`.
    pub positions: PerModality<Param<Tensor<3>>>,
    /// The intra-modal transformers.
    pub intra: PerModality<Transformer>,
    /// The inter-modal transformer over all modalities' tokens.
    pub inter: Transformer,
    /// The 1×1 convolution `4E → 4·f(L)` after the inter-modal transformer.
    pub detokenizer: Conv3d,
    /// The fused decoder.
    pub decoder: FusedDecoder,
    /// The auxiliary decoder (training only), shared by the modalities.
    pub auxiliary: Decoder,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// The training recipe of the official code, for the trainer's defaults: Adam with AMSGrad,
/// lr 2e-4 with poly(0.9) decay, L2 weight decay 1e-4, 1000 epochs of 150 iterations, batch 1
/// (the training script's default; the released job script passes 4), 128³ crops; per
/// sample a subset drawn uniformly from the 15.
pub mod recipe {
    /// Adam's learning rate.
    pub const LEARNING_RATE: f64 = 2e-4;
    /// L2 weight decay of the optimiser.
    pub const WEIGHT_DECAY: f64 = 1e-4;
    /// Epochs.
    pub const EPOCHS: usize = 1000;
    /// Iterations per epoch.
    pub const ITERATIONS_PER_EPOCH: usize = 150;
    /// Batch size.
    pub const BATCH: usize = 1;
}

/// What the training forward pass produces.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// The fused decoder's logits and deep-supervision probabilities.
    pub fused: FusedDecoding,
    /// The auxiliary decoder's logits `[B, K, D, H, W]` per modality of the batch.
    pub auxiliary: Vec<(Modality, Tensor<5>)>,
}

impl Mmformer {
    /// A freshly initialised network (He-normal convolutions with zero bias, Burn's default
    /// linear layers, zero positional embeddings) on `device`. Panics only on an invalid
    /// configuration: call [`Mmformer::validate`] first for user input.
    pub fn new(config: &ModelConfig, device: &Device) -> Mmformer {
        if let Err(e) = Self::validate(config) {
            panic!("invalid mmFormer configuration: {e:#}");
        }
        let t = &config.mmformer;
        let top = config.features()[config.poolings];
        let n = Self::tokens(config);
        Mmformer {
            encoders: PerModality::new(|_| Encoder::new(config, device)),
            tokenizers: PerModality::new(|_| layers::plain_conv(top, t.embedding, 1, device)),
            positions: PerModality::new(|_| {
                Param::from_tensor(Tensor::zeros([1, n, t.embedding], device))
            }),
            intra: PerModality::new(|_| Transformer::new(t, device)),
            inter: Transformer::new(t, device),
            detokenizer: layers::plain_conv(4 * t.embedding, 4 * top, 1, device),
            decoder: FusedDecoder::new(config, device),
            auxiliary: Decoder::new(config, device),
            config: config.clone(),
        }
    }

    /// N, the tokens per modality: the voxels of the bottleneck at the patch size,
    /// `Π patch_size / 2^poolings`.
    pub fn tokens(config: &ModelConfig) -> usize {
        Self::bottleneck(config).iter().product()
    }

    /// The bottleneck's size `[x, y, z]` at the patch size.
    pub fn bottleneck(config: &ModelConfig) -> [usize; 3] {
        config.patch_size.map(|s| s >> config.poolings)
    }

    /// Checks that `config` describes a buildable mmFormer: valid as a [`ModelConfig`],
    /// `classes` targets, valid transformer settings, a bottleneck of at least 2 voxels per
    /// axis (reflect padding needs a voxel beyond the border).
    pub fn validate(config: &ModelConfig) -> Result<()> {
        config.validate()?;
        Self::check(config)
    }

    /// The checks of [`Mmformer::validate`] beyond [`ModelConfig::validate`] (which runs them
    /// for an `mmformer` configuration, so that training and loading refuse a bad one).
    pub fn check(config: &ModelConfig) -> Result<()> {
        config.mmformer.validate()?;
        if config.targets != Targets::Classes {
            bail!("mmFormer predicts the 4 classes with a softmax: targets must be 'classes'");
        }
        if Self::bottleneck(config).iter().any(|&s| s < 2) {
            bail!(
                "mmFormer's bottleneck (patch_size / 2^poolings) must be at least 2 voxels per \
                 axis for its reflect padding, got {:?} from patch {:?} and {} poolings",
                Self::bottleneck(config),
                config.patch_size,
                config.poolings
            );
        }
        Ok(())
    }

    /// Checks an image `[B, 1, D, H, W]` of the patch size.
    fn check_image(&self, m: Modality, x: &Tensor<5>) -> Result<()> {
        let d = x.dims();
        if d[1] != 1 {
            bail!("{m}: expected an image [B, 1, D, H, W], got a tensor of shape {d:?}");
        }
        let p = self.config.patch_size;
        if [d[4], d[3], d[2]] != p {
            bail!(
                "{m}: mmFormer runs on windows of its patch size [{}, {}, {}] (x, y, z) only \
                 (its positional embeddings have one row per bottleneck voxel), got [{}, {}, {}]",
                p[0],
                p[1],
                p[2],
                d[4],
                d[3],
                d[2]
            );
        }
        Ok(())
    }

    /// Modality `m`'s encoder levels `0..=L` and its intra-modal transformer's output
    /// `[B, E, d, h, w]` from its image `[B, 1, D, H, W]`.
    pub fn modality_features(
        &self,
        m: Modality,
        x: Tensor<5>,
        drop: Option<&Dropout>,
    ) -> Result<(Vec<Tensor<5>>, Tensor<5>)> {
        self.check_image(m, &x)?;
        let levels = self.encoders.get(m).forward(x);
        let top = levels[self.config.poolings].clone();
        let t = conv3d_module(self.tokenizers.get(m), top);
        let [b, e, d, h, w] = t.dims();
        let tokens = t.reshape([b, e, d * h * w]).swap_dims(1, 2);
        let out = self
            .intra
            .get(m)
            .forward(tokens, self.positions.get(m).val(), drop);
        let intra = out.swap_dims(1, 2).reshape([b, e, d, h, w]);
        Ok((levels, intra))
    }

    /// The fused decoder's outputs from, per modality in canonical order, its encoder levels
    /// `0..L−1` followed by its intra-modal output (`None`: a modality the batch lacks, read
    /// as zeros), and the availability `mask` `[B, 4]` (1 available, 0 missing), which zeroes
    /// the missing modalities' features at every level and their tokens.
    pub fn fuse(
        &self,
        features: &[Option<Vec<Tensor<5>>>; 4],
        mask: Tensor<2>,
        drop: Option<&Dropout>,
    ) -> Result<FusedDecoding> {
        let levels = self.config.poolings + 1;
        let Some(first) = features.iter().flatten().next() else {
            bail!("no modality given: mmFormer needs at least one of T1, T1c, T2, FLAIR");
        };
        if let Some(f) = features.iter().flatten().find(|f| f.len() != levels) {
            bail!(
                "an mmFormer encoding is {levels} tensors (encoder levels and the intra-modal \
                 output), got {}",
                f.len()
            );
        }
        let b = first[0].dims()[0];
        let masked = |l: usize| -> Result<Vec<Tensor<5>>> {
            let like = &first[l];
            features
                .iter()
                .enumerate()
                .map(|(k, f)| match f {
                    Some(f) => {
                        if f[l].dims() != like.dims() {
                            bail!(
                                "{}: feature shape {:?} differs from {:?}; all modalities must \
                                 share one grid",
                                Modality::ALL[k],
                                f[l].dims(),
                                like.dims()
                            );
                        }
                        let mk = mask.clone().narrow(1, k, 1).reshape([b, 1, 1, 1, 1]);
                        Ok(f[l].clone() * mk)
                    }
                    None => Ok(Tensor::zeros(like.dims(), &like.device())),
                })
                .collect()
        };
        let mut concat = Vec::with_capacity(levels);
        for l in 0..levels - 1 {
            concat.push(Tensor::cat(masked(l)?, 1));
        }
        concat.push(self.inter_modal(masked(levels - 1)?, drop));
        Ok(self.decoder.forward(&concat))
    }

    /// The inter-modal transformer on the masked intra-modal outputs (four `[B, E, d, h, w]`,
    /// canonical order) → the bottleneck `[B, 4·f(L), d, h, w]`.
    fn inter_modal(&self, intra: Vec<Tensor<5>>, drop: Option<&Dropout>) -> Tensor<5> {
        let [b, e, d, h, w] = intra[0].dims();
        let n = d * h * w;
        let tokens = Tensor::cat(
            intra
                .into_iter()
                .map(|x| x.reshape([b, e, n]).swap_dims(1, 2))
                .collect(),
            1,
        );
        let pos = Tensor::cat(
            Modality::ALL
                .iter()
                .map(|&m| self.positions.get(m).val())
                .collect(),
            1,
        );
        let out = self.inter.forward(tokens, pos, drop);
        let per_voxel = match self.config.mmformer.token_layout {
            TokenLayout::Intended => {
                out.reshape([b, 4, n, e])
                    .swap_dims(1, 2)
                    .reshape([b, n, 4 * e])
            }
            TokenLayout::Released => out.reshape([b, n, 4 * e]),
        };
        let volume = per_voxel.swap_dims(1, 2).reshape([b, 4 * e, d, h, w]);
        conv3d_module(&self.detokenizer, volume)
    }

    /// The training forward pass: every modality of `images` (`[B, 1, D, H, W]`, canonical
    /// order, all the batch has) is encoded, masked per sample by `mask` `[B, 4]` for the
    /// fusion, and decoded by the auxiliary decoder unmasked (as the official code does).
    pub fn forward_train(
        &self,
        images: &[(Modality, Tensor<5>)],
        mask: Tensor<2>,
        drop: Option<&Dropout>,
    ) -> Result<TrainOutput> {
        let mut features: [Option<Vec<Tensor<5>>>; 4] = Default::default();
        let mut auxiliary = Vec::with_capacity(images.len());
        for (m, x) in images {
            let k = m.index();
            if features[k].is_some() {
                bail!("modality {m} given twice");
            }
            let (mut levels, intra) = self.modality_features(*m, x.clone(), drop)?;
            auxiliary.push((*m, self.auxiliary.forward(&levels)));
            levels[self.config.poolings] = intra;
            features[k] = Some(levels);
        }
        Ok(TrainOutput {
            fused: self.fuse(&features, mask, drop)?,
            auxiliary,
        })
    }
}

/// The availability mask `[b, 4]` of `subset`, the same for every sample.
fn subset_mask(subset: Subset, b: usize, device: &Device) -> Tensor<2> {
    let row = Modality::ALL.map(|m| if subset.contains(m) { 1.0f32 } else { 0.0 });
    Tensor::<2>::from_data(burn::tensor::TensorData::new(row.to_vec(), [1, 4]), device)
        .expand([b, 4])
}

/// mmFormer behind the method seam. The encoding of a modality is its encoder levels
/// `0..L−1` (`[B, f(l), D/2^l, …]`) followed by its intra-modal transformer's output
/// `[B, E, D/2^L, H/2^L, W/2^L]`: none depends on the other modalities.
impl Network for Mmformer {
    const ARCH: Arch = Arch::Mmformer;

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
        let (mut levels, intra) = self.modality_features(m, x, None)?;
        levels[self.config.poolings] = intra;
        Ok(levels)
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        let mut features: [Option<Vec<Tensor<5>>>; 4] = Default::default();
        let mut subset = Subset::EMPTY;
        for (m, e) in encodings {
            if subset.contains(*m) {
                bail!("modality {m} given twice");
            }
            subset = subset.with(*m);
            features[m.index()] = Some(e.clone());
        }
        let Some((_, first)) = encodings.first() else {
            bail!("no modality given: mmFormer needs at least one of T1, T1c, T2, FLAIR");
        };
        let Some(x0) = first.first() else {
            bail!("an empty mmFormer encoding");
        };
        let mask = subset_mask(subset, x0.dims()[0], &x0.device());
        Ok(FusedOutput {
            logits: self.fuse(&features, mask, None)?.logits,
            attention: None,
        })
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        Mmformer::new(config, device)
    }

    /// The network configuration of `preset`: the native size (base 8, 4 poolings, E 512,
    /// 8 heads, MLP 4096, 128³ patches, LeakyReLU 0.2, four classes) for `paper` and
    /// `authors`; for `small` one level less (3 poolings, features 8-16-32-64) on 32³
    /// patches (a 4³ bottleneck, 64 tokens per modality; 16³ windows still leave the 2³ that
    /// reflect padding needs) and a narrower transformer (E 128, MLP 512).
    fn preset(preset: Preset) -> ModelConfig {
        let native = ModelConfig::new()
            .with_arch(Arch::Mmformer)
            .with_poolings(4)
            .with_base_features(8)
            .with_max_features(128)
            .with_leaky_slope(0.2)
            .with_deep_supervision(true)
            .with_targets(Targets::Classes);
        match preset {
            Preset::Paper | Preset::Authors => native.with_patch_size([128, 128, 128]),
            Preset::Small => native
                .with_poolings(3)
                .with_max_features(64)
                .with_patch_size([32, 32, 32])
                .with_mmformer(MmformerConfig::new().with_embedding(128).with_mlp(512)),
        }
    }

    /// The auxiliary decoder runs on every modality the batch has, the masked ones included.
    fn trains_on_all_modalities(_config: &ModelConfig) -> bool {
        true
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        summary::describe(config)
    }
}
