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
//! - [`uhved`]: [`Uhved`], the U-HVED baseline (product of Gaussians over the available
//!   modalities' latents), behind the same seam.
//! - [`mfi`]: [`Mfi`], the MFI baseline (four U-Nets with modality interaction blocks;
//!   a missing modality is a zero image and a 0 in the availability code).
//! - [`mmformer`]: [`Mmformer`], mmFormer (conv encoders, intra- and inter-modal
//!   transformers, masked fusion), behind the same seam.
//! - [`rfnet`]: [`Rfnet`], the RFNet baseline (region-aware fusion of mask-zeroed
//!   features), behind the same seam.
//! - [`ops`]: 3D max-pooling, trilinear (×2, and aligned-corner ×f) and nearest upsampling,
//!   which Burn lacks; [`reflect`]: the
//!   reflection-padded convolution.
//! - [`per_modality`]: one sub-network per modality under the modality's key.
//! - [`device`]: [`ComputeDevice`], the `--device` names and the devices' limits.
//! - [`weights`]: `config.json` + `model.safetensors` (naming scheme documented there).
//!
//! In A2FSeg a missing modality is never zero-filled: it is simply not an input, and its
//! MSFE does not run (mmFormer zeroes its features, as its official code does).

pub mod arch;
pub mod config;
pub mod device;
pub mod fusion;
pub mod loss;
pub mod mfi;
pub mod mmformer;
pub mod msfe;
pub mod network;
pub mod ops;
pub mod per_modality;
pub mod reflect;
pub mod released;
pub mod rfnet;
pub mod summary;
pub mod uhved;
pub mod weights;

use anyhow::Result;
use burn::tensor::Device;

pub use arch::{Encoding, Network, Segmenter, StepLoss, TrainInputs};
pub use config::{Arch, Fusion, ModelConfig, PRESETS, Preset, ReleasedVariant, Targets};
pub use device::ComputeDevice;
pub use loss::{LossParts, decode_classes, loss, probabilities};
pub use mfi::Mfi;
pub use mmformer::Mmformer;
pub use network::{A2fseg, A2fsegOutput, FusedOutput};
pub use released::A2fsegReleased;
pub use rfnet::Rfnet;
pub use summary::ModelSummary;
pub use uhved::Uhved;
pub use weights::{CONFIG_FILE, WEIGHTS_FILE, load_model, save_model};

/// The compute device named `name` (see [`ComputeDevice`] for the names), opened.
///
/// Training wraps the result in `.autodiff()`.
pub fn device_from_name(name: &str) -> Result<Device> {
    name.parse::<ComputeDevice>()?.open()
}

#[cfg(test)]
pub(crate) mod tests;
