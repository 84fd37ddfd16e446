//! Plain-Rust 3D convolution kernels on contiguous `f32` NCDHW buffers: tiled im2col
//! ("gather") into a column tile that fits in L2, then one `gemm` call per tile, tiles spread
//! over the rayon pool.
//!
//! Three primitives cover everything:
//! - [`conv3d_forward`]: `y = conv(x, w) + b`;
//! - [`conv3d_input_grad`]: `dx` of a conv, which is also the transposed convolution's forward;
//! - [`conv3d_weight_grad`]: `dw` of a conv, which also gives the transposed convolution's
//!   weight gradient (with the roles of input and output swapped);
//!
//! plus [`conv3d_bias_grad`]. The input gradient avoids the zero-stuffing of a naive
//! transposed convolution: input positions are split into `stride³` residue classes, and each
//! class gathers only the kernel taps that reach it, so no multiply is wasted on a stuffed 0.
//!
//! Shapes: `x` `[B, Ci, D, H, W]`, `w` `[Co, Ci, kd, kh, kw]`, `y` `[B, Co, Do, Ho, Wo]` with
//! `Do = (D + 2p - kd) / s + 1` (floor), per axis.

use rayon::prelude::*;

use super::shape::{Dims5, conv_out_len, conv3d_out_dims};

/// Target size of one thread's column tile, in `f32`s (512 KiB, a quarter of this CPU's L2,
/// leaving room for gemm's packed panels and the destination).
const TILE_FLOATS: usize = 128 * 1024;

/// How one spatial axis of the GEMM's column grid maps onto the gathered source: column `q`,
/// tap `t` reads source coordinate `step · q + taps[t]` (0 outside `[0, src_len)`).
#[derive(Clone, Debug)]
struct Axis {
    /// Columns along this axis.
    q_len: usize,
    /// Source extent along this axis.
    src_len: usize,
    /// Source step per column.
    step: usize,
    /// Source offset of each tap.
    taps: Vec<isize>,
}

impl Axis {
    /// True when the gather along this axis is the identity (one tap, offset 0, step 1, full
    /// length): a 1×1×1 kernel reads the source in place.
    fn is_identity(&self) -> bool {
        self.taps.len() == 1 && self.taps[0] == 0 && self.step == 1 && self.q_len == self.src_len
    }
}

/// Where the GEMM's columns land in the destination: column `(qd, qh, qw)` goes to
/// `start + step · q` per axis of a destination of spatial extent `dims`.
#[derive(Clone, Copy, Debug)]
struct DstMap {
    start: [usize; 3],
    step: [usize; 3],
    dims: [usize; 3],
}

/// A raw pointer shared by the tiles of one parallel loop. Every use writes a region that no
/// other tile touches.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub(super) *mut f32);
// SAFETY: tiles write disjoint regions (see each use), so sharing the base pointer is sound.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// The column tile width for `k_rows` gathered rows and `q_total` columns per batch item:
/// about [`TILE_FLOATS`] floats, a multiple of 16, and small enough that every thread gets
/// a few tiles.
fn tile_width(k_rows: usize, q_total: usize, batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut l = (TILE_FLOATS / k_rows.max(1)).max(16);
    let min_tiles = 4 * threads;
    let per_item = q_total.div_ceil(min_tiles.div_ceil(batch.max(1)).max(1));
    l = l.min(per_item.max(16));
    if l >= 32 {
        l -= l % 16;
    }
    l.max(1).min(q_total.max(1))
}

/// One run of consecutive columns along the fastest axis inside a tile: columns
/// `q..q + n` of tile offset `off` share `qd`, `qh` and start at `qw0`.
struct Segment {
    off: usize,
    n: usize,
    qd: usize,
    qh: usize,
    /// Per `w` tap: the valid column range `lo..hi` (relative to the segment) and the source
    /// index of column `lo`.
    w_ranges: Vec<(usize, usize, usize)>,
}

/// The segments of columns `q0..q1` of the grid `ax`.
fn segments(ax: &[Axis; 3], q0: usize, q1: usize) -> Vec<Segment> {
    let aw = &ax[2];
    let qhw = ax[1].q_len * aw.q_len;
    let (len, step) = (aw.src_len as isize, aw.step as isize);
    let mut out = Vec::new();
    let mut q = q0;
    while q < q1 {
        let qd = q / qhw;
        let rem = q % qhw;
        let (qh, qw0) = (rem / aw.q_len, rem % aw.q_len);
        let n = (aw.q_len - qw0).min(q1 - q);
        let w_ranges = aw
            .taps
            .iter()
            .map(|&ow| {
                // Valid i: 0 <= step·(qw0 + i) + ow < len.
                let first = step * qw0 as isize + ow;
                let lo = if first >= 0 {
                    0
                } else {
                    (-first + step - 1) / step
                };
                let hi = if first >= len {
                    0
                } else {
                    (len - 1 - first) / step + 1
                };
                let lo = (lo as usize).min(n);
                let hi = (hi.max(0) as usize).clamp(lo, n);
                let s0 = if hi > lo {
                    (first + step * lo as isize) as usize
                } else {
                    0
                };
                (lo, hi, s0)
            })
            .collect();
        out.push(Segment {
            off: q - q0,
            n,
            qd,
            qh,
            w_ranges,
        });
        q += n;
    }
    out
}

/// Fills `col` (`rows × (q1 - q0)`, row-major, rows ordered `(c, td, th, tw)`) with the
/// gathered source values of columns `q0..q1` of one batch item `src` `[C, sd, sh, sw]`.
fn gather(src: &[f32], channels: usize, ax: &[Axis; 3], q0: usize, q1: usize, col: &mut [f32]) {
    let [ad, ah, aw] = ax;
    let (sd, sh, sw) = (ad.src_len as isize, ah.src_len as isize, aw.src_len);
    let plane = ad.src_len * ah.src_len * aw.src_len;
    let l = q1 - q0;
    let (th, tw) = (ah.taps.len(), aw.taps.len());
    let step = aw.step;
    for seg in segments(ax, q0, q1) {
        for c in 0..channels {
            let sc = &src[c * plane..(c + 1) * plane];
            for (id, &od) in ad.taps.iter().enumerate() {
                let zd = (ad.step * seg.qd) as isize + od;
                for (ih, &oh) in ah.taps.iter().enumerate() {
                    let zh = (ah.step * seg.qh) as isize + oh;
                    let row0 = ((c * ad.taps.len() + id) * th + ih) * tw;
                    let inside = zd >= 0 && zd < sd && zh >= 0 && zh < sh;
                    let srow = if inside {
                        let start = (zd as usize * ah.src_len + zh as usize) * sw;
                        &sc[start..start + sw]
                    } else {
                        &sc[..0]
                    };
                    for (iw, &(lo, hi, s0)) in seg.w_ranges.iter().enumerate() {
                        let at = (row0 + iw) * l + seg.off;
                        let out = &mut col[at..at + seg.n];
                        if !inside {
                            out.fill(0.0);
                            continue;
                        }
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        if step == 1 {
                            out[lo..hi].copy_from_slice(&srow[s0..s0 + (hi - lo)]);
                        } else {
                            for (i, o) in out[lo..hi].iter_mut().enumerate() {
                                *o = srow[s0 + step * i];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst := a · b` (`read_dst` false) or `dst += a · b` (`read_dst` true) for row-major
/// strided matrices: `a` `m × k`, `b` `k × n`, `dst` `m × n`; single-threaded (tiles are
/// already parallel).
///
/// # Safety
/// The pointers must address matrices of the given shapes and strides.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    read_dst: bool,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: within the m × n destination.
                    unsafe { *dst.offset(i as isize * dst_rs + j as isize * dst_cs) = 0.0 };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            read_dst,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The shared engine of forward and input gradient: for each batch item,
/// `dst[b][:, map(q)] = a · gather(src[b])[:, q]` over all columns `q` of the grid `ax`,
/// plus `bias` per output row. `a` is `m × (channels · taps)` row-major.
#[allow(clippy::too_many_arguments)]
fn gather_gemm(
    src: &[f32],
    batch: usize,
    channels: usize,
    ax: &[Axis; 3],
    a: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    dst: &mut [f32],
    map: DstMap,
) {
    let taps = ax[0].taps.len() * ax[1].taps.len() * ax[2].taps.len();
    let k = channels * taps;
    debug_assert_eq!(a.len(), m * k);
    let q_total = ax[0].q_len * ax[1].q_len * ax[2].q_len;
    if q_total == 0 || m == 0 {
        return;
    }
    let src_plane = ax[0].src_len * ax[1].src_len * ax[2].src_len;
    let dst_plane = map.dims[0] * map.dims[1] * map.dims[2];
    let direct_src = ax.iter().all(Axis::is_identity);
    let direct_dst = map.step == [1; 3] && map.start == [0; 3] && {
        let q = [ax[0].q_len, ax[1].q_len, ax[2].q_len];
        q == map.dims
    };
    let l = tile_width(k, q_total, batch);
    let tiles = q_total.div_ceil(l);
    let dst_ptr = SharedMut(dst.as_mut_ptr());
    let col_len = if direct_src { 0 } else { k * l };
    let tmp_len = if direct_dst { 0 } else { m * l };
    (0..batch * tiles).into_par_iter().for_each_init(
        || (vec![0.0f32; col_len], vec![0.0f32; tmp_len]),
        |(col, tmp), job| {
            let (b, t) = (job / tiles, job % tiles);
            let q0 = t * l;
            let q1 = (q0 + l).min(q_total);
            let n = q1 - q0;
            let src_b = &src[b * channels * src_plane..(b + 1) * channels * src_plane];
            let (rhs, rhs_rs) = if direct_src {
                (src_b[q0..].as_ptr(), src_plane as isize)
            } else {
                gather(src_b, channels, ax, q0, q1, &mut col[..k * n]);
                (col.as_ptr(), n as isize)
            };
            // SAFETY: batch item `b` of `dst` has `m` rows of `dst_plane`; columns `q0..q1`
            // (directly, or their mapped positions) belong to this tile only.
            unsafe {
                let dst_b = dst_ptr.get().add(b * m * dst_plane);
                let (out, out_rs) = if direct_dst {
                    (dst_b.add(q0), dst_plane as isize)
                } else {
                    (tmp.as_mut_ptr(), n as isize)
                };
                if let Some(bias) = bias {
                    for (i, &bv) in bias.iter().enumerate() {
                        std::slice::from_raw_parts_mut(out.offset(i as isize * out_rs), n).fill(bv);
                    }
                }
                matmul(
                    m,
                    n,
                    k,
                    out,
                    out_rs,
                    1,
                    bias.is_some(),
                    a.as_ptr(),
                    k as isize,
                    1,
                    rhs,
                    rhs_rs,
                    1,
                );
                if !direct_dst {
                    scatter(tmp, m, n, q0, ax, map, dst_b, dst_plane);
                }
            }
        },
    );
}

/// Copies the tile `tmp` (`m × n`, columns `q0..q0+n` of the grid `ax`) to their mapped
/// positions in one batch item `dst_b` (`m` rows of `dst_plane`).
///
/// # Safety
/// `dst_b` must address `m · dst_plane` floats, and the mapped positions of these columns
/// must not be written concurrently.
#[allow(clippy::too_many_arguments)]
unsafe fn scatter(
    tmp: &[f32],
    m: usize,
    n: usize,
    q0: usize,
    ax: &[Axis; 3],
    map: DstMap,
    dst_b: *mut f32,
    dst_plane: usize,
) {
    let (qh_len, qw_len) = (ax[1].q_len, ax[2].q_len);
    let qhw = qh_len * qw_len;
    let [dh, dw] = [map.dims[1], map.dims[2]];
    for i in 0..m {
        let row = &tmp[i * n..(i + 1) * n];
        // SAFETY: row i of the destination batch item.
        let drow = unsafe { dst_b.add(i * dst_plane) };
        let mut q = q0;
        while q < q0 + n {
            let qd = q / qhw;
            let rem = q % qhw;
            let qh = rem / qw_len;
            let qw0 = rem % qw_len;
            let cnt = (qw_len - qw0).min(q0 + n - q);
            let z = map.start[0] + map.step[0] * qd;
            let y = map.start[1] + map.step[1] * qh;
            let base = (z * dh + y) * dw + map.start[2] + map.step[2] * qw0;
            for j in 0..cnt {
                // SAFETY: inside the destination plane, owned by this tile.
                unsafe { *drow.add(base + map.step[2] * j) = row[q - q0 + j] };
            }
            q += cnt;
        }
    }
}

/// The forward axes of a convolution: the output grid, reading the input at
/// `s · q + k - p` for every kernel tap `k`.
fn forward_axes(xs: [usize; 3], ks: [usize; 3], stride: [usize; 3], pad: [usize; 3]) -> [Axis; 3] {
    std::array::from_fn(|i| Axis {
        q_len: conv_out_len(xs[i], ks[i], stride[i], pad[i]),
        src_len: xs[i],
        step: stride[i],
        taps: (0..ks[i]).map(|k| k as isize - pad[i] as isize).collect(),
    })
}

/// Conv3d forward: `x` `[B, Ci, D, H, W]`, `w` `[Co, Ci, kd, kh, kw]`, optional `bias`
/// `[Co]` → `y` `[B, Co, Do, Ho, Wo]` (returned with its dims). Few output channels at
/// stride 1 go to the direct kernel of [`super::direct`], 3×3×3 convolutions at stride 1 and
/// padding 1 to the Winograd kernel of [`super::winograd`] (unless turned off:
/// [`super::set_winograd`]), everything else to im2col + GEMM.
pub fn conv3d_forward(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    bias: Option<&[f32]>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> (Vec<f32>, Dims5) {
    assert_eq!(
        xd[1], wd[1],
        "conv3d: input channels of x and weight differ"
    );
    assert_eq!(x.len(), xd.iter().product::<usize>());
    assert_eq!(w.len(), wd.iter().product::<usize>());
    if super::direct::applies(xd, wd, stride, padding) {
        return super::direct::conv3d_forward(x, xd, w, wd, bias, padding);
    }
    if super::winograd_enabled() && super::winograd::applies(xd, wd, stride, padding) {
        return super::winograd::conv3d_forward(x, xd, w, wd, bias);
    }
    conv3d_forward_im2col(x, xd, w, wd, bias, stride, padding)
}

/// [`conv3d_forward`] by im2col + GEMM whatever the shape.
pub fn conv3d_forward_im2col(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    bias: Option<&[f32]>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> (Vec<f32>, Dims5) {
    let yd = conv3d_out_dims(xd, wd, stride, padding);
    let mut y = vec![0.0f32; yd.iter().product()];
    let ax = forward_axes(
        [xd[2], xd[3], xd[4]],
        [wd[2], wd[3], wd[4]],
        stride,
        padding,
    );
    let map = DstMap {
        start: [0; 3],
        step: [1; 3],
        dims: [yd[2], yd[3], yd[4]],
    };
    gather_gemm(x, xd[0], xd[1], &ax, w, wd[0], bias, &mut y, map);
    (y, yd)
}

/// Conv3d input gradient: `dy` `[B, Co, Do, Ho, Wo]`, `w` `[Co, Ci, kd, kh, kw]` → `dx`
/// `[B, Ci, in_spatial]`. `in_spatial` is the forward input's `[D, H, W]` (it is ambiguous
/// from `dy` with stride > 1). This is also the forward of a transposed convolution whose
/// weight `[Cin_t, Cout_t, k..]` plays `w` (so `Co = Cin_t`).
pub fn conv3d_input_grad(
    dy: &[f32],
    dyd: Dims5,
    w: &[f32],
    wd: Dims5,
    stride: [usize; 3],
    padding: [usize; 3],
    in_spatial: [usize; 3],
) -> Vec<f32> {
    assert_eq!(
        dyd[1], wd[0],
        "conv3d input grad: channels of dy and weight differ"
    );
    assert_eq!(dy.len(), dyd.iter().product::<usize>());
    assert_eq!(w.len(), wd.iter().product::<usize>());
    let [co, ci] = [wd[0], wd[1]];
    let ks = [wd[2], wd[3], wd[4]];
    let dys = [dyd[2], dyd[3], dyd[4]];
    let batch = dyd[0];
    if super::winograd_enabled()
        && super::winograd::applies_input_grad(dyd, wd, stride, padding, in_spatial)
    {
        return super::winograd::conv3d_input_grad(dy, dyd, w, wd);
    }
    let mut dx = vec![0.0f32; batch * ci * in_spatial.iter().product::<usize>()];
    // Per axis and residue r: input positions i = r + s·j, taps k with (r + p - k) ≡ 0 mod s
    // reading dy at j + (r + p - k) / s.
    let classes: [Vec<(usize, Vec<usize>, Axis)>; 3] = std::array::from_fn(|i| {
        let (s, p, n) = (stride[i], padding[i] as isize, in_spatial[i]);
        (0..s.min(n))
            .filter_map(|r| {
                let ks_r: Vec<usize> = (0..ks[i])
                    .filter(|&k| (r as isize + p - k as isize).rem_euclid(s as isize) == 0)
                    .collect();
                if ks_r.is_empty() {
                    return None;
                }
                let taps = ks_r
                    .iter()
                    .map(|&k| (r as isize + p - k as isize).div_euclid(s as isize))
                    .collect();
                let axis = Axis {
                    q_len: (n - r).div_ceil(s),
                    src_len: dys[i],
                    step: 1,
                    taps,
                };
                Some((r, ks_r, axis))
            })
            .collect()
    });
    for (rd, kd, axd) in &classes[0] {
        for (rh, kh, axh) in &classes[1] {
            for (rw, kw, axw) in &classes[2] {
                // a[ci, (co, td, th, tw)] = w[co, ci, kd[td], kh[th], kw[tw]].
                let t = kd.len() * kh.len() * kw.len();
                let mut a = vec![0.0f32; ci * co * t];
                for c_in in 0..ci {
                    for c_out in 0..co {
                        let mut col = c_out * t;
                        for &zd in kd {
                            for &zh in kh {
                                for &zw in kw {
                                    let widx = (((c_out * ci + c_in) * ks[0] + zd) * ks[1] + zh)
                                        * ks[2]
                                        + zw;
                                    a[c_in * co * t + col] = w[widx];
                                    col += 1;
                                }
                            }
                        }
                    }
                }
                let ax = [axd.clone(), axh.clone(), axw.clone()];
                let map = DstMap {
                    start: [*rd, *rh, *rw],
                    step: stride,
                    dims: in_spatial,
                };
                gather_gemm(dy, batch, co, &ax, &a, ci, None, &mut dx, map);
            }
        }
    }
    dx
}

/// Conv3d weight gradient: `x` `[B, Ci, D, H, W]`, `dy` `[B, Co, Do, Ho, Wo]` → `dw`
/// `[Co, Ci, kd, kh, kw]` for kernel size `ks`. With `x` and `dy` swapped this is also the
/// weight gradient of a transposed convolution (`[Cin_t, Cout_t, k..]`).
pub fn conv3d_weight_grad(
    x: &[f32],
    xd: Dims5,
    dy: &[f32],
    dyd: Dims5,
    ks: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Vec<f32> {
    assert_eq!(
        xd[0], dyd[0],
        "conv3d weight grad: batch of x and dy differ"
    );
    assert_eq!(x.len(), xd.iter().product::<usize>());
    assert_eq!(dy.len(), dyd.iter().product::<usize>());
    let ax = forward_axes([xd[2], xd[3], xd[4]], ks, stride, padding);
    let q = [ax[0].q_len, ax[1].q_len, ax[2].q_len];
    assert_eq!(
        q,
        [dyd[2], dyd[3], dyd[4]],
        "conv3d weight grad: dy has the wrong shape"
    );
    let (batch, ci, co) = (xd[0], xd[1], dyd[1]);
    let k = ci * ks.iter().product::<usize>();
    let q_total: usize = q.iter().product();
    let mut dw = vec![0.0f32; co * k];
    if q_total == 0 || batch == 0 || k == 0 || co == 0 {
        return dw;
    }
    let src_plane = xd[2] * xd[3] * xd[4];
    let direct_src = ax.iter().all(Axis::is_identity);
    let l = tile_width(k, q_total, batch);
    let tiles = q_total.div_ceil(l);
    let jobs = batch * tiles;
    // A fixed split per thread bounds the number of partial sums (one `co × k` each).
    let parts = rayon::current_num_threads().clamp(1, jobs);
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0.0f32; co * k];
            let mut col = vec![0.0f32; if direct_src { 0 } else { k * l }];
            let (j0, j1) = (part * jobs / parts, (part + 1) * jobs / parts);
            for job in j0..j1 {
                let (b, t) = (job / tiles, job % tiles);
                let q0 = t * l;
                let q1 = (q0 + l).min(q_total);
                let n = q1 - q0;
                let x_b = &x[b * ci * src_plane..(b + 1) * ci * src_plane];
                let dy_b = &dy[(b * co * q_total + q0)..];
                // rhs (n × k): column c of the gathered tile, read transposed.
                let (rhs, rhs_rs, rhs_cs) = if direct_src {
                    (x_b[q0..].as_ptr(), 1, src_plane as isize)
                } else {
                    gather(x_b, ci, &ax, q0, q1, &mut col[..k * n]);
                    (col.as_ptr(), 1, n as isize)
                };
                // SAFETY: dy_b holds co rows of stride q_total from column q0; acc is co × k.
                unsafe {
                    matmul(
                        co,
                        k,
                        n,
                        acc.as_mut_ptr(),
                        k as isize,
                        1,
                        true,
                        dy_b.as_ptr(),
                        q_total as isize,
                        1,
                        rhs,
                        rhs_rs,
                        rhs_cs,
                    );
                }
            }
            acc
        })
        .collect();
    for p in partials {
        for (d, v) in dw.iter_mut().zip(p) {
            *d += v;
        }
    }
    dw
}

/// Bias gradient: `dy` `[B, Co, ...]` summed over batch and space → `[Co]`.
pub fn conv3d_bias_grad(dy: &[f32], dyd: Dims5) -> Vec<f32> {
    let (batch, co) = (dyd[0], dyd[1]);
    let plane = dyd[2] * dyd[3] * dyd[4];
    (0..co)
        .into_par_iter()
        .map(|c| {
            (0..batch)
                .map(|b| {
                    let start = (b * co + c) * plane;
                    dy[start..start + plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                })
                .sum::<f64>() as f32
        })
        .collect()
}

/// Output spatial dims of a transposed convolution:
/// `(n - 1) · s + k - 2p + padding_out` per axis.
pub fn conv_transpose3d_out_spatial(
    x_spatial: [usize; 3],
    ks: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    padding_out: [usize; 3],
) -> [usize; 3] {
    std::array::from_fn(|i| {
        ((x_spatial[i].max(1) - 1) * stride[i] + ks[i] + padding_out[i])
            .saturating_sub(2 * padding[i])
    })
}

/// Transposed conv3d forward: `x` `[B, Ci, D, H, W]`, `w` `[Ci, Co, kd, kh, kw]` (PyTorch
/// layout), optional `bias` `[Co]` → `[B, Co, D', H', W']` with
/// [`conv_transpose3d_out_spatial`]. It is the input gradient of the conv whose weight is `w`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose3d_forward(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    bias: Option<&[f32]>,
    stride: [usize; 3],
    padding: [usize; 3],
    padding_out: [usize; 3],
) -> (Vec<f32>, Dims5) {
    let ks = [wd[2], wd[3], wd[4]];
    let out = conv_transpose3d_out_spatial([xd[2], xd[3], xd[4]], ks, stride, padding, padding_out);
    let mut y = conv3d_input_grad(x, xd, w, wd, stride, padding, out);
    let yd = [xd[0], wd[1], out[0], out[1], out[2]];
    if let Some(bias) = bias {
        let plane = out.iter().product::<usize>();
        y.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, ch)| ch.iter_mut().for_each(|v| *v += bias[i % yd[1]]));
    }
    (y, yd)
}
