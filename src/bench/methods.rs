//! The measurements of `--arch`: for each method, the forward pass from all four modalities
//! (`forward_{arch}`: [`crate::model::Network::encode`] of each modality, then
//! [`crate::model::Network::decode`], as inference runs it) and its training step
//! (`train_step_{arch}_{preset}`: [`crate::train::step`] with the method's recipe at the
//! preset, at the preset's patch size). Written once for every method through
//! [`crate::with_network!`], so a new method is measured as soon as it is registered.

use anyhow::{Context, Result};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::export::class_pattern;
use super::harness::{Bench, Spec, sync};
use crate::modality::{Modality, Subset};
use crate::model::{Arch, Network, Preset, TrainInputs};
use crate::train::step::{build_optimizer, stable_param_ids};
use crate::train::{self, TrainConfig};

impl Bench<'_> {
    /// `forward_{arch}` at the main preset and `train_step_{arch}_{p}` for every training
    /// preset, of method `arch`.
    pub fn method(&mut self, arch: Arch) -> Result<()> {
        crate::with_network!(arch, N => self.method_of::<N>(arch))
    }

    fn method_of<N: Network>(&mut self, arch: Arch) -> Result<()> {
        let preset = self.opts.preset.clone();
        let id = format!("forward_{arch}");
        if self.wanted(&id, "forward") {
            let cfg = self.config_of(arch, &preset, true)?;
            self.device.seed(self.opts.seed);
            let model = N::init(&cfg, &self.device);
            let summary = N::describe(&cfg);
            let inputs = four_images(cfg.patch_size, &self.device);
            let spec = Spec {
                id,
                name: "forward",
                preset: preset.clone(),
                shape: cfg.patch_size,
                subset: Subset::FULL,
                subsets: 1,
                flops: summary
                    .macs_by_modalities
                    .get(3)
                    .map(|m| 2.0 * m.macs as f64),
            };
            self.measure(spec, |_| {
                let encodings = inputs
                    .iter()
                    .map(|(m, t)| Ok((*m, model.encode(*m, t.clone())?)))
                    .collect::<Result<Vec<_>>>()?;
                sync(model.decode(&encodings)?.logits)
            })?;
        }
        for p in self.opts.train_presets.clone() {
            let id = format!("train_step_{arch}_{p}");
            if self.wanted(&id, "train_step") {
                self.method_train_step::<N>(arch, &p, id)?;
            }
        }
        Ok(())
    }

    /// [`train::step`] of `N` with its recipe at `preset`.
    fn method_train_step<N: Network>(
        &mut self,
        arch: Arch,
        preset: &str,
        id: String,
    ) -> Result<()> {
        let main = preset == self.opts.preset;
        let cfg = self.config_of(arch, preset, main)?;
        let parsed: Preset = preset.parse().map_err(anyhow::Error::msg)?;
        let mut train_cfg = TrainConfig::recipe(arch, parsed);
        train_cfg.model = cfg.clone();
        let ad = self.device.clone().autodiff();
        let model = crate::model::device::init_seeded::<N>(&cfg, self.opts.seed, &ad);
        let macs = N::describe(&cfg).macs_by_modalities.get(3).map(|m| m.macs);
        let spec = Spec {
            id,
            name: "train_step",
            preset: preset.to_string(),
            shape: cfg.patch_size,
            subset: Subset::FULL,
            subsets: 1,
            flops: macs.map(|m| 3.0 * 2.0 * m as f64),
        };
        self.time_train_step(spec, model, &train_cfg, &ad)
    }

    /// Times [`train::step`] (the step `train` runs) of `model` on the autodiff device `ad`
    /// with `train_cfg`'s optimiser and learning rate: four modalities of N(0, 1) noise
    /// (seeded) at the model's patch size and a fixed class pattern.
    pub fn time_train_step<N: Network>(
        &mut self,
        spec: Spec,
        model: N,
        train_cfg: &TrainConfig,
        ad: &Device,
    ) -> Result<()> {
        let mut slot = Some(stable_param_ids(model));
        let mut optim = build_optimizer(train_cfg);
        let [x, y, z] = train_cfg.model.patch_size;
        ad.seed(self.opts.seed.wrapping_add(1));
        let images = four_images([x, y, z], ad);
        let classes = Tensor::<4, Int>::from_data(
            TensorData::new(class_pattern([x, y, z]), [1, z, y, x]),
            ad,
        );
        self.measure(spec, |_| {
            let model = slot
                .take()
                .context("the model is gone after a failed step")?;
            let inputs = TrainInputs::new(Subset::FULL, images.clone(), classes.clone(), 0);
            let (model, _) = train::step(model, &mut optim, inputs, train_cfg, train_cfg.lr)?;
            slot = Some(model);
            Ok(())
        })
    }
}

/// One `[1, 1, z, y, x]` image of N(0, 1) noise per modality, from `device`'s generator.
pub(super) fn four_images([x, y, z]: [usize; 3], device: &Device) -> Vec<(Modality, Tensor<5>)> {
    Modality::ALL
        .into_iter()
        .map(|m| {
            let t = Tensor::<5>::random([1, 1, z, y, x], Distribution::Normal(0.0, 1.0), device);
            (m, t)
        })
        .collect()
}
