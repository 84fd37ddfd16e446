//! `--export DIR`: what `benches/reference/run.py` needs to run the same measurements in
//! PyTorch with the same weights, and to check that both implementations agree.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use crate::modality::Modality;
use crate::model::{self, A2fseg, ModelConfig};
use crate::preprocess::PreprocessedCase;
use crate::volume::Grid;

/// A deterministic class map `[x, y, z]` (values 0..=3, flattened x fastest) with all four
/// classes, so that every loss term is non-trivial.
pub(super) fn class_pattern(dims: [usize; 3]) -> Vec<i64> {
    let [x, y, z] = dims;
    let mut out = Vec::with_capacity(x * y * z);
    for k in 0..z {
        for j in 0..y {
            for i in 0..x {
                let h = (i * 7 + j * 13 + k * 29) / 5;
                out.push((h % 4) as i64);
            }
        }
    }
    out
}

/// The model's weights as safetensors bytes (the format of `model.safetensors`).
pub(super) fn safetensors_bytes(model: &A2fseg, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None).metadata("a2fseg_config", cfg.to_json());
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))?;
    store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))
}

/// Tensors to write: name → (shape, f32 values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn put<const D: usize>(map: &mut Tensors, name: impl Into<String>, t: Tensor<D>) -> Result<()> {
    let dims = t.dims().to_vec();
    let v = t
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))?;
    map.insert(name.into(), (dims, v));
    Ok(())
}

/// Writes `tensors` as an f32 safetensors file (atomically).
fn write_safetensors(path: &Path, tensors: &Tensors) -> Result<()> {
    let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, s, b) in &bytes {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, (*s).clone(), b)
            .map_err(|e| anyhow::anyhow!("tensor {k}: {e}"))?;
        views.push(((*k).clone(), view));
    }
    let data = safetensors::serialize(views, None)
        .map_err(|e| anyhow::anyhow!("cannot serialise {}: {e}", path.display()))?;
    crate::fsutil::atomic_write_bytes(path, &data)
}

/// The shape of the equivalence check: `[3·d, 2·d, 2·d]` with d the network's divisor
/// (small; not cubic, so that an axis mix-up shows; at least 12 voxels at the bottom level,
/// so that its instance norms are not degenerate).
pub fn check_shape(cfg: &ModelConfig) -> [usize; 3] {
    let d = cfg.size_divisor().max(4);
    [3 * d, 2 * d, 2 * d]
}

/// Writes the inputs and outputs of the equivalence check for `model` to `path`:
/// `input.{m}` `[1, 1, D, H, W]` at [`check_shape`], the 4-modality forward's `fused`,
/// `average`, `attention.{m}` and `per_modality.{m}.{l}`, the `0101` (T1c + FLAIR)
/// forward's `fused_0101`, `conv_block.input` / `.output` (`msfe.t1.encoder.0.convs.{last}`),
/// `classes` (as f32) and the loss `loss_total` `[1]`.
pub fn export_check(path: &Path, model: &A2fseg, cfg: &ModelConfig, device: &Device) -> Result<()> {
    let [x, y, z] = check_shape(cfg);
    device.seed(0x5eed);
    let mut t = Tensors::new();
    let inputs: Vec<(Modality, Tensor<5>)> = Modality::ALL
        .into_iter()
        .map(|m| {
            let v = Tensor::<5>::random([1, 1, z, y, x], Distribution::Normal(0.0, 1.0), device);
            (m, v)
        })
        .collect();
    for (m, v) in &inputs {
        put(&mut t, format!("input.{}", m.key()), v.clone())?;
    }
    let out = model.forward(&inputs)?;
    put(&mut t, "fused", out.fused.clone())?;
    put(&mut t, "average", out.average.clone())?;
    for (m, logits) in &out.per_modality {
        for (l, lg) in logits.iter().enumerate() {
            put(&mut t, format!("per_modality.{}.{l}", m.key()), lg.clone())?;
        }
    }
    for (m, a) in out.attention.clone().unwrap_or_default() {
        put(&mut t, format!("attention.{}", m.key()), a)?;
    }
    let classes = class_pattern([x, y, z]);
    let ct = Tensor::<4, Int>::from_data(TensorData::new(classes.clone(), [1, z, y, x]), device);
    let loss = model::loss(cfg, &out, ct);
    put(&mut t, "loss_total", loss.total)?;
    let cf: Vec<f32> = classes.iter().map(|&c| c as f32).collect();
    t.insert("classes".into(), (vec![1, z, y, x], cf));
    let pair: Vec<(Modality, Tensor<5>)> = inputs
        .iter()
        .filter(|(m, _)| matches!(m, Modality::T1c | Modality::Flair))
        .cloned()
        .collect();
    put(&mut t, "fused_0101", model.forward(&pair)?.fused)?;
    let block = model.msfe.t1.encoder[0]
        .convs
        .last()
        .context("stage 0 has no convolution")?;
    let cin = block.conv.weight.dims()[1];
    let xin = Tensor::<5>::random([1, cin, z, y, x], Distribution::Normal(0.0, 1.0), device);
    put(&mut t, "conv_block.input", xin.clone())?;
    put(&mut t, "conv_block.output", block.forward(xin))?;
    write_safetensors(path, &t)
}

/// Writes the preprocessed case (`case.{m}` `[z, y, x]`) and, if given, the predicted
/// probabilities (`predict.probabilities` `[K, z, y, x]`, cropped grid) to `path`.
pub(super) fn export_case(
    path: &Path,
    case: &PreprocessedCase,
    probs: Option<&[Grid<f32>]>,
) -> Result<()> {
    let mut t = Tensors::new();
    for m in Modality::ALL {
        let g = case.images[m.index()]
            .as_ref()
            .context("the phantom case lacks a modality")?;
        let [x, y, z] = g.dims();
        t.insert(
            format!("case.{}", m.key()),
            (vec![z, y, x], g.data().to_vec()),
        );
    }
    if let Some(probs) = probs.filter(|p| !p.is_empty()) {
        let first = &probs[0];
        let [x, y, z] = first.dims();
        let v: Vec<f32> = probs
            .iter()
            .flat_map(|g| g.data().iter().copied())
            .collect();
        t.insert(
            "predict.probabilities".into(),
            (vec![probs.len(), z, y, x], v),
        );
    }
    write_safetensors(path, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_pattern_has_all_classes() {
        let c = class_pattern([8, 8, 8]);
        for k in 0..4 {
            assert!(c.contains(&k));
        }
    }
}
