//! Losses (paper Eq. 4–5 with nnU-Net's deep supervision) and the conversion of logits to
//! probabilities and class maps.
//!
//! Per head: cross-entropy (BCE with logits for `regions`) + soft Dice, the Dice computed
//! over the whole batch as nnU-Net's batch Dice, `1 − (2·Σ p·y + s) / (Σ p + Σ y + s)` per
//! channel, averaged over channels (foreground classes only for `classes`). The smoothing
//! term `s` keeps a region absent from a patch finite (its Dice is ≈ 0 with a vanishing
//! gradient, so the cross-entropy alone pushes its probabilities down).
//! Total = Σ_m Σ_l w_l L(MSFE_m head l) + L_avg + L_adp (Eq. 5); targets of level `l` are the
//! class map downsampled by nearest neighbour (every 2^l-th voxel).

use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::{Int, Tensor, s};

use super::config::{Fusion, ModelConfig, Targets};
use super::network::A2fsegOutput;
use crate::labels::TumourClass;

/// The loss of one forward pass.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// The differentiable total (Eq. 5), shape `[1]`.
    pub total: Tensor<1>,
    /// Σ_m of the MSFE losses (deep-supervision weighted), for logging.
    pub modality: f32,
    /// Loss of the average-fusion head.
    pub average: f32,
    /// Loss of the final head (0 for `average` fusion, whose final head is the average one).
    pub adaptive: f32,
}

/// The loss of `output` against `classes` `[B, D, H, W]` (TumourClass indices 0..=3).
pub fn loss(cfg: &ModelConfig, output: &A2fsegOutput, classes: Tensor<4, Int>) -> LossParts {
    let weights = cfg.deep_supervision_weights();
    let levels = output
        .per_modality
        .iter()
        .map(|(_, l)| l.len())
        .max()
        .unwrap_or(1);
    let targets: Vec<Tensor<4, Int>> = (0..levels)
        .map(|l| downsample_nearest(classes.clone(), l))
        .collect();
    let mut modality: Option<Tensor<1>> = None;
    for (_, logits) in &output.per_modality {
        for (l, lg) in logits.iter().enumerate() {
            let w = weights.get(l).copied().unwrap_or(0.0);
            if w == 0.0 {
                continue;
            }
            let term = head_loss(cfg, lg.clone(), targets[l].clone()).mul_scalar(w);
            modality = Some(match modality {
                Some(acc) => acc + term,
                None => term,
            });
        }
    }
    let average = head_loss(cfg, output.average.clone(), targets[0].clone());
    let adaptive = if cfg.fusion == Fusion::Average {
        None
    } else {
        Some(head_loss(cfg, output.fused.clone(), targets[0].clone()))
    };
    let mut total = average.clone();
    if let Some(m) = &modality {
        total = total + m.clone();
    }
    if let Some(a) = &adaptive {
        total = total + a.clone();
    }
    let scalar = |t: &Option<Tensor<1>>| t.as_ref().map_or(0.0, |t| t.clone().into_scalar::<f32>());
    LossParts {
        modality: scalar(&modality),
        average: average.clone().into_scalar::<f32>(),
        adaptive: scalar(&adaptive),
        total,
    }
}

/// Nearest-neighbour downsampling of a class map `[B, D, H, W]` by `2^level`.
pub fn downsample_nearest(classes: Tensor<4, Int>, level: usize) -> Tensor<4, Int> {
    if level == 0 {
        return classes;
    }
    let f = 1isize << level;
    classes.slice(s![.., ..;f, ..;f, ..;f])
}

/// Cross-entropy + soft Dice of one head: `logits` `[B, K, D, H, W]`, `classes` `[B, D, H, W]`.
pub fn head_loss(cfg: &ModelConfig, logits: Tensor<5>, classes: Tensor<4, Int>) -> Tensor<1> {
    let [b, k, d, h, w] = logits.dims();
    let y = target_channels(cfg.targets, classes);
    let voxels = (b * d * h * w) as f64;
    let (ce, probs, dice_from) = match cfg.targets {
        Targets::Regions => {
            // BCE with logits, stable form: max(x, 0) − x·y + log(1 + exp(−|x|)).
            let x = logits;
            let bce = x.clone().clamp_min(0.0) - x.clone() * y.clone()
                + x.clone().abs().neg().exp().log1p();
            (bce.sum().div_scalar(voxels * k as f64), sigmoid(x), 0)
        }
        Targets::Classes => {
            let logp = log_softmax(logits, 1);
            let ce = (logp.clone() * y.clone()).sum().neg().div_scalar(voxels);
            (ce, logp.exp(), 1)
        }
    };
    let probs = probs.slice(s![.., dice_from..]);
    let y = y.slice(s![.., dice_from..]);
    let kd = k - dice_from;
    let per_channel = |t: Tensor<5>| t.swap_dims(0, 1).reshape([kd, b * d * h * w]).sum_dim(1);
    let inter = per_channel(probs.clone() * y.clone());
    let denom = per_channel(probs) + per_channel(y);
    let smooth = cfg.dice_smooth;
    let dice = inter.mul_scalar(2.0).add_scalar(smooth) / denom.add_scalar(smooth);
    let dice_loss = dice.mean().neg().add_scalar(1.0);
    ce + dice_loss
}

/// Lower clamp of the probabilities in [`weighted_ce_soft_dice`]'s cross-entropy.
const WEIGHTED_CE_CLAMP: f64 = 0.005;
/// Smoothing of [`weighted_ce_soft_dice`]'s Dice denominator.
const WEIGHTED_DICE_EPS: f64 = 1e-7;

/// The loss of RFNet and mmFormer for 4-class softmax `probs` `[B, 4, D, H, W]` and
/// `classes` `[B, D, H, W]`, shape `[1]`: a class-weighted cross-entropy plus a soft Dice.
///
/// - Cross-entropy: `mean_{b,voxels} Σ_c −w_{b,c} · y_c · ln(max(p_c, 0.005))`, where the
///   weight of class `c` in sample `b` is `1 − (voxels of c in b) / (voxels of b)`: rare
///   classes weigh more, and the clamp bounds the penalty of a confident miss.
/// - Dice: `1 − mean_c 2·Σ p_c·y_c / (Σ p_c + Σ y_c + 1e-7)`, the sums over the whole batch,
///   background included.
pub fn weighted_ce_soft_dice(probs: Tensor<5>, classes: Tensor<4, Int>) -> Tensor<1> {
    let [b, k, d, h, w] = probs.dims();
    let n = d * h * w;
    let y = target_channels(Targets::Classes, classes);
    // Per-sample class fractions [B, K, 1, 1, 1] → weights.
    let fraction = y
        .clone()
        .reshape([b, k, n])
        .sum_dim(2)
        .div_scalar(n as f64)
        .reshape([b, k, 1, 1, 1]);
    let weight = fraction.neg().add_scalar(1.0);
    let log_p = probs.clone().clamp_min(WEIGHTED_CE_CLAMP).log();
    let ce = (weight * y.clone() * log_p)
        .sum()
        .neg()
        .div_scalar((b * n) as f64);
    let per_class = |t: Tensor<5>| t.swap_dims(0, 1).reshape([k, b * n]).sum_dim(1);
    let inter = per_class(probs.clone() * y.clone()).mul_scalar(2.0);
    let denom = per_class(probs) + per_class(y);
    let dice = inter / denom.add_scalar(WEIGHTED_DICE_EPS);
    ce + dice.mean().neg().add_scalar(1.0)
}

/// Float targets `[B, K, D, H, W]` from a class map `[B, D, H, W]`: the regions WT, TC, ET
/// or the one-hot classes.
pub fn target_channels(targets: Targets, classes: Tensor<4, Int>) -> Tensor<5> {
    let c = classes.unsqueeze_dim::<5>(1);
    let is = |v: i64| c.clone().equal_elem(v);
    let chans = match targets {
        Targets::Regions => vec![c.clone().greater_elem(0), is(1).bool_or(is(3)), is(3)],
        Targets::Classes => (0..4).map(is).collect(),
    };
    Tensor::cat(chans.into_iter().map(|t| t.float()).collect(), 1)
}

/// Probabilities from logits `[B, K, D, H, W]`: sigmoid per region or softmax over classes.
pub fn probabilities(cfg: &ModelConfig, logits: Tensor<5>) -> Tensor<5> {
    match cfg.targets {
        Targets::Regions => sigmoid(logits),
        Targets::Classes => softmax(logits, 1),
    }
}

/// Class maps (TumourClass indices) from probabilities `[B, K, D, H, W]`, flattened in
/// `[B, D, H, W]` order (x fastest, as `Grid`). Regions: WT, TC, ET each above 0.5, nested
/// as BraTS defines them (ET wins, then TC → NCR, then WT → edema). Classes: arg max.
pub fn decode_classes(cfg: &ModelConfig, probs: Tensor<5>) -> Vec<u8> {
    let [b, k, d, h, w] = probs.dims();
    let n = d * h * w;
    let data: Vec<f32> = probs
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("probabilities are f32");
    let mut out = vec![0u8; b * n];
    for bi in 0..b {
        let base = bi * k * n;
        let at = |c: usize, v: usize| data[base + c * n + v];
        for v in 0..n {
            out[bi * n + v] = match cfg.targets {
                Targets::Regions => {
                    TumourClass::from_regions(at(0, v) > 0.5, at(1, v) > 0.5, at(2, v) > 0.5)
                        .index() as u8
                }
                Targets::Classes => {
                    let mut best = 0;
                    for c in 1..k {
                        if at(c, v) > at(best, v) {
                            best = c;
                        }
                    }
                    best as u8
                }
            };
        }
    }
    out
}
