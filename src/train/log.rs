//! The per-epoch log: `log.csv` (one row per epoch) and `progress.png` (losses and
//! validation Dice against epochs), both rewritten whole after every epoch.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::TrainLog;
use crate::report::charts;

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean total loss (Eq. 5) over the epoch's steps.
    pub loss_total: f64,
    /// Mean Σ_m of the modality-specific losses.
    pub loss_modality: f64,
    /// Mean loss of the average-fusion head.
    pub loss_average: f64,
    /// Mean loss of the adaptive-fusion (final) head.
    pub loss_adaptive: f64,
    /// Full-modality validation Dice of WT, if validated this epoch.
    pub val_dice_wt: Option<f64>,
    /// … of TC.
    pub val_dice_tc: Option<f64>,
    /// … of ET.
    pub val_dice_et: Option<f64>,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

impl LogRow {
    /// Mean of the three validation Dice scores, if validated.
    pub fn val_dice_mean(&self) -> Option<f64> {
        Some((self.val_dice_wt? + self.val_dice_tc? + self.val_dice_et?) / 3.0)
    }
}

/// The CSV text of `rows` (the header alone when there is none); missing Dice values are
/// empty fields.
fn csv_bytes(rows: &[LogRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        w.write_record([
            "epoch",
            "lr",
            "loss_total",
            "loss_modality",
            "loss_average",
            "loss_adaptive",
            "val_dice_wt",
            "val_dice_tc",
            "val_dice_et",
            "seconds",
        ])?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner().context("cannot encode the CSV log")
}

/// Writes every row to `path` as CSV (atomically).
pub fn write_csv(path: &Path, rows: &[LogRow]) -> Result<()> {
    crate::fsutil::atomic_write_bytes(path, &csv_bytes(rows)?)
}

/// Reads a `log.csv` written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<LogRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<LogRow>, _>>()
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Size of `progress.png` in pixels.
const PROGRESS_SIZE: (u32, u32) = (1200, 450);

/// Draws `progress.png`: the report's training-curve figure
/// ([`charts::training_curves_sized`]) of the rows as `log.csv` holds them: training
/// losses (left) and validation Dice (right) per epoch. Written atomically.
pub fn plot(path: &Path, rows: &[LogRow]) -> Result<()> {
    let text = String::from_utf8(csv_bytes(rows)?).context("the CSV log is not UTF-8")?;
    let log = TrainLog::from_csv(&text)?;
    let image = charts::training_curves_sized(&log, "Training progress", PROGRESS_SIZE)
        .with_context(|| format!("cannot draw {}", path.display()))?;
    crate::fsutil::atomic_write_bytes(path, &charts::png_bytes(&image)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<LogRow> {
        (0..3)
            .map(|e| LogRow {
                epoch: e + 1,
                lr: 0.01 / (e + 1) as f64,
                loss_total: 3.0 - e as f64,
                loss_modality: 2.0,
                loss_average: 0.5,
                loss_adaptive: 0.5,
                val_dice_wt: (e != 1).then_some(0.5),
                val_dice_tc: (e != 1).then_some(0.4),
                val_dice_et: (e != 1).then_some(0.3),
                seconds: 1.5,
            })
            .collect()
    }

    #[test]
    fn csv_round_trip_and_plot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.csv");
        write_csv(&p, &rows()).unwrap();
        assert_eq!(read_csv(&p).unwrap(), rows());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("epoch,lr,loss_total,loss_modality,loss_average,loss_adaptive,val_dice_wt,val_dice_tc,val_dice_et,seconds\n"));
        assert!((rows()[0].val_dice_mean().unwrap() - 0.4).abs() < 1e-12);
        let png = dir.path().join("progress.png");
        plot(&png, &rows()).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (1200, 450));
        plot(&png, &[]).unwrap();
    }
}
