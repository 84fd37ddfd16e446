//! The kernels of [`super::cpu`] and [`super::norm`] as Burn backend extensions: implemented
//! for `Flex` (forward only) and for `Autodiff<Flex>` (forward plus a custom backward that
//! calls the same kernels for the input, weight and bias gradients).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, ExtensionType, Flex, backend_extension};
use burn::tensor::TensorData;

use super::cpu;
use super::norm::{self, NormStats};
use super::shape::Dims5;

/// An optional bias `[Co]`. (`Option<FloatTensor>` inputs do not pass the extension macro of
/// Burn 0.22.1: its generated dispatch does not unwrap them, so this enum stands in.)
#[derive(ExtensionType)]
pub enum Bias<B: Backend> {
    /// A bias tensor.
    Present(FloatTensor<B>),
    /// No bias.
    Absent,
}

impl<B: Backend> Bias<B> {
    /// The `Option` it stands for.
    pub fn into_option(self) -> Option<FloatTensor<B>> {
        match self {
            Bias::Present(b) => Some(b),
            Bias::Absent => None,
        }
    }
}

/// Fast 3D convolutions. Stride and padding are per axis `[d, h, w]`; dilation 1, one group.
#[backend_extension(Flex, Autodiff)]
pub trait FastConvBackend: Backend {
    /// `x` `[B, Ci, D, H, W]`, `weight` `[Co, Ci, kd, kh, kw]`, `bias` `[Co]` →
    /// `[B, Co, Do, Ho, Wo]`.
    fn fast_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        #[extension_type] bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> FloatTensor<Self>;

    /// `x` `[B, Ci, D, H, W]`, `weight` `[Ci, Co, kd, kh, kw]`, `bias` `[Co]` →
    /// `[B, Co, (D-1)·s + kd - 2p + op, ..]`.
    fn fast_conv_transpose3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        #[extension_type] bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
        padding_out: [usize; 3],
    ) -> FloatTensor<Self>;
}

/// A contiguous f32 view of a flex tensor (no copy if it already is one) and its dims.
fn contiguous(t: &FlexTensor) -> (FlexTensor, Dims5) {
    let c = t.to_contiguous();
    let dims = c.layout().shape().dims::<5>();
    (c, dims)
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fast conv kernels take contiguous f32 tensors")
}

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

/// A conv kernel of [`cpu`]: `(x, x dims, weight, weight dims, bias)` → `(y, y dims)`.
type ConvKernel<'a> =
    dyn FnOnce(&[f32], Dims5, &[f32], Dims5, Option<&[f32]>) -> (Vec<f32>, Dims5) + 'a;

/// Runs `kernel` on contiguous views of `x`, `w` and `bias`.
fn flex_conv(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    kernel: Box<ConvKernel<'_>>,
) -> FlexTensor {
    let (x, xd) = contiguous(x);
    let (w, wd) = contiguous(w);
    let bias = bias.map(FlexTensor::to_contiguous);
    let (y, yd) = kernel(slice(&x), xd, slice(&w), wd, bias.as_ref().map(slice));
    tensor(y, yd.to_vec())
}

/// The forward of a conv (`transposed` false) or transposed conv on flex tensors.
fn flex_forward(
    transposed: bool,
    stride: [usize; 3],
    padding: [usize; 3],
    padding_out: [usize; 3],
) -> impl Fn(&FlexTensor, &FlexTensor, Option<&FlexTensor>) -> FlexTensor {
    move |x, w, bias| {
        let kernel: Box<ConvKernel<'_>> = if transposed {
            Box::new(move |x, xd, w, wd, b| {
                cpu::conv_transpose3d_forward(x, xd, w, wd, b, stride, padding, padding_out)
            })
        } else {
            Box::new(move |x, xd, w, wd, b| cpu::conv3d_forward(x, xd, w, wd, b, stride, padding))
        };
        flex_conv(x, w, bias, kernel)
    }
}

impl FastConvBackend for Flex {
    fn fast_conv3d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> FlexTensor {
        flex_forward(false, stride, padding, [0; 3])(&x, &weight, bias.into_option().as_ref())
    }

    fn fast_conv_transpose3d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
        padding_out: [usize; 3],
    ) -> FlexTensor {
        flex_forward(true, stride, padding, padding_out)(&x, &weight, bias.into_option().as_ref())
    }
}

/// Which gradients one conv backward needs.
struct ConvGrads {
    x: bool,
    weight: bool,
    bias: bool,
}

/// `(dx, dw, db)` of `y = conv3d(x, w) + b` (`transposed` false) or of
/// `y = conv_transpose3d(x, w) + b` given `dy`, each only if asked for. For the transposed
/// conv the input gradient is a conv of `dy` with `w`, and the weight gradient a conv
/// weight gradient with `x` and `dy` swapped.
fn conv_grads(
    transposed: bool,
    x: &FlexTensor,
    w: &FlexTensor,
    dy: &FlexTensor,
    stride: [usize; 3],
    padding: [usize; 3],
    want: ConvGrads,
) -> (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>) {
    let (x, xd) = contiguous(x);
    let (w, wd) = contiguous(w);
    let (dy, dyd) = contiguous(dy);
    let (xs, ws, dys) = (slice(&x), slice(&w), slice(&dy));
    let dx = want.x.then(|| {
        let v = if transposed {
            let (v, vd) = cpu::conv3d_forward(dys, dyd, ws, wd, None, stride, padding);
            assert_eq!(vd, xd, "conv_transpose3d backward: input gradient shape");
            v
        } else {
            let spatial = [xd[2], xd[3], xd[4]];
            cpu::conv3d_input_grad(dys, dyd, ws, wd, stride, padding, spatial)
        };
        tensor(v, xd.to_vec())
    });
    let dw = want.weight.then(|| {
        let ((a, ad), (b, bd)) = if transposed {
            ((dys, dyd), (xs, xd))
        } else {
            ((xs, xd), (dys, dyd))
        };
        let v = cpu::conv3d_weight_grad(a, ad, b, bd, [wd[2], wd[3], wd[4]], stride, padding);
        tensor(v, wd.to_vec())
    });
    let db = want
        .bias
        .then(|| tensor(cpu::conv3d_bias_grad(dys, dyd), vec![dyd[1]]));
    (dx, dw, db)
}

/// The saved forward inputs and options of a conv node.
type ConvState = (NodeId, NodeId, [usize; 3], [usize; 3]);

/// Backward of a conv (`transposed` false) or transposed conv; its parents are the input,
/// the weight and, with `N` = 3, the bias.
#[derive(Debug)]
struct ConvBackward {
    transposed: bool,
}

/// Registers each computed gradient for its parent node (parents not tracked, or gradients
/// not computed, are skipped).
fn register_grads<const N: usize>(
    grads: &mut Gradients,
    results: [(Option<NodeId>, Option<FlexTensor>); N],
) {
    for (id, g) in results {
        if let (Some(id), Some(g)) = (id, g) {
            grads.register::<Flex>(id, g);
        }
    }
}

impl<const N: usize> Backward<Flex, N> for ConvBackward {
    type State = ConvState;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let ids = ops.parents.map(|n| n.map(|n| n.id));
        let bias_id = if N == 3 { ids[2] } else { None };
        let dy = grads.consume::<Flex>(&ops.node);
        let want = ConvGrads {
            x: ids[0].is_some(),
            weight: ids[1].is_some(),
            bias: bias_id.is_some(),
        };
        let (x_id, w_id, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
        let w = checkpointer.retrieve_node_output::<FlexTensor>(w_id);
        let (dx, dw, db) = conv_grads(self.transposed, &x, &w, &dy, stride, padding, want);
        register_grads(grads, [(ids[0], dx), (ids[1], dw), (bias_id, db)]);
    }
}

/// The autodiff node of a conv or transposed conv whose forward is `forward(x, w, bias)`.
fn tracked_conv<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: Option<FloatTensor<Autodiff<Flex, C>>>,
    stride: [usize; 3],
    padding: [usize; 3],
    transposed: bool,
    forward: impl FnOnce(&FlexTensor, &FlexTensor, Option<&FlexTensor>) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    let run = || {
        forward(
            x.primitive(),
            weight.primitive(),
            bias.as_ref().map(|b| b.primitive()),
        )
    };
    let backward = ConvBackward { transposed };
    match &bias {
        Some(b) => conv_node::<C, 3>(
            backward,
            [x.node(), weight.node(), b.node()],
            &x,
            &weight,
            (stride, padding),
            run,
        ),
        None => conv_node::<C, 2>(
            backward,
            [x.node(), weight.node()],
            &x,
            &weight,
            (stride, padding),
            run,
        ),
    }
}

/// The node of [`tracked_conv`] with parents `parents` (input, weight and maybe bias):
/// checkpoints the input and weight for the backward when tracked.
fn conv_node<C: CheckpointStrategy, const N: usize>(
    backward: ConvBackward,
    parents: [NodeGuard; N],
    x: &FloatTensor<Autodiff<Flex, C>>,
    weight: &FloatTensor<Autodiff<Flex, C>>,
    (stride, padding): ([usize; 3], [usize; 3]),
    run: impl FnOnce() -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    match backward.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(x);
            let w_state = prep.checkpoint(weight);
            prep.finish((x_state, w_state, stride, padding), run())
        }
        OpsKind::UnTracked(prep) => prep.finish(run()),
    }
}

impl<C: CheckpointStrategy> FastConvBackend for Autodiff<Flex, C> {
    fn fast_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> FloatTensor<Self> {
        let forward = flex_forward(false, stride, padding, [0; 3]);
        tracked_conv::<C>(
            x,
            weight,
            bias.into_option(),
            stride,
            padding,
            false,
            forward,
        )
    }

    fn fast_conv_transpose3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Bias<Self>,
        stride: [usize; 3],
        padding: [usize; 3],
        padding_out: [usize; 3],
    ) -> FloatTensor<Self> {
        let forward = flex_forward(true, stride, padding, padding_out);
        tracked_conv::<C>(
            x,
            weight,
            bias.into_option(),
            stride,
            padding,
            true,
            forward,
        )
    }
}

/// Instance normalisation with affine, fused with the LeakyReLU that follows it.
#[backend_extension(Flex, Autodiff)]
pub trait FastNormBackend: Backend {
    /// `x` `[B, C, D, H, W]`, `gamma` and `beta` `[C]` →
    /// `leaky_relu(gamma · (x − mean) / sqrt(var + eps) + beta, slope)`, statistics per
    /// `(b, c)` plane, same shape as `x`.
    fn fast_instance_norm_leaky_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: f64,
    ) -> FloatTensor<Self>;
}

/// `[B, C, N]` of a `[B, C, D, H, W]` tensor.
fn planes(t: &FlexTensor) -> [usize; 3] {
    let d = t.layout().shape().dims::<5>();
    [d[0], d[1], d[2] * d[3] * d[4]]
}

/// `x` with a contiguous, uniquely owned buffer that holds exactly its values, so a kernel
/// may overwrite it (no copy when `x` already is one: the usual case of a conv's output).
fn into_unique_contiguous(x: FlexTensor) -> FlexTensor {
    let n = x.layout().shape().num_elements();
    let exact = x.layout().contiguous_offsets() == Some((0, n))
        && x.bytes().len() == n * std::mem::size_of::<f32>();
    if x.is_unique() && exact {
        x
    } else {
        let (c, dims) = contiguous(&x);
        tensor(slice(&c).to_vec(), dims.to_vec())
    }
}

impl FastNormBackend for Flex {
    fn fast_instance_norm_leaky_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
        slope: f64,
    ) -> FlexTensor {
        let dims = planes(&x);
        let mut y = into_unique_contiguous(x);
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        norm::forward_in_place(
            y.storage_mut::<f32>(),
            dims,
            slice(&gamma),
            slice(&beta),
            eps,
            slope as f32,
        );
        y
    }
}

/// What the norm's backward needs: the input, γ, β (checkpointed), the plane statistics,
/// the dims `[B, C, N]` and the slope.
type NormState = (NodeId, NodeId, NodeId, NormStats, [usize; 3], f32);

/// Backward of [`FastNormBackend::fast_instance_norm_leaky_relu`].
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_g, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_id, g_id, b_id, stats, dims, slope) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(g_id);
        let beta = checkpointer.retrieve_node_output::<FlexTensor>(b_id);
        let (x, _) = contiguous(&x);
        let (dy, _) = contiguous(&dy);
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        let (dx, dg, db) = norm::backward(
            slice(&x),
            slice(&dy),
            dims,
            &stats,
            slice(&gamma),
            slice(&beta),
            slope,
            node_x.is_some(),
        );
        let channels = vec![dims[1]];
        let x_dims = x.layout().shape().dims::<5>().to_vec();
        let ids = [node_x, node_g, node_b].map(|n| n.map(|n| n.id));
        register_grads(
            grads,
            [
                (ids[0], dx.map(|v| tensor(v, x_dims))),
                (ids[1], Some(tensor(dg, channels.clone()))),
                (ids[2], Some(tensor(db, channels))),
            ],
        );
    }
}

impl<C: CheckpointStrategy> FastNormBackend for Autodiff<Flex, C> {
    fn fast_instance_norm_leaky_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: f64,
    ) -> FloatTensor<Self> {
        let run = |x: &FlexTensor, g: &FlexTensor, b: &FlexTensor| {
            let dims = planes(x);
            let (x, _) = contiguous(x);
            let (g, b) = (g.to_contiguous(), b.to_contiguous());
            let (y, stats) =
                norm::forward(slice(&x), dims, slice(&g), slice(&b), eps, slope as f32);
            (
                tensor(y, x.layout().shape().dims::<5>().to_vec()),
                stats,
                dims,
            )
        };
        match NormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let g_state = prep.checkpoint(&gamma);
                let b_state = prep.checkpoint(&beta);
                let (y, stats, dims) = run(x.primitive(), gamma.primitive(), beta.primitive());
                prep.finish((x_state, g_state, b_state, stats, dims, slope as f32), y)
            }
            OpsKind::UnTracked(prep) => {
                let (y, _, _) = run(x.primitive(), gamma.primitive(), beta.primitive());
                prep.finish(y)
            }
        }
    }
}
