//! Volume operations Burn 0.22 lacks, written once from Burn tensor ops (so they run on any
//! backend and differentiate under autodiff without a custom backward).
//!
//! - [`max_pool3d_2x`]: 2×2×2 max-pooling with stride 2. Burn has `max_pool1d`/`max_pool2d`
//!   and an adaptive *average* 3D pooling, but no 3D max-pooling.
//! - [`upsample_trilinear_2x`]: trilinear ×2 resizing. Burn's `interpolate` is 2D only.
//! - [`upsample_trilinear_aligned`]: trilinear resizing by an integer factor with aligned
//!   corners (PyTorch's `align_corners=True`), as RFNet's decoders use it.
//!
//! Both work one axis at a time: a 3D max over a 2³ cell is the max along D of the max
//! along H of the max along W, and trilinear interpolation is separable into three linear
//! ones. Each axis step views the volume as `[outer, n, inner]` with the axis in the
//! middle, so no tensor of rank above 4 is needed.

use burn::tensor::{Int, Tensor, TensorData};

/// Applies `f` (which maps `[outer, n, inner]` to `[outer, n', inner]`) along spatial axis
/// `axis` (2 = D, 3 = H, 4 = W) of `x` `[B, C, D, H, W]`.
fn along_axis(x: Tensor<5>, axis: usize, f: impl Fn(Tensor<3>) -> Tensor<3>) -> Tensor<5> {
    let dims = x.dims();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let y = f(x.reshape([outer, dims[axis], inner]));
    let mut out = dims;
    out[axis] = y.dims()[1];
    y.reshape(out)
}

/// `[outer, n, inner]` → `[outer, n / 2, inner]`: the larger of each pair `(2i, 2i + 1)`.
fn max_pairs(x: Tensor<3>) -> Tensor<3> {
    let [o, n, i] = x.dims();
    x.reshape([o, n / 2, 2, i])
        .max_dim(2)
        .reshape([o, n / 2, i])
}

/// 3D max-pooling with a 2×2×2 window and stride 2: `x` `[B, C, D, H, W]` →
/// `[B, C, D/2, H/2, W/2]`, as NiftyNet's `DownSampleLayer('MAX', kernel_size=2, stride=2)`
/// and PyTorch's `MaxPool3d(2)`.
///
/// Under autodiff the gradient of each output flows to the voxel that held the maximum (to
/// one of them on a tie).
///
/// # Panics
/// If D, H or W is odd (the networks only pool sizes that are multiples of `2^poolings`).
pub fn max_pool3d_2x(x: Tensor<5>) -> Tensor<5> {
    let [_, _, d, h, w] = x.dims();
    assert!(
        d % 2 == 0 && h % 2 == 0 && w % 2 == 0,
        "max_pool3d_2x needs even sizes, got {:?}",
        x.dims()
    );
    let x = along_axis(x, 4, max_pairs);
    let x = along_axis(x, 3, max_pairs);
    along_axis(x, 2, max_pairs)
}

/// `[outer, n, inner]` → `[outer, 2n, inner]` by linear interpolation with TensorFlow's
/// `resize_bilinear(align_corners=False)` sampling: output `j` reads input position `j / 2`,
/// so `out[2i] = in[i]`, `out[2i + 1] = (in[i] + in[i + 1]) / 2`, the last one clamped
/// (`out[2n − 1] = in[n − 1]`).
fn double_linear(x: Tensor<3>) -> Tensor<3> {
    let [o, n, i] = x.dims();
    let next = Tensor::cat(
        vec![
            x.clone().slice([0..o, 1..n, 0..i]),
            x.clone().slice([0..o, n - 1..n, 0..i]),
        ],
        1,
    );
    let mid = (x.clone() + next).mul_scalar(0.5);
    Tensor::cat(vec![x.unsqueeze_dim::<4>(2), mid.unsqueeze_dim::<4>(2)], 2).reshape([o, 2 * n, i])
}

/// Trilinear ×2 resizing: `x` `[B, C, D, H, W]` → `[B, C, 2D, 2H, 2W]`.
///
/// Corner convention: U-HVED's official code resizes with NiftyNet's `LinearResizeLayer`,
/// i.e. TensorFlow 1's `resize_bilinear` with `align_corners=False` and no half-pixel
/// centres. Output voxel `j` samples input coordinate `j / 2` (not PyTorch's
/// `align_corners=False` half-pixel rule `(j + 0.5) / 2 − 0.5`), so even outputs copy the
/// input, odd outputs average two neighbours, and the last one repeats the border. This
/// keeps the method's numbers, at the cost of a half-voxel shift towards the origin that a
/// learned decoder absorbs.
pub fn upsample_trilinear_2x(x: Tensor<5>) -> Tensor<5> {
    let x = along_axis(x, 4, double_linear);
    let x = along_axis(x, 3, double_linear);
    along_axis(x, 2, double_linear)
}

/// `[outer, n, inner]` → `[outer, n·factor, inner]` by linear interpolation with aligned
/// corners: output `j` reads input position `j · (n − 1) / (n·factor − 1)`, so the first and
/// last voxels keep their values (an axis of length 1 is repeated).
fn resize_linear_aligned(x: Tensor<3>, factor: usize) -> Tensor<3> {
    let [_, n, _] = x.dims();
    let m = n * factor;
    let device = x.device();
    let scale = if m > 1 {
        (n - 1) as f64 / (m - 1) as f64
    } else {
        0.0
    };
    let (mut lo, mut hi, mut frac) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..m {
        let src = j as f64 * scale;
        let l = (src.floor() as usize).min(n - 1);
        lo.push(l as i64);
        hi.push((l + 1).min(n - 1) as i64);
        frac.push((src - l as f64) as f32);
    }
    let index = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [m]), &device);
    let frac = Tensor::<3>::from_data(TensorData::new(frac, [1, m, 1]), &device);
    let low = x.clone().select(1, index(lo));
    let high = x.select(1, index(hi));
    low.clone() + (high - low) * frac
}

/// Trilinear resizing by an integer `factor` with aligned corners: `x` `[B, C, D, H, W]` →
/// `[B, C, factor·D, factor·H, factor·W]`, as PyTorch's
/// `Upsample(scale_factor=factor, mode='trilinear', align_corners=True)`. One resize by 4 is
/// not two resizes by 2 with this convention (the sample positions differ), so the factor is
/// a parameter.
pub fn upsample_trilinear_aligned(x: Tensor<5>, factor: usize) -> Tensor<5> {
    if factor == 1 {
        return x;
    }
    let f = |t: Tensor<3>| resize_linear_aligned(t, factor);
    let x = along_axis(x, 4, f);
    let x = along_axis(x, 3, f);
    along_axis(x, 2, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    fn values(t: Tensor<5>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec().unwrap()
    }

    #[test]
    fn max_pool_takes_the_max_of_each_cell() {
        let device = Device::flex();
        // [1, 1, 2, 2, 4]: value = 100·d + 10·h + w, so each cell's max is its (1, 1, odd w).
        let data: Vec<f32> = (0..2)
            .flat_map(|d| {
                (0..2).flat_map(move |h| (0..4).map(move |w| (100 * d + 10 * h + w) as f32))
            })
            .collect();
        let x = Tensor::<5>::from_data(TensorData::new(data, [1, 1, 2, 2, 4]), &device);
        let y = max_pool3d_2x(x);
        assert_eq!(y.dims(), [1, 1, 1, 1, 2]);
        assert_eq!(values(y), vec![111.0, 113.0]);
    }

    #[test]
    fn upsample_follows_the_tensorflow_convention() {
        let device = Device::flex();
        let x = Tensor::<5>::from_data(
            TensorData::new(vec![0.0f32, 2.0, 6.0], [1, 1, 1, 1, 3]),
            &device,
        );
        let y = upsample_trilinear_2x(x);
        assert_eq!(y.dims(), [1, 1, 2, 2, 6]);
        let v = values(y);
        assert_eq!(&v[..6], &[0.0, 1.0, 2.0, 4.0, 6.0, 6.0]);
        // Constant along D and H: every row repeats.
        assert!(v.chunks(6).all(|r| r == &v[..6]));
    }

    #[test]
    fn aligned_upsample_keeps_the_corners() {
        let device = Device::flex();
        let x = Tensor::<5>::from_data(
            TensorData::new(vec![0.0f32, 3.0, 9.0], [1, 1, 1, 1, 3]),
            &device,
        );
        // ×2: 6 samples at input positions j · 2 / 5.
        let v = values(upsample_trilinear_aligned(x.clone(), 2));
        let expect = [0.0, 1.2, 2.4, 4.2, 6.6, 9.0];
        assert_eq!(v.len(), 2 * 2 * 6);
        for (a, b) in v[..6].iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{:?}", &v[..6]);
        }
        // A length-1 axis is repeated; rows along D and H are equal.
        assert!(v.chunks(6).all(|r| r == &v[..6]));
        // ×4 samples at j · 2 / 11: not two ×2 resizes.
        let v4 = values(upsample_trilinear_aligned(x.clone(), 4));
        let twice = values(upsample_trilinear_aligned(
            upsample_trilinear_aligned(x, 2),
            2,
        ));
        let at = |j: usize| {
            let s = j as f32 * 2.0 / 11.0;
            let l = (s.floor() as usize).min(1);
            let data = [0.0f32, 3.0, 9.0];
            data[l] + (data[l + 1] - data[l]) * (s - l as f32)
        };
        for (j, value) in v4[..12].iter().enumerate() {
            assert!((value - at(j)).abs() < 1e-5, "{j}: {value} vs {}", at(j));
        }
        assert!(
            v4[..12]
                .iter()
                .zip(&twice[..12])
                .any(|(a, b)| (a - b).abs() > 1e-3)
        );
    }

    #[test]
    fn aligned_upsample_gradient_matches_finite_differences() {
        check_gradient(|x| upsample_trilinear_aligned(x, 2), [1, 2, 2, 3, 2]);
    }

    /// Gradients of `sum(op(x) · r)` under autodiff against central finite differences.
    fn check_gradient(op: fn(Tensor<5>) -> Tensor<5>, shape: [usize; 5]) {
        let device = Device::flex();
        device.seed(7);
        let x0 = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let out_dims = op(x0.clone()).dims();
        let r = Tensor::<5>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);
        let ad = device.clone().autodiff();
        let x = Tensor::<5>::from_data(x0.to_data(), &ad).require_grad();
        let rr = Tensor::<5>::from_data(r.to_data(), &ad);
        let loss = (op(x.clone()) * rr).sum();
        let grads = loss.backward();
        let g: Vec<f32> = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let base: Vec<f32> = values(x0);
        let f = |v: &[f32]| -> f64 {
            let t = Tensor::<5>::from_data(TensorData::new(v.to_vec(), shape), &device);
            (op(t) * r.clone()).sum().into_scalar::<f32>() as f64
        };
        let h = 1e-3f32;
        for (i, gi) in g.iter().enumerate() {
            let mut plus = base.clone();
            plus[i] += h;
            let mut minus = base.clone();
            minus[i] -= h;
            let fd = (f(&plus) - f(&minus)) / (2.0 * h as f64);
            assert!(
                (fd - *gi as f64).abs() < 1e-2,
                "element {i}: autodiff {gi}, finite difference {fd}"
            );
        }
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences() {
        check_gradient(max_pool3d_2x, [1, 2, 2, 4, 2]);
    }

    #[test]
    fn upsample_gradient_matches_finite_differences() {
        check_gradient(upsample_trilinear_2x, [1, 2, 2, 3, 2]);
    }
}
