//! The training configuration: plain data, TOML on disk, resolved from a preset, an
//! optional file and command-line overrides, and written to `RUN_DIR/config.toml`.
//!
//! Resolution: the preset (`paper`, `small` or `authors`; from `--preset`, else the
//! file's `preset` key, else `paper`) gives every value; a `--config` file overrides the
//! keys it names (tables such as `[augmentation]` are merged key by key); command-line
//! flags override both. Unknown keys are errors, so a typo never silently does nothing.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::dropout::{ModalityDropout, SubsetDraw};
use super::schedule::LrSchedule;
use crate::config_file::{self, ConfigFile, Part};
use crate::model::{Arch, ModelConfig, Preset};
use crate::preprocess::PreprocessSettings;

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (β 0.9/0.999, ε 1e-8 as PyTorch's default), as the paper says.
    Adam,
    /// SGD with (Nesterov) momentum, as the authors' code and nnU-Net do.
    Sgd,
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

/// Everything that decides a training run (`RUN_DIR/config.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset the defaults came from.
    pub preset: Preset,
    /// Epochs to train (the poly schedule reaches 0 after the last).
    pub epochs: usize,
    /// Optimiser steps per epoch (nnU-Net: 250).
    pub iterations_per_epoch: usize,
    /// Patches per step.
    pub batch_size: usize,
    /// `adam` or `sgd`.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// Exponent of the poly decay `(1 − epoch/epochs)^power`.
    pub poly_power: f64,
    /// `poly` (per epoch, the default) or `step` (see `lr_step_*`). Absent in older files:
    /// poly.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// With `lr_schedule = "step"`: optimiser steps between two drops.
    #[serde(default = "default_lr_step_iterations")]
    pub lr_step_iterations: usize,
    /// With `lr_schedule = "step"`: the factor of each drop.
    #[serde(default = "default_lr_step_factor")]
    pub lr_step_factor: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
    /// L2 weight decay (added to the gradient), for either optimiser.
    pub weight_decay: f64,
    /// Adam only: the AMSGrad variant (the running maximum of the second moment), as
    /// RFNet's official code trains. Absent in older files: false.
    #[serde(default)]
    pub amsgrad: bool,
    /// Clip the global L2 norm of all gradients to this value; 0 disables.
    pub grad_clip_norm: f64,
    /// How modalities are hidden during training: `paper`, `uniform`, `size`, `bernoulli` or
    /// `full`.
    pub modality_dropout: ModalityDropout,
    /// Whether one subset serves the whole batch (`batch`, the default) or each sample draws
    /// its own (`sample`, for methods that zero a missing modality per sample).
    #[serde(default)]
    pub subset_draw: SubsetDraw,
    /// Share of patches centred on a tumour voxel, decided per patch.
    pub foreground_fraction: f64,
    /// Validate every this many epochs (and after the last); 0 never validates.
    pub validate_every: usize,
    /// Validate on at most this many validation cases (0: all).
    pub validation_cases: usize,
    /// After the last epoch, decide the post-processing of the best model on the
    /// validation cases (keep only the largest whole-tumour component or not, predicted
    /// from every modality subset; see `crate::infer::postprocess`) and save it with the
    /// model as `postprocess.json`. Absent in older files: true.
    #[serde(default = "default_true")]
    pub determine_postprocessing: bool,
    /// Seed of every random stream (weights, split, sampling, augmentation, dropout).
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// Finished batches each loading thread may keep waiting.
    pub prefetch: usize,
    /// Training cases held in memory. With more training cases than this, the data loader
    /// reads cases from the preprocessing cache when a batch needs them and keeps the most
    /// recently used this many (the results are the same); 0 loads every case before the
    /// first step. Validation cases are then read one at a time too.
    #[serde(default = "default_max_cases_in_memory")]
    pub max_cases_in_memory: usize,
    /// How cases are preprocessed (the `[preprocess]` table: `crop`, `margin`,
    /// `normalize`). Saved with every checkpoint (`train.toml`), so `predict` and `evaluate`
    /// preprocess as training did. Absent in older files: the defaults.
    #[serde(default)]
    pub preprocess: PreprocessSettings,
    /// Augmentation probabilities and ranges.
    pub augmentation: AugmentConfig,
    /// The network (the `[model]` table; `fusion` and `targets` live here).
    pub model: ModelConfig,
}

impl TrainConfig {
    /// How many of `available` validation cases training validates on
    /// ([`TrainConfig::validation_cases`]; 0: all).
    pub fn validation_count(&self, available: usize) -> usize {
        if self.validation_cases > 0 {
            available.min(self.validation_cases)
        } else {
            available
        }
    }

    /// A2FSeg's training recipe of `preset` (see [`TrainConfig::recipe`]).
    pub fn preset(preset: Preset) -> TrainConfig {
        Self::recipe(Arch::A2fseg, preset)
    }

    /// The training recipe of method `arch` at `preset`: its network
    /// ([`ModelConfig::of`]) and the optimiser, schedule, modality draw and epochs its
    /// authors train it with, scaled down for `small`.
    ///
    /// - `a2fseg`: the paper (Adam, lr 0.01, poly, 400 × 250) at `paper`, the authors' code
    ///   (SGD with Nesterov momentum 0.99, weight decay 3e-5, 800 × 250) at `authors`.
    /// - `a2fseg-released`: the authors' code at `paper` and `authors`; at `small` A2FSeg's
    ///   short Adam schedule.
    /// - `uhved`: Adam, lr 1e-3 divided by 4 every 10,000 steps (the released code's every
    ///   10 steps at `authors`), weight decay 1e-5, no gradient clipping, 60,000 steps, a
    ///   subset size then a subset per step (`size`); at `small` the short schedule with the
    ///   decay steps scaled to its length.
    /// - `mfi`: Adam, lr 5e-5 with poly decay, weight decay 1e-5, no gradient clipping, 1200
    ///   epochs, each modality kept with probability ½ per sample (`bernoulli`, `sample`); at
    ///   `small` the short schedule with the official command line's lr 5e-4.
    /// - `mmformer`: Adam with AMSGrad, lr 2e-4 with poly decay, L2 weight decay 1e-4, no
    ///   gradient clipping, batch 1, 1000 × 150, a subset drawn uniformly from the 15 per
    ///   sample; at `small` the short schedule.
    /// - `rfnet`: Adam with AMSGrad, lr 2e-4, weight decay 1e-4, poly 0.9, no gradient
    ///   clipping, batch 2, a subset drawn uniformly from the 15 per sample, 300 × 150 at
    ///   `paper` and `authors` (the official code); at `small` the short schedule.
    ///
    /// Every method keeps the same data pipeline (patch sampling, augmentation,
    /// preprocessing), so a comparison differs only in what the method is.
    pub fn recipe(arch: Arch, preset: Preset) -> TrainConfig {
        let base = Self::a2fseg_recipe(arch, preset);
        match arch {
            Arch::A2fseg => base,
            // SGD with momentum 0.99 needs the long schedule: on the short `small` one it
            // learns the phantoms far more slowly than Adam (measured: WT Dice 0.13 → 0.20
            // in 40 steps, against 0.19 → 0.61), so `small` keeps A2FSeg's short Adam recipe.
            Arch::A2fsegReleased => match preset {
                Preset::Small => base,
                Preset::Paper | Preset::Authors => TrainConfig {
                    preset,
                    ..Self::a2fseg_recipe(arch, Preset::Authors)
                },
            },
            Arch::Uhved => {
                use crate::model::uhved::recipe as r;
                let steps = match preset {
                    Preset::Small => base.epochs * base.iterations_per_epoch,
                    Preset::Paper | Preset::Authors => r::ITERATIONS,
                };
                let decay_every = match preset {
                    Preset::Authors => r::LR_DECAY_EVERY_RELEASED,
                    _ => (r::LR_DECAY_EVERY * steps / r::ITERATIONS).max(1),
                };
                TrainConfig {
                    epochs: steps.div_ceil(base.iterations_per_epoch),
                    batch_size: r::BATCH,
                    optimizer: OptimizerKind::Adam,
                    lr: r::LEARNING_RATE,
                    lr_schedule: LrSchedule::Step,
                    lr_step_iterations: decay_every,
                    lr_step_factor: 1.0 / r::LR_DECAY,
                    weight_decay: r::WEIGHT_DECAY,
                    grad_clip_norm: 0.0,
                    modality_dropout: ModalityDropout::Size,
                    ..base
                }
            }
            Arch::Mfi => {
                use crate::model::mfi::recipe as r;
                let (epochs, lr) = match preset {
                    Preset::Small => (base.epochs, r::LEARNING_RATE_ARGUMENT),
                    Preset::Paper | Preset::Authors => (r::EPOCHS, r::LEARNING_RATE),
                };
                TrainConfig {
                    epochs,
                    batch_size: r::BATCH,
                    optimizer: OptimizerKind::Adam,
                    lr,
                    lr_schedule: LrSchedule::Poly,
                    weight_decay: r::WEIGHT_DECAY,
                    grad_clip_norm: 0.0,
                    modality_dropout: ModalityDropout::Bernoulli,
                    subset_draw: SubsetDraw::Sample,
                    ..base
                }
            }
            Arch::Mmformer => {
                use crate::model::mmformer::recipe as r;
                let schedule = (r::EPOCHS, r::ITERATIONS_PER_EPOCH);
                Self::masked_uniform_recipe(
                    base,
                    preset,
                    schedule,
                    r::BATCH,
                    r::LEARNING_RATE,
                    r::WEIGHT_DECAY,
                )
            }
            Arch::Rfnet => {
                use crate::model::rfnet::recipe as r;
                let schedule = (r::EPOCHS, r::ITERATIONS_PER_EPOCH);
                Self::masked_uniform_recipe(
                    base,
                    preset,
                    schedule,
                    r::BATCH,
                    r::LEARNING_RATE,
                    r::WEIGHT_DECAY,
                )
            }
        }
    }

    /// The recipe shape RFNet's and mmFormer's official code share: Adam with AMSGrad, `lr`
    /// with poly 0.9 decay, L2 `weight_decay`, no gradient clipping, a subset drawn uniformly
    /// from the 15 per sample, `batch`; the official `(epochs, iterations per epoch)`
    /// `schedule` at `paper` and `authors`, A2FSeg's short schedule at `small`.
    fn masked_uniform_recipe(
        base: TrainConfig,
        preset: Preset,
        schedule: (usize, usize),
        batch: usize,
        lr: f64,
        weight_decay: f64,
    ) -> TrainConfig {
        let (epochs, iterations_per_epoch) = match preset {
            Preset::Small => (base.epochs, base.iterations_per_epoch),
            Preset::Paper | Preset::Authors => schedule,
        };
        TrainConfig {
            epochs,
            iterations_per_epoch,
            batch_size: batch,
            optimizer: OptimizerKind::Adam,
            amsgrad: true,
            lr,
            lr_schedule: LrSchedule::Poly,
            poly_power: 0.9,
            weight_decay,
            grad_clip_norm: 0.0,
            modality_dropout: ModalityDropout::Uniform,
            subset_draw: SubsetDraw::Sample,
            ..base
        }
    }

    /// A2FSeg's recipe (see [`TrainConfig::recipe`]) around the network of `arch`.
    fn a2fseg_recipe(arch: Arch, preset: Preset) -> TrainConfig {
        let paper_model = ModelConfig::of(arch, Preset::Paper);
        let paper = TrainConfig {
            preset,
            epochs: 400,
            iterations_per_epoch: 250,
            batch_size: 1,
            optimizer: OptimizerKind::Adam,
            lr: 0.01,
            poly_power: 0.9,
            lr_schedule: LrSchedule::Poly,
            lr_step_iterations: default_lr_step_iterations(),
            lr_step_factor: default_lr_step_factor(),
            momentum: 0.99,
            nesterov: true,
            weight_decay: 0.0,
            amsgrad: false,
            grad_clip_norm: 12.0,
            modality_dropout: ModalityDropout::Paper,
            subset_draw: SubsetDraw::Batch,
            foreground_fraction: 0.33,
            validate_every: 1,
            validation_cases: 0,
            determine_postprocessing: true,
            seed: 0,
            workers: 2,
            prefetch: 2,
            max_cases_in_memory: default_max_cases_in_memory(),
            preprocess: PreprocessSettings::default(),
            augmentation: AugmentConfig::default(),
            model: paper_model,
        };
        match preset {
            Preset::Paper => paper,
            Preset::Small => {
                let model = ModelConfig::of(arch, Preset::Small);
                TrainConfig {
                    epochs: 50,
                    iterations_per_epoch: 50,
                    validate_every: 5,
                    model,
                    ..paper
                }
            }
            Preset::Authors => TrainConfig {
                epochs: 800,
                optimizer: OptimizerKind::Sgd,
                weight_decay: 3e-5,
                model: ModelConfig::of(arch, Preset::Authors),
                ..paper
            },
        }
    }

    /// Resolves a configuration: the recipe of the method (`arch`, else the file's
    /// `[model] arch` key, else `a2fseg`) at the preset (`preset`, else the file's `preset`
    /// key, else `paper`), then the keys of the TOML text `file` (if any). `origin` names the
    /// file in error messages.
    pub fn resolve(
        arch: Option<Arch>,
        preset: Option<Preset>,
        file: Option<&str>,
        origin: &str,
    ) -> Result<TrainConfig> {
        let (file, mut user) = match file {
            Some(text) => {
                let (file, table) = ConfigFile::parse(origin, text)?;
                (Some(file), table)
            }
            None => (None, toml::Table::new()),
        };
        let file_preset: Option<Preset> = named_key(file.as_ref(), &user, "preset")?;
        let preset = preset.or(file_preset).unwrap_or(Preset::Paper);
        let file_arch: Option<Arch> = named_key(file.as_ref(), &user, "model.arch")?;
        let arch = arch.or(file_arch).unwrap_or_default();
        let mut base = toml::Table::try_from(TrainConfig::recipe(arch, preset))
            .context("cannot encode the preset")?;
        base.insert("preset".into(), toml::Value::String(preset.name().into()));
        let short_patch = user.contains_key("patch_size");
        lift_patch_size(&mut user);
        let mut merged = base.clone();
        merge(&mut merged, &user, "").map_err(|key| {
            let message = format!("unknown key '{key}'");
            match &file {
                Some(f) => f.error_at(&key, Part::Key, &message),
                None => anyhow::anyhow!("{message}"),
            }
        })?;
        if let Some(toml::Value::Table(model)) = merged.get_mut("model") {
            model.insert("arch".into(), toml::Value::String(arch.name().into()));
        }
        let Some(file) = file else {
            return merged.try_into().context("cannot decode the preset");
        };
        // The key of the file that a problem comes from: each of the file's settings alone
        // on the recipe, in turn, until one shows the problem. `check` gives the message.
        let culprit = |check: &dyn Fn(&str, toml::Table) -> Result<(), String>| {
            config_file::leaves(&user)
                .into_iter()
                .find_map(|(key, value)| {
                    let message = check(&key, config_file::with_leaf(&base, &key, &value)).err()?;
                    let in_file = if short_patch && key == "model.patch_size" {
                        "patch_size"
                    } else {
                        &key
                    };
                    Some(file.error_at(in_file, Part::Value, &message))
                })
        };
        let decode =
            |table: toml::Table| -> Result<TrainConfig, toml::de::Error> { table.try_into() };
        // A value of the wrong type or an unknown name: the decoder's message, after the key.
        let decodes = |key: &str, table: toml::Table| {
            decode(table)
                .map(drop)
                .map_err(|e| format!("{key}: {}", e.message()))
        };
        let cfg = decode(merged)
            .map_err(|e| culprit(&decodes).unwrap_or_else(|| file.error(e.message())))?;
        // A value out of range: the check's message names the key.
        let valid = |key: &str, table: toml::Table| {
            decodes(key, table.clone())?;
            decode(table)
                .map_err(|e| e.message().to_string())?
                .validate()
                .map_err(|e| format!("{e:#}"))
        };
        if let Err(e) = cfg.validate() {
            return Err(culprit(&valid).unwrap_or_else(|| file.error(&format!("{e:#}"))));
        }
        Ok(cfg)
    }

    /// Reads and resolves a TOML file (see [`TrainConfig::resolve`]).
    pub fn load(path: &Path, arch: Option<Arch>, preset: Option<Preset>) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::resolve(arch, preset, Some(&text), &path.display().to_string())
    }

    /// Parses a complete configuration (as written by [`TrainConfig::to_toml`]); every key
    /// must be present and known.
    pub fn from_toml(text: &str) -> Result<TrainConfig> {
        let mut table: toml::Table = toml::from_str(text)?;
        lift_patch_size(&mut table);
        if let Some(toml::Value::Table(model)) = table.get_mut("model") {
            // A later-added model key the file lacks takes its default
            // (`ModelConfig::ADDED_KEYS`).
            let defaults = toml::Table::try_from(ModelConfig::new())?;
            for key in ModelConfig::ADDED_KEYS {
                if let Some(v) = defaults.get(key) {
                    model.entry(key).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(table.try_into()?)
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).context("cannot encode the configuration as TOML")
    }

    /// Writes `config.toml` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# a2fseg training configuration (resolved: every setting of this run).\n{}",
            self.to_toml()?
        );
        crate::fsutil::atomic_write_bytes(path, text.as_bytes())
    }

    /// Checks values for consistency; the message names the offending key.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs >= 1, "epochs must be at least 1");
        ensure!(
            self.iterations_per_epoch >= 1,
            "iterations_per_epoch must be at least 1"
        );
        ensure!(self.batch_size >= 1, "batch_size must be at least 1");
        ensure!(
            self.model.patch_size.iter().all(|&p| p >= 1),
            "patch_size must be three positive sizes [x, y, z], got {:?}",
            self.model.patch_size
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "lr must be positive, got {}",
            self.lr
        );
        ensure!(
            self.poly_power.is_finite() && self.poly_power >= 0.0,
            "poly_power must be >= 0"
        );
        ensure!(
            self.lr_step_iterations >= 1,
            "lr_step_iterations must be at least 1"
        );
        ensure!(
            self.lr_step_factor > 0.0 && self.lr_step_factor <= 1.0,
            "lr_step_factor must be in (0, 1], got {}",
            self.lr_step_factor
        );
        ensure!(
            (0.0..1.0).contains(&self.momentum),
            "momentum must be in [0, 1), got {}",
            self.momentum
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight_decay must be >= 0"
        );
        ensure!(
            self.grad_clip_norm.is_finite() && self.grad_clip_norm >= 0.0,
            "grad_clip_norm must be >= 0 (0 disables clipping)"
        );
        ensure!(
            (0.0..=1.0).contains(&self.foreground_fraction),
            "foreground_fraction must be in [0, 1], got {}",
            self.foreground_fraction
        );
        ensure!(
            self.seed <= i64::MAX as u64,
            "seed must be at most {} (TOML integers are signed 64-bit)",
            i64::MAX
        );
        ensure!(self.workers >= 1, "workers must be at least 1");
        ensure!(
            self.model.spacing.is_none(),
            "[model] spacing is measured from the training data (the median spacing of the \
             training cases), not a setting"
        );
        self.augmentation.validate()?;
        self.model.validate().context("bad [model] settings")?;
        self.model
            .check_size(self.model.patch_size)
            .context("bad patch_size")?;
        Ok(())
    }
}

/// Default of [`TrainConfig::max_cases_in_memory`]: 64 cases (about 10 GB of BraTS, a few
/// hundred MB of 96³ phantoms).
fn default_max_cases_in_memory() -> usize {
    64
}

/// The value of the string key `key` (a dotted path such as `model.arch`) of the file's
/// table `user`, parsed by its name, with an error at its place in `file`.
fn named_key<T: FromStr<Err = String>>(
    file: Option<&ConfigFile>,
    user: &toml::Table,
    key: &str,
) -> Result<Option<T>> {
    let mut names = key.split('.');
    let first = names.next().and_then(|n| user.get(n));
    let value = names.fold(first, |v, n| v.and_then(|v| v.get(n)));
    let message = match value {
        Some(toml::Value::String(s)) => match s.parse::<T>() {
            Ok(v) => return Ok(Some(v)),
            Err(e) => format!("{key}: {e}"),
        },
        Some(_) => format!("{key}: expected a string"),
        None => return Ok(None),
    };
    Err(match file {
        Some(f) => f.error_at(key, Part::Value, &message),
        None => anyhow::anyhow!("{message}"),
    })
}

fn default_lr_step_iterations() -> usize {
    10_000
}

fn default_lr_step_factor() -> f64 {
    0.25
}

fn default_true() -> bool {
    true
}

/// The patch size is the network's setting (`[model] patch_size`, its one owner). A file may
/// still give it as a top-level `patch_size` key (the documented short form, and what files
/// written before the model owned it hold): that key is moved into `[model]`, where it wins
/// over a `[model] patch_size` of the same file.
fn lift_patch_size(table: &mut toml::Table) {
    if let Some(patch) = table.remove("patch_size") {
        let model = table
            .entry("model")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(model) = model {
            model.insert("patch_size".into(), patch);
        }
    }
}

/// Overrides `base` with `user`, recursing into tables; a key of `user` missing from `base`
/// is an error holding its dotted path.
fn merge(base: &mut toml::Table, user: &toml::Table, prefix: &str) -> Result<(), String> {
    for (k, v) in user {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => merge(b, u, &path)?,
            (Some(slot), _) => *slot = v.clone(),
            (None, _) => return Err(path),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_keeps_every_setting() {
        for p in [Preset::Paper, Preset::Small, Preset::Authors] {
            let mut c = TrainConfig::preset(p);
            c.seed = 12345;
            c.model.patch_size = [96, 64, 128];
            c.model.fusion = crate::model::Fusion::Hemis;
            c.augmentation.gamma_p = 0.25;
            c.preprocess.margin = 3;
            c.preprocess.normalize = false;
            let text = c.to_toml().unwrap();
            assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
            assert_eq!(
                TrainConfig::resolve(None, None, Some(&text), "x.toml").unwrap(),
                c
            );
            c.validate().unwrap();
        }
    }

    #[test]
    fn every_method_has_its_recipe() {
        for arch in Arch::ALL {
            for preset in [Preset::Small, Preset::Paper, Preset::Authors] {
                let c = TrainConfig::recipe(arch, preset);
                c.validate().unwrap();
                assert_eq!((c.model.arch, c.preset), (arch, preset));
                let text = c.to_toml().unwrap();
                assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
                // A file naming the method resolves to its recipe.
                let file = format!("[model]\narch = \"{arch}\"\n");
                assert_eq!(
                    TrainConfig::resolve(None, Some(preset), Some(&file), "f.toml").unwrap(),
                    c
                );
            }
        }
        let u = TrainConfig::recipe(Arch::Uhved, Preset::Paper);
        assert_eq!(u.epochs * u.iterations_per_epoch, 60_000);
        assert_eq!(
            (u.lr, u.lr_step_iterations, u.lr_step_factor),
            (1e-3, 10_000, 0.25)
        );
        assert_eq!(u.modality_dropout, ModalityDropout::Size);
        assert_eq!(u.model.patch_size, [112; 3]);
        assert_eq!(
            TrainConfig::recipe(Arch::Uhved, Preset::Authors).lr_step_iterations,
            10
        );
        let m = TrainConfig::recipe(Arch::Mfi, Preset::Paper);
        assert_eq!(
            (m.lr, m.epochs, m.weight_decay, m.lr_schedule),
            (5e-5, 1200, 1e-5, LrSchedule::Poly)
        );
        assert_eq!(
            (m.modality_dropout, m.subset_draw, m.model.patch_size),
            (ModalityDropout::Bernoulli, SubsetDraw::Sample, [128; 3])
        );
        let r = TrainConfig::recipe(Arch::A2fsegReleased, Preset::Paper);
        assert_eq!(
            (r.optimizer, r.epochs, r.weight_decay),
            (OptimizerKind::Sgd, 800, 3e-5)
        );
    }

    #[test]
    fn files_from_before_methods_and_schedules_still_load() {
        let c = TrainConfig::preset(Preset::Small);
        let mut table = toml::Table::try_from(&c).unwrap();
        for key in ["lr_schedule", "lr_step_iterations", "lr_step_factor"] {
            assert!(table.remove(key).is_some(), "{key}");
        }
        let model = table.get_mut("model").unwrap().as_table_mut().unwrap();
        assert!(model.remove("arch").is_some());
        let text = toml::to_string(&table).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        assert_eq!(
            TrainConfig::resolve(None, None, Some(&text), "x.toml").unwrap(),
            c
        );
    }

    #[test]
    fn files_override_the_preset_key_by_key() {
        let text = "preset = \"authors\"\nepochs = 3\n[augmentation]\nmirror_p = 0.0\n";
        let c = TrainConfig::resolve(None, None, Some(text), "f.toml").unwrap();
        assert_eq!(c.preset, Preset::Authors);
        assert_eq!(c.optimizer, OptimizerKind::Sgd);
        assert_eq!(c.epochs, 3);
        assert_eq!(c.augmentation.mirror_p, 0.0);
        assert_eq!(c.augmentation.gamma_p, 0.3);
        assert_eq!(c.preprocess, PreprocessSettings::default());
        let c =
            TrainConfig::resolve(None, None, Some("[preprocess]\nmargin = 2\n"), "f.toml").unwrap();
        assert_eq!((c.preprocess.margin, c.preprocess.crop), (2, true));
        // A complete file of an older version, without [preprocess], still reads.
        let mut table = toml::Table::try_from(TrainConfig::preset(Preset::Small)).unwrap();
        table.remove("preprocess");
        table.remove("max_cases_in_memory");
        let old = TrainConfig::from_toml(&toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(old.preprocess, PreprocessSettings::default());
        assert_eq!(old.max_cases_in_memory, 64);
        let model_text = "[model]\npoolings = 2\npatch_size = [16, 16, 8]\nfusion = \"average\"\n";
        let c =
            TrainConfig::resolve(None, Some(Preset::Small), Some(model_text), "f.toml").unwrap();
        assert_eq!(c.model.patch_size, [16, 16, 8]);
        // The top-level short form (and files written before the model owned the patch
        // size) set the model's, and win over its key in the same file.
        let both = "patch_size = [8, 8, 8]\n[model]\npoolings = 2\npatch_size = [16, 16, 8]\n";
        let c = TrainConfig::resolve(None, Some(Preset::Small), Some(both), "f.toml").unwrap();
        assert_eq!(c.model.patch_size, [8, 8, 8]);
        let mut old = toml::Table::try_from(TrainConfig::preset(Preset::Small)).unwrap();
        old.insert(
            "patch_size".into(),
            toml::Value::try_from([32, 32, 16]).unwrap(),
        );
        let old = TrainConfig::from_toml(&toml::to_string(&old).unwrap()).unwrap();
        assert_eq!(old.model.patch_size, [32, 32, 16]);
        let c =
            TrainConfig::resolve(None, Some(Preset::Small), Some(model_text), "f.toml").unwrap();
        assert_eq!(c.model.fusion, crate::model::Fusion::Average);
        c.validate().unwrap();
        // The command line's preset wins over the file's.
        let c = TrainConfig::resolve(None, Some(Preset::Small), Some(text), "f.toml").unwrap();
        assert_eq!(c.optimizer, OptimizerKind::Adam);
        assert_eq!(
            c.model.patch_size,
            ModelConfig::preset("small").unwrap().patch_size
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = TrainConfig::resolve(None, None, Some("epoch = 3\n"), "f.toml").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "f.toml: line 1, column 1: unknown key 'epoch'"
        );
        let e = TrainConfig::resolve(None, None, Some("[augmentation]\nflip = 1\n"), "f.toml")
            .unwrap_err();
        assert!(format!("{e:#}").contains("augmentation.flip"), "{e:#}");
        let e =
            TrainConfig::resolve(None, None, Some("[model]\nlayers = 3\n"), "f.toml").unwrap_err();
        assert!(format!("{e:#}").contains("model.layers"), "{e:#}");
        assert!(TrainConfig::from_toml("epoch = 3").is_err());
        let e = TrainConfig::resolve(None, None, Some("optimizer = \"rmsprop\"\n"), "f.toml")
            .unwrap_err();
        assert!(format!("{e:#}").contains("f.toml"), "{e:#}");
        let mut c = TrainConfig::preset(Preset::Small);
        c.foreground_fraction = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("foreground_fraction")
        );
        let mut c = TrainConfig::preset(Preset::Small);
        c.model.patch_size = [30, 32, 32];
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("patch_size"));
    }

    #[test]
    fn bad_values_are_one_line_naming_file_line_and_key() {
        let e = |text: &str| {
            let e = TrainConfig::resolve(None, None, Some(text), "f.toml").unwrap_err();
            format!("{e:#}")
        };
        assert_eq!(
            e("epochs = 2\nlr = \"x\"\n"),
            "f.toml: line 2, column 6: lr: invalid type: string \"x\", expected f64"
        );
        let got = e("optimizer = \"adamw\"\n");
        assert!(
            got.starts_with("f.toml: line 1, column 13: optimizer: unknown variant `adamw`"),
            "{got}"
        );
        let got = e("[model]\nfusion = \"foo\"\n");
        assert!(
            got.starts_with("f.toml: line 2, column 10: model.fusion: unknown fusion 'foo'"),
            "{got}"
        );
        assert_eq!(
            e("preset = \"big\"\n"),
            "f.toml: line 1, column 10: preset: unknown preset 'big' (expected paper, small, \
             authors)"
        );
        assert_eq!(
            e("epochs = 3\n\n[augmentation]\nlr = 1\n"),
            "f.toml: line 4, column 1: unknown key 'augmentation.lr'"
        );
        // Out of range: the check's message names the key.
        assert_eq!(
            e("epochs = 3\nlr = -1.0\n"),
            "f.toml: line 2, column 6: lr must be positive, got -1"
        );
        let got = e("patch_size = [30, 32, 32]\n");
        assert!(got.starts_with("f.toml: line 1, column 14: "), "{got}");
        assert!(got.contains("patch_size does not fit the network"), "{got}");
        // A syntax error: one line, no snippet.
        let got = e("epochs = 3\nlr = \n");
        assert!(got.starts_with("f.toml: line 2, column 6: "), "{got}");
        assert!(!got.contains('\n') && !got.contains('|'), "{got}");
    }

    #[test]
    fn presets_match_the_paper_and_the_authors_code() {
        let p = TrainConfig::preset(Preset::Paper);
        assert_eq!(
            (p.optimizer, p.lr, p.epochs),
            (OptimizerKind::Adam, 0.01, 400)
        );
        assert_eq!(p.model.patch_size, [128, 128, 128]);
        let a = TrainConfig::preset(Preset::Authors);
        assert_eq!(
            (a.optimizer, a.momentum, a.nesterov),
            (OptimizerKind::Sgd, 0.99, true)
        );
        assert_eq!(
            (a.weight_decay, a.grad_clip_norm, a.epochs),
            (3e-5, 12.0, 800)
        );
    }
}
