//! Training cases read on demand from the preprocessing cache, for datasets too large to
//! hold in memory (BraTS 2021: 1251 cases × 4 modalities × ~9 M voxels ≈ 180 GB).
//!
//! [`LazyCases`] keeps only each case's id and modalities; the loader's worker threads ask
//! for a case when a batch item uses it, and it is read from the cache (preprocessing it
//! first if the entry is missing) into a least-recently-used set of at most `capacity`
//! cases shared by the workers. A case read from the cache is bit-identical to the one
//! training would otherwise hold in memory, so the batches, and the whole run, are the same.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::loader::{CaseRef, CaseSource};
use super::sampler::TrainCase;
use crate::dataset::Dataset;
use crate::modality::Subset;
use crate::preprocess::{Cache, PreprocessSettings, PreprocessedCase};

/// Turns a preprocessed case (with its segmentation) into a training case.
pub fn train_case(pre: PreprocessedCase) -> Result<TrainCase> {
    let id = pre.id;
    let classes = pre
        .classes
        .with_context(|| format!("case {id} has no segmentation"))?;
    TrainCase::with_modalities(id, pre.images, classes)
}

/// Training cases read from a preprocessing cache when needed (see the module docs).
pub struct LazyCases {
    dataset: Dataset,
    cache: Cache,
    settings: PreprocessSettings,
    ids: Vec<String>,
    available: Vec<Subset>,
    capacity: usize,
    /// Most recently used last: `(case index, case)`.
    recent: Mutex<VecDeque<(usize, Arc<TrainCase>)>>,
}

impl LazyCases {
    /// Cases `ids` of `dataset` (each with the modalities `available`), preprocessed with
    /// `settings` through `cache`, keeping at most `capacity` (at least 1) in memory.
    pub fn new(
        dataset: Dataset,
        cache: Cache,
        settings: PreprocessSettings,
        ids: Vec<String>,
        available: Vec<Subset>,
        capacity: usize,
    ) -> LazyCases {
        LazyCases {
            dataset,
            cache,
            settings,
            ids,
            available,
            capacity: capacity.max(1),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The preprocessed case `index`, read from the cache.
    pub fn preprocessed(&self, index: usize) -> Result<PreprocessedCase> {
        let id = &self.ids[index];
        let files = self
            .dataset
            .case(id)
            .with_context(|| format!("case {id} is not in {}", self.dataset.root.display()))?;
        self.cache
            .get_or_compute(&self.dataset, files, &self.settings)
            .with_context(|| format!("cannot read training case {id}"))
    }

    /// How many cases are held in memory now.
    pub fn resident(&self) -> usize {
        self.recent.lock().map(|r| r.len()).unwrap_or(0)
    }
}

impl CaseSource for LazyCases {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn available(&self, index: usize) -> Subset {
        self.available[index]
    }

    fn case(&self, index: usize) -> Result<CaseRef<'_>> {
        {
            let mut recent = self.recent.lock().expect("the case cache lock");
            if let Some(pos) = recent.iter().position(|(i, _)| *i == index) {
                let entry = recent.remove(pos).expect("a found position");
                let case = Arc::clone(&entry.1);
                recent.push_back(entry);
                return Ok(CaseRef::Shared(case));
            }
        }
        // Read outside the lock, so other workers keep going; two workers may read the same
        // case at once, which only costs time.
        let case = Arc::new(train_case(self.preprocessed(index)?)?);
        let mut recent = self.recent.lock().expect("the case cache lock");
        if !recent.iter().any(|(i, _)| *i == index) {
            recent.push_back((index, Arc::clone(&case)));
            while recent.len() > self.capacity {
                recent.pop_front();
            }
        }
        Ok(CaseRef::Shared(case))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::discover;
    use crate::dataset::load::tests::write_case;

    #[test]
    fn reads_cases_on_demand_and_keeps_at_most_capacity() {
        let data = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (1..=3).map(|i| format!("BraTS20_Training_00{i}")).collect();
        for id in &ids {
            write_case(data.path(), id, [1, 2, 4]);
        }
        let ds = discover(data.path()).unwrap();
        let cache = Cache::open(cache_dir.path()).unwrap();
        let settings = PreprocessSettings::default();
        let direct: Vec<TrainCase> = ids
            .iter()
            .map(|id| {
                let pre = cache
                    .get_or_compute(&ds, ds.case(id).unwrap(), &settings)
                    .unwrap();
                train_case(pre).unwrap()
            })
            .collect();
        let lazy = LazyCases::new(ds, cache, settings, ids, vec![Subset::FULL; 3], 2);
        assert_eq!(lazy.resident(), 0);
        for i in [0, 1, 2, 0, 2, 1, 1] {
            let c = lazy.case(i).unwrap();
            assert_eq!(c.id, direct[i].id);
            assert_eq!(c.images, direct[i].images);
            assert_eq!(c.classes, direct[i].classes);
            assert_eq!(c.foreground, direct[i].foreground);
            assert!(lazy.resident() <= 2);
        }
        assert_eq!(lazy.resident(), 2);
    }
}
