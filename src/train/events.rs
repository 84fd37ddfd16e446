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
                let terms: Vec<String> = row
                    .loss_terms
                    .0
                    .iter()
                    .map(|(name, value)| format!("{name} {value:.4}"))
                    .collect();
                let terms = if terms.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", terms.join(", "))
                };
                Some(format!(
                    "epoch {}/{}  lr {:.5}  loss {:.4}{terms}{}  {:.1} s",
                    row.epoch, epochs, row.lr, row.loss_total, dice, row.seconds
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> LogRow {
        LogRow {
            epoch: 2,
            lr: 0.01,
            loss_total: 1.5,
            loss_terms: crate::train::log::LossTerms(vec![
                ("modality".into(), 0.5),
                ("average".into(), 0.5),
                ("adaptive".into(), 0.5),
            ]),
            val_dice_wt: Some(0.9),
            val_dice_tc: Some(0.8),
            val_dice_et: Some(0.7),
            seconds: 3.0,
        }
    }

    #[test]
    fn epoch_event_as_text_and_json() {
        let row = row();
        let best = Best {
            epoch: 2,
            mean_dice: 0.8,
        };
        let e = TrainEvent::Epoch {
            row: &row,
            epochs: 5,
            best: Some(&best),
        };
        assert_eq!(
            e.text().unwrap(),
            "epoch 2/5  lr 0.01000  loss 1.5000 (modality 0.5000, average 0.5000, adaptive \
             0.5000)  val Dice WT 0.900 TC 0.800 ET 0.700  3.0 s"
        );
        let v = e.json().unwrap();
        assert_eq!(v["event"], "epoch");
        assert_eq!(v["best_epoch"], 2);
        assert_eq!(v["epoch"], 2);
        assert_eq!(v["val_dice_tc"], 0.8);
        assert_eq!(v["seconds"], 3.0);
    }

    #[test]
    fn finished_event_is_json_only() {
        let dir = PathBuf::from("run");
        for (interrupted, name) in [(false, "done"), (true, "interrupted")] {
            let e = TrainEvent::Finished {
                run_dir: &dir,
                epochs_completed: 1,
                epochs: 3,
                steps: 7,
                best: None,
                interrupted,
            };
            assert_eq!(e.text(), None);
            let v = e.json().unwrap();
            assert_eq!(v["event"], name);
            assert_eq!(v["steps"], 7);
            assert_eq!(v["epochs"], 3);
            assert!(v["best"].is_null());
        }
    }

    #[test]
    fn start_event_mentions_resume_and_on_demand_reading_only_when_so() {
        let mut s = StartInfo {
            run_dir: PathBuf::from("run"),
            train_cases: 4,
            validation_cases: 1,
            cases_read_on_demand: false,
            cache_dir: PathBuf::from("cache"),
            max_cases_in_memory: 2,
            parameters: 100,
            epochs: 3,
            iterations_per_epoch: 5,
            patch_size: [16, 16, 16],
            resume: false,
            resume_epoch: 1,
            resume_iteration: 2,
        };
        let text = TrainEvent::Start(s.clone()).text().unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("resuming"), "{text}");
        s.resume = true;
        s.cases_read_on_demand = true;
        let text = TrainEvent::Start(s.clone()).text().unwrap();
        assert!(text.contains("resuming at epoch 1 iteration 2"), "{text}");
        assert!(
            text.lines().nth(1).unwrap().contains("2 kept in memory"),
            "{text}"
        );
        let v = TrainEvent::Start(s).json().unwrap();
        assert_eq!(v["event"], "start");
        assert_eq!(v["cases_read_on_demand"], true);
        assert_eq!(v["resume_iteration"], 2);
    }
}
