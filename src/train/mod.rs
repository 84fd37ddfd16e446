//! Training: from a dataset folder to a run directory with checkpoints (in progress).
//!
//! - [`dropout`]: which modalities each iteration trains on.
//! - [`sampler`] + [`augment`]: random patches with foreground oversampling and
//!   nnU-Net-style augmentation in one resampling pass.
//! - [`loader`]: batches prepared ahead on worker threads, deterministic in content and order.
//! - [`schedule`]: the poly learning-rate decay.
//! - [`rng`]: the keyed random streams that make all of it reproducible and resumable.
//! - [`checkpoint`]: crash-safe checkpoints; [`log`]: `log.csv` and `progress.png`.

pub mod augment;
pub mod checkpoint;
pub mod dropout;
pub mod loader;
pub mod log;
pub mod rng;
pub mod sampler;
pub mod schedule;

pub use dropout::ModalityDropout;
