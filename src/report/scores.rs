//! `summary.json` (this module owns the format): the mean scores of one model per modality
//! subset and over subsets, and how they are averaged. `a2fseg evaluate` writes it
//! ([`crate::infer::evaluate`]); reports read it back ([`ScoreTable::load`]).
//!
//! One model's file is an object keyed by subset bit string (`"0101"`) plus `"mean"`; each
//! value is `{"ET": {"dice", "hd95", "sensitivity", "specificity"}, "ET_postprocessed":
//! {"dice", "hd95"} (only with ET post-processing), "TC": .., "WT": .., "cases": n}`. An
//! evaluation of several models writes `{"<model>": {that object}, …}` ([`by_model_json`]).
//! A `null` HD95 is no finite value; the reader ignores keys it does not know, so the
//! evaluator may add more.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::inputs::parse_file;
use crate::labels::Region;
use crate::modality::{Modality, Subset};

/// How the tables average, as stated in every summary and report.
pub const AVERAGING: &str =
    "per subset: mean over test cases; Mean row: mean over the evaluated subsets";

/// Mean scores of one region. Sensitivity and specificity are written by the evaluator
/// for WT/TC/ET (absent for ET after post-processing, and optional when read).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionScore {
    /// Mean Dice in [0, 1].
    pub dice: f64,
    /// Mean HD95 in mm; `None` when the file holds `null` (no finite value).
    pub hd95: Option<f64>,
    /// Mean sensitivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f64>,
    /// Mean specificity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specificity: Option<f64>,
}

impl RegionScore {
    /// A score with Dice and HD95 only.
    pub fn new(dice: f64, hd95: Option<f64>) -> RegionScore {
        RegionScore {
            dice,
            hd95,
            ..Default::default()
        }
    }
}

/// The scores of one subset (a line of Table 1) or of the mean over subsets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "SubsetScoresJson", into = "SubsetScoresJson")]
pub struct SubsetScores {
    /// WT, TC, ET (in [`Region::ALL`] order).
    pub regions: [RegionScore; 3],
    /// ET after the RFNet/mmFormer post-processing, when it was enabled.
    pub et_postprocessed: Option<RegionScore>,
    /// Number of cases averaged (0 when the file does not say).
    pub cases: usize,
}

/// The JSON object of [`SubsetScores`]; fields in the order they are written (sorted keys).
#[derive(Clone, Serialize, Deserialize)]
struct SubsetScoresJson {
    #[serde(rename = "ET")]
    et: RegionScore,
    #[serde(
        rename = "ET_postprocessed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    et_postprocessed: Option<RegionScore>,
    #[serde(rename = "TC")]
    tc: RegionScore,
    #[serde(rename = "WT")]
    wt: RegionScore,
    #[serde(default)]
    cases: usize,
}

impl From<SubsetScoresJson> for SubsetScores {
    fn from(j: SubsetScoresJson) -> Self {
        SubsetScores {
            regions: [j.wt, j.tc, j.et],
            et_postprocessed: j.et_postprocessed,
            cases: j.cases,
        }
    }
}

impl From<SubsetScores> for SubsetScoresJson {
    fn from(s: SubsetScores) -> Self {
        let [wt, tc, et] = s.regions;
        SubsetScoresJson {
            et,
            et_postprocessed: s.et_postprocessed,
            tc,
            wt,
            cases: s.cases,
        }
    }
}

/// Mean of `values`, in order (NaN when empty).
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = values.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Mean of the values present (`None` when none is).
pub fn mean_present(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Vec<f64> = values.flatten().collect();
    (!xs.is_empty()).then(|| mean(xs.into_iter()))
}

impl SubsetScores {
    /// The column-wise mean of `rows` (per-case scores averaged per subset, or subset rows
    /// averaged into the mean row): Dice over every row, HD95, sensitivity and specificity
    /// over the rows that have them, ET after post-processing only when every row has it.
    /// `cases` is left 0 for the caller to set.
    pub fn mean_of<'a>(rows: impl IntoIterator<Item = &'a SubsetScores>) -> SubsetScores {
        let rows: Vec<&SubsetScores> = rows.into_iter().collect();
        let column = |f: &dyn Fn(&SubsetScores) -> RegionScore| -> RegionScore {
            RegionScore {
                dice: mean(rows.iter().map(|r| f(r).dice)),
                hd95: mean_present(rows.iter().map(|r| f(r).hd95)),
                sensitivity: mean_present(rows.iter().map(|r| f(r).sensitivity)),
                specificity: mean_present(rows.iter().map(|r| f(r).specificity)),
            }
        };
        let all_pp = !rows.is_empty() && rows.iter().all(|r| r.et_postprocessed.is_some());
        SubsetScores {
            regions: std::array::from_fn(|i| column(&|r| r.regions[i])),
            et_postprocessed: all_pp
                .then(|| column(&|r| r.et_postprocessed.expect("checked above"))),
            cases: 0,
        }
    }
}

/// Table 1 of one model, as in `summary.json`: scores per subset and their mean.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreTable {
    /// Scores per subset, iterated in the paper's order (`0001` … `1111`).
    pub subsets: BTreeMap<Subset, SubsetScores>,
    /// The `"mean"` entry of the file, or the mean of the subsets' rows when it has none.
    pub mean: SubsetScores,
}

impl Serialize for ScoreTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.subsets.len() + 1))?;
        for (subset, row) in &self.subsets {
            map.serialize_entry(&subset.name(), row)?;
        }
        map.serialize_entry("mean", &self.mean)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for ScoreTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let row = |key: &str, v: &serde_json::Value| {
            SubsetScores::deserialize(v).map_err(|e| D::Error::custom(format!("in \"{key}\": {e}")))
        };
        let mut subsets = BTreeMap::new();
        let mut mean = None;
        for (key, entry) in &entries {
            if key == "mean" {
                mean = Some(row(key, entry)?);
                continue;
            }
            let is_bits = key.len() == 4 && key.chars().all(|c| c == '0' || c == '1');
            let Some(subset) = is_bits.then(|| key.parse::<Subset>().ok()).flatten() else {
                continue;
            };
            if !subset.is_empty() {
                subsets.insert(subset, row(key, entry)?);
            }
        }
        if subsets.is_empty() {
            return Err(D::Error::custom("no subset entry (keys such as \"0101\")"));
        }
        let mean = mean.unwrap_or_else(|| SubsetScores::mean_of(subsets.values()));
        Ok(ScoreTable { subsets, mean })
    }
}

impl ScoreTable {
    /// Reads `summary.json` (see the module docs).
    pub fn load(path: &Path) -> Result<ScoreTable> {
        parse_file(path, ScoreTable::from_json)
    }

    /// Parses the text of a `summary.json` (see [`ScoreTable::load`]).
    pub fn from_json(text: &str) -> Result<ScoreTable> {
        let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
        if !value.is_object() {
            bail!("expected a JSON object keyed by subset (\"0101\") and \"mean\"");
        }
        Ok(serde_json::from_value(value)?)
    }

    /// A table from in-memory rows; the mean is computed over them.
    pub fn from_rows(rows: impl IntoIterator<Item = (Subset, SubsetScores)>) -> ScoreTable {
        let subsets: BTreeMap<_, _> = rows.into_iter().collect();
        let mean = SubsetScores::mean_of(subsets.values());
        ScoreTable { subsets, mean }
    }

    /// The score of `region` for `subset`, if evaluated.
    pub fn get(&self, subset: Subset, region: Region) -> Option<RegionScore> {
        self.subsets.get(&subset).map(|r| r.regions[region.index()])
    }

    /// Mean Dice of `region` over the subsets that contain `m` and over those that do not
    /// (`(with, without)`), e.g. to check that T1c drives ET. `None` when either side is empty.
    pub fn dice_with_and_without(&self, m: Modality, region: Region) -> Option<(f64, f64)> {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for (s, r) in &self.subsets {
            let d = r.regions[region.index()].dice;
            if s.contains(m) {
                with.push(d)
            } else {
                without.push(d)
            }
        }
        if with.is_empty() || without.is_empty() {
            return None;
        }
        Some((mean(with.into_iter()), mean(without.into_iter())))
    }
}

/// The pretty JSON of one model's file, or of several models keyed by model name (the
/// layout of an evaluation's `summary.json` and `attention.json`).
pub fn by_model_json<T: Serialize>(models: &[(&str, T)]) -> Result<Vec<u8>> {
    let bytes = match models {
        [(_, one)] => serde_json::to_vec_pretty(one)?,
        several => serde_json::to_vec_pretty(
            &several
                .iter()
                .map(|(k, v)| (*k, v))
                .collect::<BTreeMap<_, _>>(),
        )?,
    };
    Ok(bytes)
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
        let s = ScoreTable::from_json(&fake_summary_json()).unwrap();
        assert_eq!(s.subsets.len(), 15);
        let flair = Subset::from_modalities([Modality::Flair]);
        assert_eq!(s.get(flair, Region::Wt).unwrap().dice, 0.81);
        assert_eq!(s.get(flair, Region::Tc).unwrap().hd95, None);
        assert_eq!(s.mean.regions[0].dice, 0.9);
        let first = s.subsets.keys().next().unwrap();
        assert_eq!(first.name(), "0001");
    }

    #[test]
    fn summary_without_mean_computes_it_and_bad_files_fail() {
        let s = ScoreTable::from_json(
            r#"{"0001": {"WT": {"dice": 0.5, "hd95": 2}, "TC": {"dice": 0.2, "hd95": 1}, "ET": {"dice": 0, "hd95": null}},
                "1111": {"WT": {"dice": 1.0, "hd95": 4}, "TC": {"dice": 0.4, "hd95": 3}, "ET": {"dice": 1, "hd95": null}}}"#,
        )
        .unwrap();
        assert_eq!(s.mean.regions[0].dice, 0.75);
        assert_eq!(s.mean.regions[0].hd95, Some(3.0));
        assert_eq!(s.mean.regions[2].hd95, None);
        assert!(ScoreTable::from_json("[1]").is_err());
        assert!(ScoreTable::from_json("{\"mean\": {}}").is_err());
        assert!(ScoreTable::from_json("{\"0001\": {\"WT\": {}}}").is_err());
    }

    #[test]
    fn t1c_with_and_without() {
        let s = ScoreTable::from_json(&fake_summary_json()).unwrap();
        let (with, without) = s.dice_with_and_without(Modality::T1c, Region::Wt).unwrap();
        assert!(with.is_finite() && without.is_finite());
    }

    #[test]
    fn written_keys_are_sorted_and_post_processed_et_has_dice_and_hd95_only() {
        let full = RegionScore {
            dice: 0.5,
            hd95: Some(2.0),
            sensitivity: Some(0.6),
            specificity: Some(1.0),
        };
        let row = SubsetScores {
            regions: [full; 3],
            et_postprocessed: Some(RegionScore::new(0.4, Some(3.0))),
            cases: 2,
        };
        let table = ScoreTable::from_rows([(Subset::FULL, row.clone())]);
        let text = serde_json::to_string(&table).unwrap();
        let keys = [
            "\"1111\"",
            "\"ET\"",
            "\"ET_postprocessed\"",
            "\"TC\"",
            "\"WT\"",
            "\"cases\"",
            "\"mean\"",
        ];
        let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.contains("\"ET_postprocessed\":{\"dice\":0.4,\"hd95\":3.0}"),
            "{text}"
        );
        assert_eq!(
            ScoreTable::from_json(&text).unwrap().subsets[&Subset::FULL],
            row
        );
        // A non-finite HD95 is written as null and read back as no value.
        let nan = ScoreTable::from_rows([(
            Subset::FULL,
            SubsetScores {
                regions: [RegionScore::new(0.5, Some(f64::NAN)); 3],
                ..Default::default()
            },
        )]);
        let back = ScoreTable::from_json(&serde_json::to_string(&nan).unwrap()).unwrap();
        assert_eq!(back.mean.regions[0].hd95, None);
    }
}
