//! Inference: sliding-window or whole-volume prediction of whole cases from any subset of
//! modalities, and evaluation of a model over modality subsets.
//!
//! [`window`] tiles a cropped case into overlapping patches and blends the outputs with a
//! Gaussian importance map ([`gaussian`]), optionally averaging mirrored passes ([`tta`]);
//! [`plan`] chooses between that and one pass over the whole volume.

pub mod evaluate;
pub mod gaussian;
pub mod plan;
pub mod postprocess;
pub mod predictor;
mod resampled;
pub mod tta;
pub mod window;

pub use gaussian::gaussian_importance;
pub use plan::{Plan, PlanCost, WindowChoice};
pub use postprocess::Postprocess;
pub use predictor::{
    Interrupt, Prediction, Predictor, model_preprocess_settings, resolve_model_dir,
};
pub use resampled::unrecorded_spacing_note;
pub use tta::Tta;
pub use window::{SlidingWindow, window_starts};
