//! Score averaging: an evaluated model's `cases.csv` rows averaged over cases per subset and
//! over subsets for the mean row (as the paper's "Average" row), and its mean attention per
//! subset.

use std::collections::{BTreeMap, BTreeSet};

use super::attention::{ClassAttention, mean_attention, region_weights};
use super::rows::CaseRow;
use crate::modality::Subset;
use crate::report::{AttentionFile, ScoreTable, SubsetScores};

/// The evaluation of one model: its Table 1 (`summary.json`) and its mean attention.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelEvaluation {
    /// Model name.
    pub model: String,
    /// What the network is, if known: A2FSeg's fusion (`adaptive fusion`, `average fusion`,
    /// `hemis fusion`) or another method's architecture (`rfnet`, `uhved`, …).
    pub network: Option<String>,
    /// Mean scores per subset (ascending bit value = the paper's order) and their mean.
    pub scores: ScoreTable,
    /// Per subset: mean attention (adaptive models, subsets of ≥ 2 modalities).
    pub attention: BTreeMap<Subset, ClassAttention>,
}

/// Averages `rows` (all of one model) per subset and over subsets.
pub fn summarize(model: &str, network: Option<String>, rows: &[&CaseRow]) -> ModelEvaluation {
    let mut by_subset: BTreeMap<Subset, Vec<&CaseRow>> = BTreeMap::new();
    for r in rows {
        by_subset.entry(r.subset).or_default().push(r);
    }
    let mut subsets = BTreeMap::new();
    let mut attention = BTreeMap::new();
    for (s, rs) in &by_subset {
        let per_case: Vec<SubsetScores> = rs.iter().map(|r| r.scores()).collect();
        let row = SubsetScores {
            cases: rs.len(),
            ..SubsetScores::mean_of(&per_case)
        };
        subsets.insert(*s, row);
        let att = mean_attention(rs);
        if s.len() >= 2 && att.iter().flatten().any(Option::is_some) {
            attention.insert(*s, att);
        }
    }
    let cases = rows.iter().map(|r| &r.case).collect::<BTreeSet<_>>().len();
    let mean = SubsetScores {
        cases,
        ..SubsetScores::mean_of(subsets.values())
    };
    ModelEvaluation {
        model: model.to_string(),
        network,
        scores: ScoreTable { subsets, mean },
        attention,
    }
}

impl ModelEvaluation {
    /// The model's `attention.json` (empty without attention).
    pub fn attention_file(&self) -> AttentionFile {
        self.attention
            .iter()
            .map(|(s, att)| (*s, region_weights(*s, att)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::evaluate::rows::tests::row;

    #[test]
    fn summary_averages_cases_then_subsets_and_keys_by_bit_string() {
        let rows = [
            row("m", "c1", "0001", 0.2, 10.0, Some(0.1)),
            row("m", "c2", "0001", 0.4, 20.0, Some(0.3)),
            row("m", "c1", "1111", 0.8, 2.0, Some(0.7)),
            row("m", "c2", "1111", 1.0, 4.0, Some(0.9)),
        ];
        let refs: Vec<&CaseRow> = rows.iter().collect();
        let s = summarize("m", Some("adaptive fusion".into()), &refs);
        let j = serde_json::to_value(&s.scores).unwrap();
        assert!((j["0001"]["WT"]["dice"].as_f64().unwrap() - 0.3).abs() < 1e-12);
        assert!((j["1111"]["ET"]["hd95"].as_f64().unwrap() - 3.0).abs() < 1e-12);
        assert!((j["mean"]["TC"]["dice"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert!((j["mean"]["ET_postprocessed"]["dice"].as_f64().unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(j["mean"]["cases"], 2);
        // Attention only for subsets with ≥ 2 modalities, and only their modalities.
        let a = serde_json::to_value(s.attention_file()).unwrap();
        assert!(a.get("0001").is_none());
        assert!((a["1111"]["ET"]["flair"].as_f64().unwrap() - 0.4).abs() < 1e-12);
        assert!(a["1111"].get("ED").is_none());
        // The report module's reader accepts these files.
        let back = crate::report::ScoreTable::from_json(&j.to_string());
        assert!(back.is_ok(), "{back:?}");
    }
}
