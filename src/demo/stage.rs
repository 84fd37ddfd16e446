//! Resumable pipeline stages: each stage works in its own folder under the demo's output
//! folder and, when finished, writes a done-marker `.done.json` there. A second run skips
//! every stage whose marker exists with the same fingerprint (the stage's parameters and
//! those of the stages it depends on); a stage with a stale marker is redone from scratch.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::atomic_write_bytes;

/// Name of the done-marker file inside a stage folder.
pub const MARKER: &str = ".done.json";

/// What a finished stage recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageMarker {
    /// Stage name.
    pub stage: String,
    /// Hex SHA-256 of the stage's parameters and its inputs' fingerprints.
    pub fingerprint: String,
    /// Wall-clock seconds the stage took.
    pub seconds: f64,
    /// Anything the stage wants to remember (e.g. planned epochs, counts).
    #[serde(default)]
    pub info: serde_json::Value,
}

/// The state of a stage folder before running.
#[derive(Debug, Clone, PartialEq)]
pub enum StageState {
    /// Finished with the same fingerprint: reuse.
    Done(StageMarker),
    /// The folder exists without a marker: an interrupted run (a stage may resume it).
    Partial,
    /// A marker with a different fingerprint: parameters changed, redo.
    Stale,
    /// Nothing there yet.
    Fresh,
}

/// The parameters of a stage that evaluates a model on the test cases with test-time
/// mirroring `tta` (`demo`'s and `compare`'s): without mirroring those of earlier versions,
/// so their finished evaluations stay valid.
pub fn test_evaluation_params(tta: crate::infer::Tta) -> serde_json::Value {
    if tta.is_off() {
        serde_json::json!("test")
    } else {
        serde_json::json!(["test", tta.to_string()])
    }
}

/// One stage: its name, folder and fingerprint.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Short name, also the folder name (`phantoms`, `train-adaptive`, …).
    pub name: String,
    /// The stage's folder.
    pub dir: PathBuf,
    /// Hex SHA-256 over the parameters and upstream fingerprints.
    pub fingerprint: String,
}

impl Stage {
    /// The stage `name` under `root`; `params` are its settings (any serde value) and
    /// `upstream` the stages whose outputs it reads.
    pub fn new<P: Serialize>(root: &Path, name: &str, params: &P, upstream: &[&Stage]) -> Stage {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([0]);
        // Serialising plain settings cannot fail; an error would only weaken the reuse check.
        h.update(serde_json::to_vec(params).unwrap_or_default());
        for u in upstream {
            h.update([0]);
            h.update(u.fingerprint.as_bytes());
        }
        Stage {
            name: name.to_string(),
            dir: root.join(name),
            fingerprint: hex::encode(h.finalize()),
        }
    }

    /// Path of the done-marker.
    pub fn marker_path(&self) -> PathBuf {
        self.dir.join(MARKER)
    }

    /// The marker if present and readable.
    pub fn marker(&self) -> Option<StageMarker> {
        let text = fs::read_to_string(self.marker_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Inspects the folder.
    pub fn state(&self) -> StageState {
        match self.marker() {
            Some(m) if m.fingerprint == self.fingerprint => StageState::Done(m),
            Some(_) => StageState::Stale,
            None if self.marker_path().exists() => StageState::Stale,
            None if self.dir.exists() => StageState::Partial,
            None => StageState::Fresh,
        }
    }

    /// Empties the stage folder (after a stale marker, or for stages that cannot resume).
    pub fn clear(&self) -> Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Writes the done-marker (atomically, last thing a stage does).
    pub fn finish(&self, seconds: f64, info: serde_json::Value) -> Result<StageMarker> {
        let marker = StageMarker {
            stage: self.name.clone(),
            fingerprint: self.fingerprint.clone(),
            seconds,
            info,
        };
        let json = serde_json::to_vec_pretty(&marker).context("cannot encode stage marker")?;
        atomic_write_bytes(&self.marker_path(), &json)?;
        Ok(marker)
    }

    /// Runs the stage unless it is done: a stale folder is cleared first; `resumable`
    /// stages keep a partial folder (they continue it), others start it afresh. `work`
    /// gets the folder (created) and returns the marker's `info`. Returns the marker and
    /// whether it was reused.
    pub fn run<F>(&self, resumable: bool, work: F) -> Result<(StageMarker, bool)>
    where
        F: FnOnce(&Path) -> Result<serde_json::Value>,
    {
        match self.state() {
            StageState::Done(m) => return Ok((m, true)),
            StageState::Stale => self.clear()?,
            StageState::Partial if !resumable => self.clear()?,
            StageState::Partial | StageState::Fresh => {}
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create folder {}", self.dir.display()))?;
        let start = Instant::now();
        let info = work(&self.dir).with_context(|| format!("stage '{}' failed", self.name))?;
        let marker = self.finish(start.elapsed().as_secs_f64(), info)?;
        Ok((marker, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn fingerprint_depends_on_params_and_upstream() {
        let root = Path::new("/x");
        let a = Stage::new(root, "a", &(1, "p"), &[]);
        let a2 = Stage::new(root, "a", &(2, "p"), &[]);
        assert_ne!(a.fingerprint, a2.fingerprint);
        let b = Stage::new(root, "b", &(), &[&a]);
        let b2 = Stage::new(root, "b", &(), &[&a2]);
        assert_ne!(b.fingerprint, b2.fingerprint);
        assert_eq!(b.dir, root.join("b"));
        assert_eq!(b.fingerprint, Stage::new(root, "b", &(), &[&a]).fingerprint);
    }

    #[test]
    fn second_run_reuses_and_changed_params_redo() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let work = |d: &Path| {
            calls.set(calls.get() + 1);
            fs::write(d.join("out.txt"), "x")?;
            Ok(serde_json::json!({"n": 3}))
        };
        let s = Stage::new(dir.path(), "phantoms", &5, &[]);
        assert_eq!(s.state(), StageState::Fresh);
        let (m, reused) = s.run(false, work).unwrap();
        assert!(!reused);
        assert_eq!(m.info["n"], 3);
        let (_, reused) = s.run(false, work).unwrap();
        assert!(reused);
        assert_eq!(calls.get(), 1);

        // Other parameters: the old output is removed and the stage reruns.
        let s6 = Stage::new(dir.path(), "phantoms", &6, &[]);
        assert_eq!(s6.state(), StageState::Stale);
        fs::write(s6.dir.join("old.txt"), "old").unwrap();
        s6.run(false, work).unwrap();
        assert_eq!(calls.get(), 2);
        assert!(!s6.dir.join("old.txt").exists());
    }

    #[test]
    fn partial_folders_resume_only_when_resumable_and_failures_leave_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let s = Stage::new(dir.path(), "train", &1, &[]);
        let r = s.run(true, |d| {
            fs::write(d.join("checkpoint"), "half")?;
            anyhow::bail!("killed")
        });
        assert!(r.unwrap_err().to_string().contains("stage 'train' failed"));
        assert_eq!(s.state(), StageState::Partial);
        s.run(true, |d| {
            assert!(
                d.join("checkpoint").exists(),
                "resumable stage keeps its files"
            );
            Ok(serde_json::Value::Null)
        })
        .unwrap();
        let e = Stage::new(dir.path(), "eval", &1, &[]);
        fs::create_dir_all(&e.dir).unwrap();
        fs::write(e.dir.join("partial"), "x").unwrap();
        e.run(false, |d| {
            assert!(
                !d.join("partial").exists(),
                "non-resumable stage starts afresh"
            );
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    }
}
