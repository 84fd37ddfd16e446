//! A training run's `log.csv` as a report reads it (written by `a2fseg train`, see
//! [`crate::train::log`]): numeric columns by header name, so logs with other columns can
//! be drawn too. The evaluation's files are read by [`super::scores`] (`summary.json`) and
//! [`super::attention`] (`attention.json`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Reads the text of `path` and parses it with `parse`; every error names the file.
pub fn parse_file<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("cannot read {}", path.display()))
}

/// A training run's `log.csv`: one row per epoch, numeric columns by header name.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLog {
    /// Column names from the header.
    pub columns: Vec<String>,
    /// One row per epoch; a cell that is empty or not a number is `NaN`.
    pub rows: Vec<Vec<f64>>,
}

impl TrainLog {
    /// Reads a CSV file with a header row.
    pub fn load(path: &Path) -> Result<TrainLog> {
        parse_file(path, TrainLog::from_csv)
    }

    /// Parses CSV text with a header row.
    pub fn from_csv(text: &str) -> Result<TrainLog> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .context("no header row")?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.context("malformed CSV row")?;
            let row = (0..columns.len())
                .map(|i| {
                    record
                        .get(i)
                        .and_then(|c| c.parse::<f64>().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect();
            rows.push(row);
        }
        Ok(TrainLog { columns, rows })
    }

    /// The values of column `name` (exact, case-insensitive), one per row.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        Some(self.rows.iter().map(|r| r[i]).collect())
    }

    /// The x axis: the `epoch` column if present, else 1, 2, 3, …
    pub fn epochs(&self) -> Vec<f64> {
        self.column("epoch")
            .unwrap_or_else(|| (1..=self.rows.len()).map(|e| e as f64).collect())
    }

    /// Columns whose name contains `needle` (case-insensitive) and that hold at least one
    /// finite value, as `(name, values)`.
    pub fn columns_containing(&self, needle: &str) -> Vec<(String, Vec<f64>)> {
        let needle = needle.to_ascii_lowercase();
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.to_ascii_lowercase().contains(&needle))
            .map(|(i, c)| {
                (
                    c.clone(),
                    self.rows.iter().map(|r| r[i]).collect::<Vec<_>>(),
                )
            })
            .filter(|(_, v)| v.iter().any(|x| x.is_finite()))
            .collect()
    }

    /// Loss columns (name contains `loss`).
    pub fn loss_columns(&self) -> Vec<(String, Vec<f64>)> {
        self.columns_containing("loss")
    }

    /// Validation Dice columns (name contains `dice`).
    pub fn dice_columns(&self) -> Vec<(String, Vec<f64>)> {
        self.columns_containing("dice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_log_columns() {
        let log = TrainLog::from_csv(
            "epoch,loss_total,loss_adaptive,val_dice_wt,val_dice_tc,lr\n1,2.0,1.0,,,0.01\n2,1.5,0.8,0.5,0.3,0.009\n",
        )
        .unwrap();
        assert_eq!(log.epochs(), vec![1.0, 2.0]);
        assert_eq!(log.loss_columns().len(), 2);
        let dice = log.dice_columns();
        assert_eq!(dice.len(), 2);
        assert!(dice[0].1[0].is_nan());
        assert_eq!(dice[0].1[1], 0.5);
    }
}
