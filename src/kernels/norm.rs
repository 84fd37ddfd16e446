//! Instance normalisation (with affine) fused with the LeakyReLU that follows it in every
//! nnU-Net conv block, forward and backward, on contiguous `f32` buffers `[B, C, N]`
//! (N = D·H·W voxels per plane).
//!
//! Burn's `InstanceNorm` is a group norm built from eight tensor operations (mean, subtract,
//! square, mean, add, sqrt, divide, scale and shift), plus the activation: nine passes over
//! the feature map forward, each with its own allocation, and under autodiff each keeps its
//! input for the backward pass. Fused, the forward reads the conv output twice (mean, then
//! variance) and writes once; the backward reads it and the incoming gradient twice and
//! writes once, and autodiff keeps only the conv output plus two numbers per plane.
//!
//! Statistics follow PyTorch's `InstanceNorm3d` and Burn's `group_norm`: population variance
//! over the plane, `x̂ = (x − μ) / sqrt(σ² + ε)`, `y = leaky(γ·x̂ + β)`. Sums run in blocks of
//! `f32` lanes promoted to `f64`, so a 2-million-voxel plane loses no precision.
//!
//! Planes are independent and spread over rayon's threads.

use rayon::prelude::*;

/// Voxels summed in `f32` before the partial sum is promoted to `f64`.
const BLOCK: usize = 4096;

/// Lanes of the `f32` partial sums (two AVX2 registers; the compiler vectorises the loops).
const LANES: usize = 16;

/// `Σ f(x_i)` over `x` with `f32` lanes per block and `f64` across blocks.
#[inline]
fn sum_by(x: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    let mut total = 0.0f64;
    for block in x.chunks(BLOCK) {
        let mut acc = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                acc[j] += f(c[j]);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// `(Σ a_i, Σ b_i)` with `(a_i, b_i) = f(x_i, y_i)` over two equally long slices, blocked
/// like [`sum_by`].
#[inline]
fn sum_pairs(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> (f32, f32) + Copy) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0f64, 0.0f64);
    for (bx, by) in x.chunks(BLOCK).zip(y.chunks(BLOCK)) {
        let mut acc_a = [0.0f32; LANES];
        let mut acc_b = [0.0f32; LANES];
        let mut cx = bx.chunks_exact(LANES);
        let mut cy = by.chunks_exact(LANES);
        for (vx, vy) in (&mut cx).zip(&mut cy) {
            for j in 0..LANES {
                let (a, b) = f(vx[j], vy[j]);
                acc_a[j] += a;
                acc_b[j] += b;
            }
        }
        let (mut ra, mut rb) = (0.0f32, 0.0f32);
        for (&u, &v) in cx.remainder().iter().zip(cy.remainder()) {
            let (a, b) = f(u, v);
            ra += a;
            rb += b;
        }
        ta += acc_a.iter().map(|&a| a as f64).sum::<f64>() + ra as f64;
        tb += acc_b.iter().map(|&b| b as f64).sum::<f64>() + rb as f64;
    }
    (ta, tb)
}

/// Mean and reciprocal standard deviation `1 / sqrt(σ² + ε)` of one plane (two passes: the
/// centred second pass avoids the cancellation of `E[x²] − E[x]²`).
fn plane_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mean = sum_by(x, |v| v) / n;
    let m = mean as f32;
    let var = sum_by(x, |v| (v - m) * (v - m)) / n;
    (m, (1.0 / (var + eps).sqrt()) as f32)
}

/// Per-plane statistics saved by the forward pass for the backward pass, `[B·C]` each.
#[derive(Clone, Debug, Default)]
pub struct NormStats {
    /// Mean of each plane.
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + eps)` of each plane.
    pub rstd: Vec<f32>,
}

/// `y = leaky(γ_c · (x − μ) · rstd + β_c)` for one plane, written over `out` (which may
/// alias `x`'s values: `out` starts as a copy of them or is `x` itself).
#[inline]
fn normalise_plane(out: &mut [f32], m: f32, r: f32, g: f32, b: f32, slope: f32) {
    // Centre first: x − μ is exact for x near μ, whereas x·(γ·r) − μ·γ·r cancels when the
    // plane's mean is large against its spread.
    let scale = g * r;
    for v in out.iter_mut() {
        let z = (*v - m) * scale + b;
        *v = if z < 0.0 { z * slope } else { z };
    }
}

/// Forward into a new buffer: `x` `[B, C, N]` → `(y, stats)`.
pub fn forward(
    x: &[f32],
    dims: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    slope: f32,
) -> (Vec<f32>, NormStats) {
    let mut y = x.to_vec();
    let stats = forward_in_place(&mut y, dims, gamma, beta, eps, slope);
    (y, stats)
}

/// Forward in place: `x` `[B, C, N]` becomes the activated, normalised output. Returns the
/// statistics for the backward pass.
pub fn forward_in_place(
    x: &mut [f32],
    dims: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    slope: f32,
) -> NormStats {
    let [b, c, n] = dims;
    assert_eq!(x.len(), b * c * n, "instance norm: input length");
    assert_eq!(gamma.len(), c, "instance norm: gamma length");
    assert_eq!(beta.len(), c, "instance norm: beta length");
    if n == 0 || b * c == 0 {
        return NormStats::default();
    }
    let stats: Vec<(f32, f32)> = x
        .par_chunks_mut(n)
        .enumerate()
        .map(|(p, plane)| {
            let ch = p % c;
            let (m, r) = plane_stats(plane, eps);
            normalise_plane(plane, m, r, gamma[ch], beta[ch], slope);
            (m, r)
        })
        .collect();
    NormStats {
        mean: stats.iter().map(|s| s.0).collect(),
        rstd: stats.iter().map(|s| s.1).collect(),
    }
}

/// Gradients of [`forward`] given the incoming gradient `dy`: `(dx, dγ, dβ)`, `dx` only if
/// `want_dx`.
///
/// With `x̂ = (x − μ)·r`, `z = γ·x̂ + β`, `dz = dy · (1 if z ≥ 0 else slope)`:
/// `dβ_c = Σ dz`, `dγ_c = Σ dz·x̂` (summed over the batch too), and per plane
/// `dx = γ·r·(dz − mean(dz) − x̂·mean(dz·x̂))`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    dy: &[f32],
    dims: [usize; 3],
    stats: &NormStats,
    gamma: &[f32],
    beta: &[f32],
    slope: f32,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let [b, c, n] = dims;
    assert_eq!(x.len(), b * c * n, "instance norm backward: input length");
    assert_eq!(dy.len(), x.len(), "instance norm backward: gradient length");
    assert_eq!(
        stats.mean.len(),
        b * c,
        "instance norm backward: statistics"
    );
    if n == 0 || b * c == 0 {
        return (
            want_dx.then(|| vec![0.0; x.len()]),
            vec![0.0; c],
            vec![0.0; c],
        );
    }
    // x̂ = (x − μ)·r; z = γ·x̂ + β; dz = dy · leaky'(z).
    let grad_at = |p: usize| {
        let (m, r) = (stats.mean[p], stats.rstd[p]);
        let (g, bt) = (gamma[p % c], beta[p % c]);
        move |xv: f32, dyv: f32| -> (f32, f32) {
            let xh = (xv - m) * r;
            let z = g * xh + bt;
            let dz = if z < 0.0 { dyv * slope } else { dyv };
            (dz, xh)
        }
    };
    // Pass 1: Σ dz and Σ dz·x̂ per plane.
    let sums: Vec<(f64, f64)> = x
        .par_chunks(n)
        .zip(dy.par_chunks(n))
        .enumerate()
        .map(|(p, (xs, dys))| {
            let f = grad_at(p);
            sum_pairs(xs, dys, move |xv, dyv| {
                let (dz, xh) = f(xv, dyv);
                (dz, dz * xh)
            })
        })
        .collect();
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for (p, &(s_dz, s_dzx)) in sums.iter().enumerate() {
        dbeta[p % c] += s_dz;
        dgamma[p % c] += s_dzx;
    }
    // Pass 2: dx.
    let dx = want_dx.then(|| {
        let mut dx = vec![0.0f32; x.len()];
        dx.par_chunks_mut(n)
            .zip(x.par_chunks(n).zip(dy.par_chunks(n)))
            .enumerate()
            .for_each(|(p, (out, (xs, dys)))| {
                let f = grad_at(p);
                let g = gamma[p % c] * stats.rstd[p];
                let mean_dz = (sums[p].0 / n as f64) as f32;
                let mean_dzx = (sums[p].1 / n as f64) as f32;
                for ((o, &xv), &dyv) in out.iter_mut().zip(xs).zip(dys) {
                    let (dz, xh) = f(xv, dyv);
                    *o = g * (dz - mean_dz - xh * mean_dzx);
                }
            });
        dx
    });
    (
        dx,
        dgamma.into_iter().map(|v| v as f32).collect(),
        dbeta.into_iter().map(|v| v as f32).collect(),
    )
}
