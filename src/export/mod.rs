//! Writing a trained model for other runtimes.
//!
//! - [`onnx`]: A2FSeg's inference forward pass as a standard ONNX graph, one file per modality
//!   subset (`a2fseg export onnx`).
//! - [`proto`]: the ONNX protobuf messages those files are made of.

pub mod onnx;
pub mod proto;

pub use onnx::{SubsetChoice, all_subsets_path, export_onnx, onnx_model};

#[cfg(test)]
mod tests;
