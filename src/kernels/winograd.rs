//! Winograd F(2×2×2, 3×3×3) forward for the stride-1, padding-1 3×3×3 convolutions that
//! make up almost all of every network's work.
//!
//! Each output tile of 2×2×2 voxels is computed from the 4×4×4 input tile around it in the
//! Winograd domain: `Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, applied along each of the three
//! axes (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016, in 3D).
//! The sum over input channels at each of the 64 transform points is a matrix product, so
//! one block of tiles costs 64 GEMMs of `Co × Ci` by `Ci × tiles`: 64 multiplications per
//! tile and channel pair where im2col + GEMM needs 8 · 27 = 216 (3.4× fewer), and the
//! transformed input holds 64 values per tile and channel where im2col gathers 216.
//!
//! No crate offers a 3D Winograd convolution on the CPU, so it is written here on top of the
//! `gemm` crate's matrix product (as [`super::cpu`] is). The transforms are written as
//! loops over a row of tiles along W, which the compiler vectorises. The arithmetic of
//! F(2, 3) adds rounding of the order of a few ulps of the largest term (its coefficients
//! are 0, ±1 and ±1/2); the tests hold it to the direct sum within 1e-4 of the largest
//! output.
//!
//! Shapes: `x` `[B, Ci, D, H, W]`, `w` `[Co, Ci, 3, 3, 3]`, `y` `[B, Co, D, H, W]`.

use rayon::prelude::*;

use super::cpu::{SharedMut, matmul};
use super::shape::Dims5;

/// Transform points per tile: 4 × 4 × 4.
const POINTS: usize = 64;

/// Tiles per block (the columns of each of the block's 64 GEMMs), about: whole rows of tiles
/// along W are taken until at least this many. Measured on 32–128 channels (`bench::kernels`):
/// 16 to 384 tiles are within 20 % of each other; 64 was best for the 32-channel layers,
/// where most of the time goes.
const BLOCK_TILES: usize = 64;

/// Fewest input and output channels for which [`applies`] holds. A chosen bound, not a
/// measured one: with fewer channels the 64 GEMMs are very thin, and such layers (a
/// network's first convolution, one input channel) are a small share of the work, so they
/// stay on im2col.
pub const MIN_CHANNELS: usize = 8;

/// Whether the Winograd kernel computes this convolution: a 3×3×3 kernel at stride 1 and
/// padding 1 (the output has the input's size), at least [`MIN_CHANNELS`] channels in and
/// out, and a non-empty input.
pub fn applies(xd: Dims5, wd: Dims5, stride: [usize; 3], padding: [usize; 3]) -> bool {
    wd[2..] == [3, 3, 3]
        && stride == [1; 3]
        && padding == [1; 3]
        && xd[1] >= MIN_CHANNELS
        && wd[0] >= MIN_CHANNELS
        && xd.iter().all(|&n| n > 0)
}

/// Whether [`conv3d_input_grad`] computes the input gradient of the convolution with weight
/// `wd`, `stride` and `padding` whose output gradient is `dyd` and whose input had spatial
/// dims `in_spatial`: a convolution [`applies`] to (so input and output sizes agree) with
/// the roles of input and output channels swapped.
pub fn applies_input_grad(
    dyd: Dims5,
    wd: Dims5,
    stride: [usize; 3],
    padding: [usize; 3],
    in_spatial: [usize; 3],
) -> bool {
    in_spatial == [dyd[2], dyd[3], dyd[4]]
        && applies(dyd, [wd[1], wd[0], wd[2], wd[3], wd[4]], stride, padding)
}

/// The input gradient `dx` `[B, Ci, D, H, W]` of a 3×3×3, stride-1, padding-1 convolution
/// with weight `w` `[Co, Ci, 3, 3, 3]`, from its output gradient `dy` `[B, Co, D, H, W]`: the
/// same kind of convolution of `dy` with the kernel flipped along every axis and its
/// channels swapped (`w'[i, o, k] = w[o, i, 2 − k]`), so it runs as [`conv3d_forward`].
pub fn conv3d_input_grad(dy: &[f32], dyd: Dims5, w: &[f32], wd: Dims5) -> Vec<f32> {
    let (co, ci) = (wd[0], wd[1]);
    assert_eq!(wd[2..], [3, 3, 3], "winograd: the kernel must be 3×3×3");
    let mut flipped = vec![0.0f32; w.len()];
    for o in 0..co {
        for i in 0..ci {
            let src = &w[(o * ci + i) * 27..(o * ci + i + 1) * 27];
            let dst = &mut flipped[(i * co + o) * 27..(i * co + o + 1) * 27];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    conv3d_forward(dy, dyd, &flipped, [ci, co, 3, 3, 3], None).0
}

/// `Gg` along one axis: the 3 weights of a kernel row → its 4 transform points.
#[inline]
fn weight_row(g: [f32; 3]) -> [f32; 4] {
    [
        g[0],
        0.5 * (g[0] + g[1] + g[2]),
        0.5 * (g[0] - g[1] + g[2]),
        g[2],
    ]
}

/// The transformed weights `U[ξ][co][ci]` (`64 × Co × Ci`, row-major) of `w`
/// `[Co, Ci, 3, 3, 3]`, ξ = `(ξd · 4 + ξh) · 4 + ξw`.
fn transform_weights(w: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; POINTS * co * ci];
    let plane = co * ci;
    for o in 0..co {
        for i in 0..ci {
            let g = &w[(o * ci + i) * 27..(o * ci + i + 1) * 27];
            // Along W: [d][h][ξw].
            let mut t1 = [[[0.0f32; 4]; 3]; 3];
            for (d, t1d) in t1.iter_mut().enumerate() {
                for (h, t1dh) in t1d.iter_mut().enumerate() {
                    let r = &g[(d * 3 + h) * 3..(d * 3 + h) * 3 + 3];
                    *t1dh = weight_row([r[0], r[1], r[2]]);
                }
            }
            // Along H: [d][ξh][ξw].
            let mut t2 = [[[0.0f32; 4]; 4]; 3];
            for d in 0..3 {
                for xw in 0..4 {
                    let r = weight_row([t1[d][0][xw], t1[d][1][xw], t1[d][2][xw]]);
                    for xh in 0..4 {
                        t2[d][xh][xw] = r[xh];
                    }
                }
            }
            // Along D, into U.
            for xh in 0..4 {
                for xw in 0..4 {
                    let r = weight_row([t2[0][xh][xw], t2[1][xh][xw], t2[2][xh][xw]]);
                    for (xd, &v) in r.iter().enumerate() {
                        u[((xd * 4 + xh) * 4 + xw) * plane + o * ci + i] = v;
                    }
                }
            }
        }
    }
    u
}

/// The tile grid of a volume: `n` tiles of 2 along each axis (the last one may hang over the
/// border by one voxel).
#[derive(Clone, Copy, Debug)]
struct Grid {
    /// Spatial dims `[D, H, W]` of input and output.
    dims: [usize; 3],
    /// Tiles along each axis.
    tiles: [usize; 3],
}

impl Grid {
    fn new(dims: [usize; 3]) -> Self {
        Self {
            dims,
            tiles: dims.map(|n| n.div_ceil(2)),
        }
    }

    /// Rows of tiles (one per `(tile d, tile h)`).
    fn rows(&self) -> usize {
        self.tiles[0] * self.tiles[1]
    }
}

/// One thread's buffers: the transformed input `V` (`64 × Ci × n`), the products `M`
/// (`64 × Co × n`) and a row's scratch.
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    /// Even and odd samples of one padded input row (`tw + 1` each).
    even: Vec<f32>,
    odd: Vec<f32>,
    /// A row of tiles along the way through a transform: 64 (input) or 16 (output) lanes of
    /// `tw` values.
    t1: Vec<f32>,
    t2: Vec<f32>,
}

/// Fills `v` (`64 × ci × n`, `n = (r1 - r0) · tw`) with the transformed input tiles of the
/// tile rows `r0..r1` of one batch item `x` `[ci, D, H, W]`: `V[ξ][c][t] = (Bᵀ d B)[ξ]` of
/// the 4×4×4 input tile `d` of tile `t` in channel `c` (zeros outside the volume).
fn transform_input(x: &[f32], ci: usize, g: &Grid, r0: usize, r1: usize, s: &mut Scratch) {
    let [dd, dh, dw] = g.dims;
    let tw = g.tiles[2];
    let n = (r1 - r0) * tw;
    let plane = dd * dh * dw;
    let Scratch {
        v,
        even,
        odd,
        t1,
        t2,
        ..
    } = s;
    for c in 0..ci {
        let xc = &x[c * plane..(c + 1) * plane];
        for r in r0..r1 {
            let (td, th) = (r / g.tiles[1], r % g.tiles[1]);
            // Along W, for each of the 16 input rows (zd, yh): t1[(zd·4 + yh)·4 + ξw][t].
            for zd in 0..4 {
                for yh in 0..4 {
                    let z = (2 * td + zd) as isize - 1;
                    let y = (2 * th + yh) as isize - 1;
                    let lanes = &mut t1[(zd * 4 + yh) * 4 * tw..(zd * 4 + yh + 1) * 4 * tw];
                    if z < 0 || z >= dd as isize || y < 0 || y >= dh as isize {
                        lanes.fill(0.0);
                        continue;
                    }
                    let row = &xc[(z as usize * dh + y as usize) * dw..][..dw];
                    // Padded row p[k] = x[k - 1]: even[j] = p[2j], odd[j] = p[2j + 1].
                    for j in 0..=tw {
                        even[j] = if j >= 1 && 2 * j - 1 < dw {
                            row[2 * j - 1]
                        } else {
                            0.0
                        };
                        odd[j] = if 2 * j < dw { row[2 * j] } else { 0.0 };
                    }
                    let (l0, rest) = lanes.split_at_mut(tw);
                    let (l1, rest) = rest.split_at_mut(tw);
                    let (l2, l3) = rest.split_at_mut(tw);
                    for t in 0..tw {
                        // d = p[2t..2t + 4] = (even[t], odd[t], even[t + 1], odd[t + 1]).
                        let (a, b, c2, d) = (even[t], odd[t], even[t + 1], odd[t + 1]);
                        l0[t] = a - c2;
                        l1[t] = b + c2;
                        l2[t] = c2 - b;
                        l3[t] = b - d;
                    }
                }
            }
            // Along H: t2[(zd·4 + ξh)·4 + ξw][t].
            for zd in 0..4 {
                for xw in 0..4 {
                    let lanes = [0, 1, 2, 3].map(|yh| &t1[((zd * 4 + yh) * 4 + xw) * tw..][..tw]);
                    for xh in 0..4 {
                        let out = ((zd * 4 + xh) * 4 + xw) * tw;
                        input_point(lanes, xh, &mut t2[out..out + tw]);
                    }
                }
            }
            // Along D, into V[ξ][c][(r - r0)·tw + t].
            let col = (r - r0) * tw;
            for xh in 0..4 {
                for xw in 0..4 {
                    let lanes = [0, 1, 2, 3].map(|zd| &t2[((zd * 4 + xh) * 4 + xw) * tw..][..tw]);
                    for xd in 0..4 {
                        let at = (((xd * 4 + xh) * 4 + xw) * ci + c) * n + col;
                        input_point(lanes, xd, &mut v[at..at + tw]);
                    }
                }
            }
        }
    }
}

/// `Bᵀ` along one axis for a lane of values: transform point `xi` of the samples `d`
/// (`d0 − d2`, `d1 + d2`, `d2 − d1`, `d1 − d3`) into `out`.
#[inline]
fn input_point(d: [&[f32]; 4], xi: usize, out: &mut [f32]) {
    let [a, b, c, e] = d;
    let n = out.len();
    let (a, b, c, e) = (&a[..n], &b[..n], &c[..n], &e[..n]);
    match xi {
        0 => (0..n).for_each(|t| out[t] = a[t] - c[t]),
        1 => (0..n).for_each(|t| out[t] = b[t] + c[t]),
        2 => (0..n).for_each(|t| out[t] = c[t] - b[t]),
        _ => (0..n).for_each(|t| out[t] = b[t] - e[t]),
    }
}

/// `Aᵀ` along one axis for a lane of values: `(m0 + m1 + m2, m1 − m2 − m3)`.
#[inline]
fn output_pair(m: [&[f32]; 4], o0: &mut [f32], o1: &mut [f32]) {
    let [a, b, c, d] = m;
    for t in 0..o0.len() {
        o0[t] = a[t] + b[t] + c[t];
        o1[t] = b[t] - c[t] - d[t];
    }
}

/// Writes the output tiles of the tile rows `r0..r1` from the products `m` (`64 × co × n`) to
/// one batch item `y_b` (`co` planes of `D·H·W`), plus `bias`.
///
/// # Safety
/// `y_b` must address `co · D·H·W` floats; the voxels of these tile rows must not be written
/// concurrently.
#[allow(clippy::too_many_arguments)]
unsafe fn transform_output(
    m: &[f32],
    co: usize,
    g: &Grid,
    r0: usize,
    r1: usize,
    bias: Option<&[f32]>,
    y_b: *mut f32,
    t1: &mut [f32],
    t2: &mut [f32],
) {
    let [dd, dh, dw] = g.dims;
    let tw = g.tiles[2];
    let n = (r1 - r0) * tw;
    let plane = dd * dh * dw;
    for o in 0..co {
        let b = bias.map_or(0.0, |b| b[o]);
        for r in r0..r1 {
            let (td, th) = (r / g.tiles[1], r % g.tiles[1]);
            let col = (r - r0) * tw;
            let lane = |xi: usize| &m[(xi * co + o) * n + col..][..tw];
            // Along D: t1[(od·4 + ξh)·4 + ξw][t].
            for xh in 0..4 {
                for xw in 0..4 {
                    let src = [0, 1, 2, 3].map(|xd| lane((xd * 4 + xh) * 4 + xw));
                    let (lo, hi) = t1.split_at_mut(16 * tw);
                    let at = (xh * 4 + xw) * tw;
                    output_pair(src, &mut lo[at..at + tw], &mut hi[at..at + tw]);
                }
            }
            // Along H: t2[(od·2 + oh)·4 + ξw][t].
            for od in 0..2 {
                for xw in 0..4 {
                    let src = [0, 1, 2, 3].map(|xh| &t1[((od * 4 + xh) * 4 + xw) * tw..][..tw]);
                    let (lo, hi) = t2.split_at_mut((od * 2 + 1) * 4 * tw);
                    let a0 = (od * 2 * 4 + xw) * tw;
                    output_pair(src, &mut lo[a0..a0 + tw], &mut hi[xw * tw..xw * tw + tw]);
                }
            }
            // Along W, into y.
            for od in 0..2 {
                let z = 2 * td + od;
                if z >= dd {
                    continue;
                }
                for oh in 0..2 {
                    let y = 2 * th + oh;
                    if y >= dh {
                        continue;
                    }
                    let base = ((od * 2 + oh) * 4) * tw;
                    let q = |xw: usize| &t2[base + xw * tw..base + (xw + 1) * tw];
                    let (q0, q1, q2, q3) = (q(0), q(1), q(2), q(3));
                    // SAFETY: row (z, y) of plane o lies inside this batch item and belongs to
                    // tile row (td, th), which only this call writes.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(y_b.add(o * plane + (z * dh + y) * dw), dw)
                    };
                    for t in 0..tw {
                        let w0 = 2 * t;
                        out[w0] = q0[t] + q1[t] + q2[t] + b;
                        if w0 + 1 < dw {
                            out[w0 + 1] = q1[t] - q2[t] - q3[t] + b;
                        }
                    }
                }
            }
        }
    }
}

/// Conv3d forward with a 3×3×3 kernel, stride 1, padding 1 by Winograd F(2×2×2, 3×3×3): `x`
/// `[B, Ci, D, H, W]`, `w` `[Co, Ci, 3, 3, 3]`, optional `bias` `[Co]` → `y`
/// `[B, Co, D, H, W]`. Blocks of tile rows are spread over rayon's threads.
pub fn conv3d_forward(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    bias: Option<&[f32]>,
) -> (Vec<f32>, Dims5) {
    assert_eq!(
        xd[1], wd[1],
        "conv3d: input channels of x and weight differ"
    );
    assert_eq!(wd[2..], [3, 3, 3], "winograd: the kernel must be 3×3×3");
    assert_eq!(x.len(), xd.iter().product::<usize>());
    assert_eq!(w.len(), wd.iter().product::<usize>());
    let (batch, ci, co) = (xd[0], xd[1], wd[0]);
    let yd = [batch, co, xd[2], xd[3], xd[4]];
    let mut y = vec![0.0f32; yd.iter().product()];
    if y.is_empty() {
        return (y, yd);
    }
    let u = transform_weights(w, co, ci);
    let g = Grid::new([xd[2], xd[3], xd[4]]);
    let tw = g.tiles[2];
    let rows_per_block = BLOCK_TILES.div_ceil(tw).max(1);
    let blocks = g.rows().div_ceil(rows_per_block);
    let plane = xd[2] * xd[3] * xd[4];
    let n_max = rows_per_block * tw;
    let y_ptr = SharedMut(y.as_mut_ptr());
    (0..batch * blocks).into_par_iter().for_each_init(
        || Scratch {
            v: vec![0.0; POINTS * ci * n_max],
            m: vec![0.0; POINTS * co * n_max],
            even: vec![0.0; tw + 1],
            odd: vec![0.0; tw + 1],
            t1: vec![0.0; POINTS * tw],
            t2: vec![0.0; POINTS * tw],
        },
        |s, job| {
            let (b, blk) = (job / blocks, job % blocks);
            let r0 = blk * rows_per_block;
            let r1 = (r0 + rows_per_block).min(g.rows());
            let n = (r1 - r0) * tw;
            let x_b = &x[b * ci * plane..(b + 1) * ci * plane];
            transform_input(x_b, ci, &g, r0, r1, s);
            for xi in 0..POINTS {
                // SAFETY: U[ξ] is co × ci, V[ξ] ci × n and M[ξ] co × n, all row-major inside
                // their buffers (n ≤ n_max).
                unsafe {
                    matmul(
                        co,
                        n,
                        ci,
                        s.m.as_mut_ptr().add(xi * co * n),
                        n as isize,
                        1,
                        false,
                        u.as_ptr().add(xi * co * ci),
                        ci as isize,
                        1,
                        s.v.as_ptr().add(xi * ci * n),
                        n as isize,
                        1,
                    );
                }
            }
            // SAFETY: batch item b has co planes; tile rows r0..r1 belong to this job.
            unsafe {
                let y_b = y_ptr.get().add(b * co * plane);
                transform_output(&s.m, co, &g, r0, r1, bias, y_b, &mut s.t1, &mut s.t2);
            }
        },
    );
    (y, yd)
}
