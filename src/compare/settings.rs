//! `compare.json` (this module owns the format): the settings a comparison folder was made
//! with and the plan its trainings follow (epochs per method), written before the first
//! training. A rerun with the same settings reuses the plan, so the finished trainings and
//! evaluations stay valid; a rerun with other settings is refused with the keys that differ.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::methods::{Method, Recipe};
use crate::fsutil::atomic_write_bytes;
use crate::infer::Tta;
use crate::model::Preset;

/// The file name in the output folder.
pub const FILE: &str = "compare.json";

/// What decides a comparison's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// Dataset folder (absolute).
    pub data: PathBuf,
    /// The split file given (absolute), or `None`: a seeded 70/10/20 split.
    pub split: Option<PathBuf>,
    /// The methods, in the order given.
    pub methods: Vec<Method>,
    /// The preset of every method.
    pub preset: Preset,
    /// Own or common training recipe.
    pub recipe: Recipe,
    /// The time budget in minutes, if any (it decides the epochs).
    pub budget_minutes: Option<f64>,
    /// Epochs for every method instead of the recipe's (or the budget's).
    pub epochs: Option<usize>,
    /// Optimiser steps per epoch instead of the recipe's.
    pub iterations_per_epoch: Option<usize>,
    /// Seed of the split and of every training.
    pub seed: u64,
    /// Test-time mirroring of the evaluations (its cost enters the budget's plan). Absent
    /// in files of earlier versions, which did not mirror.
    #[serde(default)]
    pub tta: Tta,
}

/// The epochs one method trains, as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodPlan {
    /// The method.
    pub method: Method,
    /// Epochs to train.
    pub epochs: usize,
    /// The measured seconds of one training step, when a budget was planned.
    pub step_seconds: Option<f64>,
    /// The wall-clock seconds of the budget given to this method, when planned.
    pub share_seconds: Option<f64>,
}

/// The contents of `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareFile {
    /// The settings.
    pub settings: CompareSettings,
    /// One entry per method, in the settings' order.
    pub plan: Vec<MethodPlan>,
}

impl CompareFile {
    /// Reads `out/compare.json` if it exists: `None` when it does not, an error when it
    /// holds other settings than `settings` (naming the keys that differ).
    pub fn load_matching(out: &Path, settings: &CompareSettings) -> Result<Option<CompareFile>> {
        let path = out.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let old: CompareFile = serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let differ = differences(&old.settings, settings);
        if !differ.is_empty() {
            bail!(
                "{} holds a comparison with other settings ({}); choose another --out or delete \
                 the folder",
                path.display(),
                differ.join(", ")
            );
        }
        Ok(Some(old))
    }

    /// Writes `out/compare.json` atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).context("cannot encode compare.json")?;
        atomic_write_bytes(&out.join(FILE), &json)
    }

    /// The plan of `method`.
    pub fn plan_of(&self, method: Method) -> Option<&MethodPlan> {
        self.plan.iter().find(|p| p.method == method)
    }
}

/// `key: old → new` for every setting that differs.
fn differences(old: &CompareSettings, new: &CompareSettings) -> Vec<String> {
    let a = serde_json::to_value(old).unwrap_or_default();
    let b = serde_json::to_value(new).unwrap_or_default();
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["unreadable settings".to_string()];
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                v.map_or_else(|| "absent".to_string(), |v| v.to_string())
            };
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CompareSettings {
        CompareSettings {
            data: "/d".into(),
            split: None,
            methods: vec![Method::A2FSEG, Method::AVERAGE],
            preset: Preset::Small,
            recipe: Recipe::Own,
            budget_minutes: None,
            epochs: Some(2),
            iterations_per_epoch: None,
            seed: 1,
            tta: Tta::OFF,
        }
    }

    #[test]
    fn a_rerun_reuses_the_plan_and_other_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            CompareFile::load_matching(dir.path(), &settings())
                .unwrap()
                .is_none()
        );
        let file = CompareFile {
            settings: settings(),
            plan: vec![MethodPlan {
                method: Method::A2FSEG,
                epochs: 2,
                step_seconds: None,
                share_seconds: None,
            }],
        };
        file.save(dir.path()).unwrap();
        let back = CompareFile::load_matching(dir.path(), &settings())
            .unwrap()
            .unwrap();
        assert_eq!(back, file);
        assert_eq!(back.plan_of(Method::A2FSEG).unwrap().epochs, 2);
        let mut other = settings();
        other.methods = vec![Method::A2FSEG, Method::HEMIS];
        other.epochs = Some(3);
        let e = CompareFile::load_matching(dir.path(), &other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("epochs: 2 → 3"), "{e}");
        assert!(
            e.contains(r#"methods: ["a2fseg","average"] → ["a2fseg","hemis"]"#),
            "{e}"
        );
        assert!(!e.contains("seed"), "{e}");
    }
}
