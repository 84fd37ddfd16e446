//! A2FSeg: four MSFEs, average fusion and adaptive (or HeMIS) fusion, with their heads.

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::arch::{Encoding, Network, StepLoss, TrainInputs, decode_each};
use super::config::{Arch, Fusion, ModelConfig, Preset};
use super::fusion::{self, FusionModule};
use super::msfe::Msfe;
use super::per_modality::PerModality;
use super::summary::ModelSummary;
use crate::kernels::conv3d_module;
use crate::modality::{Modality, Subset};

/// The four MSFEs, one per modality (tensor names `msfe.t1.…`, `msfe.t1c.…`, `msfe.t2.…`,
/// `msfe.flair.…`).
pub type Msfes = PerModality<Msfe>;

/// The whole network. Build it with [`ModelConfig::init`] or load it with
/// [`load_model`](super::load_model).
#[derive(Module, Debug)]
pub struct A2fseg {
    /// The modality-specific feature extractors.
    pub msfe: Msfes,
    /// Attention convolutions and the fusion heads.
    pub fusion: FusionModule,
    /// The configuration the network was built from.
    #[module(skip)]
    pub config: ModelConfig,
}

/// Everything one forward pass produces for the loss; logits, not probabilities.
#[derive(Debug, Clone)]
pub struct A2fsegOutput {
    /// For each available modality (canonical order): its MSFE's head logits, full
    /// resolution first (`[B, K, D/2^l, H/2^l, W/2^l]`).
    pub per_modality: Vec<(Modality, Vec<Tensor<5>>)>,
    /// Logits of the head on F̄, `[B, K, D, H, W]`.
    pub average: Tensor<5>,
    /// The final logits `[B, K, D, H, W]`: the head on F̂ (`adaptive`), on [F̄; Var]
    /// (`hemis`), or the average head again (`average`).
    pub fused: Tensor<5>,
    /// The normalised attention maps Ŵ_m `[B, A, D, H, W]` of the available modalities
    /// (`adaptive` only).
    pub attention: Option<Vec<(Modality, Tensor<5>)>>,
}

/// Result of [`A2fseg::fuse`]: the final logits and, for `adaptive`, the attention maps.
#[derive(Debug, Clone)]
pub struct FusedOutput {
    /// Final logits `[B, K, D, H, W]`.
    pub logits: Tensor<5>,
    /// Ŵ_m `[B, A, D, H, W]` per available modality (`adaptive` only).
    pub attention: Option<Vec<(Modality, Tensor<5>)>>,
}

impl ModelConfig {
    /// A freshly initialised network (He initialisation) on `device`. Panics only on an
    /// invalid configuration: call [`ModelConfig::validate`] first for user input.
    pub fn init(&self, device: &Device) -> A2fseg {
        if let Err(e) = self.validate() {
            panic!("invalid model configuration: {e:#}");
        }
        A2fseg {
            msfe: Msfes::new(|_| Msfe::new(self, device)),
            fusion: FusionModule::new(self, device),
            config: self.clone(),
        }
    }
}

impl A2fseg {
    /// The configuration of this network.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Checks a set of inputs or features: non-empty, no modality twice, all of shape
    /// `[B, channels, D, H, W]` with one shape, sizes multiples of `2^poolings`.
    fn check_inputs(&self, inputs: &[(Modality, Tensor<5>)], channels: usize) -> Result<()> {
        if inputs.is_empty() {
            bail!("no modality given: A2FSeg needs at least one of T1, T1c, T2, FLAIR");
        }
        let mut seen = Subset::EMPTY;
        let dims0 = inputs[0].1.dims();
        for (m, t) in inputs {
            if seen.contains(*m) {
                bail!("modality {m} given twice");
            }
            seen = seen.with(*m);
            let d = t.dims();
            if d[1] != channels {
                bail!("{m}: expected {channels} channel(s), got a tensor of shape {d:?}");
            }
            if d != dims0 {
                bail!(
                    "{m}: shape {d:?} differs from {}'s {dims0:?}; all modalities must share one grid",
                    inputs[0].0
                );
            }
        }
        self.config.check_size([dims0[4], dims0[3], dims0[2]])
    }

    /// Full forward pass for training: runs the MSFE of each given modality (and only
    /// those), fuses, and returns every head's logits.
    ///
    /// `inputs`: the available modalities with images `[B, 1, D, H, W]` (D, H, W multiples
    /// of `2^poolings`). Absent modalities are simply not listed.
    pub fn forward(&self, inputs: &[(Modality, Tensor<5>)]) -> Result<A2fsegOutput> {
        self.check_inputs(inputs, 1)?;
        let mut inputs = inputs.to_vec();
        inputs.sort_by_key(|(m, _)| *m);
        let mut features = Vec::with_capacity(inputs.len());
        let mut per_modality = Vec::with_capacity(inputs.len());
        for (m, x) in inputs {
            let (f, logits) = self.msfe.get(m).forward(x);
            features.push((m, f));
            per_modality.push((m, logits));
        }
        let (average, fused, attention) = self.fuse_parts(&features);
        Ok(A2fsegOutput {
            per_modality,
            average,
            fused,
            attention,
        })
    }

    /// The feature F_m `[B, C, D, H, W]` of modality `m` from its image `[B, 1, D, H, W]`,
    /// without any head. An MSFE's feature does not depend on the other modalities, so
    /// inference can compute it once per window and fuse it into every subset.
    pub fn msfe_features(&self, m: Modality, x: Tensor<5>) -> Result<Tensor<5>> {
        self.check_inputs(&[(m, x.clone())], 1)?;
        Ok(self.msfe.get(m).features(x))
    }

    /// Fuses the features `[B, C, D, H, W]` of the available modalities (from
    /// [`A2fseg::msfe_features`]) into the final logits.
    pub fn fuse(&self, features: &[(Modality, Tensor<5>)]) -> Result<FusedOutput> {
        self.check_inputs(features, self.config.feature_channels())?;
        let mut features = features.to_vec();
        features.sort_by_key(|(m, _)| *m);
        let (_, logits, attention) = self.fuse_parts(&features);
        Ok(FusedOutput { logits, attention })
    }

    /// Average logits, final logits and attention maps from checked, sorted features.
    #[allow(clippy::type_complexity)]
    fn fuse_parts(
        &self,
        features: &[(Modality, Tensor<5>)],
    ) -> (Tensor<5>, Tensor<5>, Option<Vec<(Modality, Tensor<5>)>>) {
        let mean = fusion::average(features);
        let average = conv3d_module(&self.fusion.average_head, mean.clone());
        match (self.config.fusion, &self.fusion.fused_head) {
            (Fusion::Adaptive, Some(head)) => {
                let convs = self
                    .fusion
                    .attention
                    .as_ref()
                    .expect("adaptive fusion has attention convolutions");
                let (fused, weights) = fusion::adaptive(convs, features, &mean);
                (average, conv3d_module(head, fused), Some(weights))
            }
            (Fusion::Hemis, Some(head)) => {
                let var = fusion::variance(features, &mean);
                let fused = conv3d_module(head, Tensor::cat(vec![mean, var], 1));
                (average, fused, None)
            }
            _ => (average.clone(), average, None),
        }
    }
}

/// The feature maps of A2FSeg encodings (one tensor each).
fn features_of(encodings: &[(Modality, Encoding)]) -> Result<Vec<(Modality, Tensor<5>)>> {
    encodings
        .iter()
        .map(|(m, e)| match e.as_slice() {
            [f] => Ok((*m, f.clone())),
            _ => bail!(
                "an A2FSeg encoding is one feature map, got {} tensors",
                e.len()
            ),
        })
        .collect()
}

/// A2FSeg behind the method seam: the encoding of a modality is its MSFE's feature map
/// `[B, C, D, H, W]` (one tensor), which does not depend on the other modalities.
impl Network for A2fseg {
    const ARCH: Arch = Arch::A2fseg;

    /// The adaptive fusion's attention (average and HeMIS fusion have none).
    fn has_attention(config: &ModelConfig) -> bool {
        config.fusion == Fusion::Adaptive
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn loss_terms(&self) -> &'static [&'static str] {
        &["modality", "average", "adaptive"]
    }

    fn training_loss(&self, step: TrainInputs) -> Result<StepLoss> {
        let out = self.forward(&step.subset_images())?;
        let parts = super::loss::loss(&self.config, &out, step.classes);
        Ok(StepLoss {
            total: parts.total,
            terms: vec![
                parts.modality as f64,
                parts.average as f64,
                parts.adaptive as f64,
            ],
        })
    }

    fn encode(&self, m: Modality, x: Tensor<5>) -> Result<Encoding> {
        Ok(vec![self.msfe_features(m, x)?])
    }

    fn decode(&self, encodings: &[(Modality, Encoding)]) -> Result<FusedOutput> {
        self.fuse(&features_of(encodings)?)
    }

    /// Average fusion: the head is linear, so each subset's logits are the mean of the
    /// heads of its features. Adaptive fusion with one-channel attention maps:
    /// [`fusion::adaptive_subsets`]. Otherwise (HeMIS's variance, per-channel attention) each
    /// subset is fused alone.
    fn decode_subsets(
        &self,
        encodings: &[(Modality, Encoding)],
        subsets: &[Subset],
    ) -> Result<Vec<FusedOutput>> {
        let shared = match self.config.fusion {
            Fusion::Average => true,
            Fusion::Adaptive => self.config.attention_channels == 1,
            Fusion::Hemis => false,
        };
        if !shared || subsets.len() < 2 {
            return decode_each(encodings, subsets, |e| self.decode(e));
        }
        let mut features = features_of(encodings)?;
        self.check_inputs(&features, self.config.feature_channels())?;
        features.sort_by_key(|(m, _)| *m);
        let union = Subset::from_modalities(features.iter().map(|(m, _)| *m));
        for s in subsets {
            ensure!(
                !s.is_empty() && s.is_subset_of(union),
                "subset {} needs modalities that were not encoded",
                s.name()
            );
        }
        match (
            self.config.fusion,
            &self.fusion.fused_head,
            &self.fusion.attention,
        ) {
            (Fusion::Adaptive, Some(head), Some(convs)) => {
                Ok(fusion::adaptive_subsets(convs, head, &features, subsets)
                    .into_iter()
                    .map(|(logits, weights)| FusedOutput {
                        logits,
                        attention: Some(weights),
                    })
                    .collect())
            }
            _ => {
                let heads: Vec<(Modality, Tensor<5>)> = features
                    .iter()
                    .map(|(m, f)| (*m, conv3d_module(&self.fusion.average_head, f.clone())))
                    .collect();
                Ok(subsets
                    .iter()
                    .map(|s| {
                        let members: Vec<(Modality, Tensor<5>)> = heads
                            .iter()
                            .filter(|(m, _)| s.contains(*m))
                            .cloned()
                            .collect();
                        FusedOutput {
                            logits: fusion::average(&members),
                            attention: None,
                        }
                    })
                    .collect())
            }
        }
    }

    fn init(config: &ModelConfig, device: &Device) -> Self {
        config.init(device)
    }

    /// `paper` and `authors`: the authors' nnU-Net MSFEs (5 poolings, features
    /// 32-64-128-256-320-320, 128³ patches); `small`: features 8-16-32-64, 3 poolings, 32³.
    fn preset(preset: Preset) -> ModelConfig {
        match preset {
            Preset::Paper | Preset::Authors => ModelConfig::new(),
            Preset::Small => ModelConfig::new()
                .with_poolings(3)
                .with_base_features(8)
                .with_max_features(64)
                .with_patch_size([32, 32, 32]),
        }
    }

    fn describe(config: &ModelConfig) -> ModelSummary {
        ModelSummary::new(config)
    }
}
