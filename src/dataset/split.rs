//! Train/validation/test splits: reproducible from sorted ids and a seed, saved as JSON and
//! reusable.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize};

use super::Dataset;
use crate::fsutil::atomic_write_bytes;

/// Case ids of the three parts of a split, each sorted.
///
/// JSON form: `{"train": [...], "validation": [...], "test": [...]}`. When reading, the keys
/// `val`/`valid` (validation), `training` (train) and `testing` (test) are accepted too, a
/// missing part is empty, and any other key is an error (so a typo never silently empties
/// a part).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Split {
    /// Cases to train on.
    pub train: Vec<String>,
    /// Cases to select checkpoints on.
    pub validation: Vec<String>,
    /// Held-out cases for the final evaluation.
    pub test: Vec<String>,
}

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = BTreeMap::<String, Vec<String>>::deserialize(d)?;
        let mut split = Split::default();
        for (key, ids) in map {
            let part = match key.to_ascii_lowercase().as_str() {
                "train" | "training" => &mut split.train,
                "validation" | "val" | "valid" => &mut split.validation,
                "test" | "testing" => &mut split.test,
                _ => {
                    return Err(D::Error::custom(format!(
                        "unknown split part '{key}' (expected train, validation or val, test)"
                    )));
                }
            };
            part.extend(ids);
        }
        Ok(split)
    }
}

/// A uniform integer in `0..n` (n > 0), by rejection sampling on 64-bit draws. Written
/// out here, not taken from `rand`'s helpers, so a split depends only on the ChaCha8 stream
/// and stays the same across `rand` releases.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let v = rng.next_u64();
        if v < zone {
            return v % n;
        }
    }
}

/// Numbers of cases per part for `n` cases: largest-remainder rounding of the ratios, then
/// every part with a non-zero ratio gets at least one case, taken from the largest part
/// while that keeps at least one (validation is served before test).
fn part_sizes(n: usize, ratios: [u32; 3]) -> [usize; 3] {
    let total: u64 = ratios.iter().map(|&r| u64::from(r)).sum();
    let exact = ratios.map(|r| n as u64 * u64::from(r));
    let mut sizes = exact.map(|e| (e / total) as usize);
    let mut rest = n - sizes.iter().sum::<usize>();
    let mut order = [0usize, 1, 2];
    // Stable sort: ties go to train, then validation, then test.
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % total));
    for &i in order.iter().cycle() {
        if rest == 0 {
            break;
        }
        sizes[i] += 1;
        rest -= 1;
    }
    for i in 0..3 {
        if ratios[i] > 0 && sizes[i] == 0 {
            let largest = (0..3)
                .max_by_key(|&j| (sizes[j], std::cmp::Reverse(j)))
                .unwrap_or(0);
            if sizes[largest] > 1 {
                sizes[largest] -= 1;
                sizes[i] += 1;
            }
        }
    }
    sizes
}

impl Split {
    /// A random split of `ids` with `ratios` (train, validation, test; any scale, e.g.
    /// `[70, 10, 20]`). Reproducible: the ids are sorted and deduplicated first, then
    /// shuffled by Fisher–Yates with ChaCha8 seeded by `seed`, so the same ids and seed
    /// give the same split whatever order they were listed in. Each part is sorted.
    pub fn random(ids: &[String], seed: u64, ratios: [u32; 3]) -> Result<Split> {
        if ratios.iter().all(|&r| r == 0) {
            bail!("split ratios {ratios:?} are all zero");
        }
        let mut ids: Vec<String> = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in (1..ids.len()).rev() {
            let j = below(&mut rng, i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        let [n_train, n_val, _] = part_sizes(ids.len(), ratios);
        let mut test = ids.split_off(n_train + n_val);
        let mut validation = ids.split_off(n_train);
        let mut train = ids;
        train.sort();
        validation.sort();
        test.sort();
        Ok(Split {
            train,
            validation,
            test,
        })
    }

    /// Reads a split file (see [`Split`] for the accepted forms).
    pub fn load(path: &Path) -> Result<Split> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read split file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("cannot parse split file {}", path.display()))
    }

    /// Writes the split as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        atomic_write_bytes(path, text.as_bytes())
    }

    /// All ids of the three parts.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.train.iter().chain(&self.validation).chain(&self.test)
    }

    /// Checks the split against a dataset: every id must be a case of it and no id may
    /// appear twice (within or across parts). The error lists the offending ids.
    pub fn validate(&self, dataset: &Dataset) -> Result<()> {
        let mut seen = BTreeSet::new();
        let mut dup = BTreeSet::new();
        for id in self.all() {
            if !seen.insert(id.as_str()) {
                dup.insert(id.as_str());
            }
        }
        if !dup.is_empty() {
            bail!(
                "the split lists {} case id(s) more than once: {}",
                dup.len(),
                list(dup.iter().copied())
            );
        }
        let unknown: Vec<&str> = seen
            .into_iter()
            .filter(|id| dataset.case(id).is_none())
            .collect();
        if !unknown.is_empty() {
            bail!(
                "the split names {} case id(s) not found in {}: {}",
                unknown.len(),
                dataset.root.display(),
                list(unknown.into_iter())
            );
        }
        Ok(())
    }
}

/// At most 20 ids joined by ", ", then "and N more".
fn list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.collect();
    let shown = ids.iter().take(20).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > 20 {
        format!("{shown} and {} more", ids.len() - 20)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{CaseFiles, Layout};
    use crate::labels::LabelConvention;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("case_{i:03}")).collect()
    }

    #[test]
    fn sizes_follow_ratios() {
        assert_eq!(part_sizes(10, [70, 10, 20]), [7, 1, 2]);
        assert_eq!(part_sizes(369, [70, 10, 20]), [258, 37, 74]);
        assert_eq!(part_sizes(3, [70, 10, 20]), [1, 1, 1]);
        assert_eq!(part_sizes(2, [70, 10, 20]), [1, 1, 0]);
        assert_eq!(part_sizes(5, [1, 0, 0]), [5, 0, 0]);
        assert_eq!(part_sizes(0, [70, 10, 20]), [0, 0, 0]);
        for n in 0..50 {
            assert_eq!(part_sizes(n, [70, 10, 20]).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn random_is_reproducible_and_order_free() {
        let a = Split::random(&ids(30), 7, [70, 10, 20]).unwrap();
        let mut rev = ids(30);
        rev.reverse();
        let b = Split::random(&rev, 7, [70, 10, 20]).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (21, 3, 6)
        );
        let c = Split::random(&ids(30), 8, [70, 10, 20]).unwrap();
        assert_ne!(a, c);
        let mut all: Vec<_> = a.all().cloned().collect();
        all.sort();
        assert_eq!(all, ids(30));
        assert!(a.train.windows(2).all(|w| w[0] < w[1]));
        assert!(Split::random(&ids(3), 0, [0, 0, 0]).is_err());
    }

    #[test]
    fn json_forms() {
        let s: Split =
            serde_json::from_str(r#"{"train": ["a"], "val": ["b"], "test": []}"#).unwrap();
        assert_eq!(s.validation, ["b"]);
        let s: Split = serde_json::from_str(r#"{"train": ["a", "c"]}"#).unwrap();
        assert_eq!(s.train.len(), 2);
        assert!(s.test.is_empty());
        assert!(serde_json::from_str::<Split>(r#"{"trian": ["a"]}"#).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.json");
        let s = Split::random(&ids(10), 1, [70, 10, 20]).unwrap();
        s.save(&p).unwrap();
        assert_eq!(Split::load(&p).unwrap(), s);
        let e = Split::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(format!("{e:#}").contains("nope.json"));
    }

    #[test]
    fn validate_lists_unknown_and_duplicate_ids() {
        let ds = Dataset {
            root: "/data".into(),
            layout: Layout::Folder,
            convention: LabelConvention::Brats,
            cases: ids(4).into_iter().map(CaseFiles::empty).collect(),
            strict_finite: false,
        };
        let ok = Split {
            train: vec!["case_000".into(), "case_001".into()],
            validation: vec!["case_002".into()],
            test: vec![],
        };
        ok.validate(&ds).unwrap();
        let unknown = Split {
            test: vec!["x".into(), "y".into()],
            ..ok.clone()
        };
        let e = unknown.validate(&ds).unwrap_err().to_string();
        assert!(e.contains("x, y"), "{e}");
        // Ids become file names only as cases found in the folder: an id that is a path
        // (outside the data folder, or into another case) is an unknown id, refused.
        for escape in ["../case_000", "/etc/passwd", "case_000/../case_001", "."] {
            let bad = Split {
                test: vec![escape.into()],
                ..ok.clone()
            };
            let e = bad.validate(&ds).unwrap_err().to_string();
            assert!(e.contains("not found in /data"), "{e}");
        }
        let dup = Split {
            test: vec!["case_000".into()],
            ..ok
        };
        let e = dup.validate(&ds).unwrap_err().to_string();
        assert!(e.contains("more than once: case_000"), "{e}");
    }
}
