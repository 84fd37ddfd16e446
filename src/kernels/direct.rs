//! Direct 3D convolution for few output channels, stride 1: the attention convolutions of
//! adaptive fusion (`[F̄; F_m]`, 2C channels → 1 channel, 3×3×3) and the like.
//!
//! With one output channel, im2col + GEMM is the wrong shape: the column tile holds
//! `Ci · 27` values per voxel and is read once by a 1-row matrix product, so the copy costs
//! more than the multiply. Here each output row is accumulated in place from shifted input
//! rows of the input: `y[d, h, ·] += Σ_taps w · x[d + a − p, h + e − p, · + t − p]`, taps in
//! the zero padding skipped, with the three taps along W fused in one pass (k 3, padding 1)
//! so each output value is loaded and stored once per `(ci, a, e)`. The loops are plain
//! slices the compiler vectorises along W; output planes `(b, co, d)` are spread over rayon's
//! threads.

use rayon::prelude::*;

use super::shape::{Dims5, conv3d_out_dims};

/// Most output channels for which [`applies`] holds: beyond this GEMM's blocking wins.
pub const MAX_OUT_CHANNELS: usize = 4;

/// Whether the direct kernel handles this convolution: stride 1, at most
/// [`MAX_OUT_CHANNELS`] outputs, a kernel larger than 1×1×1 (a 1×1×1 conv needs no im2col and
/// is a plain GEMM already), and a non-empty output.
pub fn applies(xd: Dims5, wd: Dims5, stride: [usize; 3], padding: [usize; 3]) -> bool {
    let yd = conv3d_out_dims(xd, wd, stride, padding);
    stride == [1; 3]
        && wd[0] <= MAX_OUT_CHANNELS
        && wd[2] * wd[3] * wd[4] > 1
        && yd.iter().all(|&n| n > 0)
}

/// `dst[i] += Σ_t taps[t] · src[i + t − p]` over `dst`'s length, terms whose source index
/// falls outside `src` left out (zero padding of `p` on each side).
#[inline]
fn accumulate_row(dst: &mut [f32], src: &[f32], taps: &[f32], p: usize) {
    let (n, len) = (dst.len(), src.len());
    if let (&[a, b, c], 1) = (taps, p)
        && n == len
        && n >= 2
    {
        // The attention conv's case (k 3, padding 1, same size): interior in one fused pass.
        let (s0, s1, s2) = (&src[..n - 2], &src[1..n - 1], &src[2..]);
        let inner = &mut dst[1..n - 1];
        for i in 0..n - 2 {
            inner[i] += a * s0[i] + b * s1[i] + c * s2[i];
        }
        dst[0] += b * src[0] + c * src[1];
        dst[n - 1] += a * src[n - 2] + b * src[n - 1];
        return;
    }
    for (t, &wt) in taps.iter().enumerate() {
        // Output i reads source i + t − p: valid for i in [p − t, len + p − t) ∩ [0, n).
        let lo = p.saturating_sub(t);
        let hi = (len + p).saturating_sub(t).min(n);
        if lo >= hi {
            continue;
        }
        let src_lo = lo + t - p;
        for (o, &v) in dst[lo..hi].iter_mut().zip(&src[src_lo..src_lo + (hi - lo)]) {
            *o += wt * v;
        }
    }
}

/// Conv3d forward, stride 1, by direct accumulation (see the module docs): `x`
/// `[B, Ci, D, H, W]`, `w` `[Co, Ci, kd, kh, kw]`, optional `bias` `[Co]` → `y`
/// `[B, Co, Do, Ho, Wo]` with its dims. Callers check [`applies`] first.
pub fn conv3d_forward(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    bias: Option<&[f32]>,
    padding: [usize; 3],
) -> (Vec<f32>, Dims5) {
    let yd = conv3d_out_dims(xd, wd, [1; 3], padding);
    let [b, co, od, oh, ow] = yd;
    let [_, ci, kd, kh, kw] = wd;
    let [_, _, d, h, wdt] = xd;
    let [pd, ph, pw] = padding;
    let vol = d * h * wdt;
    let mut y = vec![0.0f32; b * co * od * oh * ow];
    y.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane_index, plane)| {
            let z = plane_index % od;
            let o = (plane_index / od) % co;
            let n = plane_index / (od * co);
            plane.fill(bias.map_or(0.0, |bs| bs[o]));
            // Row by row, so the output row stays in L1 while every (channel, tap) row of
            // the input is added to it; taps reaching into the padding are skipped.
            for (r, dst) in plane.chunks_mut(ow).enumerate() {
                for c in 0..ci {
                    let src = &x[(n * ci + c) * vol..][..vol];
                    for a in 0..kd {
                        let Some(zi) = (z + a).checked_sub(pd).filter(|&v| v < d) else {
                            continue;
                        };
                        for e in 0..kh {
                            let Some(yi) = (r + e).checked_sub(ph).filter(|&v| v < h) else {
                                continue;
                            };
                            let taps = &w[(((o * ci + c) * kd + a) * kh + e) * kw..][..kw];
                            let row = &src[(zi * h + yi) * wdt..][..wdt];
                            accumulate_row(dst, row, taps, pw);
                        }
                    }
                }
            }
        });
    (y, yd)
}
