//! Saving and loading a model folder: `config.json` (the [`ModelConfig`]) and
//! `model.safetensors` (every parameter, f32, little-endian).
//!
//! # Tensor names
//!
//! Names are the module paths joined with dots, so numpy or PyTorch users can read them:
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `msfe.{m}.encoder.{s}.convs.{i}.conv.weight` | `[out, in, 3, 3, 3]` | encoder stage `s` (0 = full resolution), block `i` |
//! | `msfe.{m}.encoder.{s}.convs.{i}.conv.bias` | `[out]` | its bias |
//! | `msfe.{m}.encoder.{s}.convs.{i}.norm.gamma` / `.beta` | `[out]` | instance-norm scale / shift |
//! | `msfe.{m}.decoder.{l}.up.weight` | `[in, out, 2, 2, 2]` | transposed conv producing level `l` (PyTorch layout, no bias) |
//! | `msfe.{m}.decoder.{l}.convs.{i}.conv.weight` / `.bias`, `.norm.gamma` / `.beta` | | decoder blocks; block 0 reads `[upsampled; skip]` |
//! | `msfe.{m}.heads.{l}.weight` | `[K, f(l), 1, 1, 1]` | segmentation head on decoder level `l` (0 = full resolution; no bias) |
//! | `fusion.attention.{m}.weight` / `.bias` | `[A, 2C, k, k, k]`, `[A]` | conv_m of Eq. 1, input `[F̄; F_m]` (adaptive only) |
//! | `fusion.average_head.weight` | `[K, C, 1, 1, 1]` | head on F̄ |
//! | `fusion.fused_head.weight` | `[K, C or 2C, 1, 1, 1]` | final head on F̂ (adaptive) or [F̄; Var] (hemis) |
//!
//! `{m}` is `t1`, `t1c`, `t2` or `flair`; `K` is 3 (WT, TC, ET) or 4 (classes); `C` is
//! `base_features`; `A` is `attention_channels`. Weights are in PyTorch's layout, so a
//! `torch.nn.Conv3d` takes them unchanged. The file's metadata also holds the configuration
//! JSON under `a2fseg_config`.
//!
//! # Integrity
//!
//! Beside the weights, `model.sha256` records their SHA-256 at save time, in `sha256sum`'s
//! format (`sha256sum -c model.sha256` checks it by hand). Loading recomputes it and refuses a
//! file that no longer matches (a truncated copy, a flipped bit on disk) with an error naming
//! it, instead of running a silently damaged network. Folders written before the record
//! existed have no `model.sha256` and load as before.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use sha2::{Digest, Sha256};

use super::arch::Network;
use super::config::ModelConfig;
use crate::fsutil::atomic_write_bytes;

/// File name of the configuration in a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights in a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the weights' SHA-256 record in a model folder (see the module docs).
pub const CHECKSUM_FILE: &str = "model.sha256";

/// The `sha256sum`-format line recording `bytes` as the weights file.
fn checksum_line(bytes: &[u8]) -> String {
    format!("{}  {WEIGHTS_FILE}\n", hex::encode(Sha256::digest(bytes)))
}

/// Checks `bytes` (read from `weights`) against the folder's `model.sha256`, if it has one.
fn verify_checksum(dir: &Path, weights: &Path, bytes: &[u8]) -> Result<()> {
    let record = dir.join(CHECKSUM_FILE);
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(());
    };
    let recorded = text.split_whitespace().next().unwrap_or_default();
    let actual = hex::encode(Sha256::digest(bytes));
    if !recorded.eq_ignore_ascii_case(&actual) {
        bail!(
            "{} is damaged: its SHA-256 is {actual}, but {} recorded {recorded} when it was \
             saved (a truncated or corrupted copy); restore it or use another checkpoint",
            weights.display(),
            record.display()
        );
    }
    Ok(())
}

/// Writes `config.json`, `model.safetensors` and its checksum `model.sha256` into `dir`
/// (created if needed), each atomically.
pub fn save_model<N: Network>(dir: &Path, model: &N, config: &ModelConfig) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut store = SafetensorsStore::from_bytes(None).metadata("a2fseg_config", config.to_json());
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot serialise the weights for {}", weights.display()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot serialise the weights for {}", weights.display()))?;
    atomic_write_bytes(&weights, &bytes)?;
    atomic_write_bytes(&dir.join(CHECKSUM_FILE), checksum_line(&bytes).as_bytes())?;
    config.save_json(&dir.join(CONFIG_FILE))
}

/// Reads a model folder written by [`save_model`] onto `device`, as the method `N`; its
/// `config.json` must name that method (see [`ModelConfig::load_json`] to read the
/// configuration first and choose `N` by [`crate::with_network!`]).
///
/// The network is built from `config.json`, then every tensor of `model.safetensors` must
/// match it by name and shape: a missing, extra or mis-shaped tensor is an error naming the
/// file, never a partial load.
pub fn load_model<N: Network>(dir: &Path, device: &Device) -> Result<(N, ModelConfig)> {
    let config = ModelConfig::load_json(&dir.join(CONFIG_FILE))?;
    if config.arch != N::ARCH {
        bail!(
            "{} is a {} model, not {}",
            dir.join(CONFIG_FILE).display(),
            config.arch,
            N::ARCH
        );
    }
    let weights = dir.join(WEIGHTS_FILE);
    let bytes =
        std::fs::read(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    verify_checksum(dir, &weights, &bytes)?;
    let model = load_weights(&config, bytes, device).with_context(|| {
        format!(
            "{} does not match {}",
            weights.display(),
            dir.join(CONFIG_FILE).display()
        )
    })?;
    Ok((model, config))
}

/// Builds the network of `config` and fills it from safetensors `bytes`, strictly.
pub fn load_weights<N: Network>(
    config: &ModelConfig,
    bytes: Vec<u8>,
    device: &Device,
) -> Result<N> {
    let mut model = N::init(config, device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut problems = Vec::new();
    let list = |v: Vec<String>| {
        let n = v.len();
        let mut shown: Vec<String> = v.into_iter().take(4).collect();
        if n > 4 {
            shown.push(format!("… {} more", n - 4));
        }
        shown.join(", ")
    };
    if !result.missing.is_empty() {
        let names = result.missing.iter().map(|(p, _)| p.clone()).collect();
        problems.push(format!(
            "{} tensor(s) missing ({})",
            result.missing.len(),
            list(names)
        ));
    }
    if !result.unused.is_empty() {
        problems.push(format!(
            "{} unexpected tensor(s) ({})",
            result.unused.len(),
            list(result.unused.clone())
        ));
    }
    if !result.errors.is_empty() {
        let errs = result.errors.iter().map(|e| e.to_string()).collect();
        problems.push(format!(
            "{} bad tensor(s): {}",
            result.errors.len(),
            list(errs)
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(model)
}
