//! The kernels against straightforward references: a naive 7-loop convolution (values and
//! hand-derived gradients) for [`super::cpu`], and Burn's own conv on flex (values and
//! autodiff gradients) for the backend extension, on odd shapes, strides and channel counts.

use burn::tensor::module::{conv_transpose3d as burn_conv_t, conv3d as burn_conv};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::cpu;
use super::shape::{Dims5, conv3d_out_dims};

/// Deterministic values in [-1, 1) (a 64-bit LCG).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Asserts `got ≈ want` to 1e-4 relative to the largest reference magnitude (at least 1).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        err <= 1e-4 * scale,
        "{what}: max abs error {err} (scale {scale})"
    );
}

/// One convolution case: batch, in/out channels, input `[D, H, W]`, kernel, stride, padding.
#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    ci: usize,
    co: usize,
    x: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
}

impl Case {
    fn xd(&self) -> Dims5 {
        [self.b, self.ci, self.x[0], self.x[1], self.x[2]]
    }
    fn wd(&self) -> Dims5 {
        [self.co, self.ci, self.k[0], self.k[1], self.k[2]]
    }
    fn yd(&self) -> Dims5 {
        conv3d_out_dims(self.xd(), self.wd(), self.s, self.p)
    }
}

/// The cases: the model's k3 s1 p1, k3 s2 p1, k1 s1 p0, plus unpadded and mixed strides, on
/// odd sizes with 1, 3 and 5 channels and batch 1 or 2.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (ci, co) in [(1, 3), (3, 5), (5, 1), (5, 5)] {
        for (k, s, p) in [
            ([3; 3], [1; 3], [1; 3]),
            ([3; 3], [2; 3], [1; 3]),
            ([1; 3], [1; 3], [0; 3]),
            ([3; 3], [1; 3], [0; 3]),
            ([3; 3], [2; 3], [0; 3]),
            ([3, 1, 3], [1, 2, 2], [1, 0, 1]),
            ([2; 3], [2; 3], [0; 3]),
        ] {
            v.push(Case {
                b: 2,
                ci,
                co,
                x: [5, 7, 3],
                k,
                s,
                p,
            });
        }
    }
    v.push(Case {
        b: 1,
        ci: 3,
        co: 3,
        x: [1, 1, 1],
        k: [3; 3],
        s: [1; 3],
        p: [1; 3],
    });
    v
}

/// Index of `[a, b, c, d, e]` in a contiguous buffer of dims `n`.
fn at(n: Dims5, i: [usize; 5]) -> usize {
    (((i[0] * n[1] + i[1]) * n[2] + i[2]) * n[3] + i[3]) * n[4] + i[4]
}

/// Calls `f(b, co, ci, o, k, xi)` for every valid (output voxel, tap) pair of a conv, with
/// `o` the output and `xi` the input position: the 7 nested loops every reference shares.
fn for_each_tap(
    c: &Case,
    mut f: impl FnMut(usize, usize, usize, [usize; 3], [usize; 3], [usize; 3]),
) {
    let yd = c.yd();
    for b in 0..c.b {
        for co in 0..c.co {
            for ci in 0..c.ci {
                for od in 0..yd[2] {
                    for oh in 0..yd[3] {
                        for ow in 0..yd[4] {
                            for kd in 0..c.k[0] {
                                for kh in 0..c.k[1] {
                                    for kw in 0..c.k[2] {
                                        let o = [od, oh, ow];
                                        let k = [kd, kh, kw];
                                        let pos: [isize; 3] = std::array::from_fn(|i| {
                                            (o[i] * c.s[i] + k[i]) as isize - c.p[i] as isize
                                        });
                                        if (0..3).all(|i| pos[i] >= 0 && pos[i] < c.x[i] as isize) {
                                            let xi = pos.map(|v| v as usize);
                                            f(b, co, ci, o, k, xi);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn naive_forward(c: &Case, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let yd = c.yd();
    let mut y = vec![0.0f32; yd.iter().product()];
    for b in 0..c.b {
        for (co, &bv) in bias.iter().enumerate().take(c.co) {
            let plane = yd[2] * yd[3] * yd[4];
            let start = (b * c.co + co) * plane;
            y[start..start + plane].fill(bv);
        }
    }
    let (xd, wd) = (c.xd(), c.wd());
    for_each_tap(c, |b, co, ci, o, k, xi| {
        y[at(yd, [b, co, o[0], o[1], o[2]])] +=
            w[at(wd, [co, ci, k[0], k[1], k[2]])] * x[at(xd, [b, ci, xi[0], xi[1], xi[2]])];
    });
    y
}

/// `(dx, dw, db)` of `sum(y · dy)` by the chain rule on the same loops.
fn naive_grads(c: &Case, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (xd, wd, yd) = (c.xd(), c.wd(), c.yd());
    let mut dx = vec![0.0f32; x.len()];
    let mut dw = vec![0.0f32; w.len()];
    let mut db = vec![0.0f32; c.co];
    for_each_tap(c, |b, co, ci, o, k, xi| {
        let g = dy[at(yd, [b, co, o[0], o[1], o[2]])];
        dx[at(xd, [b, ci, xi[0], xi[1], xi[2]])] += w[at(wd, [co, ci, k[0], k[1], k[2]])] * g;
        dw[at(wd, [co, ci, k[0], k[1], k[2]])] += x[at(xd, [b, ci, xi[0], xi[1], xi[2]])] * g;
    });
    let plane = yd[2] * yd[3] * yd[4];
    for b in 0..c.b {
        for (co, d) in db.iter_mut().enumerate() {
            let start = (b * c.co + co) * plane;
            *d += dy[start..start + plane].iter().sum::<f32>();
        }
    }
    (dx, dw, db)
}

#[test]
fn conv3d_kernels_match_naive_loops() {
    for (i, c) in cases().into_iter().enumerate() {
        let x = values(c.xd().iter().product(), 3 * i as u64);
        let w = values(c.wd().iter().product(), 3 * i as u64 + 1);
        let bias = values(c.co, 99 + i as u64);
        let (y, yd) = cpu::conv3d_forward(&x, c.xd(), &w, c.wd(), Some(&bias), c.s, c.p);
        assert_eq!(yd, c.yd());
        assert_close(
            &y,
            &naive_forward(&c, &x, &w, &bias),
            &format!("forward {c:?}"),
        );
        let (y0, _) = cpu::conv3d_forward(&x, c.xd(), &w, c.wd(), None, c.s, c.p);
        let zero = vec![0.0; c.co];
        assert_close(
            &y0,
            &naive_forward(&c, &x, &w, &zero),
            &format!("no bias {c:?}"),
        );

        let dy = values(y.len(), 3 * i as u64 + 2);
        let (dx_ref, dw_ref, db_ref) = naive_grads(&c, &x, &w, &dy);
        let dx = cpu::conv3d_input_grad(&dy, yd, &w, c.wd(), c.s, c.p, c.x);
        assert_close(&dx, &dx_ref, &format!("input grad {c:?}"));
        let dw = cpu::conv3d_weight_grad(&x, c.xd(), &dy, yd, c.k, c.s, c.p);
        assert_close(&dw, &dw_ref, &format!("weight grad {c:?}"));
        let db = cpu::conv3d_bias_grad(&dy, yd);
        assert_close(&db, &db_ref, &format!("bias grad {c:?}"));
    }
}

/// The direct kernel (few output channels, stride 1) on its own, against the naive loops and
/// the im2col path it replaces: 1 to 4 outputs, kernels with 3 taps along W (the fused
/// three-tap row) and others, padded and unpadded, the attention conv's 2C → 1 shape.
#[test]
fn direct_conv_matches_naive_loops_and_im2col() {
    let mut n = 0;
    for co in 1..=super::direct::MAX_OUT_CHANNELS {
        for (ci, k, p) in [
            (3, [3; 3], [1; 3]),
            (2, [3; 3], [0; 3]),
            (4, [3, 2, 1], [1, 0, 0]),
            (1, [1, 3, 2], [0, 1, 1]),
            (16, [3; 3], [1; 3]),
        ] {
            let c = Case {
                b: 2,
                ci,
                co,
                x: [4, 6, 5],
                k,
                s: [1; 3],
                p,
            };
            assert!(super::direct::applies(c.xd(), c.wd(), c.s, c.p), "{c:?}");
            let x = values(c.xd().iter().product(), 500 + n);
            let w = values(c.wd().iter().product(), 600 + n);
            let bias = values(co, 700 + n);
            n += 1;
            let (y, yd) = super::direct::conv3d_forward(&x, c.xd(), &w, c.wd(), Some(&bias), c.p);
            assert_eq!(yd, c.yd());
            let want = naive_forward(&c, &x, &w, &bias);
            assert_close(&y, &want, &format!("direct {c:?}"));
            let (y0, _) = super::direct::conv3d_forward(&x, c.xd(), &w, c.wd(), None, c.p);
            let (want0, _) = cpu::conv3d_forward_im2col(&x, c.xd(), &w, c.wd(), None, c.s, c.p);
            assert_close(&y0, &naive_forward(&c, &x, &w, &vec![0.0; co]), "no bias");
            assert_close(&y0, &want0, "direct vs im2col");
        }
    }
    // Not for it: stride 2, a 1×1×1 kernel, 5 outputs.
    let d = [1, 2, 4, 4, 4];
    assert!(!super::direct::applies(d, [1, 2, 3, 3, 3], [2; 3], [1; 3]));
    assert!(!super::direct::applies(d, [1, 2, 1, 1, 1], [1; 3], [0; 3]));
    assert!(!super::direct::applies(d, [5, 2, 3, 3, 3], [1; 3], [1; 3]));
}

/// Naive transposed conv: `y[b, co, i·s + k - p] += x[b, ci, i] · w[ci, co, k]`.
fn naive_transpose(
    x: &[f32],
    xd: Dims5,
    w: &[f32],
    wd: Dims5,
    s: [usize; 3],
    p: [usize; 3],
    out: [usize; 3],
) -> Vec<f32> {
    let yd = [xd[0], wd[1], out[0], out[1], out[2]];
    let mut y = vec![0.0f32; yd.iter().product()];
    for b in 0..xd[0] {
        for ci in 0..xd[1] {
            for co in 0..wd[1] {
                for id in 0..xd[2] {
                    for ih in 0..xd[3] {
                        for iw in 0..xd[4] {
                            for kd in 0..wd[2] {
                                for kh in 0..wd[3] {
                                    for kw in 0..wd[4] {
                                        let i = [id, ih, iw];
                                        let k = [kd, kh, kw];
                                        let o: [isize; 3] = std::array::from_fn(|a| {
                                            (i[a] * s[a] + k[a]) as isize - p[a] as isize
                                        });
                                        if (0..3).all(|a| o[a] >= 0 && o[a] < out[a] as isize) {
                                            let o = o.map(|v| v as usize);
                                            y[at(yd, [b, co, o[0], o[1], o[2]])] += x
                                                [at(xd, [b, ci, id, ih, iw])]
                                                * w[at(wd, [ci, co, kd, kh, kw])];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[test]
fn conv_transpose3d_forward_matches_naive_loops() {
    // The model's k2 s2 p0, and a general k3 s2 p1 with output padding, on odd sizes.
    for (i, (k, s, p, op)) in [
        ([2; 3], [2; 3], [0; 3], [0; 3]),
        ([3; 3], [2; 3], [1; 3], [1, 0, 1]),
        ([3; 3], [1; 3], [1; 3], [0; 3]),
    ]
    .into_iter()
    .enumerate()
    {
        for (ci, co) in [(1, 3), (5, 3), (3, 1)] {
            let xd = [2, ci, 3, 5, 1];
            let wd = [ci, co, k[0], k[1], k[2]];
            let x = values(xd.iter().product(), 7 + i as u64);
            let w = values(wd.iter().product(), 8 + i as u64);
            let bias = values(co, 9);
            let (y, yd) = cpu::conv_transpose3d_forward(&x, xd, &w, wd, Some(&bias), s, p, op);
            let out = cpu::conv_transpose3d_out_spatial([3, 5, 1], k, s, p, op);
            assert_eq!(yd, [2, co, out[0], out[1], out[2]]);
            let mut want = naive_transpose(&x, xd, &w, wd, s, p, out);
            let plane: usize = out.iter().product();
            for (j, v) in want.iter_mut().enumerate() {
                *v += bias[(j / plane) % co];
            }
            assert_close(&y, &want, &format!("transpose k{k:?} s{s:?} {ci}->{co}"));
        }
    }
}

fn tensor5(v: Vec<f32>, d: Dims5, device: &Device) -> Tensor<5> {
    Tensor::from_data(TensorData::new(v, d.to_vec()), device)
}

fn data(t: Tensor<5>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn data1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn fast_path_is_taken_on_flex_only_for_f32() {
    let x = Tensor::<5>::zeros([1, 1, 2, 2, 2], &Device::flex());
    let w = Tensor::<5>::zeros([1, 1, 1, 1, 1], &Device::flex());
    assert!(super::fast_path(&x, super::conv_dtypes(&w, None)));
    let xa = Tensor::<5>::zeros([1, 1, 2, 2, 2], &Device::flex().autodiff());
    let wa = Tensor::<5>::zeros([1, 1, 1, 1, 1], &Device::flex().autodiff());
    assert!(super::fast_path(&xa, super::conv_dtypes(&wa, None)));
    let xf64 = x.cast(burn::tensor::DType::F64);
    assert!(!super::fast_path(&xf64, super::conv_dtypes(&w, None)));
}

/// An extension op (`fast` true) against Burn's (`fast` false) on the same random inputs of
/// dims `[x, weight, y]`: the values, and the gradients of `sum(y · r)` for x, the weight
/// and the bias (`[y channels]`, when `with_bias`).
fn compare_with_burn(
    [xd, wd, yd]: [Dims5; 3],
    seed: u64,
    with_bias: bool,
    op: impl Fn(bool, Tensor<5>, Tensor<5>, Option<Tensor<1>>) -> Tensor<5>,
    what: &str,
) {
    let device = Device::flex().autodiff();
    let x = values(xd.iter().product(), seed);
    let w = values(wd.iter().product(), seed + 1);
    let b = values(yd[1], seed + 2);
    let r = values(yd.iter().product(), seed + 3);
    let run = |fast: bool| {
        let xt = tensor5(x.clone(), xd, &device).require_grad();
        let wt = tensor5(w.clone(), wd, &device).require_grad();
        let bt = with_bias
            .then(|| Tensor::<1>::from_data(TensorData::new(b.clone(), [yd[1]]), &device))
            .map(Tensor::require_grad);
        let y = op(fast, xt.clone(), wt.clone(), bt.clone());
        let rt = tensor5(r.clone(), yd, &device);
        let grads = (y.clone() * rt).sum().backward();
        (
            data(y),
            data(xt.grad(&grads).unwrap()),
            data(wt.grad(&grads).unwrap()),
            bt.map(|bt| data1(bt.grad(&grads).unwrap())),
        )
    };
    let (got, want) = (run(true), run(false));
    assert_close(&got.0, &want.0, &format!("values {what}"));
    assert_close(&got.1, &want.1, &format!("x.grad {what}"));
    assert_close(&got.2, &want.2, &format!("weight.grad {what}"));
    match (got.3, want.3) {
        (Some(g), Some(w)) => assert_close(&g, &w, &format!("bias.grad {what}")),
        (None, None) => {}
        _ => panic!("bias gradient presence differs: {what}"),
    }
}

/// Values and autodiff gradients of [`super::conv3d`] against Burn's conv on the same
/// inputs: `sum(conv(x, w, b) · r)` differentiated for x, w and b.
#[test]
fn conv3d_extension_matches_burn_values_and_gradients() {
    for (i, c) in cases().into_iter().enumerate().step_by(2) {
        for with_bias in [true, false] {
            let op = |fast: bool, x, w, b| {
                if fast {
                    super::conv3d(x, w, b, c.s, c.p)
                } else {
                    burn_conv(x, w, b, ConvOptions::new(c.s, c.p, [1; 3], 1))
                }
            };
            let what = format!("{c:?} bias {with_bias}");
            compare_with_burn(
                [c.xd(), c.wd(), c.yd()],
                11 * i as u64,
                with_bias,
                op,
                &what,
            );
        }
    }
}

/// Values and autodiff gradients of [`super::conv_transpose3d`] against Burn's.
#[test]
fn conv_transpose3d_extension_matches_burn_values_and_gradients() {
    for (i, (ci, co, k, s, p, op, with_bias)) in [
        (3, 5, [2; 3], [2; 3], [0; 3], [0; 3], false),
        (5, 1, [2; 3], [2; 3], [0; 3], [0; 3], true),
        (1, 3, [3; 3], [2; 3], [1; 3], [1, 0, 1], true),
    ]
    .into_iter()
    .enumerate()
    {
        let xd = [2, ci, 3, 5, 1];
        let wd = [ci, co, k[0], k[1], k[2]];
        let out = cpu::conv_transpose3d_out_spatial([3, 5, 1], k, s, p, op);
        let yd = [2, co, out[0], out[1], out[2]];
        let run = |fast: bool, x, w, b| {
            if fast {
                super::conv_transpose3d(x, w, b, s, p, op)
            } else {
                burn_conv_t(x, w, b, ConvTransposeOptions::new(s, p, op, [1; 3], 1))
            }
        };
        let what = format!("transpose {ci}->{co} k{k:?} s{s:?}");
        compare_with_burn([xd, wd, yd], 21 * i as u64, with_bias, run, &what);
    }
}

/// Plain flex (no autodiff): the extension's forward equals Burn's.
#[test]
fn extension_forward_on_plain_flex_matches_burn() {
    let device = Device::flex();
    let c = Case {
        b: 2,
        ci: 3,
        co: 5,
        x: [5, 7, 3],
        k: [3; 3],
        s: [2; 3],
        p: [1; 3],
    };
    let x = tensor5(values(c.xd().iter().product(), 1), c.xd(), &device);
    let w = tensor5(values(c.wd().iter().product(), 2), c.wd(), &device);
    let b = Tensor::<1>::from_data(TensorData::new(values(5, 3), [5]), &device);
    let got = super::conv3d(x.clone(), w.clone(), Some(b.clone()), c.s, c.p);
    let want = burn_conv(x, w, Some(b), ConvOptions::new(c.s, c.p, [1; 3], 1));
    assert_close(&data(got), &data(want), "plain flex forward");
}

/// A gradient through two stacked fast convs (the second consumes the first's output), so
/// the custom backward hands its input gradient on to the next node correctly.
#[test]
fn stacked_fast_convs_backpropagate_like_burn() {
    let device = Device::flex().autodiff();
    let x = values(2 * 3 * 5 * 7 * 3, 5);
    let w1 = values(4 * 3 * 27, 6);
    let w2 = values(2 * 4 * 8, 7);
    let run = |fast: bool| {
        let xt = tensor5(x.clone(), [2, 3, 5, 7, 3], &device).require_grad();
        let w1t = tensor5(w1.clone(), [4, 3, 3, 3, 3], &device).require_grad();
        let w2t = tensor5(w2.clone(), [4, 2, 2, 2, 2], &device).require_grad();
        let y = if fast {
            let h = super::conv3d(xt.clone(), w1t.clone(), None, [2; 3], [1; 3]);
            super::conv_transpose3d(h, w2t.clone(), None, [2; 3], [0; 3], [0; 3])
        } else {
            let h = burn_conv(
                xt.clone(),
                w1t.clone(),
                None,
                ConvOptions::new([2; 3], [1; 3], [1; 3], 1),
            );
            burn_conv_t(
                h,
                w2t.clone(),
                None,
                ConvTransposeOptions::new([2; 3], [0; 3], [0; 3], [1; 3], 1),
            )
        };
        let grads = y.clone().square().sum().backward();
        (
            data(y),
            data(xt.grad(&grads).unwrap()),
            data(w1t.grad(&grads).unwrap()),
            data(w2t.grad(&grads).unwrap()),
        )
    };
    let (got, want) = (run(true), run(false));
    assert_close(&got.0, &want.0, "stacked values");
    assert_close(&got.1, &want.1, "stacked x.grad");
    assert_close(&got.2, &want.2, "stacked w1.grad");
    assert_close(&got.3, &want.3, "stacked w2.grad");
}

/// `leaky_relu(InstanceNorm(x))` computed naively in f64: the reference for the fused norm.
fn naive_norm(x: &[f32], dims: [usize; 3], g: &[f32], b: &[f32], eps: f64, slope: f64) -> Vec<f32> {
    let [_, c, n] = dims;
    let mut y = vec![0.0f32; x.len()];
    for (p, (xs, ys)) in x.chunks(n).zip(y.chunks_mut(n)).enumerate() {
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        for (o, &v) in ys.iter_mut().zip(xs) {
            let z = g[p % c] as f64 * (v as f64 - mean) / (var + eps).sqrt() + b[p % c] as f64;
            *o = if z < 0.0 { z * slope } else { z } as f32;
        }
    }
    y
}

/// The fused norm's forward against naive f64 loops, including a constant plane (variance
/// 0), a one-voxel plane and a large plane with a mean far from zero (where `E[x²] − E[x]²`
/// in f32 would cancel).
#[test]
fn fused_norm_forward_matches_naive_loops() {
    let mut cases: Vec<(Vec<f32>, [usize; 3])> = vec![
        (values(2 * 3 * 105, 1), [2, 3, 105]),
        (values(5, 2), [1, 5, 1]),
        (vec![0.25; 2 * 40], [1, 2, 40]),
    ];
    let big: Vec<f32> = values(300_000, 3).iter().map(|v| 50.0 + v).collect();
    cases.push((big, [1, 1, 300_000]));
    for (i, (x, dims)) in cases.into_iter().enumerate() {
        let g = values(dims[1], 10 + i as u64);
        let b = values(dims[1], 20 + i as u64);
        let (y, stats) = super::norm::forward(&x, dims, &g, &b, 1e-5, 0.01);
        assert_eq!(stats.mean.len(), dims[0] * dims[1]);
        assert_close(
            &y,
            &naive_norm(&x, dims, &g, &b, 1e-5, 0.01),
            &format!("case {i}"),
        );
    }
}

/// Values and gradients (x, γ, β) of the fused norm against Burn's `InstanceNorm` followed
/// by `leaky_relu`, through a random projection; also on a non-contiguous (permuted) input.
#[test]
fn fused_norm_extension_matches_burn_values_and_gradients() {
    use burn::nn::InstanceNormConfig;
    use burn::tensor::activation::leaky_relu;
    let device = Device::flex().autodiff();
    for (i, (d, permuted)) in [
        ([2, 3, 5, 7, 3], false),
        ([1, 4, 3, 3, 3], false),
        ([2, 1, 1, 1, 2], false),
        ([2, 3, 4, 5, 3], true),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 100 + 10 * i as u64;
        let x = values(d.iter().product(), seed);
        let r = values(d.iter().product(), seed + 1);
        let mut norm = InstanceNormConfig::new(d[1])
            .with_affine(true)
            .init(&device);
        let g = Tensor::<1>::from_data(TensorData::new(values(d[1], seed + 2), [d[1]]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(values(d[1], seed + 3), [d[1]]), &device);
        norm.gamma = Some(burn::module::Param::from_tensor(g));
        norm.beta = Some(burn::module::Param::from_tensor(b));
        let run = |fast: bool| {
            // Permuted: the leaf is stored as [B, C, W, H, D] and the norm sees a
            // non-contiguous [B, C, D, H, W] view of it.
            let (xt, input) = if permuted {
                let xt = tensor5(x.clone(), [d[0], d[1], d[4], d[3], d[2]], &device).require_grad();
                (xt.clone(), xt.swap_dims(2, 4))
            } else {
                let xt = tensor5(x.clone(), d, &device).require_grad();
                (xt.clone(), xt)
            };
            let y = if fast {
                super::instance_norm_leaky_relu(&norm, input, 0.01)
            } else {
                leaky_relu(norm.forward(input), 0.01)
            };
            let grads = (y.clone() * tensor5(r.clone(), d, &device))
                .sum()
                .backward();
            let gamma = norm.gamma.as_ref().unwrap().val();
            let beta = norm.beta.as_ref().unwrap().val();
            (
                data(y),
                data(xt.grad(&grads).unwrap()),
                data1(gamma.grad(&grads).unwrap()),
                data1(beta.grad(&grads).unwrap()),
            )
        };
        let (got, want) = (run(true), run(false));
        let what = format!("{d:?} permuted {permuted}");
        assert_close(&got.0, &want.0, &format!("values {what}"));
        assert_close(&got.1, &want.1, &format!("x.grad {what}"));
        assert_close(&got.2, &want.2, &format!("gamma.grad {what}"));
        assert_close(&got.3, &want.3, &format!("beta.grad {what}"));
    }
}

/// Plain flex: the fused forward equals Burn's, and overwrites its input only when no one
/// else holds it (a skip connection's clone stays intact).
#[test]
fn fused_norm_on_plain_flex_leaves_shared_inputs_intact() {
    use burn::nn::InstanceNormConfig;
    use burn::tensor::activation::leaky_relu;
    let device = Device::flex();
    let d = [2, 3, 5, 4, 3];
    let x = tensor5(values(d.iter().product(), 7), d, &device);
    let norm = InstanceNormConfig::new(3).with_affine(true).init(&device);
    let kept = x.clone();
    let got = super::instance_norm_leaky_relu(&norm, x.clone(), 0.01);
    let want = leaky_relu(norm.forward(x), 0.01);
    assert_close(&data(got), &data(want), "plain flex fused norm");
    assert_eq!(
        data(kept),
        values(d.iter().product(), 7),
        "the shared input was modified"
    );
    // A transposed (non-contiguous) input takes the copying path and gives the same values.
    let xt = tensor5(values(d.iter().product(), 8), d, &device).swap_dims(3, 4);
    let got = super::instance_norm_leaky_relu(&norm, xt.clone(), 0.01);
    let want = leaky_relu(norm.forward(xt), 0.01);
    assert_close(&data(got), &data(want), "transposed input");
}

/// The Winograd kernel (3×3×3, stride 1, padding 1, at least 8 channels) against the naive
/// loops and im2col, forward and input gradient, on sizes odd and even along every axis
/// (tiles hanging over the border), a single voxel, batch 2, with and without bias.
#[test]
fn winograd_conv_matches_naive_loops_and_im2col() {
    use super::winograd;
    let mut n = 0;
    for (b, ci, co, x) in [
        (1, 8, 8, [4, 4, 4]),
        (2, 9, 12, [5, 6, 7]),
        (1, 16, 8, [1, 1, 1]),
        (1, 8, 10, [2, 3, 9]),
        (2, 12, 9, [9, 4, 3]),
    ] {
        let c = Case {
            b,
            ci,
            co,
            x,
            k: [3; 3],
            s: [1; 3],
            p: [1; 3],
        };
        assert!(winograd::applies(c.xd(), c.wd(), c.s, c.p), "{c:?}");
        let xs = values(c.xd().iter().product(), 800 + n);
        let w = values(c.wd().iter().product(), 900 + n);
        let bias = values(co, 1000 + n);
        n += 1;
        let (y, yd) = winograd::conv3d_forward(&xs, c.xd(), &w, c.wd(), Some(&bias));
        assert_eq!(yd, c.yd());
        assert_close(
            &y,
            &naive_forward(&c, &xs, &w, &bias),
            &format!("winograd {c:?}"),
        );
        let (y0, _) = winograd::conv3d_forward(&xs, c.xd(), &w, c.wd(), None);
        let (want0, _) = cpu::conv3d_forward_im2col(&xs, c.xd(), &w, c.wd(), None, c.s, c.p);
        assert_close(&y0, &want0, &format!("winograd vs im2col {c:?}"));
        // The public entry takes it; the input gradient runs as a Winograd conv too.
        let (y1, _) = cpu::conv3d_forward(&xs, c.xd(), &w, c.wd(), Some(&bias), c.s, c.p);
        assert_eq!(y1, y, "conv3d_forward did not take the Winograd kernel");
        let dy = values(y.len(), 1100 + n);
        let (dx_ref, _, _) = naive_grads(&c, &xs, &w, &dy);
        let dx = cpu::conv3d_input_grad(&dy, yd, &w, c.wd(), c.s, c.p, c.x);
        assert_close(&dx, &dx_ref, &format!("winograd input grad {c:?}"));
    }
    // Not for it: other kernels, strides or paddings, and thin layers.
    let d = [1, 8, 4, 4, 4];
    assert!(!winograd::applies(d, [8, 8, 3, 3, 3], [2; 3], [1; 3]));
    assert!(!winograd::applies(d, [8, 8, 3, 3, 3], [1; 3], [0; 3]));
    assert!(!winograd::applies(d, [8, 8, 1, 1, 1], [1; 3], [0; 3]));
    assert!(!winograd::applies(d, [4, 8, 3, 3, 3], [1; 3], [1; 3]));
    assert!(!winograd::applies(
        [1, 4, 4, 4, 4],
        [8, 4, 3, 3, 3],
        [1; 3],
        [1; 3]
    ));
    // Its input gradient: only where the conv kept the size at stride 1 and padding 1 (a
    // stride-2 conv of one voxel also keeps it), and not for a conv with 4 input channels
    // (the gradient's output channels).
    let w = [8, 8, 3, 3, 3];
    assert!(winograd::applies_input_grad(d, w, [1; 3], [1; 3], [4; 3]));
    assert!(!winograd::applies_input_grad(
        d,
        w,
        [1; 3],
        [1; 3],
        [5, 4, 4]
    ));
    assert!(!winograd::applies_input_grad(
        [1, 8, 1, 1, 1],
        w,
        [2; 3],
        [1; 3],
        [1; 3]
    ));
    assert!(!winograd::applies_input_grad(
        d,
        [8, 4, 3, 3, 3],
        [1; 3],
        [1; 3],
        [4; 3]
    ));
}
