//! Predicting a case as read, whatever its voxel spacing: a case whose spacing differs from
//! the model's ([`ModelConfig::spacing`](crate::model::ModelConfig::spacing)) is resampled to
//! it, predicted there, and the prediction brought back to the input's grid as nnU-Net does:
//! the WT/TC/ET probabilities (and attention maps) resampled linearly, then decoded into
//! labels and post-processed on the input's grid with the input's own images.

use anyhow::{Context, Result};
use burn::prelude::*;

use super::predictor::{Prediction, Predictor};
use crate::dataset::LoadedCase;
use crate::labels::Region;
use crate::modality::Subset;
use crate::model::{self, Targets};
use crate::preprocess::resample::{needs_resampling, resample_case, resample_linear};
use crate::preprocess::{CropBox, preprocess_case};
use crate::volume::Grid;

/// What `predict` and `evaluate` say about a model folder `path` that records no training
/// spacing (saved before it was recorded).
pub fn unrecorded_spacing_note(path: &std::path::Path) -> String {
    format!(
        "{}: the model records no training voxel spacing (saved before it was): inputs are \
         used at their own spacing, not resampled",
        path.display()
    )
}

impl Predictor {
    /// The spacing `case` is resampled to before it is predicted, when the model records
    /// one and the case's differs from it.
    pub fn resampling_of(&self, case: &LoadedCase) -> Option<[f64; 3]> {
        self.config()
            .spacing
            .filter(|&to| needs_resampling(case.geometry.spacing, to))
    }

    /// Segments `case` (as read, on its own grid) from each of `subsets`: preprocessed with
    /// the model's settings, resampled to the model's spacing first when it differs
    /// ([`Self::resampling_of`]). Every prediction is on the case's own grid.
    pub fn predict_loaded(
        &self,
        case: &LoadedCase,
        subsets: &[Subset],
    ) -> Result<Vec<(Subset, Prediction)>> {
        let Some(to) = self.resampling_of(case) else {
            let pre = preprocess_case(case, &self.preprocess)?;
            return self.predict_subsets(&pre, subsets);
        };
        let resampled = resample_case(case, to);
        let pre = preprocess_case(&resampled, &self.preprocess)?;
        drop(resampled);
        let preds = self.predict_subsets(&pre, subsets)?;
        preds
            .into_iter()
            .map(|(s, p)| Ok((s, self.back_to_grid(&p, case)?)))
            .collect()
    }

    /// `pred`, made on a resampled copy of `case`, on `case`'s grid: probabilities and
    /// attention maps resampled linearly, labels decoded from the probabilities and
    /// post-processed with `case`'s images.
    fn back_to_grid(&self, pred: &Prediction, case: &LoadedCase) -> Result<Prediction> {
        let dims = case.geometry.dims;
        let probabilities: Vec<Grid<f32>> = pred
            .probabilities_full()
            .iter()
            .map(|g| resample_linear(g, dims))
            .collect();
        let attention = pred
            .attention_full()
            .iter()
            .map(|(m, g)| (*m, resample_linear(g, dims)))
            .collect();
        let mut classes = self.decode_regions(&probabilities)?;
        let images: Vec<&Grid<f32>> = pred
            .subset
            .modalities()
            .filter_map(|m| case.images[m.index()].as_ref())
            .collect();
        self.postprocess.apply_with_images(
            &mut classes,
            pred.subset,
            &images,
            case.geometry.spacing,
        );
        Ok(Prediction {
            subset: pred.subset,
            classes,
            probabilities,
            attention,
            crop: CropBox::full(dims),
            full_dims: dims,
            plan: pred.plan,
        })
    }

    /// Class indices from WT/TC/ET probabilities as the model decodes its own output: the
    /// regions thresholded at 0.5, or, for a model with class outputs, the most probable of
    /// the class probabilities they determine (background 1 − WT, NCR TC − ET, ED WT − TC,
    /// ET; linear in the regions, so resampling regions is resampling classes).
    fn decode_regions(&self, regions: &[Grid<f32>]) -> Result<Grid<u8>> {
        let dims = regions[0].dims();
        let [wt, tc, et] = [Region::Wt, Region::Tc, Region::Et].map(|r| regions[r.index()].data());
        let channels: Vec<Vec<f32>> = match self.config().targets {
            Targets::Regions => vec![wt.to_vec(), tc.to_vec(), et.to_vec()],
            Targets::Classes => vec![
                wt.iter().map(|w| 1.0 - w).collect(),
                tc.iter().zip(et).map(|(t, e)| t - e).collect(),
                wt.iter().zip(tc).map(|(w, t)| w - t).collect(),
                et.to_vec(),
            ],
        };
        let k = channels.len();
        let t = Tensor::<5>::from_data(
            TensorData::new(channels.concat(), [1, k, dims[2], dims[1], dims[0]]),
            &self.device,
        );
        Grid::from_vec(dims, model::decode_classes(self.config(), t))
            .context("decoded classes have the wrong size")
    }
}
