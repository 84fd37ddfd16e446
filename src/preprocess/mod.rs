//! Preprocessing: crop each case to the bounding box of its non-zero voxels (union over
//! the available modalities), z-score each modality over its brain (non-zero) voxels with
//! zero outside, and cache the result so later runs reuse it. [`resample`] brings a case of
//! another voxel spacing to the model's (and predictions back).

mod cache;
mod case;
mod crop;
pub mod resample;

pub use cache::{Cache, cache_key, decode, encode};
pub use case::{PreprocessSettings, PreprocessedCase, preprocess_case};
pub use crop::{CropBox, nonzero_stats, zscore_nonzero};
