//! The first phase of a training run: the run folder's guard (a fresh run never overwrites
//! one, a resume needs a checkpoint), the split, and every case read and checked before the
//! first step.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use rayon::prelude::*;

use super::checkpoint;
use super::loader::CaseSource;
use super::sampler::TrainCase;
use super::store::{self, LazyCases};
use super::{TrainConfig, TrainOptions, rng};
use crate::dataset::{self, Dataset, Split};
use crate::fsutil::FolderLock;
use crate::modality::Subset;
use crate::preprocess::{Cache, PreprocessedCase, resample};
use crate::progress::Sink;

/// Paths inside a run directory.
pub(super) struct RunDir {
    pub root: PathBuf,
    /// This process's claim on the folder, held for the whole run: a second `train` into it
    /// is refused instead of writing the same checkpoints.
    _lock: FolderLock,
}

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn split(&self) -> PathBuf {
        self.root.join("split.json")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log.csv")
    }
    pub fn plot(&self) -> PathBuf {
        self.root.join("progress.png")
    }
    pub fn latest(&self) -> PathBuf {
        self.root.join("checkpoints").join("latest")
    }
    pub fn best(&self) -> PathBuf {
        self.root.join("checkpoints").join("best")
    }
}

/// Checks `opts.out` for what `opts` asks (finishes an interrupted checkpoint swap; a
/// resume needs `latest`, a fresh run must not find one) and creates it.
pub(super) fn open_run_dir(opts: &TrainOptions) -> Result<RunDir> {
    ensure!(
        !opts.resume || opts.out.is_dir(),
        "nothing to resume: {} does not exist",
        opts.out.display()
    );
    let run = RunDir {
        root: opts.out.clone(),
        _lock: FolderLock::acquire(&opts.out, "training")?,
    };
    checkpoint::recover(&run.latest())?;
    checkpoint::recover(&run.best())?;
    if opts.resume {
        ensure!(
            run.latest().join(checkpoint::STATE_FILE).is_file(),
            "nothing to resume: {} holds no checkpoint",
            run.latest().display()
        );
    } else {
        ensure!(
            !run.latest().exists(),
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            run.root.display()
        );
    }
    std::fs::create_dir_all(&run.root)
        .with_context(|| format!("cannot create folder {}", run.root.display()))?;
    Ok(run)
}

/// The training and validation cases, checked and ready.
pub(super) struct Data {
    /// What the loader samples patches from.
    pub train: Arc<dyn CaseSource>,
    /// What validation and the post-processing decision predict.
    pub validation: ValCases,
    /// Whether cases are read from the cache as needed (more training cases than
    /// `max_cases_in_memory`).
    pub lazy: bool,
    /// The preprocessing cache folder.
    pub cache_dir: PathBuf,
    /// The median voxel spacing of the training cases (mm, x y z), saved with the model
    /// ([`crate::model::ModelConfig::spacing`]).
    pub spacing: [f64; 3],
}

/// Discovers the dataset, resolves and saves the split, and reads (through the cache) and
/// checks every training and validation case, in parallel with a progress bar.
pub(super) fn load_data(opts: &TrainOptions, run: &RunDir, sink: &Sink) -> Result<Data> {
    let cfg = &opts.config;
    let dataset = dataset::discover(&opts.data)?.with_strict_finite(opts.strict_finite);
    ensure!(
        !dataset.cases.is_empty(),
        "no cases found in {}",
        opts.data.display()
    );
    let split = resolve_split(opts, run, &dataset)?;
    ensure!(
        !split.train.is_empty(),
        "the training split is empty ({} cases in {})",
        dataset.cases.len(),
        opts.data.display()
    );
    split.save(&run.split())?;
    let cache_dir = opts.cache.clone().unwrap_or_else(|| run.root.join("cache"));
    let cache = Cache::open(&cache_dir)?;
    let mut val_ids = split.validation.clone();
    if cfg.validate_every == 0 {
        val_ids.clear();
    }
    if cfg.validation_cases > 0 {
        val_ids.truncate(cfg.validation_cases);
    }
    let all_ids: Vec<&String> = split.train.iter().chain(&val_ids).collect();
    // Every case is read and checked before the first step. With more training cases than
    // `max_cases_in_memory`, only their modalities are kept: the loader reads them again
    // from the cache when needed (see `store`).
    let lazy = cfg.max_cases_in_memory > 0 && split.train.len() > cfg.max_cases_in_memory;
    let bar = sink.bar(all_ids.len(), "preparing", "cases");
    type Prepared = (Subset, [f64; 3], Option<PreprocessedCase>);
    let prepared: Vec<Result<Prepared>> = all_ids
        .par_iter()
        .map(|id| {
            let r = prepare_case(&dataset, &cache, id, cfg).map(|pre| {
                let spacing = pre.geometry.spacing.map(f64::abs);
                (pre.available(), spacing, (!lazy).then_some(pre))
            });
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut available = Vec::with_capacity(prepared.len());
    let mut spacings = Vec::with_capacity(prepared.len());
    let mut cases = Vec::with_capacity(prepared.len());
    for r in prepared {
        let (a, spacing, pre) = r?;
        available.push(a);
        spacings.push(spacing);
        cases.extend(pre);
    }
    // Files of the case folders that discovery ignored, said once on stderr as warnings are
    // (not a progress event: `--quiet` and JSON logs still show them), once every case has
    // been read (a refused case leaves its one-line error alone).
    for note in all_ids
        .iter()
        .filter_map(|id| dataset.case(id))
        .flat_map(|c| c.notes())
    {
        eprintln!("note: {note}");
    }
    let n_train = split.train.len();
    let spacing = median_spacing(&spacings[..n_train]);
    let other = spacings[..n_train]
        .iter()
        .filter(|s| resample::needs_resampling(**s, spacing))
        .count();
    if other > 0 {
        eprintln!(
            "note: {other} training case(s) have another voxel spacing than the median {} × {} \
             × {} mm the model records; training uses them as they are",
            spacing[0], spacing[1], spacing[2]
        );
    }
    let (train, validation): (Arc<dyn CaseSource>, ValCases) = if lazy {
        let lazy_cases = |ids: &[String], available: &[Subset], capacity: usize| {
            LazyCases::new(
                dataset.clone(),
                cache.clone(),
                cfg.preprocess,
                ids.to_vec(),
                available.to_vec(),
                capacity,
            )
        };
        (
            Arc::new(lazy_cases(
                &split.train,
                &available[..n_train],
                cfg.max_cases_in_memory,
            )),
            ValCases::Lazy(lazy_cases(&val_ids, &available[n_train..], 1)),
        )
    } else {
        let val = cases.split_off(n_train);
        let train = cases
            .into_iter()
            .map(store::train_case)
            .collect::<Result<Vec<TrainCase>>>()?;
        (Arc::new(train), ValCases::Memory(val))
    };
    Ok(Data {
        train,
        validation,
        lazy,
        cache_dir,
        spacing,
    })
}

/// The per-axis median of `spacings` (the mean of the two middle values for an even count),
/// as nnU-Net chooses the spacing a model works at; `spacings` is not empty.
fn median_spacing(spacings: &[[f64; 3]]) -> [f64; 3] {
    std::array::from_fn(|a| {
        let mut v: Vec<f64> = spacings.iter().map(|s| s[a]).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    })
}

/// The split: `--split FILE`, else the run's own `split.json` when resuming, else a random
/// 70/10/20 split of the cases that have a segmentation, seeded by the run seed.
fn resolve_split(opts: &TrainOptions, run: &RunDir, dataset: &Dataset) -> Result<Split> {
    let split = if let Some(path) = &opts.split {
        Split::load(path)?
    } else if opts.resume && run.split().is_file() {
        Split::load(&run.split())?
    } else {
        let ids: Vec<String> = dataset
            .cases
            .iter()
            .filter(|c| c.has_seg())
            .map(|c| c.id.clone())
            .collect();
        ensure!(
            !ids.is_empty(),
            "no case in {} has a segmentation to train on",
            opts.data.display()
        );
        Split::random(
            &ids,
            rng::key(opts.config.seed, &[rng::SPLIT]),
            [70, 10, 20],
        )?
    };
    split.validate(dataset)?;
    Ok(split)
}

/// Loads (through the cache) and checks one case for training or validation.
fn prepare_case(
    dataset: &Dataset,
    cache: &Cache,
    id: &str,
    cfg: &TrainConfig,
) -> Result<PreprocessedCase> {
    let patch = cfg.model.patch_size;
    let files = dataset
        .case(id)
        .with_context(|| format!("case {id} is not in {}", dataset.root.display()))?;
    ensure!(
        files.has_seg(),
        "case {id} has no segmentation, so it cannot be used for training or validation"
    );
    ensure!(
        !files.available().is_empty(),
        "case {id} has no image to train on"
    );
    let pre: PreprocessedCase = cache.get_or_compute(dataset, files, &cfg.preprocess)?;
    let dims = pre.geometry.dims;
    for a in 0..3 {
        ensure!(
            patch[a] <= dims[a],
            "patch size [{}, {}, {}] is larger than the image of case {id} ({}×{}×{}) along {}: \
             choose a smaller --patch",
            patch[0],
            patch[1],
            patch[2],
            dims[0],
            dims[1],
            dims[2],
            ["x", "y", "z"][a]
        );
    }
    ensure!(pre.classes.is_some(), "case {id} has no segmentation");
    Ok(pre)
}

/// The validation cases: in memory, or read one at a time from the cache.
pub(super) enum ValCases {
    Memory(Vec<PreprocessedCase>),
    Lazy(LazyCases),
}

impl ValCases {
    pub fn len(&self) -> usize {
        match self {
            ValCases::Memory(v) => v.len(),
            ValCases::Lazy(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Result<Cow<'_, PreprocessedCase>> {
        match self {
            ValCases::Memory(v) => Ok(Cow::Borrowed(&v[index])),
            ValCases::Lazy(l) => Ok(Cow::Owned(l.preprocessed(index)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median_spacing;

    #[test]
    fn median_spacing_is_per_axis() {
        let s = [[1.0, 0.5, 5.0], [1.0, 0.7, 3.0], [2.0, 0.6, 1.0]];
        assert_eq!(median_spacing(&s), [1.0, 0.6, 3.0]);
        assert_eq!(median_spacing(&s[..2]), [1.0, 0.6, 4.0]);
        assert_eq!(median_spacing(&s[2..]), [2.0, 0.6, 1.0]);
    }
}
