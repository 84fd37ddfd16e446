//! What the demo reports: one line per stage (`[n/6] …`), the key findings and the end, as
//! events rendered by a [`crate::progress::Sink`] (text on stdout, or nothing when quiet;
//! the demo has no JSON mode, so [`Event::json`] is `None`).

use std::path::Path;

use super::budget::BudgetPlan;
use crate::dataset::Split;
use crate::progress::Event;

/// One event of a demo run.
#[derive(Debug, Clone)]
pub enum DemoEvent<'a> {
    /// Stage 1 starts: `cases` phantoms of `dims`.
    Phantoms { cases: usize, dims: [usize; 3] },
    /// Stage 2 done: the split (seeded by `seed`).
    Split { split: &'a Split, seed: u64 },
    /// Stage 3 done: the plan; `time_left` is the estimate's text.
    Plan {
        plan: &'a BudgetPlan,
        time_left: String,
    },
    /// Stage 4 starts for model `index` (from 1) of `count`; `status` is the time estimate
    /// or the note that an earlier run finished it.
    Train {
        key: &'a str,
        index: usize,
        count: usize,
        epochs: usize,
        status: String,
    },
    /// Stage 5 starts for model `key` on `test_cases` cases.
    Evaluate {
        key: &'a str,
        test_cases: usize,
        status: String,
    },
    /// Stage 6 starts.
    Report,
    /// One key finding of the report.
    Finding(&'a str),
    /// The demo finished after `seconds`.
    Done {
        seconds: f64,
        markdown: &'a Path,
        html: &'a Path,
    },
}

impl Event for DemoEvent<'_> {
    fn text(&self) -> Option<String> {
        Some(match self {
            DemoEvent::Phantoms { cases, dims } => {
                format!("[1/6] phantoms: {cases} cases {dims:?}")
            }
            DemoEvent::Split { split, seed } => format!(
                "[2/6] split: {} train / {} validation / {} test (seed {seed})",
                split.train.len(),
                split.validation.len(),
                split.test.len(),
            ),
            DemoEvent::Plan { plan, time_left } => format!(
                "[3/6] plan: {} epochs per model ({:.0} s each), {}{}{time_left}",
                plan.epochs,
                plan.epoch_seconds,
                if plan.both_models {
                    "adaptive and average fusion"
                } else {
                    "adaptive fusion only (no time for the average-fusion baseline)"
                },
                if plan.over_budget {
                    "; the minimum training exceeds the budget"
                } else {
                    ""
                },
            ),
            DemoEvent::Train {
                key,
                index,
                count,
                epochs,
                status,
            } => format!("[4/6] train {key} ({index} of {count}): {epochs} epochs{status}"),
            DemoEvent::Evaluate {
                key,
                test_cases,
                status,
            } => format!("[5/6] evaluate {key}: {test_cases} test cases × 15 subsets{status}"),
            DemoEvent::Report => "[6/6] report".to_string(),
            DemoEvent::Finding(line) => format!("  - {line}"),
            DemoEvent::Done {
                seconds,
                markdown,
                html,
            } => format!(
                "done in {seconds:.0} s: {} and {}",
                markdown.display(),
                html.display()
            ),
        })
    }

    fn json(&self) -> Option<serde_json::Value> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lines() {
        let split = Split {
            train: vec!["a".into(), "b".into()],
            validation: vec!["c".into()],
            test: vec![],
        };
        let plan = BudgetPlan {
            epochs: 10,
            both_models: false,
            epoch_seconds: 12.4,
            estimated_seconds: 300.0,
            over_budget: true,
        };
        let lines: Vec<String> = [
            DemoEvent::Phantoms {
                cases: 3,
                dims: [8, 8, 8],
            },
            DemoEvent::Split {
                split: &split,
                seed: 4,
            },
            DemoEvent::Plan {
                plan: &plan,
                time_left: " (about 5 min left)".into(),
            },
            DemoEvent::Train {
                key: "adaptive",
                index: 1,
                count: 1,
                epochs: 10,
                status: String::new(),
            },
            DemoEvent::Finding("x"),
        ]
        .iter()
        .map(|e| e.text().unwrap())
        .collect();
        assert_eq!(
            lines,
            [
                "[1/6] phantoms: 3 cases [8, 8, 8]",
                "[2/6] split: 2 train / 1 validation / 0 test (seed 4)",
                "[3/6] plan: 10 epochs per model (12 s each), adaptive fusion only (no time for \
                 the average-fusion baseline); the minimum training exceeds the budget (about 5 \
                 min left)",
                "[4/6] train adaptive (1 of 1): 10 epochs",
                "  - x",
            ]
        );
        assert!(DemoEvent::Report.json().is_none());
    }
}
