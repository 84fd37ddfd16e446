//! Checkpoints that survive `kill -9`.
//!
//! A checkpoint is a folder: the model folder of [`crate::model::save_model`]
//! (`config.json`, `model.safetensors`) plus `optimizer.bpk` (Burn's optimiser record),
//! `state.json` ([`TrainState`]: epoch and iteration counters, partial epoch sums, the log
//! so far, the best score) and `train.toml` (the training configuration).
//!
//! It is written whole into `.NAME.tmp`, every file synced, then swapped in by renames:
//! `NAME → .NAME.old`, `.NAME.tmp → NAME`, delete `.NAME.old`. Whenever the process dies,
//! either `NAME` or `.NAME.old` is a complete checkpoint; [`recover`] restores the latter
//! if the former is missing. Random streams are keyed by `(seed, epoch, iteration)` (see
//! [`super::rng`]), so the counters are the whole random state.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use super::log::LogRow;

/// Version of `state.json`.
pub const STATE_FORMAT: u32 = 1;
/// File name of the training state in a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// File name of the optimiser state in a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// File name of the training configuration in a checkpoint.
pub const TRAIN_CONFIG_FILE: &str = "train.toml";

/// Sums over the steps done so far in the current epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "EpochSumsFile")]
pub struct EpochSums {
    /// Steps summed.
    pub steps: usize,
    /// Σ total loss.
    pub total: f64,
    /// Σ of each loss term of the network ([`crate::model::Network::loss_terms`], in that
    /// order); empty before the first step.
    pub terms: Vec<f64>,
    /// Seconds spent on the epoch so far.
    pub seconds: f64,
}

impl EpochSums {
    /// Adds one step's losses: the total, then the terms.
    pub fn add(&mut self, losses: &[f64]) {
        self.steps += 1;
        self.total += losses[0];
        let terms = &losses[1..];
        self.terms.resize(terms.len(), 0.0);
        for (sum, v) in self.terms.iter_mut().zip(terms) {
            *sum += v;
        }
    }
}

/// [`EpochSums`] as `state.json` holds it: also the A2FSeg-only fields `modality`,
/// `average` and `adaptive` of checkpoints written before loss terms were named by the
/// network, which become its three terms.
#[derive(Deserialize)]
struct EpochSumsFile {
    steps: usize,
    total: f64,
    #[serde(default)]
    terms: Vec<f64>,
    modality: Option<f64>,
    average: Option<f64>,
    adaptive: Option<f64>,
    seconds: f64,
}

impl From<EpochSumsFile> for EpochSums {
    fn from(f: EpochSumsFile) -> EpochSums {
        let terms = match (f.modality, f.average, f.adaptive) {
            (Some(m), Some(a), Some(d)) if f.terms.is_empty() => vec![m, a, d],
            _ => f.terms,
        };
        EpochSums {
            steps: f.steps,
            total: f.total,
            terms,
            seconds: f.seconds,
        }
    }
}

/// The best validation score so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Epoch number (from 1) of the best model.
    pub epoch: usize,
    /// Its mean full-modality Dice over WT, TC, ET.
    pub mean_dice: f64,
}

/// Counters and history saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The epoch to run next (from 0).
    pub next_epoch: usize,
    /// The iteration of `next_epoch` to run next (0 unless stopped mid-epoch).
    pub next_iteration: usize,
    /// Sums of the partially done epoch.
    pub partial: EpochSums,
    /// Log rows of the finished epochs.
    pub rows: Vec<LogRow>,
    /// Best validation score so far.
    pub best: Option<Best>,
    /// Optimiser steps done in total.
    pub steps: u64,
}

impl TrainState {
    /// The state of a fresh run.
    pub fn new() -> TrainState {
        TrainState {
            format: STATE_FORMAT,
            next_epoch: 0,
            next_iteration: 0,
            partial: EpochSums::default(),
            rows: Vec::new(),
            best: None,
            steps: 0,
        }
    }

    /// Reads `state.json` from checkpoint folder `dir`.
    pub fn load(dir: &Path) -> Result<TrainState> {
        let path = dir.join(STATE_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let state: TrainState = serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(
            state.format == STATE_FORMAT,
            "{} has format {}, this a2fseg reads format {STATE_FORMAT}",
            path.display(),
            state.format
        );
        Ok(state)
    }

    /// Writes `state.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::fsutil::atomic_write_bytes(&dir.join(STATE_FILE), text.as_bytes())
    }
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

fn sibling(target: &Path, suffix: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .with_context(|| format!("{} has no folder name", target.display()))?;
    let parent = target.parent().unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy())))
}

/// Makes `target` a complete checkpoint again after a crash during [`write_atomically`]:
/// if it is missing but its previous version `.NAME.old` exists, that is moved back.
pub fn recover(target: &Path) -> Result<()> {
    let old = sibling(target, "old")?;
    if !target.exists() && old.is_dir() {
        fs::rename(&old, target).with_context(|| {
            format!("cannot restore {} from {}", target.display(), old.display())
        })?;
    }
    Ok(())
}

/// Fsyncs every file of `dir` (not recursive) and the folder itself.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Replaces folder `target` by a new one that `fill` writes, such that at every moment
/// `target` or `.NAME.old` is complete (see the module documentation).
pub fn write_atomically(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .with_context(|| format!("cannot create folder {}", parent.display()))?;
    let tmp = sibling(target, "tmp")?;
    let old = sibling(target, "old")?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("cannot create folder {}", tmp.display()))?;
    fill(&tmp)?;
    sync_folder(&tmp)?;
    recover(target)?;
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    if target.exists() {
        fs::rename(target, &old)
            .with_context(|| format!("cannot move {} aside", target.display()))?;
    }
    fs::rename(&tmp, target).with_context(|| format!("cannot write {}", target.display()))?;
    sync_dir(parent)?;
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::log::LossTerms;

    #[test]
    fn atomic_folder_swap_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("checkpoints/latest");
        write_atomically(&target, |d| {
            fs::write(d.join("a"), "1")?;
            Ok(())
        })
        .unwrap();
        write_atomically(&target, |d| {
            fs::write(d.join("a"), "2")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["latest"]);

        // A failed fill leaves the old checkpoint untouched.
        assert!(write_atomically(&target, |_| anyhow::bail!("disk full")).is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");

        // A crash between the two renames: only `.latest.old` exists.
        let old = dir.path().join("checkpoints/.latest.old");
        fs::rename(&target, &old).unwrap();
        recover(&target).unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");
    }

    #[test]
    fn state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TrainState::new();
        s.next_epoch = 3;
        s.partial.total = 1.25;
        s.best = Some(Best {
            epoch: 1,
            mean_dice: 0.5,
        });
        s.save(dir.path()).unwrap();
        assert_eq!(TrainState::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn floats_survive_the_state_file_bit_for_bit() {
        // 17-digit values that a best-effort float parser may round one unit off (a resumed
        // run's log must equal an uninterrupted one's; serde_json's float_roundtrip).
        let hard = [
            1.7174999117851257,
            0.1 + 0.2,
            1e-300 / 3.0,
            7.513188123703003,
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut s = TrainState::new();
        s.partial.terms = vec![0.0, 0.0, hard[0]];
        s.partial.total = hard[1];
        s.best = Some(Best {
            epoch: 2,
            mean_dice: hard[2],
        });
        for (i, &v) in hard.iter().enumerate() {
            s.rows.push(LogRow {
                epoch: i + 1,
                lr: v,
                loss_total: v * 3.0,
                loss_terms: LossTerms(vec![
                    ("modality".into(), v / 7.0),
                    ("average".into(), -v),
                    ("adaptive".into(), v),
                ]),
                val_dice_wt: Some(v / 11.0),
                val_dice_tc: None,
                val_dice_et: Some(v),
                seconds: v,
            });
        }
        s.save(dir.path()).unwrap();
        let back = TrainState::load(dir.path()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.partial.terms[2].to_bits(), hard[0].to_bits());
        assert_eq!(back.rows[0].loss_terms.0[2].1.to_bits(), hard[0].to_bits());
    }

    #[test]
    fn states_written_before_named_loss_terms_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"format": 1, "next_epoch": 1, "next_iteration": 2,
            "partial": {"steps": 2, "total": 3.0, "modality": 1.0, "average": 0.5,
                        "adaptive": 0.25, "seconds": 4.0},
            "rows": [{"epoch": 1, "lr": 0.01, "loss_total": 2.0, "loss_modality": 1.0,
                      "loss_average": 0.5, "loss_adaptive": 0.5, "val_dice_wt": null,
                      "val_dice_tc": null, "val_dice_et": null, "seconds": 1.0}],
            "best": null, "steps": 7}"#
            .replace("\"format\": 1", &format!("\"format\": {STATE_FORMAT}"));
        std::fs::write(dir.path().join(STATE_FILE), old).unwrap();
        let s = TrainState::load(dir.path()).unwrap();
        assert_eq!(s.partial.terms, vec![1.0, 0.5, 0.25]);
        assert_eq!(s.partial.steps, 2);
        let names: Vec<&str> = s.rows[0]
            .loss_terms
            .0
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["modality", "average", "adaptive"]);
    }
}
