//! The A2FSeg network (paper Section 2, Eq. 1–5), written once with Burn; the backend is
//! chosen by the [`Device`] at run time.
//!
//! - [`arch`]: the seam every method implements ([`Network`]): what training, inference,
//!   `model summary` and `bench` need from a network. [`A2fseg`] is its first implementation.
//! - [`config`]: [`ModelConfig`] (presets `paper` and `small`), [`Fusion`], [`Targets`].
//! - [`msfe`]: the modality-specific nnU-Net feature extractor with deep-supervision heads.
//! - [`fusion`]: average, adaptive (attention) and HeMIS fusion over the *available*
//!   modalities only.
//! - [`network`]: [`A2fseg`], its forward pass, and the shared-MSFE path
//!   ([`A2fseg::msfe_features`] + [`A2fseg::fuse`]) for evaluating many subsets.
//! - [`loss`](mod@loss): CE/BCE + soft Dice per head, summed as Eq. 5.
//! - [`weights`]: `config.json` + `model.safetensors` (naming scheme documented there).
//!
//! A missing modality is never zero-filled: it is simply not an input, and its MSFE does
//! not run.

pub mod arch;
pub mod config;
pub mod fusion;
pub mod loss;
pub mod msfe;
pub mod network;
pub mod summary;
pub mod weights;

use anyhow::{Result, bail};
use burn::tensor::Device;

pub use arch::{Encoding, Network, Segmenter, StepLoss};
pub use config::{Fusion, ModelConfig, PRESETS, Targets};
pub use loss::{LossParts, decode_classes, loss, probabilities};
pub use network::{A2fseg, A2fsegOutput, FusedOutput};
pub use summary::ModelSummary;
pub use weights::{CONFIG_FILE, WEIGHTS_FILE, load_model, save_model};

/// The compute device named `name`:
/// - `cpu` (or `flex`): Burn's pure-Rust flex backend, always available;
/// - `cuda` or `cuda:N`: NVIDIA GPU N (build with `--features cuda`);
/// - `wgpu` (or `gpu`): the best GPU wgpu finds (build with `--features wgpu`).
///
/// Training wraps the result in `.autodiff()`.
pub fn device_from_name(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, index) = match lower.split_once(':') {
        Some((k, i)) => {
            let i: usize = i.parse().map_err(|_| {
                anyhow::anyhow!("bad device index in '{name}' (expected e.g. cuda:0)")
            })?;
            (k.to_string(), Some(i))
        }
        None => (lower.clone(), None),
    };
    match kind.as_str() {
        "cpu" | "flex" if index.is_none() => Ok(Device::flex()),
        "cuda" => cuda_device(index.unwrap_or(0)),
        "wgpu" | "gpu" if index.is_none() => wgpu_device(),
        _ => bail!("unknown device '{name}' (expected cpu, cuda, cuda:N or wgpu)"),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device> {
    bail!(
        "this a2fseg was built without CUDA support: rebuild with `cargo build --release --features cuda`"
    )
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    bail!(
        "this a2fseg was built without wgpu support: rebuild with `cargo build --release --features wgpu`"
    )
}

#[cfg(test)]
mod tests;
