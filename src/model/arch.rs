//! The seam between a segmentation method and the rest of the crate.
//!
//! Training, inference (`predict`, `evaluate`, validation), `model summary` and `bench` reach a
//! network only through [`Network`]: how it is built, what it needs from a modality subset,
//! what it returns, its loss terms and its description (parameter names are its Burn module
//! paths, saved by [`super::weights`]). A2FSeg ([`super::A2fseg`], with adaptive, average or
//! HeMIS fusion) is the first implementation; a new method implements the same trait
//! (`docs/ARCHITECTURE.md`, "Adding a method").
//!
//! Inference is split into a per-modality [`Network::encode`] and a subset-level
//! [`Network::decode`] so that `evaluate` can encode each modality of a window once and decode
//! all 15 subsets from those encodings. A method whose per-modality part depends on the
//! other modalities (its encoders interact) returns its input as the encoding and does all
//! the work in `decode`: still correct, just nothing shared.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::config::{Arch, ModelConfig, Preset};
use super::network::FusedOutput;
use super::summary::ModelSummary;
use crate::modality::{Modality, Subset};

/// What [`Network::encode`] produces for one modality of one window: the tensors the method
/// keeps per modality (A2FSeg: its MSFE's feature map `[B, C, D, H, W]`), in an order the
/// method defines.
pub type Encoding = Vec<Tensor<5>>;

/// The loss of one training step.
#[derive(Debug, Clone)]
pub struct StepLoss {
    /// The differentiable total, shape `[1]`.
    pub total: Tensor<1>,
    /// The value of each term named by [`Network::loss_terms`], in that order (for the log).
    pub terms: Vec<f64>,
}

/// What a training step hands the network.
#[derive(Debug, Clone)]
pub struct TrainInputs {
    /// The modalities drawn for this step (non-empty): the network sees only these. With
    /// one draw per sample, the union of [`TrainInputs::sample_subsets`].
    pub subset: Subset,
    /// Each sample's own subset, `B` entries (all equal to `subset` when the batch shares
    /// one draw): a method that hides modalities per sample masks sample `b` by entry `b`.
    pub sample_subsets: Vec<Subset>,
    /// Images `[B, 1, D, H, W]` in canonical modality order: those of `subset`, or, for a
    /// network whose [`Network::trains_on_all_modalities`] holds, every modality the batch's
    /// cases have (a superset of `subset`; all four with complete cases), for targets such as
    /// reconstructions of the hidden modalities.
    pub images: Vec<(Modality, Tensor<5>)>,
    /// Class indices `[B, D, H, W]` ([`crate::labels::TumourClass`]).
    pub classes: Tensor<4, Int>,
    /// Seed of the step's random draws ([`TrainInputs::standard_normal`]); the trainer
    /// derives it from the run seed, the epoch and the iteration.
    pub noise_seed: u64,
    /// The step's epoch (from 0), for a loss whose terms switch on after a warm-up
    /// (RFNet's fused term). [`TrainInputs::new`] sets 0; see [`TrainInputs::with_epoch`].
    pub epoch: usize,
}

impl TrainInputs {
    /// The inputs of a step whose batch shares one subset (`classes` `[B, D, H, W]` gives B).
    pub fn new(
        subset: Subset,
        images: Vec<(Modality, Tensor<5>)>,
        classes: Tensor<4, Int>,
        noise_seed: u64,
    ) -> TrainInputs {
        let batch = classes.dims()[0];
        TrainInputs {
            subset,
            sample_subsets: vec![subset; batch],
            images,
            classes,
            noise_seed,
            epoch: 0,
        }
    }

    /// The same inputs at epoch `epoch` (from 0).
    pub fn with_epoch(self, epoch: usize) -> TrainInputs {
        TrainInputs { epoch, ..self }
    }

    /// Checks that every sample's drawn subset is non-empty and among `available`, the
    /// modalities the batch carries (a method that masks per sample relies on it).
    pub fn check_sample_subsets(&self, available: Subset) -> Result<()> {
        if let Some(s) = self
            .sample_subsets
            .iter()
            .find(|s| s.is_empty() || !s.is_subset_of(available))
        {
            anyhow::bail!(
                "a sample's drawn subset {s} must be non-empty and among the batch's \
                 modalities {available}"
            );
        }
        Ok(())
    }

    /// Which modalities each sample has, `[B, 4]` in canonical order (1 available, 0 hidden):
    /// the mask of a method that zeroes a missing modality per sample.
    pub fn sample_mask(&self, device: &Device) -> Tensor<2> {
        let b = self.sample_subsets.len();
        let values: Vec<f32> = self
            .sample_subsets
            .iter()
            .flat_map(|s| Modality::ALL.map(|m| if s.contains(m) { 1.0 } else { 0.0 }))
            .collect();
        Tensor::from_data(burn::tensor::TensorData::new(values, [b, 4]), device)
    }

    /// N(0, 1) noise of shape `dims` on `device` (a reparameterised sample's ε), drawn on the
    /// CPU from the stream `(noise_seed, stream)`: the same numbers on every device and in
    /// every run and resume of the step. Use one `stream` per draw of a step.
    pub fn standard_normal(&self, stream: u64, dims: [usize; 5], device: &Device) -> Tensor<5> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.noise_seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let n = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
    }

    /// Uniform noise in `[0, 1)` of shape `dims` on `device` (a dropout mask's draw), from the
    /// stream `(noise_seed, stream)` as [`TrainInputs::standard_normal`]: the same numbers on
    /// every device and in every run and resume of the step.
    pub fn uniform<const D: usize>(
        &self,
        stream: u64,
        dims: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.noise_seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let n = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
        Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
    }

    /// The images of the drawn subset only.
    pub fn subset_images(&self) -> Vec<(Modality, Tensor<5>)> {
        self.images
            .iter()
            .filter(|(m, _)| self.subset.contains(*m))
            .cloned()
            .collect()
    }
}

/// The subset of `modalities`, each at most once and at least one (a method's inputs or
/// encodings); otherwise an error naming `method`.
pub fn distinct_modalities(
    modalities: impl Iterator<Item = Modality>,
    method: &str,
) -> Result<Subset> {
    let mut seen = Subset::EMPTY;
    for m in modalities {
        if seen.contains(m) {
            anyhow::bail!("modality {m} given twice");
        }
        seen = seen.with(m);
    }
    if seen.is_empty() {
        anyhow::bail!("no modality given: {method} needs at least one of T1, T1c, T2, FLAIR");
    }
    Ok(seen)
}

/// A segmentation network from any subset of the four modalities, as every pipeline stage
/// uses it. `inputs` always list only the available modalities, each with its image
/// `[B, 1, D, H, W]` (D, H, W multiples of the network's size divisor); a method that
/// represents a missing modality in some way (zeros, a mask) does so inside these methods.
pub trait Network: Module + 'static {
    /// The method's name in configurations (`config.json`'s `arch`).
    const ARCH: Arch;

    /// The configuration the network was built from (patch size, targets, …).
    fn config(&self) -> &ModelConfig;

    /// Names of the loss terms a training step reports besides the total, for the log.
    fn loss_terms(&self) -> &'static [&'static str];

    /// Whether a training step must load every modality the cases have, not only the drawn
    /// subset (see [`TrainInputs::images`]). False unless the method's loss needs them.
    fn trains_on_all_modalities(_config: &ModelConfig) -> bool {
        false
    }

    /// Whether [`Network::decode`] returns attention maps (one `[B, C, D, H, W]` map per
    /// available modality) for `config`: `evaluate` summarises them, `predict
    /// --save-attention` writes them. False unless the method fuses with attention.
    fn has_attention(_config: &ModelConfig) -> bool {
        false
    }

    /// The training forward pass and its loss: everything of a training step that depends
    /// on the method. Random draws (a reparameterised sample, say) come from
    /// [`TrainInputs::standard_normal`], so a step is the same on every device and resumes
    /// bit-identically.
    fn training_loss(&self, step: TrainInputs) -> Result<StepLoss>;

    /// The part of inference that depends on modality `m` alone, from its image
    /// `[B, 1, D, H, W]`.
    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding>;

    /// The final logits `[B, K, D, H, W]` (and attention maps, if the method has them) from
    /// the encodings of the available modalities.
    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput>;

    /// [`Network::decode`] of each of `subsets` from the encodings of their union (every
    /// subset's modalities must be among `encodings`), in the order of `subsets`. Equal to
    /// decoding each subset alone up to float rounding; a method overrides it when its
    /// decoders can share work across subsets (A2FSeg's fusion is linear in the features
    /// up to the attention softmax).
    fn decode_subsets(
        &self,
        encodings: &[(Modality, Encoding)],
        subsets: &[Subset],
    ) -> Result<Vec<FusedOutput>> {
        decode_each(encodings, subsets, |e| self.decode(e))
    }

    /// A freshly initialised network of `config` on `device` (seeded by the device's RNG).
    fn init(config: &ModelConfig, device: &Device) -> Self;

    /// The method's network for `preset`: `small` (minutes on a 2-core CPU), `paper` (the
    /// method's native size) and `authors` (the size of the authors' released code).
    fn preset(preset: Preset) -> ModelConfig;

    /// Layers, parameter counts and multiply-accumulates of the network `config` describes,
    /// computed without building it (`a2fseg model summary`, `bench`'s GFLOP/s).
    fn describe(config: &ModelConfig) -> ModelSummary;
}

/// [`Network::decode_subsets`] by decoding each subset alone with `decode`.
pub fn decode_each(
    encodings: &[(Modality, Encoding)],
    subsets: &[Subset],
    decode: impl Fn(&[(Modality, Encoding)]) -> Result<FusedOutput>,
) -> Result<Vec<FusedOutput>> {
    subsets
        .iter()
        .map(|s| {
            let e: Vec<(Modality, Encoding)> = encodings
                .iter()
                .filter(|(m, _)| s.contains(*m))
                .cloned()
                .collect();
            anyhow::ensure!(
                e.len() == s.len(),
                "subset {} needs modalities that were not encoded",
                s.name()
            );
            decode(&e)
        })
        .collect()
}

/// The inference half of [`Network`] as a trait object, so that a predictor can hold any
/// method's network without being generic. Implemented for every [`Network`].
pub trait Segmenter: Send {
    /// See [`Network::config`].
    fn config(&self) -> &ModelConfig;
    /// See [`Network::encode`].
    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding>;
    /// See [`Network::decode`].
    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput>;
    /// See [`Network::decode_subsets`].
    fn decode_subsets(
        &self,
        encodings: &[(Modality, Encoding)],
        subsets: &[Subset],
    ) -> Result<Vec<FusedOutput>>;
}

impl<N: Network> Segmenter for N {
    fn config(&self) -> &ModelConfig {
        Network::config(self)
    }
    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding> {
        Network::encode(self, m, x)
    }
    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        Network::decode(self, encodings)
    }
    fn decode_subsets(
        &self,
        encodings: &[(Modality, Encoding)],
        subsets: &[Subset],
    ) -> Result<Vec<FusedOutput>> {
        Network::decode_subsets(self, encodings, subsets)
    }
}

/// Runs `$body` with the type alias `$n` standing for the [`Network`] implementation of
/// `$arch` (a [`super::Arch`]): the one place a method name becomes a type.
///
/// ```ignore
/// let summary = a2fseg::with_network!(cfg.arch, N => N::describe(&cfg));
/// ```
#[macro_export]
macro_rules! with_network {
    ($arch:expr, $n:ident => $body:expr) => {
        match $arch {
            $crate::model::Arch::A2fseg => {
                type $n = $crate::model::A2fseg;
                $body
            }
            $crate::model::Arch::Uhved => {
                type $n = $crate::model::Uhved;
                $body
            }
            $crate::model::Arch::A2fsegReleased => {
                type $n = $crate::model::A2fsegReleased;
                $body
            }
            $crate::model::Arch::Mfi => {
                type $n = $crate::model::Mfi;
                $body
            }
            $crate::model::Arch::Mmformer => {
                type $n = $crate::model::Mmformer;
                $body
            }
            $crate::model::Arch::Rfnet => {
                type $n = $crate::model::Rfnet;
                $body
            }
        }
    };
}
