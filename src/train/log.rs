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
    /// Mean total loss over the epoch's steps.
    pub loss_total: f64,
    /// Mean of each loss term the network reports ([`crate::model::Network::loss_terms`];
    /// A2FSeg: `modality` (Σ_m of the modality-specific losses), `average` (the
    /// average-fusion head), `adaptive` (the final head)), as `loss_<name>` columns.
    #[serde(flatten)]
    pub loss_terms: LossTerms,
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

/// Named loss values in the network's order, stored as `loss_<name>` keys (JSON) and columns
/// (CSV) between `loss_total` and the validation scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossTerms(pub Vec<(String, f64)>);

/// Prefix of a loss term's key.
const LOSS_PREFIX: &str = "loss_";

impl Serialize for LossTerms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(&format!("{LOSS_PREFIX}{name}"), value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LossTerms {
    /// Takes the `loss_*` keys a row has besides its own fields, in file order.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LossTerms;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("loss_<name> keys with numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LossTerms, A::Error> {
                let mut terms = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.strip_prefix(LOSS_PREFIX) {
                        Some(name) => terms.push((name.to_string(), map.next_value::<f64>()?)),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LossTerms(terms))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// One CSV field, written by the `csv` crate's own number formatting.
#[derive(Serialize)]
#[serde(untagged)]
enum Cell {
    Count(usize),
    Number(f64),
    Maybe(Option<f64>),
}

/// The CSV text of `rows`: `epoch, lr, loss_total`, the loss terms of the first row, the
/// validation Dice (empty when not validated) and `seconds` (the header alone when there
/// is no row).
fn csv_bytes(rows: &[LogRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let terms: Vec<&str> = rows.first().map_or(Vec::new(), |r| {
        r.loss_terms.0.iter().map(|(n, _)| n.as_str()).collect()
    });
    let mut header = vec!["epoch".to_string(), "lr".into(), "loss_total".into()];
    header.extend(terms.iter().map(|n| format!("{LOSS_PREFIX}{n}")));
    header.extend(["val_dice_wt", "val_dice_tc", "val_dice_et", "seconds"].map(String::from));
    w.write_record(&header)?;
    for r in rows {
        let names: Vec<&str> = r.loss_terms.0.iter().map(|(n, _)| n.as_str()).collect();
        anyhow::ensure!(
            names == terms,
            "epoch {} logs other loss terms than epoch 1",
            r.epoch
        );
        let mut cells = vec![
            Cell::Count(r.epoch),
            Cell::Number(r.lr),
            Cell::Number(r.loss_total),
        ];
        cells.extend(r.loss_terms.0.iter().map(|(_, v)| Cell::Number(*v)));
        cells.extend([
            Cell::Maybe(r.val_dice_wt),
            Cell::Maybe(r.val_dice_tc),
            Cell::Maybe(r.val_dice_et),
            Cell::Number(r.seconds),
        ]);
        w.serialize(cells)?;
    }
    w.into_inner().context("cannot encode the CSV log")
}

/// Writes every row to `path` as CSV (atomically).
pub fn write_csv(path: &Path, rows: &[LogRow]) -> Result<()> {
    crate::fsutil::atomic_write_bytes(path, &csv_bytes(rows)?)
}

/// Reads a `log.csv` written by [`write_csv`] (its loss-term columns by name).
pub fn read_csv(path: &Path) -> Result<Vec<LogRow>> {
    let context = || format!("cannot read {}", path.display());
    let mut r = csv::Reader::from_path(path).with_context(context)?;
    let header: Vec<String> = r
        .headers()
        .with_context(context)?
        .iter()
        .map(String::from)
        .collect();
    let mut rows = Vec::new();
    for record in r.records() {
        let record = record.with_context(context)?;
        let cells: std::collections::HashMap<&str, &str> = header
            .iter()
            .map(String::as_str)
            .zip(record.iter())
            .collect();
        let number = |key: &str| -> Result<f64> {
            let text = cells.get(key).with_context(|| format!("no column {key}"))?;
            text.parse().with_context(|| format!("bad {key} '{text}'"))
        };
        let maybe = |key: &str| -> Result<Option<f64>> {
            match cells.get(key).copied() {
                None | Some("") => Ok(None),
                Some(_) => number(key).map(Some),
            }
        };
        let loss_terms = header
            .iter()
            .filter_map(|h| h.strip_prefix(LOSS_PREFIX).filter(|n| *n != "total"))
            .map(|n| Ok((n.to_string(), number(&format!("{LOSS_PREFIX}{n}"))?)))
            .collect::<Result<Vec<_>>>();
        let row = (|| -> Result<LogRow> {
            Ok(LogRow {
                epoch: cells
                    .get("epoch")
                    .context("no column epoch")?
                    .parse()
                    .context("bad epoch")?,
                lr: number("lr")?,
                loss_total: number("loss_total")?,
                loss_terms: LossTerms(loss_terms?),
                val_dice_wt: maybe("val_dice_wt")?,
                val_dice_tc: maybe("val_dice_tc")?,
                val_dice_et: maybe("val_dice_et")?,
                seconds: number("seconds")?,
            })
        })()
        .with_context(context)?;
        rows.push(row);
    }
    Ok(rows)
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
                loss_terms: LossTerms(vec![
                    ("modality".into(), 2.0),
                    ("average".into(), 0.5),
                    ("adaptive".into(), 0.5),
                ]),
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
