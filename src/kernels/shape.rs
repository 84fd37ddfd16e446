//! Tensor shapes shared by the kernels ([`super::cpu`], [`super::direct`], [`super::backend`]):
//! the 5D dims type and the output size of a convolution.

/// `[B, C, D, H, W]` of a 5D tensor.
pub type Dims5 = [usize; 5];

/// Output extent of a convolution along one axis: `(n + 2p - k) / s + 1`, 0 if the kernel
/// does not fit.
pub fn conv_out_len(n: usize, k: usize, s: usize, p: usize) -> usize {
    if n + 2 * p < k {
        0
    } else {
        (n + 2 * p - k) / s + 1
    }
}

/// Output dims `[B, Co, Do, Ho, Wo]` of a convolution of `x` `[B, Ci, D, H, W]` with `w`
/// `[Co, Ci, kd, kh, kw]`.
pub fn conv3d_out_dims(x: Dims5, w: Dims5, stride: [usize; 3], padding: [usize; 3]) -> Dims5 {
    let o = |i: usize| conv_out_len(x[2 + i], w[2 + i], stride[i], padding[i]);
    [x[0], w[0], o(0), o(1), o(2)]
}
