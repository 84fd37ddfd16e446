//! Helpers of the numpy reference tests: randomised weights, tensors out to numpy.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{ModuleMapper, Param};
use burn::tensor::{Distribution, Tensor};

/// Replaces every parameter by N(0, 0.3) values, so that the norms' affine parameters and
/// the biases are non-trivial too.
pub struct Randomise;

impl ModuleMapper for Randomise {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            let device = t.device();
            Tensor::random(shape, Distribution::Normal(0.0, 0.3), &device)
        })
    }
}

/// A tensor's shape and f32 values, for [`write_tensors`].
pub fn to_vec(t: Tensor<5>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().convert::<f32>().try_into_vec().unwrap())
}

/// Writes `tensors` (f32) as a safetensors file.
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| {
            (
                k,
                (s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, (s, b))| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            ((*k).clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}
