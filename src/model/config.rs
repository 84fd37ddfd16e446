//! The model configuration: plain data (serde, JSON), saved as `config.json` beside every
//! set of weights so that a model folder describes itself.
//!
//! Two presets: [`ModelConfig::preset`]`("paper")` is the authors' nnU-Net MSFE (5 poolings,
//! features 32-64-128-256-320-320, patch 128³), `"small"` a reduced network that trains on
//! the phantoms on a 2-core CPU in minutes.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use burn::config::Config;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::modality::Modality;

/// How the features of the available modalities are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fusion {
    /// A2FSeg (Eq. 1–3): average fusion, then attention-weighted fusion; the final output is
    /// the head on the adaptively fused feature F̂. The default.
    Adaptive,
    /// The paper's Table 2 baseline: only the head on the average feature F̄.
    Average,
    /// HeMIS: the mean and the (population) variance over the available modalities,
    /// concatenated (2C channels) into the final head; the variance of one modality is 0.
    Hemis,
}

impl Fusion {
    /// All strategies.
    pub const ALL: [Fusion; 3] = [Fusion::Adaptive, Fusion::Average, Fusion::Hemis];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Adaptive => "adaptive",
            Fusion::Average => "average",
            Fusion::Hemis => "hemis",
        }
    }
}

/// Which segmentation method a [`ModelConfig`] builds: one [`super::Network`] each, chosen by
/// [`crate::with_network!`]. The `arch` key of `config.json` and `--arch` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Arch {
    /// A2FSeg as the paper describes it ([`super::A2fseg`]), with its [`Fusion`] options
    /// (adaptive, and the average and HeMIS ablations). The default.
    #[default]
    A2fseg,
    /// A2FSeg as the authors' released code computes it ([`super::A2fsegReleased`]).
    A2fsegReleased,
    /// U-HVED, the hetero-modal variational encoder-decoder ([`super::Uhved`]).
    Uhved,
    /// MFI, four U-Nets with modality interaction blocks ([`super::Mfi`]).
    Mfi,
    /// mmFormer, per-modality encoders with intra- and inter-modal transformers
    /// ([`super::Mmformer`]).
    Mmformer,
    /// RFNet, region-aware fusion ([`super::Rfnet`]).
    Rfnet,
}

impl Arch {
    /// All methods.
    pub const ALL: [Arch; 6] = [
        Arch::A2fseg,
        Arch::A2fsegReleased,
        Arch::Uhved,
        Arch::Mfi,
        Arch::Mmformer,
        Arch::Rfnet,
    ];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::A2fseg => "a2fseg",
            Arch::A2fsegReleased => "a2fseg-released",
            Arch::Uhved => "uhved",
            Arch::Mfi => "mfi",
            Arch::Mmformer => "mmformer",
            Arch::Rfnet => "rfnet",
        }
    }
}

/// Which network of the authors' released code `a2fseg-released` builds (the other methods
/// ignore it). Named after the released files `generic_MAML3_channel{,_post}.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleasedVariant {
    /// The fusion decoder on the modality means, LeakyReLU attention on `[F_m; F_fd]`, the
    /// head on `[F̂; F_fd]`. The default.
    Channel,
    /// No fusion decoder: the attention (ending in a sigmoid) reads `[F_m; F̄]` and the head
    /// `[F̂; F̄]`, with F̄ the mean of the MSFE features; closest to the paper.
    Post,
}

impl ReleasedVariant {
    /// Both variants.
    pub const ALL: [ReleasedVariant; 2] = [ReleasedVariant::Channel, ReleasedVariant::Post];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReleasedVariant::Channel => "channel",
            ReleasedVariant::Post => "post",
        }
    }
}

/// What the heads predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Targets {
    /// Three overlapping regions WT, TC, ET as independent sigmoid channels (BCE + Dice), as
    /// the authors' code and nnU-Net do for BraTS. The default.
    Regions,
    /// Softmax over the four classes background, NCR, edema, ET (CE + Dice), as the paper's
    /// text reads.
    Classes,
}

impl Targets {
    /// Both encodings.
    pub const ALL: [Targets; 2] = [Targets::Regions, Targets::Classes];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Targets::Regions => "regions",
            Targets::Classes => "classes",
        }
    }

    /// Output channels K of every head: 3 (WT, TC, ET) or 4 (classes).
    pub fn channels(self) -> usize {
        match self {
            Targets::Regions => 3,
            Targets::Classes => 4,
        }
    }
}

macro_rules! named_enum {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim().to_ascii_lowercase();
                $ty::ALL.into_iter().find(|v| v.name() == t).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!(
                        "unknown {} '{}' (expected one of {})",
                        $what,
                        s,
                        names.join(", ")
                    )
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum!(Arch, "architecture");
named_enum!(Fusion, "fusion");
named_enum!(Targets, "targets");
named_enum!(ReleasedVariant, "released variant");

/// The network a model folder holds and what it is trained to predict.
///
/// `arch` names the method; the other fields are read by the methods they concern (each
/// method's documentation lists them). For A2FSeg: every MSFE is an nnU-Net-style 3D U-Net with `poolings + 1` stages; stage `s` has
/// `min(base_features · 2^s, max_features)` channels and `convs_per_stage` blocks of
/// Conv3d(k3, bias) → InstanceNorm(affine) → LeakyReLU. Stages after the first start with a
/// stride-2 convolution; the decoder upsamples with ConvTranspose3d(k2, s2, no bias) and
/// concatenates the skip feature after the upsampled one. The feature F_m handed to fusion
/// is the last decoder stage's output: C = `base_features` channels at input resolution.
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    /// The segmentation method (`a2fseg`, …). Files written before methods existed have no
    /// `arch` key and are A2FSeg models.
    #[config(default = "Arch::A2fseg")]
    pub arch: Arch,
    /// Number of stride-2 downsamplings per MSFE (the U-Net has `poolings + 1` stages).
    /// Input sizes must be multiples of `2^poolings` in every dimension.
    #[config(default = 5)]
    pub poolings: usize,
    /// Channels of the first stage; also C, the channels of the feature F_m of each MSFE.
    #[config(default = 32)]
    pub base_features: usize,
    /// Cap on the channels of any stage (nnU-Net: 320 for 3D).
    #[config(default = 320)]
    pub max_features: usize,
    /// Convolution blocks per encoder and decoder stage.
    #[config(default = 2)]
    pub convs_per_stage: usize,
    /// Negative slope of the LeakyReLU activations.
    #[config(default = 0.01)]
    pub leaky_slope: f64,
    /// Epsilon of the instance normalisations.
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
    /// Supervise every decoder level of every MSFE (weights 1, 1/2, 1/4, …, lowest 0,
    /// normalised); otherwise only the full-resolution head of each MSFE.
    #[config(default = true)]
    pub deep_supervision: bool,
    /// Fusion strategy: `adaptive` (A2FSeg), `average` (Table 2 baseline) or `hemis`.
    #[config(default = "Fusion::Adaptive")]
    pub fusion: Fusion,
    /// `a2fseg-released` only: `channel` (the released default) or `post`.
    #[config(default = "ReleasedVariant::Channel")]
    pub released_variant: ReleasedVariant,
    /// Channels of each attention map W_m: 1 (one weight per voxel and modality) or
    /// `base_features` (one weight per voxel, channel and modality).
    #[config(default = 1)]
    pub attention_channels: usize,
    /// Kernel size of the attention convolutions conv_m (1 or 3; padding keeps the size).
    #[config(default = 3)]
    pub attention_kernel: usize,
    /// Head outputs: `regions` (sigmoid WT, TC, ET) or `classes` (softmax over 4 classes).
    #[config(default = "Targets::Regions")]
    pub targets: Targets,
    /// Smoothing term of the soft Dice (nnU-Net: 1e-5): keeps a region absent from a
    /// patch finite.
    #[config(default = 1e-5)]
    pub dice_smooth: f64,
    /// Training patch size in voxels, `[x, y, z]`; each a multiple of `2^poolings`.
    #[config(default = "[128, 128, 128]")]
    pub patch_size: [usize; 3],
    /// Voxel spacing in mm, `[x, y, z]`, of the data the model was trained on: the median
    /// spacing of its training cases, recorded by training (not a setting). `predict` and
    /// `evaluate` resample inputs of another spacing to it and the prediction back
    /// ([`crate::preprocess::resample`]). `None` (models saved before it was recorded, or
    /// not trained here): inputs are used at their own spacing.
    pub spacing: Option<[f64; 3]>,
    /// U-HVED only: weight of the KL term of the loss (the official code: 0.1).
    #[config(default = 0.1)]
    pub kl_weight: f64,
    /// U-HVED only: weight of the image-reconstruction MSE of the loss (the official code:
    /// 0.1).
    #[config(default = 0.1)]
    pub reconstruction_weight: f64,
    /// U-HVED only: latent log-variances are clipped to `[−logvar_clip, logvar_clip]` so
    /// that `exp(lv)` stays finite (the official code: 50).
    #[config(default = 50.0)]
    pub logvar_clip: f64,
    /// mmFormer only: its transformers and token layout ([`super::mmformer::MmformerConfig`]).
    #[config(default = "super::mmformer::MmformerConfig::new()")]
    pub mmformer: super::mmformer::MmformerConfig,
    /// RFNet only: epochs (counted from 0) before the fused output's loss term counts; the
    /// auxiliary and region-map terms train alone until then (the official code: 20).
    #[config(default = 20)]
    pub region_fusion_start_epoch: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::new()
    }
}

/// A named set of defaults: the network here ([`ModelConfig::of_preset`]) and the training
/// recipe around it (`crate::train::TrainConfig::preset`). The one preset type of the crate:
/// `--preset` of `train`, `model summary` and `bench`, and the `preset` key of `config.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper: the authors' network (nnU-Net MSFEs, 128³ patches); Adam, lr 0.01, poly
    /// decay, 400 epochs.
    Paper,
    /// CPU-sized: features 8-16-32-64, 3 poolings, 32³ patches (minutes on a 2-core CPU),
    /// short epochs.
    Small,
    /// The authors' released code: the paper's network; SGD with Nesterov momentum 0.99,
    /// weight decay 3e-5, 800 epochs × 250 iterations, gradient-norm clipping at 12.
    Authors,
}

/// Names of the presets, as `--preset` takes them.
pub const PRESETS: [&str; 3] = ["paper", "small", "authors"];

impl Preset {
    /// `paper`, `small` or `authors`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Small => "small",
            Preset::Authors => "authors",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paper" => Ok(Preset::Paper),
            "small" => Ok(Preset::Small),
            "authors" => Ok(Preset::Authors),
            other => Err(format!(
                "unknown preset '{other}' (expected {})",
                PRESETS.join(", ")
            )),
        }
    }
}

impl ModelConfig {
    /// The network of `arch` for `preset` (see [`super::Network::preset`]).
    pub fn of(arch: Arch, preset: Preset) -> ModelConfig {
        crate::with_network!(arch, N => <N as super::Network>::preset(preset)).with_arch(arch)
    }

    /// A2FSeg's network of the preset named `name` (see [`Preset`]).
    pub fn preset(name: &str) -> Result<ModelConfig> {
        Self::named_preset(Arch::A2fseg, name)
    }

    /// The network of `arch` for the preset named `name`; an unknown name is an error
    /// listing the presets.
    pub fn named_preset(arch: Arch, name: &str) -> Result<ModelConfig> {
        let preset: Preset = name.parse().map_err(|_| {
            anyhow::anyhow!(
                "unknown model preset '{}' (expected one of {})",
                name.trim().to_ascii_lowercase(),
                PRESETS.join(", ")
            )
        })?;
        Ok(Self::of(arch, preset))
    }

    /// The keys added after the first file format, each of which a file may lack and then
    /// takes its default (files written before methods existed hold A2FSeg models). Any other
    /// missing key is an error: the file is damaged or not a model configuration.
    pub const ADDED_KEYS: [&str; 7] = [
        "arch",
        "released_variant",
        "kl_weight",
        "reconstruction_weight",
        "logvar_clip",
        "mmformer",
        "region_fusion_start_epoch",
    ];

    /// Reads a configuration from a JSON file (as written by [`ModelConfig::save_json`]),
    /// rejecting unknown keys and invalid values with an error naming the file.
    pub fn load_json(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text)
            .with_context(|| format!("invalid model configuration {}", path.display()))
    }

    /// Parses a configuration from JSON text; unknown keys are an error, so a typo never
    /// silently falls back to a default.
    pub fn from_json(text: &str) -> Result<ModelConfig> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let (Some(map), serde_json::Value::Object(defaults)) = (
            value.as_object_mut(),
            serde_json::to_value(ModelConfig::new())?,
        ) {
            for key in ModelConfig::ADDED_KEYS {
                if let Some(v) = defaults.get(key) {
                    map.entry(key).or_insert_with(|| v.clone());
                }
            }
        }
        let cfg: ModelConfig = serde_json::from_value(value.clone())?;
        let known = serde_json::to_value(&cfg)?;
        if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
            let unknown: Vec<&String> = given.keys().filter(|k| !known.contains_key(*k)).collect();
            if !unknown.is_empty() {
                bail!("unknown keys {unknown:?}");
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model configuration always serialises")
    }

    /// What the network is, for reports: A2FSeg's fusion (`adaptive fusion`, `average
    /// fusion`, `hemis fusion`), or the architecture's name for every other method (their
    /// `fusion` field is unused).
    pub fn network_label(&self) -> String {
        if self.arch == Arch::A2fseg {
            format!("{} fusion", self.fusion.name())
        } else {
            self.arch.name().to_string()
        }
    }

    /// Writes the configuration as JSON (atomically).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        crate::fsutil::atomic_write_bytes(path, self.to_json().as_bytes())
    }

    /// Checks that the values describe a buildable network.
    pub fn validate(&self) -> Result<()> {
        if self.poolings == 0 || self.poolings > 8 {
            bail!("poolings must be between 1 and 8, got {}", self.poolings);
        }
        if self.base_features == 0 || self.max_features < self.base_features {
            bail!(
                "base_features must be at least 1 and at most max_features (got {} and {})",
                self.base_features,
                self.max_features
            );
        }
        if self.convs_per_stage == 0 {
            bail!("convs_per_stage must be at least 1");
        }
        if self.attention_channels != 1 && self.attention_channels != self.base_features {
            bail!(
                "attention_channels must be 1 or base_features ({}), got {}",
                self.base_features,
                self.attention_channels
            );
        }
        if self.attention_kernel != 1 && self.attention_kernel != 3 {
            bail!(
                "attention_kernel must be 1 or 3, got {}",
                self.attention_kernel
            );
        }
        if self.norm_epsilon.is_nan()
            || self.norm_epsilon <= 0.0
            || self.dice_smooth.is_nan()
            || self.dice_smooth <= 0.0
        {
            bail!("norm_epsilon and dice_smooth must be positive");
        }
        if !self.leaky_slope.is_finite() {
            bail!("leaky_slope must be finite");
        }
        self.check_size(self.patch_size)
            .context("patch_size does not fit the network")?;
        if self.arch == Arch::Mmformer {
            super::mmformer::Mmformer::check(self)?;
        }
        Ok(())
    }

    /// Channels of stage `s` (0 = full resolution): `min(base · 2^s, max)`.
    pub fn stage_features(&self, s: usize) -> usize {
        (self.base_features << s).min(self.max_features)
    }

    /// Channels of all `poolings + 1` stages, e.g. 32-64-128-256-320-320.
    pub fn features(&self) -> Vec<usize> {
        (0..=self.poolings)
            .map(|s| self.stage_features(s))
            .collect()
    }

    /// C, the channels of each MSFE feature F_m.
    pub fn feature_channels(&self) -> usize {
        self.base_features
    }

    /// K, the output channels of every head.
    pub fn out_channels(&self) -> usize {
        self.targets.channels()
    }

    /// The divisor every input size must be a multiple of: `2^poolings`.
    pub fn size_divisor(&self) -> usize {
        1 << self.poolings
    }

    /// Number of segmentation heads per MSFE: one per decoder level with deep supervision,
    /// else one.
    pub fn heads_per_msfe(&self) -> usize {
        if self.deep_supervision {
            self.poolings
        } else {
            1
        }
    }

    /// Loss weights of the heads of one MSFE, full resolution first: 1, 1/2, 1/4, …, with
    /// the lowest level 0, normalised to sum 1 (nnU-Net). For 5 poolings:
    /// 0.5333, 0.2667, 0.1333, 0.0667, 0. Without deep supervision: `[1]`.
    pub fn deep_supervision_weights(&self) -> Vec<f64> {
        let n = self.heads_per_msfe();
        if n == 1 {
            return vec![1.0];
        }
        let mut w: Vec<f64> = (0..n).map(|l| 0.5f64.powi(l as i32)).collect();
        w[n - 1] = 0.0;
        let sum: f64 = w.iter().sum();
        w.iter().map(|x| x / sum).collect()
    }

    /// Checks that a spatial size `[x, y, z]` is a non-zero multiple of `2^poolings`.
    pub fn check_size(&self, size: [usize; 3]) -> Result<()> {
        let d = self.size_divisor();
        if size.iter().any(|&s| s == 0 || s % d != 0) {
            bail!(
                "input size [{}, {}, {}] (x, y, z) is not a multiple of 2^{} = {d} in every \
                 dimension, as the network's {} poolings need",
                size[0],
                size[1],
                size[2],
                self.poolings,
                self.poolings
            );
        }
        Ok(())
    }

    /// Output head names, by channel: `WT, TC, ET` or `background, NCR, ED, ET`.
    pub fn channel_names(&self) -> Vec<&'static str> {
        match self.targets {
            Targets::Regions => vec!["WT", "TC", "ET"],
            Targets::Classes => vec!["background", "NCR", "ED", "ET"],
        }
    }

    /// Modalities in canonical order (every model has one MSFE per modality).
    pub fn modalities(&self) -> [Modality; 4] {
        Modality::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for p in PRESETS {
            ModelConfig::preset(p).unwrap().validate().unwrap();
        }
        assert!(ModelConfig::preset("huge").is_err());
        let paper = ModelConfig::preset("paper").unwrap();
        assert_eq!(paper.features(), vec![32, 64, 128, 256, 320, 320]);
        assert_eq!(paper.patch_size, [128, 128, 128]);
    }

    #[test]
    fn network_label_names_the_fusion_for_a2fseg_and_the_architecture_otherwise() {
        let mut a2fseg = ModelConfig::of(Arch::A2fseg, Preset::Small);
        assert_eq!(a2fseg.network_label(), "adaptive fusion");
        a2fseg.fusion = Fusion::Hemis;
        assert_eq!(a2fseg.network_label(), "hemis fusion");
        assert_eq!(
            ModelConfig::of(Arch::Rfnet, Preset::Small).network_label(),
            "rfnet"
        );
        assert_eq!(
            ModelConfig::of(Arch::Uhved, Preset::Small).network_label(),
            "uhved"
        );
    }

    #[test]
    fn deep_supervision_weights_match_nnunet() {
        let w = ModelConfig::preset("paper")
            .unwrap()
            .deep_supervision_weights();
        let expect = [0.5333, 0.2667, 0.1333, 0.0667, 0.0];
        assert_eq!(w.len(), expect.len());
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-4, "{w:?}");
        }
        let no_ds = ModelConfig::new().with_deep_supervision(false);
        assert_eq!(no_ds.deep_supervision_weights(), vec![1.0]);
    }

    #[test]
    fn json_round_trip_and_unknown_keys() {
        let c = ModelConfig::preset("small")
            .unwrap()
            .with_fusion(Fusion::Hemis);
        let back = ModelConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        assert!(c.to_json().contains("\"hemis\""));
        let bad = c.to_json().replace("\"poolings\"", "\"pooling\"");
        assert!(ModelConfig::from_json(&bad).is_err());
    }

    #[test]
    fn spacing_is_kept_and_files_without_it_mean_none() {
        let c = ModelConfig::preset("small")
            .unwrap()
            .with_spacing(Some([1.0, 0.5, 3.0]));
        assert_eq!(ModelConfig::from_json(&c.to_json()).unwrap(), c);
        let mut value: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        value.as_object_mut().unwrap().remove("spacing");
        let old = ModelConfig::from_json(&value.to_string()).unwrap();
        assert_eq!(old.spacing, None);
    }

    #[test]
    fn files_without_arch_are_a2fseg_models() {
        let c = ModelConfig::preset("small").unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(value["arch"], "a2fseg");
        value.as_object_mut().unwrap().remove("arch");
        let back = ModelConfig::from_json(&value.to_string()).unwrap();
        assert_eq!(back.arch, Arch::A2fseg);
        assert_eq!(back, c);
        let e = "unet".parse::<Arch>().unwrap_err();
        assert!(
            e.contains("unknown architecture 'unet'") && e.contains("a2fseg"),
            "{e}"
        );
        for arch in Arch::ALL {
            for preset in [Preset::Paper, Preset::Small, Preset::Authors] {
                let c = ModelConfig::of(arch, preset);
                assert_eq!(c.arch, arch);
                c.validate().unwrap();
            }
        }
    }

    #[test]
    fn files_without_released_variant_build_the_default() {
        let c = ModelConfig::preset("small")
            .unwrap()
            .with_arch(Arch::A2fsegReleased);
        let mut value: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(value["released_variant"], "channel");
        value.as_object_mut().unwrap().remove("released_variant");
        assert_eq!(ModelConfig::from_json(&value.to_string()).unwrap(), c);
        let post = c.with_released_variant(ReleasedVariant::Post);
        assert_eq!(ModelConfig::from_json(&post.to_json()).unwrap(), post);
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let c = ModelConfig::preset("small").unwrap();
        assert!(c.check_size([32, 16, 8]).is_ok());
        let e = c.check_size([32, 20, 8]).unwrap_err().to_string();
        assert!(e.contains("multiple of 2^3 = 8"), "{e}");
        assert!(c.clone().with_patch_size([30, 32, 32]).validate().is_err());
        assert!(c.with_attention_channels(5).validate().is_err());
    }
}
