//! # a2fseg
//!
//! Train, run and evaluate A2FSeg (Wang & Hong, MICCAI 2023): brain-tumour segmentation from
//! any subset of the four MRI modalities T1, T1c, T2 and FLAIR.
//!
//! The modules follow the data:
//! [`volume`] (NIfTI I/O and geometry) → [`dataset`] (layouts, labels, splits) →
//! [`preprocess`] (crop, normalise, cache) → [`model`] (the network, its losses) →
//! [`train`] / [`infer`] → [`metrics`] → [`report`]. [`export`] writes a trained network for
//! other runtimes (ONNX). [`kernels`] holds the fast CPU convolutions the model runs on flex.
//! [`phantom`] makes synthetic BraTS-like cases; [`cli`] holds the command-line definitions.

pub mod bench;
pub mod cli;
pub mod compare;
pub(crate) mod config_file;
pub mod dataset;
pub mod demo;
pub mod export;
pub mod fsutil;
pub mod infer;
pub mod kernels;
pub mod labels;
pub mod metrics;
pub mod modality;
pub mod model;
pub mod phantom;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod train;
pub mod volume;

pub use modality::{Modality, Subset};
