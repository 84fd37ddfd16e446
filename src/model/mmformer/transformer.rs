//! mmFormer's transformer from Burn's parts (`MultiHeadAttention`, `LayerNorm`, `Linear`,
//! `Gelu`), and the training dropout drawn from the step's seed.
//!
//! One layer, on tokens `x` `[B, N, E]` and a positional embedding `pos` `[1, N, E]`:
//!
//! ```text
//! x = x + pos
//! x = x + drop(drop(MHA(LN(x))))          (the official attention's proj_drop, then PreNormDrop's)
//! x = x + drop(W2 · drop(GELU(W1 · LN(x))))
//! ```
//!
//! Multi-head attention is `softmax(Q Kᵀ / √(E/heads)) V` per head with Q, K, V linear maps
//! without bias (the official `qkv` has none) and an output map with bias. The official code
//! also drops attention weights after the softmax; Burn's attention draws that dropout from
//! the device's RNG, which would break bit-identical resumes, so it is off here (a documented
//! deviation) and every other dropout of the layer is applied, from [`Dropout`].

use std::cell::Cell;

use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::super::arch::TrainInputs;
use super::settings::MmformerConfig;

/// Seeded dropout for one training step: every call draws a fresh keep-mask from its own
/// stream of [`TrainInputs::uniform`] (streams `base, base + 1, …` in call order, the same in
/// every run and resume of the step). Kept values are scaled by `1 / (1 − rate)`.
pub struct Dropout<'a> {
    step: &'a TrainInputs,
    rate: f64,
    next: Cell<u64>,
}

impl<'a> Dropout<'a> {
    /// Dropout at `rate` from `step`'s seed, streams starting at `base`.
    pub fn new(step: &'a TrainInputs, rate: f64, base: u64) -> Self {
        Dropout {
            step,
            rate,
            next: Cell::new(base),
        }
    }

    /// `x` with each element zeroed with probability `rate`, the others scaled.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.rate == 0.0 {
            return x;
        }
        let stream = self.next.get();
        self.next.set(stream + 1);
        let u = self.step.uniform(stream, x.dims(), &x.device());
        let keep = u.greater_equal_elem(self.rate).float();
        x * keep.mul_scalar(1.0 / (1.0 - self.rate))
    }
}

/// `x` through `drop`, or unchanged without one (inference).
fn maybe<const D: usize>(drop: Option<&Dropout>, x: Tensor<D>) -> Tensor<D> {
    match drop {
        Some(d) => d.apply(x),
        None => x,
    }
}

/// One pre-LayerNorm transformer layer.
///
/// Tensors: `attention_norm.{gamma,beta}` `[E]`; `attention.{query,key,value}.weight`
/// `[E, E]` (Burn's `[in, out]`: `y = x · W`), `attention.output.weight` `[E, E]` and
/// `.bias` `[E]`; `mlp_norm.{gamma,beta}` `[E]`; `mlp_in.weight` `[E, mlp]`, `.bias`
/// `[mlp]`; `mlp_out.weight` `[mlp, E]`, `.bias` `[E]`.
#[derive(Module, Debug)]
pub struct TransformerLayer {
    /// LayerNorm before the attention.
    pub attention_norm: LayerNorm,
    /// Multi-head self-attention (its own dropout off, see the module documentation).
    pub attention: MultiHeadAttention,
    /// LayerNorm before the MLP.
    pub mlp_norm: LayerNorm,
    /// MLP `E → mlp`.
    pub mlp_in: Linear,
    /// The MLP's activation (exact GELU).
    pub gelu: Gelu,
    /// MLP `mlp → E`.
    pub mlp_out: Linear,
}

impl TransformerLayer {
    fn new(cfg: &MmformerConfig, device: &Device) -> Self {
        let e = cfg.embedding;
        TransformerLayer {
            attention_norm: LayerNormConfig::new(e).init(device),
            attention: MultiHeadAttentionConfig::new(e, cfg.heads)
                .with_dropout(0.0)
                .with_query_bias(false)
                .with_key_bias(false)
                .with_value_bias(false)
                .init(device),
            mlp_norm: LayerNormConfig::new(e).init(device),
            mlp_in: LinearConfig::new(e, cfg.mlp).init(device),
            gelu: Gelu::new(),
            mlp_out: LinearConfig::new(cfg.mlp, e).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>, drop: Option<&Dropout>) -> Tensor<3> {
        let h = self
            .attention
            .forward(MhaInput::self_attn(self.attention_norm.forward(x.clone())))
            .context;
        let x = x + maybe(drop, maybe(drop, h));
        let h = self
            .gelu
            .forward(self.mlp_in.forward(self.mlp_norm.forward(x.clone())));
        let h = self.mlp_out.forward(maybe(drop, h));
        x + maybe(drop, h)
    }
}

/// A transformer of `depth` layers; the positional embedding is added before every layer.
#[derive(Module, Debug)]
pub struct Transformer {
    /// `layers.{j}`.
    pub layers: Vec<TransformerLayer>,
}

impl Transformer {
    /// A freshly initialised transformer of `cfg.depth` layers.
    pub fn new(cfg: &MmformerConfig, device: &Device) -> Self {
        Transformer {
            layers: (0..cfg.depth)
                .map(|_| TransformerLayer::new(cfg, device))
                .collect(),
        }
    }

    /// Tokens `[B, N, E]` with the positional embedding `pos` `[1, N, E]` → `[B, N, E]`;
    /// `drop` in training, `None` at inference.
    pub fn forward(&self, x: Tensor<3>, pos: Tensor<3>, drop: Option<&Dropout>) -> Tensor<3> {
        let [b, n, e] = x.dims();
        let pos = pos.expand([b, n, e]);
        self.layers
            .iter()
            .fold(x, |x, layer| layer.forward(x + pos.clone(), drop))
    }
}
