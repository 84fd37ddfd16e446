//! [`ReflectConv3d`]: a 3D convolution on a reflect-padded input (PyTorch's
//! `padding_mode='reflect'`), which Burn's `Conv3d` lacks (its padding is zeros only).
//!
//! The input is padded with Burn's `Tensor::pad(…, PadMode::Reflect)` (the border voxel is
//! not repeated: `[a, b, c]` padded by 1 reads `[b, a, b, c, b]`), then convolved without
//! padding through [`crate::kernels::conv3d_module`], so the fast CPU kernels apply on
//! `flex` and autodiff differentiates the padding as slices.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Initializer, PaddingConfig3d};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use crate::kernels::conv3d_module;

/// Configuration of a [`ReflectConv3d`]: a cubic kernel, padded by `kernel / 2` on every side
/// so that stride 1 keeps the size and stride 2 halves an even size.
#[derive(Config, Debug)]
pub struct ReflectConv3dConfig {
    /// Input and output channels `[in, out]`.
    pub channels: [usize; 2],
    /// Edge length of the cubic kernel (odd).
    pub kernel: usize,
    /// Stride along every axis.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether the convolution adds a bias (initialised to zero).
    #[config(default = true)]
    pub bias: bool,
}

impl ReflectConv3dConfig {
    /// A convolution with He-normal weights (PyTorch's `kaiming_normal_`, gain √2, fan in)
    /// and zero bias.
    pub fn init(&self, device: &Device) -> ReflectConv3d {
        let cout = self.channels[1];
        let mut conv = Conv3dConfig::new(self.channels, [self.kernel; 3])
            .with_stride([self.stride; 3])
            .with_padding(PaddingConfig3d::Valid)
            .with_bias(self.bias)
            .with_initializer(Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: false,
            })
            .init(device);
        if self.bias {
            conv.bias = Some(Initializer::Zeros.init([cout], device));
        }
        ReflectConv3d {
            conv,
            padding: self.kernel / 2,
        }
    }
}

/// A 3D convolution with reflect padding. Tensors: `conv.weight` `[out, in, k, k, k]`,
/// `conv.bias` `[out]` (if any).
#[derive(Module, Debug)]
pub struct ReflectConv3d {
    /// The convolution proper, without padding of its own.
    pub conv: Conv3d,
    /// Voxels reflected onto each side of every spatial axis (`kernel / 2`).
    #[module(skip)]
    pub padding: usize,
}

impl ReflectConv3d {
    /// `[B, in, D, H, W]` → `[B, out, D', H', W']` (the same size at stride 1). Each spatial
    /// size must exceed the padding (a reflection needs a voxel beyond the border).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let p = self.padding;
        let x = if p > 0 {
            x.pad([(p, p); 3], PadMode::Reflect)
        } else {
            x
        };
        conv3d_module(&self.conv, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn pads_by_reflection_then_convolves() {
        let device = Device::flex();
        // A 3³ kernel that reads only its left neighbour along W: out[w] = in[w − 1], so
        // the first output shows the reflected voxel in[1].
        let mut conv = ReflectConv3dConfig::new([1, 1], 3)
            .with_bias(false)
            .init(&device);
        let mut w = vec![0.0f32; 27];
        w[13 - 1] = 1.0;
        conv.conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [1, 1, 3, 3, 3]),
            &device,
        ));
        let x = Tensor::<5>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                [1, 1, 2, 2, 2],
            ),
            &device,
        );
        let y: Vec<f32> = conv
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        // Each W-row [a, b] becomes [b, a].
        assert_eq!(y, vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0]);
        let strided = ReflectConv3dConfig::new([1, 4], 3)
            .with_stride(2)
            .init(&device);
        let y = strided.forward(Tensor::zeros([1, 1, 4, 6, 8], &device));
        assert_eq!(y.dims(), [1, 4, 2, 3, 4]);
    }
}
