//! Modality dropout: which modalities an iteration trains on.
//!
//! The network must work with any non-empty subset of T1, T1c, T2 and FLAIR, so training
//! hides modalities. The subset of an iteration is a pure function of
//! `(seed, epoch, iteration)` (see [`super::rng`]) and is shared by the whole batch, since
//! only the sampled modalities' feature extractors run in that step.
//!
//! Cases that lack modalities: the sampled subset is intersected with the modalities the
//! batch's cases have ([`restrict`]); if nothing is left, a subset is drawn uniformly among
//! the non-empty subsets of those modalities, from its own stream `(AVAILABLE, epoch,
//! iteration)`. With complete cases nothing changes.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::rng;
use crate::modality::Subset;

/// How modalities are hidden during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModalityDropout {
    /// What the authors' code does: epochs are counted from 0; odd epochs use all four
    /// modalities; even epochs draw a subset size uniformly from {1, 2, 3}, then a subset of
    /// that size uniformly (so the full set is seen half of the time overall).
    Paper,
    /// Uniform over the 15 non-empty subsets, as RFNet and mmFormer train.
    Uniform,
    /// A subset size drawn uniformly from {1, 2, 3, 4}, then a subset of that size
    /// uniformly, every iteration, as U-HVED trains (so the full set is seen a quarter of
    /// the time, each single modality a sixteenth).
    Size,
    /// Each modality kept with probability ½, independently; an empty draw is redrawn, as
    /// MFI trains (every non-empty subset equally likely, 1/15 each, like `uniform`; the
    /// difference is only the stream of draws).
    Bernoulli,
    /// Never drop: always all four modalities.
    Full,
}

/// Whether one drawn subset serves the whole batch or each sample draws its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SubsetDraw {
    /// One subset per batch (A2FSeg and U-HVED: only that subset's branches run). The default.
    #[default]
    Batch,
    /// One subset per sample, from the stream `(DROPOUT, epoch, iteration, item)` (RFNet,
    /// mmFormer and MFI, which zero a missing modality per sample): the step's subset is then
    /// the union of the samples' ones, and [`crate::model::TrainInputs::sample_subsets`]
    /// tells each sample's own.
    Sample,
}

impl SubsetDraw {
    /// The configuration name (`batch`, `sample`).
    pub fn name(self) -> &'static str {
        match self {
            SubsetDraw::Batch => "batch",
            SubsetDraw::Sample => "sample",
        }
    }
}

impl ModalityDropout {
    /// The subset of modalities for iteration `iteration` of epoch `epoch` (both from 0).
    pub fn sample(self, seed: u64, epoch: usize, iteration: usize) -> Subset {
        let r = rng::stream(seed, &[rng::DROPOUT, epoch as u64, iteration as u64]);
        self.draw(r, epoch)
    }

    /// The subset of sample `item` of iteration `iteration` of epoch `epoch`, for
    /// [`SubsetDraw::Sample`]: the same rule as [`ModalityDropout::sample`] on the stream
    /// `(DROPOUT, epoch, iteration, item)`.
    pub fn sample_item(self, seed: u64, epoch: usize, iteration: usize, item: usize) -> Subset {
        let path = [rng::DROPOUT, epoch as u64, iteration as u64, item as u64];
        self.draw(rng::stream(seed, &path), epoch)
    }

    /// One draw of this rule from `r` in epoch `epoch`.
    fn draw(self, mut r: impl RngExt, epoch: usize) -> Subset {
        match self {
            ModalityDropout::Full => Subset::FULL,
            ModalityDropout::Uniform => Subset::from_bits(r.random_range(1u8..=15)),
            ModalityDropout::Size => {
                let size = r.random_range(1usize..=4);
                of_size(&mut r, size)
            }
            ModalityDropout::Bernoulli => loop {
                let bits = (0..4).fold(0u8, |acc, i| acc | (u8::from(r.random_bool(0.5)) << i));
                if bits != 0 {
                    return Subset::from_bits(bits);
                }
            },
            ModalityDropout::Paper => {
                if epoch % 2 == 1 {
                    return Subset::FULL;
                }
                let size = r.random_range(1usize..=3);
                of_size(&mut r, size)
            }
        }
    }

    /// The configuration name (`paper`, `uniform`, `full`).
    pub fn name(self) -> &'static str {
        match self {
            ModalityDropout::Paper => "paper",
            ModalityDropout::Uniform => "uniform",
            ModalityDropout::Size => "size",
            ModalityDropout::Bernoulli => "bernoulli",
            ModalityDropout::Full => "full",
        }
    }
}

/// A subset of `size` modalities drawn uniformly from `r`.
fn of_size(r: &mut impl RngExt, size: usize) -> Subset {
    let options: Vec<Subset> = Subset::all_nonempty().filter(|s| s.len() == size).collect();
    options[r.random_range(0..options.len())]
}

/// The subset trained on when the batch's cases have only the modalities `available`
/// (non-empty): `sampled ∩ available`, or, if that is empty, a subset drawn uniformly among
/// the non-empty subsets of `available` from the stream `(AVAILABLE, epoch, iteration)`.
pub fn restrict(
    sampled: Subset,
    available: Subset,
    seed: u64,
    epoch: usize,
    iteration: usize,
) -> Subset {
    let kept = Subset::from_bits(sampled.bits() & available.bits());
    if !kept.is_empty() || available.is_empty() {
        return kept;
    }
    let options: Vec<Subset> = Subset::all_nonempty()
        .filter(|s| s.is_subset_of(available))
        .collect();
    let mut r = rng::stream(seed, &[rng::AVAILABLE, epoch as u64, iteration as u64]);
    options[r.random_range(0..options.len())]
}

impl fmt::Display for ModalityDropout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModalityDropout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "paper" => Ok(ModalityDropout::Paper),
            "uniform" => Ok(ModalityDropout::Uniform),
            "size" => Ok(ModalityDropout::Size),
            "bernoulli" => Ok(ModalityDropout::Bernoulli),
            "full" | "none" => Ok(ModalityDropout::Full),
            other => Err(format!(
                "unknown modality dropout '{other}' (expected paper, uniform, size, bernoulli or full)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(mode: ModalityDropout, epochs: std::ops::Range<usize>, n: usize) -> [usize; 16] {
        let mut c = [0usize; 16];
        for e in epochs {
            for i in 0..n {
                c[mode.sample(42, e, i).bits() as usize] += 1;
            }
        }
        c
    }

    #[test]
    fn full_never_drops() {
        let c = counts(ModalityDropout::Full, 0..3, 50);
        assert_eq!(c[15], 150);
    }

    #[test]
    fn uniform_covers_the_fifteen_subsets_evenly() {
        let c = counts(ModalityDropout::Uniform, 0..10, 1500);
        assert_eq!(c[0], 0);
        for (bits, &n) in c.iter().enumerate().skip(1) {
            // 15000 draws: expected 1000 each, sd ≈ 30.
            assert!(
                (850..1150).contains(&n),
                "subset {bits:04b} drawn {n} times"
            );
        }
    }

    #[test]
    fn paper_uses_all_four_on_odd_epochs_and_sizes_one_to_three_on_even() {
        let odd = counts(ModalityDropout::Paper, 1..2, 300);
        assert_eq!(odd[15], 300);
        let mut by_size = [0usize; 5];
        let mut by_subset = [0usize; 16];
        for e in (0..20).step_by(2) {
            for i in 0..900 {
                let s = ModalityDropout::Paper.sample(3, e, i);
                by_size[s.len()] += 1;
                by_subset[s.bits() as usize] += 1;
            }
        }
        assert_eq!(by_size[0] + by_size[4], 0);
        for size in 1..=3 {
            // 9000 draws, expected 3000 per size.
            assert!((2750..3250).contains(&by_size[size]), "{by_size:?}");
        }
        // Within size 1 (4 subsets), each is expected 750 times.
        for bit in [1usize, 2, 4, 8] {
            assert!((620..880).contains(&by_subset[bit]), "{by_subset:?}");
        }
    }

    #[test]
    fn size_draws_each_size_a_quarter_of_the_time() {
        let c = counts(ModalityDropout::Size, 0..4, 1000);
        let mut by_size = [0usize; 5];
        for (bits, n) in c.iter().enumerate() {
            by_size[Subset::from_bits(bits as u8).len()] += n;
        }
        assert_eq!(by_size[0], 0);
        for (k, &n) in by_size.iter().enumerate().skip(1) {
            assert!((850..1150).contains(&n), "size {k}: {n} of 4000");
        }
        // Within a size, subsets are even: each single modality ≈ 1000 / 4.
        for m in 0..4 {
            let n = c[1 << m];
            assert!((180..320).contains(&n), "{n}");
        }
    }

    #[test]
    fn bernoulli_covers_the_fifteen_subsets_evenly() {
        let c = counts(ModalityDropout::Bernoulli, 0..10, 1500);
        assert_eq!(c[0], 0);
        for (bits, &n) in c.iter().enumerate().skip(1) {
            assert!((850..1150).contains(&n), "subset {bits:04b}: {n}");
        }
    }

    #[test]
    fn per_sample_draws_are_their_own_stream_and_follow_the_rule() {
        let mode = ModalityDropout::Size;
        let mut differs = 0;
        let mut by_size = [0usize; 5];
        for it in 0..400 {
            let items: Vec<Subset> = (0..2).map(|k| mode.sample_item(9, 0, it, k)).collect();
            assert_eq!(items[0], mode.sample_item(9, 0, it, 0), "a pure function");
            differs += usize::from(items[0] != items[1]);
            for s in items {
                by_size[s.len()] += 1;
            }
        }
        // Independent draws agree with probability Σ p(s)² ≈ 0.11 under `size`.
        assert!(differs > 300, "{differs} of 400 pairs differ");
        assert_eq!(by_size[0], 0);
        for n in &by_size[1..] {
            assert!((150..250).contains(n), "{by_size:?}");
        }
        let p = ModalityDropout::Paper;
        assert!((0..50).all(|k| p.sample_item(9, 1, 0, k) == Subset::FULL));
    }

    #[test]
    fn restrict_keeps_the_shared_modalities_or_draws_among_the_available() {
        let s = |b: &str| b.parse::<Subset>().unwrap();
        assert_eq!(restrict(s("1111"), s("0101"), 1, 0, 0), s("0101"));
        assert_eq!(restrict(s("0110"), s("0111"), 1, 0, 0), s("0110"));
        assert_eq!(restrict(s("1001"), s("1111"), 1, 0, 0), s("1001"));
        // Nothing shared: a non-empty subset of the available, deterministic, all reached.
        let mut seen = std::collections::BTreeSet::new();
        for it in 0..300 {
            let r = restrict(s("1000"), s("0110"), 4, 2, it);
            assert!(!r.is_empty() && r.is_subset_of(s("0110")), "{r:?}");
            assert_eq!(r, restrict(s("1000"), s("0110"), 4, 2, it));
            seen.insert(r.bits());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn sample_is_a_function_of_its_coordinates() {
        for mode in [ModalityDropout::Paper, ModalityDropout::Uniform] {
            let a: Vec<_> = (0..20).map(|i| mode.sample(9, 4, i)).collect();
            let b: Vec<_> = (0..20).rev().map(|i| mode.sample(9, 4, i)).rev().collect();
            assert_eq!(a, b);
        }
    }
}
