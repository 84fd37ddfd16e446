//! The paired Wilcoxon signed-rank test of `a2fseg compare` against
//! `scipy.stats.wilcoxon` (its defaults: two-sided, zeros dropped, no continuity
//! correction, `method="auto"`) on samples of every size the comparison meets: the exact
//! distribution (n ≤ 50, no ties or zeros), the enumerated sign patterns (ties or zeros,
//! n ≤ 13) and the normal approximation (ties or zeros beyond 13, or n > 50).

mod common;

use a2fseg::compare::wilcoxon::{PValueMethod, signed_rank};

use common::Rng;

/// Samples: sizes 1–70, continuous (no ties), rounded to a grid (ties, some zeros), and
/// shifted so that most differences share a sign (small p-values).
fn samples() -> Vec<Vec<f64>> {
    let mut rng = Rng(7);
    let mut out = Vec::new();
    for n in (1..=20).chain([25, 30, 40, 49, 50, 51, 60, 70]) {
        for kind in 0..4 {
            let shift = if kind >= 2 { 0.35 } else { 0.0 };
            let d: Vec<f64> = (0..n)
                .map(|_| {
                    let x = rng.uniform(-1.0, 1.0) + shift;
                    if kind % 2 == 1 {
                        // Dice-like differences on a coarse grid: ties and zeros.
                        (x * 8.0).round() / 8.0
                    } else {
                        x
                    }
                })
                .collect();
            out.push(d);
        }
    }
    out
}

#[test]
fn signed_rank_matches_scipy() {
    if !common::python_has(&["numpy", "scipy"]) {
        return;
    }
    let samples = samples();
    let dir = common::tempdir();
    let path = dir.path().join("samples.json");
    std::fs::write(&path, serde_json::to_vec(&samples).unwrap()).unwrap();
    let script = r#"
import json, sys, warnings
import numpy as np
from scipy.stats import wilcoxon
warnings.simplefilter("ignore")
out = []
for d in json.load(open(sys.argv[1])):
    d = np.asarray(d, dtype=float)
    if np.all(d == 0):
        out.append(None)
        continue
    r = wilcoxon(d)
    out.append([float(r.statistic), float(r.pvalue)])
print(json.dumps(out))
"#;
    let text = common::run_python(script, &[path.to_str().unwrap()]);
    let reference: Vec<Option<[f64; 2]>> = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(reference.len(), samples.len());
    let mut seen = [0usize; 3];
    for (d, want) in samples.iter().zip(&reference) {
        let got = signed_rank(d);
        let (Some(got), Some([stat, p])) = (got, want) else {
            assert!(
                got.is_none() && want.is_none(),
                "{d:?}: {got:?} vs {want:?}"
            );
            continue;
        };
        seen[match got.method {
            PValueMethod::Exact => 0,
            PValueMethod::Permutation => 1,
            PValueMethod::Normal => 2,
        }] += 1;
        assert_eq!(got.statistic, *stat, "statistic of {d:?} ({got:?})");
        assert!(
            (got.p_value - p).abs() <= 1e-9 * p.max(1e-300) + 1e-15,
            "p of n = {} ({:?}): {} vs scipy {p}",
            d.len(),
            got.method,
            got.p_value
        );
    }
    // Every way of computing the p-value was compared.
    assert!(seen.iter().all(|&n| n >= 5), "{seen:?}");
}
