//! The files a report is built from, read from disk so a report can always be rebuilt:
//! `summary.json` and `attention.json` (written by `a2fseg evaluate`) and a run's `log.csv`
//! (written by `a2fseg train`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::labels::Region;
use crate::modality::{Modality, Subset};

/// Dice and HD95 of one region, averaged over test cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionScore {
    /// Mean Dice in [0, 1].
    pub dice: f64,
    /// Mean HD95 in mm; `None` when the file holds `null` (no finite value).
    pub hd95: Option<f64>,
}

/// The scores of WT, TC and ET, in [`Region::ALL`] order.
pub type RegionScores = [RegionScore; 3];

/// Table 1 of one model: mean scores per modality subset, plus the mean over subsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Scores per subset, iterated in the paper's order (`0001` … `1111`).
    pub subsets: BTreeMap<Subset, RegionScores>,
    /// The `"mean"` entry of the file, or the mean of the subsets' rows when it has none.
    pub mean: RegionScores,
}

impl Summary {
    /// Reads `summary.json`: an object keyed by subset bit string (`"0101"`) plus `"mean"`,
    /// each `{"WT": {"dice": .., "hd95": ..}, "TC": .., "ET": ..}`. Other keys and fields
    /// are ignored, so the evaluator may add more.
    pub fn load(path: &Path) -> Result<Summary> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Summary::from_json(&text).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Parses the text of a `summary.json` (see [`Summary::load`]).
    pub fn from_json(text: &str) -> Result<Summary> {
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        let Some(obj) = value.as_object() else {
            bail!("expected a JSON object keyed by subset (\"0101\") and \"mean\"");
        };
        let mut subsets = BTreeMap::new();
        let mut mean = None;
        for (key, entry) in obj {
            if key == "mean" {
                mean = Some(parse_regions(entry).context("in \"mean\"")?);
                continue;
            }
            let is_bits = key.len() == 4 && key.chars().all(|c| c == '0' || c == '1');
            if !is_bits {
                continue;
            }
            let subset: Subset = key.parse().map_err(anyhow::Error::msg)?;
            if subset.is_empty() {
                continue;
            }
            let scores = parse_regions(entry).with_context(|| format!("in \"{key}\""))?;
            subsets.insert(subset, scores);
        }
        if subsets.is_empty() {
            bail!("no subset entry (keys such as \"0101\")");
        }
        let mean = mean.unwrap_or_else(|| mean_of(subsets.values()));
        Ok(Summary { subsets, mean })
    }

    /// A summary from in-memory rows; the mean is computed over them.
    pub fn from_rows(rows: impl IntoIterator<Item = (Subset, RegionScores)>) -> Summary {
        let subsets: BTreeMap<_, _> = rows.into_iter().collect();
        let mean = mean_of(subsets.values());
        Summary { subsets, mean }
    }

    /// The score of `region` for `subset`, if evaluated.
    pub fn get(&self, subset: Subset, region: Region) -> Option<RegionScore> {
        self.subsets.get(&subset).map(|r| r[region.index()])
    }

    /// Mean Dice of `region` over the subsets that contain `m` and over those that do not
    /// (`(with, without)`), e.g. to check that T1c drives ET. `None` when either side is empty.
    pub fn dice_with_and_without(&self, m: Modality, region: Region) -> Option<(f64, f64)> {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for (s, r) in &self.subsets {
            let d = r[region.index()].dice;
            if s.contains(m) {
                with.push(d)
            } else {
                without.push(d)
            }
        }
        if with.is_empty() || without.is_empty() {
            return None;
        }
        let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        Some((avg(&with), avg(&without)))
    }
}

/// Column-wise mean of region scores; HD95 averages the finite values only.
fn mean_of<'a>(rows: impl Iterator<Item = &'a RegionScores>) -> RegionScores {
    let rows: Vec<&RegionScores> = rows.collect();
    std::array::from_fn(|i| {
        let n = rows.len().max(1) as f64;
        let dice = rows.iter().map(|r| r[i].dice).sum::<f64>() / n;
        let hds: Vec<f64> = rows.iter().filter_map(|r| r[i].hd95).collect();
        let hd95 = (!hds.is_empty()).then(|| hds.iter().sum::<f64>() / hds.len() as f64);
        RegionScore { dice, hd95 }
    })
}

/// Reads `{"WT": {"dice", "hd95"}, "TC": .., "ET": ..}`.
fn parse_regions(v: &Value) -> Result<RegionScores> {
    let mut out = [RegionScore {
        dice: 0.0,
        hd95: None,
    }; 3];
    for region in Region::ALL {
        let Some(r) = v.get(region.name()) else {
            bail!("missing region \"{}\"", region.name());
        };
        let Some(dice) = r.get("dice").and_then(Value::as_f64) else {
            bail!("region \"{}\" has no number \"dice\"", region.name());
        };
        let hd95 = r.get("hd95").and_then(Value::as_f64);
        out[region.index()] = RegionScore { dice, hd95 };
    }
    Ok(out)
}

/// Mean attention weight per modality for each tumour region (the paper's Fig. 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Rows in file order: region name (e.g. `"ET"`, `"ED"`, `"NCR/NET"` or `"WT"`) and the
    /// mean weight of each modality, in canonical order (`None` if the file has none).
    pub regions: Vec<(String, [Option<f64>; 4])>,
}

impl Attention {
    /// Reads `attention.json`. Accepted shapes: `{REGION: {MODALITY: weight}}` (modality keys
    /// such as `t1`, `T1c`, `flair`), optionally nested under one key such as `"mean"`,
    /// `"regions"` or a subset bit string like `"1111"` (preferred when present), or
    /// `{REGION: [w_t1, w_t1c, w_t2, w_flair]}`.
    pub fn load(path: &Path) -> Result<Attention> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Attention::from_json(&text).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Reads `attention.json` if it holds attention: `None` when the file is missing or is
    /// the empty object `evaluate` writes for a model without adaptive fusion.
    pub fn load_optional(path: &Path) -> Result<Option<Attention>> {
        if !path.exists() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&text)
            && o.is_empty()
        {
            return Ok(None);
        }
        Attention::from_json(&text)
            .map(Some)
            .with_context(|| format!("cannot read {}", path.display()))
    }

    /// Parses the text of an `attention.json` (see [`Attention::load`]).
    pub fn from_json(text: &str) -> Result<Attention> {
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        find_attention(&value, 0)
            .context("expected {REGION: {MODALITY: weight}} (e.g. {\"ET\": {\"t1\": 0.2, ...}})")
    }

    /// The modality with the largest weight for region `name`, if any.
    pub fn dominant(&self, name: &str) -> Option<Modality> {
        let (_, w) = self.regions.iter().find(|(n, _)| n == name)?;
        (0..4)
            .filter_map(|i| w[i].map(|v| (i, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .and_then(|(i, _)| Modality::from_index(i))
    }
}

/// Looks for the region → modality table in `v`, descending into preferred wrapper keys.
fn find_attention(v: &Value, depth: usize) -> Result<Attention> {
    let Some(obj) = v.as_object() else {
        bail!("not a JSON object");
    };
    let mut regions = Vec::new();
    for (name, entry) in obj {
        if let Some(w) = modality_weights(entry) {
            regions.push((name.clone(), w));
        }
    }
    if !regions.is_empty() {
        return Ok(Attention { regions });
    }
    if depth < 3 {
        for key in ["1111", "mean", "regions", "by_region", "attention"] {
            if let Some(inner) = obj.get(key)
                && let Ok(a) = find_attention(inner, depth + 1)
            {
                return Ok(a);
            }
        }
        for inner in obj.values() {
            if let Ok(a) = find_attention(inner, depth + 1) {
                return Ok(a);
            }
        }
    }
    bail!("no region with per-modality weights")
}

/// `{MODALITY: weight}` or `[w_t1, w_t1c, w_t2, w_flair]` → weights in canonical order.
fn modality_weights(v: &Value) -> Option<[Option<f64>; 4]> {
    let mut w = [None; 4];
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (Ok(modality), Some(x)) = (k.parse::<Modality>(), x.as_f64()) {
                    w[modality.index()] = Some(x);
                }
            }
        }
        Value::Array(a) if a.len() == 4 => {
            for (i, x) in a.iter().enumerate() {
                w[i] = x.as_f64();
            }
        }
        _ => return None,
    }
    w.iter().any(Option::is_some).then_some(w)
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
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        TrainLog::from_csv(&text).with_context(|| format!("cannot read {}", path.display()))
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

    pub(crate) fn fake_summary_json() -> String {
        let mut s = String::from("{");
        for subset in Subset::all_nonempty() {
            let b = subset.bits() as f64;
            s += &format!(
                "\"{}\": {{\"WT\": {{\"dice\": {}, \"hd95\": 3.5}}, \"TC\": {{\"dice\": {}, \"hd95\": null}}, \"ET\": {{\"dice\": 0.5, \"hd95\": 7.0, \"sensitivity\": 1}}}},",
                subset.name(),
                0.8 + b / 100.0,
                0.6
            );
        }
        s += "\"mean\": {\"WT\": {\"dice\": 0.9, \"hd95\": 3.5}, \"TC\": {\"dice\": 0.6, \"hd95\": 4}, \"ET\": {\"dice\": 0.5, \"hd95\": 7}}, \"cases\": 3}";
        s
    }

    #[test]
    fn summary_reads_subsets_and_mean() {
        let s = Summary::from_json(&fake_summary_json()).unwrap();
        assert_eq!(s.subsets.len(), 15);
        let flair = Subset::from_modalities([Modality::Flair]);
        assert_eq!(s.get(flair, Region::Wt).unwrap().dice, 0.81);
        assert_eq!(s.get(flair, Region::Tc).unwrap().hd95, None);
        assert_eq!(s.mean[0].dice, 0.9);
        let first = s.subsets.keys().next().unwrap();
        assert_eq!(first.name(), "0001");
    }

    #[test]
    fn summary_without_mean_computes_it_and_bad_files_fail() {
        let s = Summary::from_json(
            r#"{"0001": {"WT": {"dice": 0.5, "hd95": 2}, "TC": {"dice": 0.2, "hd95": 1}, "ET": {"dice": 0, "hd95": null}},
                "1111": {"WT": {"dice": 1.0, "hd95": 4}, "TC": {"dice": 0.4, "hd95": 3}, "ET": {"dice": 1, "hd95": null}}}"#,
        )
        .unwrap();
        assert_eq!(s.mean[0].dice, 0.75);
        assert_eq!(s.mean[0].hd95, Some(3.0));
        assert_eq!(s.mean[2].hd95, None);
        assert!(Summary::from_json("[1]").is_err());
        assert!(Summary::from_json("{\"mean\": {}}").is_err());
        assert!(Summary::from_json("{\"0001\": {\"WT\": {}}}").is_err());
    }

    #[test]
    fn t1c_with_and_without() {
        let s = Summary::from_json(&fake_summary_json()).unwrap();
        let (with, without) = s.dice_with_and_without(Modality::T1c, Region::Wt).unwrap();
        assert!(with.is_finite() && without.is_finite());
    }

    #[test]
    fn attention_shapes() {
        let a = Attention::from_json(
            r#"{"ET": {"t1": 0.2, "t1c": 0.4, "t2": 0.2, "flair": 0.2}, "ED": {"T1": 0.1, "T1c": 0.1, "T2": 0.3, "FLAIR": 0.5}, "cases": 2}"#,
        )
        .unwrap();
        assert_eq!(a.regions.len(), 2);
        assert_eq!(a.dominant("ET"), Some(Modality::T1c));
        assert_eq!(a.dominant("ED"), Some(Modality::Flair));
        let nested =
            Attention::from_json(r#"{"cases": 3, "mean": {"WT": [0.1, 0.2, 0.3, 0.4]}}"#).unwrap();
        assert_eq!(nested.regions[0].1[3], Some(0.4));
        assert!(Attention::from_json(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn attention_files_of_models_without_attention() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attention.json");
        assert_eq!(Attention::load_optional(&path).unwrap(), None);
        fs::write(&path, "{}").unwrap();
        assert_eq!(Attention::load_optional(&path).unwrap(), None);
        fs::write(&path, r#"{"1111": {"ET": [0.1, 0.2, 0.3, 0.4]}}"#).unwrap();
        assert!(Attention::load_optional(&path).unwrap().is_some());
        for bad in ["{", r#"{"a": 1}"#] {
            fs::write(&path, bad).unwrap();
            let e = Attention::load_optional(&path).unwrap_err();
            assert!(format!("{e:#}").contains("attention.json"), "{e:#}");
        }
    }

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
