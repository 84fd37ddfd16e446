//! [`ReflectConv3d`]: a 3D convolution whose input is padded by reflection (PyTorch's
//! `padding_mode='reflect'`), which Burn's `Conv3d` lacks (it pads with zeros only).
//!
//! The input is padded by `kernel / 2` on each side of D, H and W with Burn's
//! `Tensor::pad(…, PadMode::Reflect)` (the border voxel is not repeated: `[a, b, c]` padded
//! by 1 reads `[b, a, b, c, b]`), then convolved without padding through
//! [`crate::kernels::conv3d_module`], so the fast CPU kernels apply and autodiff needs no
//! custom backward.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use super::msfe::he_init;
use crate::kernels::conv3d_module;

/// Configuration of a [`ReflectConv3d`].
#[derive(Config, Debug)]
pub struct ReflectConv3dConfig {
    /// Input and output channels `[in, out]`.
    pub channels: [usize; 2],
    /// Cubic kernel size (odd); the input is padded by `kernel / 2` per side.
    pub kernel: usize,
    /// Cubic stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether the convolution has a bias (initialised to zero).
    #[config(default = true)]
    pub bias: bool,
}

impl ReflectConv3dConfig {
    /// A freshly initialised convolution (He weights for a LeakyReLU of negative slope
    /// `slope` that follows it).
    pub fn init_with_slope(&self, slope: f64, device: &Device) -> ReflectConv3d {
        let [cin, cout] = self.channels;
        let mut conv = Conv3dConfig::new([cin, cout], [self.kernel; 3])
            .with_stride([self.stride; 3])
            .with_padding(PaddingConfig3d::Valid)
            .with_bias(self.bias)
            .with_initializer(he_init(slope))
            .init(device);
        if self.bias {
            conv.bias = Some(burn::nn::Initializer::Zeros.init([cout], device));
        }
        ReflectConv3d {
            conv,
            pad: self.kernel / 2,
        }
    }
}

/// A 3D convolution with reflection padding. Tensors: `conv.weight`
/// `[out, in, k, k, k]`, `conv.bias` `[out]`.
#[derive(Module, Debug)]
pub struct ReflectConv3d {
    /// The convolution itself, without padding.
    pub conv: Conv3d,
    /// Voxels reflected onto each side of D, H and W before the convolution.
    #[module(skip)]
    pub pad: usize,
}

impl ReflectConv3d {
    /// `[B, in, D, H, W]` → `[B, out, D', H', W']` with `D' = (D − 1) / stride + 1` for an
    /// odd kernel (the size is kept at stride 1). Panics (as PyTorch errors) if a size is
    /// not larger than the padding.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = if self.pad > 0 {
            let p = (self.pad, self.pad);
            x.pad([p, p, p], PadMode::Reflect)
        } else {
            x
        };
        conv3d_module(&self.conv, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// Reflection-padded input written out by hand, convolved by Burn's own zero-padding-free
    /// convolution: equal to the module's output, at stride 1 and 2.
    #[test]
    fn matches_an_explicitly_reflected_input() {
        let device = Device::flex();
        device.seed(3);
        let (d, h, w) = (3usize, 4usize, 5usize);
        let x = Tensor::<5>::random([1, 2, d, h, w], Distribution::Normal(0.0, 1.0), &device);
        let v: Vec<f32> = x.to_data().convert::<f32>().try_into_vec().unwrap();
        // Reflect index i of an axis of length n padded by 1: −1 → 1, n → n − 2.
        let r = |i: isize, n: usize| -> usize {
            if i < 0 {
                (-i) as usize
            } else if i as usize >= n {
                2 * n - 2 - i as usize
            } else {
                i as usize
            }
        };
        let mut padded = Vec::new();
        for c in 0..2 {
            for z in -1..=d as isize {
                for y in -1..=h as isize {
                    for xx in -1..=w as isize {
                        let idx = ((c * d + r(z, d)) * h + r(y, h)) * w + r(xx, w);
                        padded.push(v[idx]);
                    }
                }
            }
        }
        let padded = Tensor::<5>::from_data(
            TensorData::new(padded, [1, 2, d + 2, h + 2, w + 2]),
            &device,
        );
        for stride in [1, 2] {
            let conv = ReflectConv3dConfig::new([2, 3], 3)
                .with_stride(stride)
                .init_with_slope(0.2, &device);
            let ours = conv.forward(x.clone());
            let direct = conv.conv.forward(padded.clone());
            assert_eq!(ours.dims(), direct.dims());
            if stride == 1 {
                assert_eq!(ours.dims(), [1, 3, d, h, w]);
            }
            let diff = (ours - direct).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "stride {stride}: difference {diff}");
        }
    }
}
