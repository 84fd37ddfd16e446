//! The paired Wilcoxon signed-rank test (two-sided), computed as `scipy.stats.wilcoxon`
//! does with its defaults (`zero_method="wilcox"`, no continuity correction,
//! `method="auto"`), and checked against it in `tests/compare_reference.rs`.
//!
//! Zero differences are dropped; the others are ranked by absolute value with tied values
//! sharing their mean rank; `W+` is the sum of the ranks of the positive differences and
//! the statistic reported is `min(W+, W−)`. The p-value:
//! - **exact**: at most 50 differences, none zero and no ties: the null distribution of
//!   `W+` (every sign pattern equally likely) counted exactly; `p = 2·min(P(W+ ≥ ⌊w⌋),
//!   P(W+ ≤ ⌈w⌉))`, at most 1;
//! - **permutation**: zeros or ties among at most 13 differences (zeros included): all
//!   `2^n` sign patterns of the non-zero differences enumerated with their mean ranks;
//! - **normal**: otherwise, `z = (W+ − n(n+1)/4) / σ` with
//!   `σ² = (n(n+1)(2n+1) − Σ(t³ − t)/2) / 24` over the tie groups `t`, `p = 2·(1 − Φ(|z|))`.
//!
//! No well-kept Rust crate offers this test with scipy's handling of ties and zeros, so it
//! is written here (the normal tail comes from `libm::erfc`).

use serde::{Deserialize, Serialize};

/// How the p-value was computed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PValueMethod {
    /// The exact null distribution (no zeros, no ties, n ≤ 50).
    Exact,
    /// All sign patterns enumerated (zeros or ties, n ≤ 13).
    Permutation,
    /// The normal approximation with the tie correction.
    Normal,
}

/// The outcome of [`signed_rank`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignedRank {
    /// Non-zero differences ranked.
    pub n: usize,
    /// Zero differences dropped.
    pub zeros: usize,
    /// Sum of the ranks of the positive differences.
    pub w_plus: f64,
    /// `min(W+, W−)`, the statistic scipy reports for the two-sided test.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// How `p_value` was computed.
    pub method: PValueMethod,
}

/// Largest sample (zeros excluded) with an exact p-value, as scipy.
const EXACT_MAX: usize = 50;
/// Largest sample (zeros included) whose sign patterns are enumerated, as scipy.
const PERMUTATION_MAX: usize = 13;

/// Mean ranks (1-based) of `values` and the sizes of the groups of equal values.
fn mean_ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && values[order[j]] == values[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) share the mean of ranks i+1 ..= j.
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        ties.push(j - i);
        i = j;
    }
    (ranks, ties)
}

/// The two-sided signed-rank test of the paired differences `diffs` (`x − y`); `None`
/// when no difference is non-zero (or one is not finite): the test is then undefined.
pub fn signed_rank(diffs: &[f64]) -> Option<SignedRank> {
    if diffs.iter().any(|d| !d.is_finite()) {
        return None;
    }
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|&d| d != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return None;
    }
    let zeros = diffs.len() - n;
    let abs: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (ranks, ties) = mean_ranks(&abs);
    // A fold from +0 (an empty f64 sum is −0, which would print as "-0").
    let w_plus = nonzero
        .iter()
        .zip(&ranks)
        .filter(|(d, _)| **d > 0.0)
        .fold(0.0, |s, (_, r)| s + r);
    let total = (n * (n + 1)) as f64 / 2.0;
    let has_ties = ties.iter().any(|&t| t > 1);
    let (p_value, method) = if diffs.len() <= EXACT_MAX && !has_ties && zeros == 0 {
        (exact_p(n, w_plus), PValueMethod::Exact)
    } else if diffs.len() <= PERMUTATION_MAX {
        (permutation_p(&ranks, w_plus), PValueMethod::Permutation)
    } else {
        (normal_p(n, &ties, w_plus), PValueMethod::Normal)
    };
    Some(SignedRank {
        n,
        zeros,
        w_plus,
        statistic: w_plus.min(total - w_plus),
        p_value,
        method,
    })
}

/// The exact two-sided p-value of `W+ = w` among `n` untied ranks 1..=n: the number of
/// sign patterns giving each sum, counted by dynamic programming.
fn exact_p(n: usize, w: f64) -> f64 {
    let max = n * (n + 1) / 2;
    // counts[s]: sign patterns of ranks 1..=k with W+ = s (at most 2^50: exact in f64).
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for k in 1..=n {
        for s in (k..=max).rev() {
            counts[s] += counts[s - k];
        }
    }
    let all = 2f64.powi(n as i32);
    let lower = w.ceil() as usize; // P(W+ ≤ ⌈w⌉)
    let upper = w.floor() as usize; // P(W+ ≥ ⌊w⌋)
    let cdf: f64 = counts[..=lower.min(max)].iter().sum::<f64>() / all;
    let sf: f64 = counts[upper.min(max)..].iter().sum::<f64>() / all;
    (2.0 * cdf.min(sf)).min(1.0)
}

/// The two-sided p-value from all `2^n` sign patterns of `ranks`: twice the smaller share
/// of patterns at or below / at or above the observed `W+`, at most 1 (scipy's
/// `permutation_test`, with its relative tolerance for equal statistics).
fn permutation_p(ranks: &[f64], w: f64) -> f64 {
    let n = ranks.len();
    let tolerance = (100.0 * f64::EPSILON * w).abs();
    let (mut below, mut above) = (0u64, 0u64);
    for pattern in 0u64..(1 << n) {
        let t: f64 = (0..n)
            .filter(|&i| pattern >> i & 1 == 1)
            .map(|i| ranks[i])
            .sum();
        below += u64::from(t <= w + tolerance);
        above += u64::from(t >= w - tolerance);
    }
    let all = (1u64 << n) as f64;
    (2.0 * (below.min(above) as f64) / all).min(1.0)
}

/// The two-sided p-value of the normal approximation with the tie correction.
fn normal_p(n: usize, ties: &[usize], w: f64) -> f64 {
    let n = n as f64;
    let mean = n * (n + 1.0) / 4.0;
    let tie: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
    let sd = ((n * (n + 1.0) * (2.0 * n + 1.0) - tie / 2.0) / 24.0).sqrt();
    let z = (w - mean) / sd;
    // 2·(1 − Φ(|z|)) = erfc(|z|/√2).
    libm::erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        let (r, t) = mean_ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(t, [1, 1, 2]);
    }

    #[test]
    fn exact_small_samples() {
        // n = 4, all positive: W+ = 10, only 1 of 16 patterns as extreme: p = 2/16.
        let r = signed_rank(&[0.1, 0.2, 0.3, 0.4]).unwrap();
        assert_eq!(r.method, PValueMethod::Exact);
        assert_eq!(r.w_plus, 10.0);
        assert_eq!(r.statistic, 0.0);
        assert!((r.p_value - 0.125).abs() < 1e-15);
        // A symmetric outcome has p = 1.
        let r = signed_rank(&[-0.5]).unwrap();
        assert_eq!(r.w_plus.to_string(), "0");
        assert_eq!(r.statistic.to_string(), "0");
        let r = signed_rank(&[1.0, -2.0, -3.0, 4.0]).unwrap();
        assert_eq!(r.w_plus, 5.0);
        assert_eq!(r.p_value, 1.0);
        // Sign flips swap W+ and W− but not the p-value.
        let a = signed_rank(&[0.5, -1.5, 2.5, 3.5, 4.5, -0.25]).unwrap();
        let b = signed_rank(&[-0.5, 1.5, -2.5, -3.5, -4.5, 0.25]).unwrap();
        assert_eq!(a.statistic, b.statistic);
        assert_eq!(a.p_value, b.p_value);
    }

    #[test]
    fn zeros_are_dropped_and_ties_enumerated() {
        let r = signed_rank(&[0.0, 1.0, 1.0, 2.0]).unwrap();
        assert_eq!((r.n, r.zeros), (3, 1));
        assert_eq!(r.method, PValueMethod::Permutation);
        // Ranks 1.5, 1.5, 3 all positive: W+ = 6, 1 of 8 patterns: p = 2/8.
        assert_eq!(r.w_plus, 6.0);
        assert!((r.p_value - 0.25).abs() < 1e-15);
        assert!(signed_rank(&[0.0, 0.0]).is_none());
        assert!(signed_rank(&[]).is_none());
        assert!(signed_rank(&[f64::NAN, 1.0]).is_none());
    }

    #[test]
    fn large_samples_use_the_normal_approximation() {
        // 60 differences, 55 positive: far in the tail.
        let d: Vec<f64> = (1..=60)
            .map(|i| if i % 12 == 0 { -(i as f64) } else { i as f64 })
            .collect();
        let r = signed_rank(&d).unwrap();
        assert_eq!(r.method, PValueMethod::Normal);
        assert!(r.p_value < 1e-6, "{r:?}");
        // The exact and normal p-values agree closely at n = 50 without ties.
        let d: Vec<f64> = (1..=50)
            .map(|i| if i % 3 == 0 { -(i as f64) } else { i as f64 })
            .collect();
        let exact = signed_rank(&d).unwrap();
        assert_eq!(exact.method, PValueMethod::Exact);
        let (_, ties) = mean_ranks(&d.iter().map(|x| x.abs()).collect::<Vec<_>>());
        let normal = normal_p(50, &ties, exact.w_plus);
        assert!(
            (exact.p_value - normal).abs() < 0.01,
            "{exact:?} vs {normal}"
        );
    }
}
