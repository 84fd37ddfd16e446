//! The cases of an evaluation: which ones a split's part selects, and each case's inputs
//! (reference labels, and the images preprocessed once per distinct model settings).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::dataset::{self, Split};
use crate::infer::{Prediction, Predictor};
use crate::modality::Subset;
use crate::preprocess::resample::needs_resampling;
use crate::preprocess::{self, PreprocessSettings};
use crate::volume::Grid;

/// One case's inputs for [`super::evaluate`]: the reference labels on the original grid and the
/// case preprocessed with each model's settings (computed once per distinct settings, from
/// the cache when there is one).
pub(super) struct CaseSource<'a> {
    ds: &'a dataset::Dataset,
    case: &'a dataset::CaseFiles,
    cache: Option<&'a preprocess::Cache>,
    /// The case as read, kept while no cache is used (images are read once).
    loaded: Option<dataset::LoadedCase>,
    done: Vec<(PreprocessSettings, preprocess::PreprocessedCase)>,
}

impl<'a> CaseSource<'a> {
    pub(super) fn new(
        ds: &'a dataset::Dataset,
        case: &'a dataset::CaseFiles,
        cache: Option<&'a preprocess::Cache>,
    ) -> Result<Self> {
        let loaded = match cache {
            Some(_) => None,
            None => Some(dataset::load_case(ds, case)?),
        };
        Ok(CaseSource {
            ds,
            case,
            cache,
            loaded,
            done: Vec::new(),
        })
    }

    /// The reference class map on the original grid and the voxel spacing. With a cache,
    /// only the segmentation file is read.
    pub(super) fn reference(&self) -> Result<(Grid<u8>, [f64; 3])> {
        let seg_only;
        let loaded = match &self.loaded {
            Some(l) => l,
            None => {
                let files = dataset::CaseFiles {
                    images: Default::default(),
                    ..self.case.clone()
                };
                seg_only = dataset::load_case(self.ds, &files)?;
                &seg_only
            }
        };
        let gt = loaded
            .classes
            .clone()
            .with_context(|| format!("case {} has no segmentation", self.case.id))?;
        Ok((gt, loaded.geometry.spacing))
    }

    /// The case as read, when `predictor` resamples it (its spacing differs from the
    /// model's; see [`Predictor::resampling_of`]); `None` when it is predicted as preprocessed.
    /// Read from its files when a cache is used (resampled cases are not cached).
    pub(super) fn resampling_for(
        &mut self,
        predictor: &Predictor,
    ) -> Result<Option<&dataset::LoadedCase>> {
        let Some(to) = predictor.config().spacing else {
            return Ok(None);
        };
        let spacing = match &self.loaded {
            Some(l) => l.geometry.spacing,
            None => self.reference()?.1,
        };
        if !needs_resampling(spacing, to) {
            return Ok(None);
        }
        if self.loaded.is_none() {
            self.loaded = Some(dataset::load_case(self.ds, self.case)?);
        }
        Ok(self.loaded.as_ref())
    }

    /// `predictor`'s predictions of the case from each of `subsets` on the case's own grid,
    /// and whether the case was resampled to the model's spacing for them.
    pub(super) fn predict(
        &mut self,
        predictor: &Predictor,
        subsets: &[Subset],
    ) -> Result<(Vec<(Subset, Prediction)>, bool)> {
        // A case of another spacing than the model's is resampled to it and the
        // prediction back to the case's grid, where the reference is.
        Ok(match self.resampling_for(predictor)? {
            Some(loaded) => (predictor.predict_loaded(loaded, subsets)?, true),
            None => {
                let pre = self.preprocessed(&predictor.preprocess)?;
                (predictor.predict_subsets(pre, subsets)?, false)
            }
        })
    }

    /// The case preprocessed with `settings`.
    pub(super) fn preprocessed(
        &mut self,
        settings: &PreprocessSettings,
    ) -> Result<&preprocess::PreprocessedCase> {
        let i = match self.done.iter().position(|(s, _)| s == settings) {
            Some(i) => i,
            None => {
                let pre = match (self.cache, &self.loaded) {
                    (Some(cache), _) => cache.get_or_compute(self.ds, self.case, settings)?,
                    (None, Some(loaded)) => preprocess::preprocess_case(loaded, settings)?,
                    (None, None) => bail!("case {} was not read", self.case.id),
                };
                self.done.push((*settings, pre));
                self.done.len() - 1
            }
        };
        Ok(&self.done[i].1)
    }
}

/// The case ids to evaluate: the split's `part` (checked against the dataset), or every case
/// of the dataset without a split.
pub fn select_cases(
    ds: &dataset::Dataset,
    split: Option<&Path>,
    part: &str,
) -> Result<Vec<String>> {
    let Some(path) = split else {
        return Ok(ds.cases.iter().map(|c| c.id.clone()).collect());
    };
    let split = Split::load(path)?;
    split.validate(ds)?;
    let ids = match part {
        "test" => split.test.clone(),
        "validation" | "val" => split.validation.clone(),
        "train" => split.train.clone(),
        "all" => [
            split.train.clone(),
            split.validation.clone(),
            split.test.clone(),
        ]
        .concat(),
        other => bail!("invalid --part '{other}' (expected test, validation, train or all)"),
    };
    Ok(ids)
}
