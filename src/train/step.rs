//! One training step — forward, loss, backward, gradient-norm clipping, optimiser step —
//! shared by [`crate::train::train`] and the `train_step` measurement of `a2fseg bench`, so
//! the benchmark times exactly what training runs. Also the optimiser the configuration
//! names and the stable parameter ids that let its state reattach to reloaded weights.

use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{OptimizerKind, TrainConfig};
use super::loader::Batch;
use super::rng;
use crate::model::{Network, TrainInputs};

/// The losses of one step: the total, then the terms the network names
/// ([`Network::loss_terms`]), in that order.
pub type StepLosses = Vec<f64>;

/// `batch` as tensors on `device`, with the step's noise seed derived from the run seed
/// `seed` and the batch's epoch and iteration.
pub fn batch_tensors(batch: &Batch, seed: u64, device: &Device) -> TrainInputs {
    let shape = batch.image_shape();
    let inputs = batch
        .images
        .iter()
        .map(|(m, v)| {
            (
                *m,
                Tensor::<5>::from_data(TensorData::new(v.clone(), shape), device),
            )
        })
        .collect();
    let classes: Vec<i64> = batch.classes.iter().map(|&c| c as i64).collect();
    let classes =
        Tensor::<4, Int>::from_data(TensorData::new(classes, batch.class_shape()), device);
    TrainInputs {
        subset: batch.subset,
        sample_subsets: batch.sample_subsets.clone(),
        images: inputs,
        classes,
        noise_seed: rng::key(
            seed,
            &[rng::STEP, batch.epoch as u64, batch.iteration as u64],
        ),
        epoch: batch.epoch,
    }
}

/// One optimiser step of `model` (on an autodiff device) on `inputs` at learning rate `lr`,
/// with the gradients clipped to `cfg.grad_clip_norm`; returns the updated model and the
/// losses. Fails only if the forward pass does (an input the model cannot take).
pub fn step<N: Network>(
    model: N,
    optim: &mut ModuleOptimizer,
    inputs: TrainInputs,
    cfg: &TrainConfig,
    lr: f64,
) -> Result<(N, StepLosses)> {
    let loss = model.training_loss(inputs)?;
    let total = loss.total.clone().into_scalar::<f32>() as f64;
    let grads = loss.total.backward();
    let mut grads = GradientsParams::from_grads(grads, &model);
    clip_global_norm(&model, &mut grads, cfg.grad_clip_norm);
    let model = optim.step(lr, model, grads);
    let mut losses = Vec::with_capacity(1 + loss.terms.len());
    losses.push(total);
    losses.extend(loss.terms);
    Ok((model, losses))
}

/// The optimiser `cfg` names (Adam with PyTorch's ε, or SGD with momentum), with its weight
/// decay.
pub fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_amsgrad(cfg.amsgrad)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: cfg.momentum,
                dampening: 0.0,
                nesterov: cfg.nesterov,
            }))
            .with_weight_decay(decay)
            .init(),
    }
}

/// Gives every parameter an id derived from its module path and position, so that a
/// reloaded model's parameters match the optimiser state saved with it (Burn draws fresh
/// random ids on every initialisation).
pub fn stable_param_ids<M: Module>(module: M) -> M {
    struct Ids {
        path: Vec<String>,
        index: u64,
    }
    impl ModuleMapper for Ids {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, value, mapper) = param.consume();
            // FNV-1a of the path, then mixed with the visit index.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.path.join(".").bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            let id = rng::key(h, &[self.index]);
            self.index += 1;
            Param::from_mapped_value(ParamId::from(id), value, mapper)
        }
    }
    module.map(&mut Ids {
        path: Vec::new(),
        index: 0,
    })
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_`; `max_norm` ≤ 0: no clipping); returns the norm before
/// clipping.
fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares {
        grads: &*grads,
        acc: None,
    };
    module.visit(&mut sum);
    let norm = sum
        .acc
        .map_or(0.0, |a| (a.into_scalar::<f32>() as f64).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    use super::*;

    /// The global L2 norm of `grads` over the parameters of `module`.
    fn grad_norm<M: Module>(module: &M, grads: &mut GradientsParams) -> f64 {
        clip_global_norm(module, grads, 0.0)
    }

    #[test]
    fn clipping_scales_the_global_norm_down_to_the_limit_only() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let linear = LinearConfig::new(6, 3).init(&device);
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let grads_of = || {
            let loss = linear.forward(x.clone()).square().sum();
            GradientsParams::from_grads(loss.backward(), &linear)
        };
        let mut grads = grads_of();
        let norm = grad_norm(&linear, &mut grads);
        assert!(norm > 1.0, "{norm}");

        // Above the norm: nothing changes.
        let mut unclipped = grads_of();
        assert_eq!(clip_global_norm(&linear, &mut unclipped, norm * 2.0), norm);
        assert!((grad_norm(&linear, &mut unclipped) - norm).abs() < 1e-6 * norm);

        // Below it: the norm becomes the limit, and the result is the norm before.
        let mut clipped = grads_of();
        let before = clip_global_norm(&linear, &mut clipped, 0.5);
        assert!((before - norm).abs() < 1e-9, "{before} {norm}");
        let after = grad_norm(&linear, &mut clipped);
        assert!((after - 0.5).abs() < 1e-4, "{after}");
    }
}
