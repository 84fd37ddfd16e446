//! The per-epoch log: `log.csv` (one row per epoch) and `progress.png` (losses and
//! validation Dice against epochs), both rewritten whole after every epoch.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

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

/// Writes every row to `path` as CSV (atomically); missing Dice values are empty fields.
pub fn write_csv(path: &Path, rows: &[LogRow]) -> Result<()> {
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
    let bytes = w.into_inner().context("cannot encode the CSV log")?;
    crate::fsutil::atomic_write_bytes(path, &bytes)
}

/// Reads a `log.csv` written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<LogRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<LogRow>, _>>()
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Draws `progress.png`: training losses (left) and validation Dice (right) per epoch.
/// Written to a temporary file, then renamed over `path`.
pub fn plot(path: &Path, rows: &[LogRow]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-progress-")
        .suffix(".png")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    crate::report::fonts::register();
    draw(tmp.path(), rows, true)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A named, coloured column of the log.
type Series<T> = (&'static str, RGBColor, fn(&LogRow) -> T);

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(path: &Path, rows: &[LogRow], text: bool) -> DrawResult {
    let root = BitMapBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let max_epoch = rows.last().map_or(1, |r| r.epoch).max(1) as f64;

    let losses: [Series<f64>; 4] = [
        ("total", BLACK, |r| r.loss_total),
        ("modality", RGBColor(31, 119, 180), |r| r.loss_modality),
        ("average", RGBColor(44, 160, 44), |r| r.loss_average),
        ("adaptive", RGBColor(214, 39, 40), |r| r.loss_adaptive),
    ];
    let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
    let max_loss = rows
        .iter()
        .flat_map(|r| losses.iter().filter_map(move |(_, _, f)| finite(f(r))))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.05;
    let mut builder = ChartBuilder::on(&left);
    builder
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50);
    if text {
        builder.caption("training loss", ("sans-serif", 20));
    }
    let mut chart = builder.build_cartesian_2d(0f64..max_epoch, 0f64..max_loss)?;
    if text {
        chart.configure_mesh().x_desc("epoch").draw()?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()?;
    }
    for (name, color, f) in losses {
        let series = chart.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| finite(f(r)).map(|v| (r.epoch as f64, v))),
            color.stroke_width(2),
        ))?;
        if text {
            series
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }

    let dice: [Series<Option<f64>>; 3] = [
        ("WT", RGBColor(31, 119, 180), |r| r.val_dice_wt),
        ("TC", RGBColor(255, 127, 14), |r| r.val_dice_tc),
        ("ET", RGBColor(44, 160, 44), |r| r.val_dice_et),
    ];
    let mut builder = ChartBuilder::on(&right);
    builder
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50);
    if text {
        builder.caption("validation Dice (all modalities)", ("sans-serif", 20));
    }
    let mut chart = builder.build_cartesian_2d(0f64..max_epoch, 0f64..1.0f64)?;
    if text {
        chart.configure_mesh().x_desc("epoch").draw()?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()?;
    }
    for (name, color, f) in dice {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect();
        let series = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        if text {
            series
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
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
