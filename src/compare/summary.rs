//! `summary.json` of a comparison (this module owns its format, [`CompareSummary`]), and
//! `summary.csv`: every method's Table 1, the subsets each method wins, and the paired
//! Wilcoxon signed-rank tests of the reference method (A2FSeg) against each other method.
//!
//! Test unit: one pair per test case, each method's per-case Dice **averaged over the
//! evaluated subsets** (from its `cases.csv`), so the pairs are independent cases; the
//! (case, subset) pairs of one case are not independent, and would overstate the evidence.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use super::methods::Method;
use super::wilcoxon::{SignedRank, signed_rank};
use crate::infer::evaluate::read_case_rows;
use crate::labels::Region;
use crate::modality::Subset;
use crate::report::ScoreTable;

/// What the tests pair, as stated in every summary.
pub const TEST_UNIT: &str = "one pair per test case: the case's Dice averaged over the \
     evaluated subsets; two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon's defaults)";

/// One method's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method.
    pub method: Method,
    /// Its name in tables.
    pub label: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Table 1 (its evaluation's `summary.json`).
    pub scores: ScoreTable,
    /// Mean Dice over the evaluated subsets per test case: case id → WT, TC, ET.
    pub case_dice: BTreeMap<String, [f64; 3]>,
}

/// The subsets a method wins (highest mean Dice; every tied method wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wins {
    /// The method.
    pub method: Method,
    /// Subsets won per region WT, TC, ET.
    pub regions: [usize; 3],
    /// Their sum.
    pub total: usize,
}

/// One paired test: `reference` against `other` in `region`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// `WT`, `TC` or `ET`.
    pub region: Region,
    /// The reference method (A2FSeg when compared).
    pub reference: Method,
    /// The method it is tested against.
    pub other: Method,
    /// Test cases paired.
    pub cases: usize,
    /// Mean of reference minus other (Dice, in [−1, 1]).
    pub mean_difference: f64,
    /// The test; `None` when every difference is zero.
    pub test: Option<SignedRank>,
}

/// `summary.json` of `a2fseg compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    /// Per method, in the order given.
    pub methods: Vec<MethodResult>,
    /// Subsets won, per method.
    pub wins: Vec<Wins>,
    /// What the tests pair ([`TEST_UNIT`]).
    pub test_unit: String,
    /// Reference against each other method, per region.
    pub tests: Vec<PairedTest>,
}

impl MethodResult {
    /// Reads the evaluation folder `eval_dir` of `method` (`summary.json`, `cases.csv`).
    pub fn load(method: Method, epochs: usize, eval_dir: &Path) -> Result<MethodResult> {
        let scores = ScoreTable::load(&eval_dir.join("summary.json"))?;
        let cases_csv = eval_dir.join("cases.csv");
        let rows = read_case_rows(&cases_csv)?;
        let mut sums: BTreeMap<String, ([f64; 3], usize)> = BTreeMap::new();
        for r in &rows {
            let e = sums.entry(r.case.clone()).or_insert(([0.0; 3], 0));
            for (s, d) in e.0.iter_mut().zip(r.dice()) {
                *s += d;
            }
            e.1 += 1;
        }
        ensure!(
            !sums.is_empty(),
            "{} holds no scored case",
            cases_csv.display()
        );
        let case_dice = sums
            .into_iter()
            .map(|(id, (s, n))| (id, s.map(|x| x / n as f64)))
            .collect();
        Ok(MethodResult {
            method,
            label: method.label().to_string(),
            epochs,
            scores,
            case_dice,
        })
    }
}

impl CompareSummary {
    /// The summary of `methods`: wins and the tests of the reference (A2FSeg if compared,
    /// else the first method) against every other method.
    pub fn new(methods: Vec<MethodResult>) -> CompareSummary {
        let wins = wins(&methods);
        let mut tests = Vec::new();
        let reference = methods
            .iter()
            .find(|m| m.method == Method::A2FSEG)
            .or(methods.first());
        if let Some(reference) = reference {
            for other in methods.iter().filter(|m| m.method != reference.method) {
                for region in Region::ALL {
                    tests.push(paired_test(reference, other, region));
                }
            }
        }
        CompareSummary {
            methods,
            wins,
            test_unit: TEST_UNIT.to_string(),
            tests,
        }
    }

    /// The methods' labels and Table 1s, in order.
    pub fn tables(&self) -> Vec<(String, &ScoreTable)> {
        self.methods
            .iter()
            .map(|m| (m.label.clone(), &m.scores))
            .collect()
    }

    /// The result of `method`, if compared.
    pub fn method(&self, method: Method) -> Option<&MethodResult> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// `summary.json` text.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).context("cannot encode summary.json")
    }

    /// `summary.csv`: one row per (method, subset or `mean`) with the Dice (%) and HD95 (mm)
    /// of WT, TC and ET.
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "method", "subset", "dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et",
        ])?;
        for m in &self.methods {
            let rows = m
                .scores
                .subsets
                .iter()
                .map(|(s, r)| (s.name(), r))
                .chain(std::iter::once(("mean".to_string(), &m.scores.mean)));
            for (subset, r) in rows {
                let mut record = vec![m.method.name().to_string(), subset];
                record.extend(r.regions.iter().map(|x| format!("{:.4}", 100.0 * x.dice)));
                record.extend(
                    r.regions
                        .iter()
                        .map(|x| x.hd95.map_or_else(String::new, |h| format!("{h:.4}"))),
                );
                w.write_record(&record)?;
            }
        }
        Ok(w.into_inner()?)
    }
}

/// The subsets each method wins per region.
fn wins(methods: &[MethodResult]) -> Vec<Wins> {
    let mut out: Vec<Wins> = methods
        .iter()
        .map(|m| Wins {
            method: m.method,
            regions: [0; 3],
            total: 0,
        })
        .collect();
    let subsets: std::collections::BTreeSet<Subset> = methods
        .iter()
        .flat_map(|m| m.scores.subsets.keys().copied())
        .collect();
    for s in subsets {
        for r in 0..3 {
            let dice: Vec<Option<f64>> = methods
                .iter()
                .map(|m| m.scores.subsets.get(&s).map(|x| x.regions[r].dice))
                .collect();
            let best = dice.iter().flatten().copied().fold(f64::NAN, f64::max);
            for (w, d) in out.iter_mut().zip(&dice) {
                if *d == Some(best) {
                    w.regions[r] += 1;
                    w.total += 1;
                }
            }
        }
    }
    out
}

/// The test of `a` against `b` in `region` over the cases both scored.
fn paired_test(a: &MethodResult, b: &MethodResult, region: Region) -> PairedTest {
    let i = region.index();
    let diffs: Vec<f64> = a
        .case_dice
        .iter()
        .filter_map(|(id, x)| b.case_dice.get(id).map(|y| x[i] - y[i]))
        .collect();
    PairedTest {
        region,
        reference: a.method,
        other: b.method,
        cases: diffs.len(),
        mean_difference: crate::report::scores::mean(diffs.iter().copied()),
        test: signed_rank(&diffs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RegionScore, SubsetScores};

    fn result(method: Method, dice: f64, cases: &[(&str, f64)]) -> MethodResult {
        let scores = ScoreTable::from_rows(Subset::all_nonempty().map(|s| {
            let d = if s == Subset::FULL { 0.5 } else { dice };
            let row = SubsetScores {
                regions: [RegionScore::new(d, Some(2.0)); 3],
                ..Default::default()
            };
            (s, row)
        }));
        MethodResult {
            method,
            label: method.label().into(),
            epochs: 1,
            scores,
            case_dice: cases
                .iter()
                .map(|(c, d)| (c.to_string(), [*d; 3]))
                .collect(),
        }
    }

    #[test]
    fn wins_count_ties_for_every_tied_method() {
        let a = result(Method::A2FSEG, 0.8, &[("c1", 0.8)]);
        let b = result(Method::AVERAGE, 0.7, &[("c1", 0.7)]);
        let s = CompareSummary::new(vec![a, b]);
        // 14 subsets won by A2FSeg per region, 1111 tied (0.5 for both).
        assert_eq!(s.wins[0].regions, [15, 15, 15]);
        assert_eq!(s.wins[1].regions, [1, 1, 1]);
        assert_eq!(s.wins[1].total, 3);
    }

    #[test]
    fn tests_pair_cases_against_the_reference() {
        let cases_a = [
            ("c1", 0.9),
            ("c2", 0.8),
            ("c3", 0.85),
            ("c4", 0.7),
            ("c5", 0.6),
        ];
        let cases_b = [
            ("c1", 0.8),
            ("c2", 0.75),
            ("c3", 0.8),
            ("c4", 0.6),
            ("c9", 0.1),
        ];
        // The reference is A2FSeg even when listed second.
        let s = CompareSummary::new(vec![
            result(Method::HEMIS, 0.7, &cases_b),
            result(Method::A2FSEG, 0.8, &cases_a),
        ]);
        assert_eq!(s.tests.len(), 3);
        let t = &s.tests[0];
        assert_eq!(
            (t.reference, t.other, t.region),
            (Method::A2FSEG, Method::HEMIS, Region::Wt)
        );
        assert_eq!(t.cases, 4);
        assert!((t.mean_difference - 0.075).abs() < 1e-12);
        let w = t.test.unwrap();
        // Four positive differences: W+ = 10 of 10 (ties 0.05, 0.05: mean ranks).
        assert_eq!(w.w_plus, 10.0);
        assert_eq!(w.statistic, 0.0);
        assert!((w.p_value - 0.125).abs() < 1e-12);
        let json = s.to_json().unwrap();
        let back: CompareSummary = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        let csv = String::from_utf8(s.to_csv().unwrap()).unwrap();
        assert_eq!(csv.lines().count(), 1 + 2 * 16);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("hemis,0001,70.0000,")
        );
    }
}
