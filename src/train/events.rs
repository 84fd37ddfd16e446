//! What a training run reports, as events rendered by a [`crate::progress::Sink`]: text
//! lines on stderr (`--log-format text`), JSON objects on stdout (`--log-format json`:
//! `"event"` is `start`, `epoch`, `postprocessing`, `done` or `interrupted`), or nothing
//! (`--quiet` with text).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::checkpoint::Best;
use super::log::LogRow;
use crate::infer::postprocess::Decision;
use crate::progress::Event;

/// One event of a training run.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// Resuming with a configuration other than the checkpoint's (text only).
    ConfigDiffers,
    /// The data is ready and the model built: the first step comes next.
    Start(StartInfo),
    /// An epoch finished (after its validation and checkpoints).
    Epoch {
        /// Its `log.csv` row.
        row: &'a LogRow,
        /// Epochs of the run.
        epochs: usize,
        /// The best epoch so far.
        best: Option<&'a Best>,
    },
    /// The post-processing decided on the validation cases after the last epoch.
    Postprocessing(&'a Decision),
    /// The run ended, finished or stopped (JSON only).
    Finished {
        /// The run directory.
        run_dir: &'a PathBuf,
        /// Epochs finished over all sessions.
        epochs_completed: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Optimiser steps over all sessions.
        steps: u64,
        /// The best validation score.
        best: Option<&'a Best>,
        /// Whether it stopped early (Ctrl-C or a step limit).
        interrupted: bool,
    },
}

/// What the `start` event says.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Training cases.
    pub train_cases: usize,
    /// Validation cases.
    pub validation_cases: usize,
    /// Whether training cases are read from the cache as needed.
    pub cases_read_on_demand: bool,
    /// The preprocessing cache folder.
    pub cache_dir: PathBuf,
    /// Training cases kept in memory when read on demand.
    pub max_cases_in_memory: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Steps per epoch.
    pub iterations_per_epoch: usize,
    /// Patch size `[x, y, z]`.
    pub patch_size: [usize; 3],
    /// Whether this session resumes a run.
    pub resume: bool,
    /// The epoch (from 0) of the first step.
    pub resume_epoch: usize,
    /// The iteration (from 0) of the first step within it.
    pub resume_iteration: usize,
}

impl Event for TrainEvent<'_> {
    fn text(&self) -> Option<String> {
        match self {
            TrainEvent::ConfigDiffers => Some(
                "note: the configuration differs from the checkpoint's; the run will not \
                 match an uninterrupted one"
                    .into(),
            ),
            TrainEvent::Start(s) => {
                let mut line = format!(
                    "training on {} cases ({} for validation), {} parameters, {} epochs × {} iterations, patch {:?}{}",
                    s.train_cases,
                    s.validation_cases,
                    s.parameters,
                    s.epochs,
                    s.iterations_per_epoch,
                    s.patch_size,
                    if s.resume {
                        format!(
                            ", resuming at epoch {} iteration {}",
                            s.resume_epoch, s.resume_iteration
                        )
                    } else {
                        String::new()
                    }
                );
                if s.cases_read_on_demand {
                    line.push_str(&format!(
                        "\ncases are read from the cache {} as needed ({} kept in memory)",
                        s.cache_dir.display(),
                        s.max_cases_in_memory
                    ));
                }
                Some(line)
            }
            TrainEvent::Epoch { row, epochs, .. } => {
                let dice = match (row.val_dice_wt, row.val_dice_tc, row.val_dice_et) {
                    (Some(w), Some(t), Some(e)) => {
                        format!("  val Dice WT {w:.3} TC {t:.3} ET {e:.3}")
                    }
                    _ => String::new(),
                };
                Some(format!(
                    "epoch {}/{}  lr {:.5}  loss {:.4} (modality {:.4}, average {:.4}, adaptive {:.4}){}  {:.1} s",
                    row.epoch,
                    epochs,
                    row.lr,
                    row.loss_total,
                    row.loss_modality,
                    row.loss_average,
                    row.loss_adaptive,
                    dice,
                    row.seconds
                ))
            }
            TrainEvent::Postprocessing(d) => Some(format!("post-processing: {}", d.summary())),
            TrainEvent::Finished { .. } => None,
        }
    }

    fn json(&self) -> Option<Value> {
        match self {
            TrainEvent::ConfigDiffers => None,
            TrainEvent::Start(s) => Some(json!({
                "event": "start",
                "run_dir": s.run_dir,
                "train_cases": s.train_cases,
                "validation_cases": s.validation_cases,
                "cases_read_on_demand": s.cases_read_on_demand,
                "parameters": s.parameters,
                "epochs": s.epochs,
                "resume_epoch": s.resume_epoch,
                "resume_iteration": s.resume_iteration,
            })),
            TrainEvent::Epoch { row, best, .. } => {
                let mut v = serde_json::to_value(row).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("event".into(), json!("epoch"));
                    obj.insert("best_epoch".into(), json!(best.map(|b| b.epoch)));
                }
                Some(v)
            }
            TrainEvent::Postprocessing(d) => {
                Some(json!({ "event": "postprocessing", "decision": d }))
            }
            TrainEvent::Finished {
                run_dir,
                epochs_completed,
                epochs,
                steps,
                best,
                interrupted,
            } => Some(json!({
                "event": if *interrupted { "interrupted" } else { "done" },
                "run_dir": run_dir,
                "epochs_completed": epochs_completed,
                "epochs": epochs,
                "steps": steps,
                "best": best,
            })),
        }
    }
}
