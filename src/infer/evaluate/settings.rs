//! `evaluate.json` (this module owns the format): the settings an evaluation folder was
//! made with, written on the first run; a rerun with other settings is refused, so the
//! rows of `cases.csv` always belong together.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write_bytes;
use crate::infer::plan::WindowChoice;
use crate::infer::postprocess::Postprocess;
use crate::infer::tta::Tta;

/// The file name in the output folder.
pub const FILE: &str = "evaluate.json";

/// The settings an output folder was made with (`evaluate.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateSettings {
    /// Model names and their resolved model folders.
    pub models: Vec<(String, PathBuf)>,
    /// Dataset folder.
    pub data: PathBuf,
    /// Split file, if any.
    pub split: Option<PathBuf>,
    /// Part of the split.
    pub part: String,
    /// Sliding-window step.
    pub step: f64,
    /// The inference plan asked for (files written before plans existed: sliding).
    #[serde(default = "sliding")]
    pub window: WindowChoice,
    /// Memory cap in bytes of the auto plan (only with `window` auto).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Test-time mirroring.
    pub tta: Tta,
    /// HD95 of a region empty in exactly one of prediction and truth (mm).
    pub hd95_penalty: f64,
    /// ET post-processing threshold (voxels), if any.
    pub et_postprocess: Option<usize>,
    /// The post-processing of each model's label maps, in model order.
    #[serde(default)]
    pub postprocess: Vec<Postprocess>,
}

/// The plan of evaluations made before `--window` existed.
fn sliding() -> WindowChoice {
    WindowChoice::Sliding
}

impl EvaluateSettings {
    /// Writes the settings to `out/evaluate.json` on the first run; on a rerun, checks that
    /// the file holds these same settings.
    pub fn check_or_write(&self, out: &Path) -> Result<()> {
        let path = out.join(FILE);
        if !path.exists() {
            return atomic_write_bytes(&path, &serde_json::to_vec_pretty(self)?);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let old: EvaluateSettings = serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if &old != self {
            bail!(
                "{} holds an evaluation with other settings (models, data, split, step, window, \
                 tta, \
                 post-processing or metric options); choose another --out or delete it",
                out.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_with_other_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = EvaluateSettings {
            models: vec![("m".into(), "/r/m".into())],
            data: "/d".into(),
            split: None,
            part: "test".into(),
            step: 0.5,
            window: WindowChoice::Sliding,
            max_memory: None,
            tta: Tta::OFF,
            hd95_penalty: 373.13,
            et_postprocess: None,
            postprocess: vec![Postprocess::NONE],
        };
        settings.check_or_write(dir.path()).unwrap();
        settings.check_or_write(dir.path()).unwrap();
        let other = EvaluateSettings {
            step: 0.25,
            ..settings
        };
        let e = other.check_or_write(dir.path()).unwrap_err();
        assert!(e.to_string().contains("other settings"), "{e}");
    }
}
