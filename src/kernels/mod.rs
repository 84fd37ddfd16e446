//! Fast 3D convolutions (and transposed convolutions) for the CPU, with their gradients,
//! plugged in beneath the model.
//!
//! Burn's `flex` backend runs a 3×3×3 conv at about half the speed of a plain tiled im2col +
//! `gemm` conv, and loses most in the weight gradient (measured: BENCHMARKS.md). No
//! crate does 3D convolution well on the CPU, so the im2col/tiling here is hand-written: the
//! column matrix is built one L2-sized tile at a time and multiplied with the `gemm` crate
//! (the one flex itself uses), tiles spread over rayon's threads ([`cpu`]). The 3×3×3
//! convolutions at stride 1 and padding 1, nearly all of the work, and their input gradients
//! run as Winograd F(2×2×2, 3×3×3) instead ([`winograd`]: 3.4× fewer multiplications).
//!
//! [`backend`] exposes these kernels as a Burn backend extension, implemented for `Flex` and
//! for `Autodiff<Flex>` with a custom backward, so training on `Device::flex().autodiff()`
//! uses them forward and backward. The model calls [`conv3d`] / [`conv_transpose3d`] (or the
//! module helpers [`conv3d_module`], [`conv_transpose3d_module`]): on a flex device (plain or
//! autodiff) with f32 tensors they take the fast path, elsewhere (wgpu, cuda) they fall back
//! to Burn's own `conv3d` / `conv_transpose3d`.

pub mod backend;
pub mod cpu;
pub mod direct;
pub mod norm;
pub mod shape;
pub mod winograd;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, ConvTranspose3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Tensor};

use burn::nn::InstanceNorm;
use burn::tensor::activation::leaky_relu;

use backend::{FastConvBackend, FastNormBackend};

/// Whether [`conv3d`] and [`conv_transpose3d`] may take the fast path (on by default).
static FAST_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns the fast kernels on or off process-wide (off: Burn's conv everywhere), so a
/// benchmark can time both on the same model.
pub fn set_fast_kernels(enabled: bool) {
    FAST_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether the fast kernels are on (see [`set_fast_kernels`]).
pub fn fast_kernels_enabled() -> bool {
    FAST_KERNELS.load(Ordering::Relaxed)
}

/// Whether the 3×3×3 stride-1 convolutions may use the Winograd kernel (on by default).
static WINOGRAD: AtomicBool = AtomicBool::new(true);

/// Turns the Winograd kernel ([`winograd`]) on or off process-wide (off: im2col + GEMM for
/// every convolution the direct kernel does not take), so a benchmark can time both.
pub fn set_winograd(enabled: bool) {
    WINOGRAD.store(enabled, Ordering::Relaxed);
}

/// Whether the Winograd kernel is on (see [`set_winograd`]).
pub fn winograd_enabled() -> bool {
    WINOGRAD.load(Ordering::Relaxed)
}

/// True if `device` is flex, plain or under autodiff.
#[allow(unreachable_patterns)]
fn is_flex(device: &DispatchDevice) -> bool {
    match device {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => is_flex(inner),
        _ => false,
    }
}

/// True if the fast kernels can run on `x` with parameters of dtypes `params`: enabled, flex
/// device, f32 everywhere.
fn fast_path(x: &Tensor<5>, params: impl IntoIterator<Item = DType>) -> bool {
    fast_kernels_enabled()
        && is_flex(x.device().as_dispatch())
        && x.dtype() == DType::F32
        && params.into_iter().all(|d| d == DType::F32)
}

/// The dtypes of a conv's weight and optional bias, for [`fast_path`].
fn conv_dtypes(weight: &Tensor<5>, bias: Option<&Tensor<1>>) -> impl Iterator<Item = DType> {
    std::iter::once(weight.dtype()).chain(bias.map(|b| b.dtype()))
}

/// The optional bias as the extension's argument type (Burn 0.22's `#[backend_extension]`
/// cannot take an `Option` of a tensor).
fn bias_arg(bias: Option<Tensor<1>>) -> backend::Bias<Dispatch> {
    bias.map_or(backend::Bias::Absent, |b| {
        backend::Bias::Present(b.into_dispatch())
    })
}

/// 3D convolution, dilation 1, one group: `x` `[B, Ci, D, H, W]`, `weight`
/// `[Co, Ci, kd, kh, kw]`, `bias` `[Co]` → `[B, Co, (D + 2p - kd) / s + 1, ..]`.
/// Stride and padding per axis `[d, h, w]`, symmetric padding.
pub fn conv3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<5> {
    if fast_path(&x, conv_dtypes(&weight, bias.as_ref())) {
        Tensor::from_dispatch(<Dispatch as FastConvBackend>::fast_conv3d(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias_arg(bias),
            stride,
            padding,
        ))
    } else {
        burn::tensor::module::conv3d(
            x,
            weight,
            bias,
            ConvOptions::new(stride, padding, [1; 3], 1),
        )
    }
}

/// 3D transposed convolution, dilation 1, one group: `x` `[B, Ci, D, H, W]`, `weight`
/// `[Ci, Co, kd, kh, kw]` (PyTorch layout), `bias` `[Co]` →
/// `[B, Co, (D - 1)·s + kd - 2p + padding_out, ..]`.
pub fn conv_transpose3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: [usize; 3],
    padding: [usize; 3],
    padding_out: [usize; 3],
) -> Tensor<5> {
    if fast_path(&x, conv_dtypes(&weight, bias.as_ref())) {
        Tensor::from_dispatch(<Dispatch as FastConvBackend>::fast_conv_transpose3d(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias_arg(bias),
            stride,
            padding,
            padding_out,
        ))
    } else {
        burn::tensor::module::conv_transpose3d(
            x,
            weight,
            bias,
            ConvTransposeOptions::new(stride, padding, padding_out, [1; 3], 1),
        )
    }
}

/// `conv.forward(x)` through [`conv3d`]; modules this kernel does not cover (dilation,
/// groups, `Same` padding) use Burn's forward.
pub fn conv3d_module(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    match module_padding(conv) {
        Some(padding) => conv3d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            conv.stride,
            padding,
        ),
        None => conv.forward(x),
    }
}

/// The symmetric padding `[d, h, w]` with which [`conv3d`] runs `conv`, or `None` when this
/// kernel does not cover it (dilation, groups, `Same` padding).
pub fn module_padding(conv: &Conv3d) -> Option<[usize; 3]> {
    let padding = match conv.padding {
        PaddingConfig3d::Explicit(d, h, w) => [d, h, w],
        PaddingConfig3d::Valid => [0; 3],
        PaddingConfig3d::Same => return None,
    };
    (conv.dilation == [1; 3] && conv.groups == 1).then_some(padding)
}

/// `up.forward(x)` through [`conv_transpose3d`]; dilated or grouped modules use Burn's
/// forward.
pub fn conv_transpose3d_module(up: &ConvTranspose3d, x: Tensor<5>) -> Tensor<5> {
    if up.dilation == [1; 3] && up.groups == 1 {
        conv_transpose3d(
            x,
            up.weight.val(),
            up.bias.as_ref().map(|b| b.val()),
            up.stride,
            up.padding,
            up.padding_out,
        )
    } else {
        up.forward(x)
    }
}

/// `leaky_relu(norm.forward(x), slope)` for `x` `[B, C, D, H, W]`: the instance norm and
/// activation of a conv block. On a flex device with f32 tensors and an affine norm it runs
/// the fused kernel of [`norm`] (one statistics pass and one output pass, and under autodiff
/// a fused backward); elsewhere Burn's `InstanceNorm` and `leaky_relu`.
pub fn instance_norm_leaky_relu(norm: &InstanceNorm, x: Tensor<5>, slope: f64) -> Tensor<5> {
    let affine = norm.gamma.as_ref().zip(norm.beta.as_ref());
    match affine {
        Some((gamma, beta)) if fast_path(&x, [gamma.val().dtype(), beta.val().dtype()]) => {
            Tensor::from_dispatch(
                <Dispatch as FastNormBackend>::fast_instance_norm_leaky_relu(
                    x.into_dispatch(),
                    gamma.val().into_dispatch(),
                    beta.val().into_dispatch(),
                    norm.epsilon,
                    slope,
                ),
            )
        }
        _ => leaky_relu(norm.forward(x), slope),
    }
}
