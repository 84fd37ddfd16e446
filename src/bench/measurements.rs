//! What each measurement sets up and times: the building blocks and forward passes of the
//! main preset, the training step of each training preset, and whole-case prediction.

use std::str::FromStr;

use anyhow::{Context, Result, ensure};
use burn::tensor::{Device, Distribution, Tensor};

use super::export::{export_case, export_check};
use super::harness::{Bench, Spec, sync};
use super::{QUICK_CASE, case_id};
use crate::dataset::LoadedCase;
use crate::infer::{Predictor, SlidingWindow, Tta};
use crate::labels::LabelConvention;
use crate::modality::{Modality, Subset};
use crate::model::weights::load_weights;
use crate::model::{A2fseg, ModelConfig, ModelSummary, Preset};
use crate::phantom::PhantomGeometry;
use crate::preprocess::{PreprocessSettings, PreprocessedCase, preprocess_case};
use crate::train::TrainConfig;

impl Bench<'_> {
    /// conv_block, msfe_forward and forward_m1..4 of the main preset (and its export).
    pub fn main_preset(&mut self) -> Result<()> {
        let preset = self.opts.preset.clone();
        let cfg = self.config(&preset, true)?;
        let (model, _) = self.model(&preset, &cfg)?;
        if let Some(dir) = &self.opts.export {
            export_check(
                &dir.join(format!("check_{preset}.safetensors")),
                &model,
                &cfg,
                &self.device,
            )?;
        }
        let shape = cfg.patch_size;
        let [x, y, z] = shape;
        let summary = ModelSummary::new(&cfg);
        let input = |c: usize, dev: &Device| {
            Tensor::<5>::random([1, c, z, y, x], Distribution::Normal(0.0, 1.0), dev)
        };

        if self.wanted("conv_block", "conv_block") {
            let block = model.msfe.t1.encoder[0]
                .convs
                .last()
                .context("stage 0 has no convolution")?;
            let [cout, cin, k, _, _] = block.conv.weight.dims();
            let voxels = (x * y * z) as f64;
            let flops = 2.0 * (cin * cout * k * k * k) as f64 * voxels;
            let spec = Spec {
                id: "conv_block".into(),
                name: "conv_block",
                preset: preset.clone(),
                shape,
                subset: Subset::from_modalities([Modality::T1]),
                subsets: 1,
                flops: Some(flops),
            };
            let xin = input(cin, &self.device);
            self.measure(spec, |_| {
                let out = block.forward(xin.clone());
                sync(out)
            })?;
        }
        if self.wanted("msfe_forward", "msfe_forward") {
            let spec = Spec {
                id: "msfe_forward".into(),
                name: "msfe_forward",
                preset: preset.clone(),
                shape,
                subset: Subset::from_modalities([Modality::T1]),
                subsets: 1,
                flops: Some(2.0 * summary.macs_per_msfe as f64),
            };
            let xin = input(1, &self.device);
            self.measure(spec, |_| {
                let (f, _) = model.msfe.t1.forward(xin.clone());
                sync(f)
            })?;
        }
        for n in 1..=4 {
            let id = format!("forward_m{n}");
            if !self.wanted(&id, "forward") {
                continue;
            }
            let subset = Subset::from_modalities(Modality::ALL.into_iter().take(n));
            let spec = Spec {
                id,
                name: "forward",
                preset: preset.clone(),
                shape,
                subset,
                subsets: 1,
                flops: Some(2.0 * summary.macs_by_modalities[n - 1].macs as f64),
            };
            let inputs: Vec<(Modality, Tensor<5>)> = subset
                .modalities()
                .map(|m| (m, input(1, &self.device)))
                .collect();
            self.measure(spec, |_| {
                let out = model.forward(&inputs)?;
                sync(out.fused)
            })?;
        }
        Ok(())
    }

    /// The training step of `train` ([`train::step`]: forward of 4 modalities, loss,
    /// backward, gradient clipping, optimiser step) with the `preset` training preset's
    /// optimiser and learning rate, at its patch size.
    pub fn train_step(&mut self, preset: &str) -> Result<()> {
        let main = preset == self.opts.preset;
        let cfg = self.config(preset, main)?;
        let (_, bytes) = self.model(preset, &cfg)?;
        let ad = self.device.clone().autodiff();
        let model = load_weights::<A2fseg>(&cfg, bytes, &ad)?;
        let train_cfg = train_config(preset, &cfg)?;
        let summary = ModelSummary::new(&cfg);
        let spec = Spec {
            id: format!("train_step_{preset}"),
            name: "train_step",
            preset: preset.to_string(),
            shape: cfg.patch_size,
            subset: Subset::FULL,
            subsets: 1,
            flops: Some(3.0 * 2.0 * summary.macs_by_modalities[3].macs as f64),
        };
        self.time_train_step(spec, model, &train_cfg, &ad)
    }

    /// predict, evaluate_shared and evaluate_separate on the phantom case of `geometry`
    /// (ids from [`case_id`]).
    pub fn case_level(&mut self, geometry: PhantomGeometry) -> Result<()> {
        let preset = self.opts.preset.clone();
        let cfg = self.config(&preset, true)?;
        let (model, _) = self.model(&preset, &cfg)?;
        let dims = if self.opts.quick {
            QUICK_CASE
        } else {
            self.opts.case_dims
        };
        let case = phantom_case(self.opts.seed, dims, geometry)?;
        let predictor = Predictor::new(model, self.device.clone(), 0.5, Tta::OFF)?;
        let crop = case.crop.dims;
        let windows = SlidingWindow::new(cfg.patch_size, 0.5, Tta::OFF)?
            .windows(crop)
            .len();
        let summary = ModelSummary::new(&cfg);
        let forward_macs = |n: usize| summary.macs_by_modalities[n - 1].macs as f64;
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let base = |id: &str, name: &'static str, subsets: usize, flops: f64| Spec {
            id: case_id(id, geometry),
            name,
            preset: preset.clone(),
            shape: cfg.patch_size,
            subset: Subset::FULL,
            subsets,
            flops: Some(flops),
        };
        let extra = (geometry, dims, crop, windows);
        let wanted = |b: &Self, base: &str, name: &str| b.wanted(&case_id(base, geometry), name);

        let mut last = None;
        if wanted(self, "predict", "predict") {
            let flops = windows as f64 * 2.0 * forward_macs(4);
            let spec = base("predict", "predict", 1, flops);
            self.measure_case(spec, extra, |_| {
                last = Some(predictor.predict_case(&case, Subset::FULL)?);
                Ok(())
            })?;
        }
        if let Some(dir) = &self.opts.export {
            let probs = last.as_ref().map(|p| p.probabilities.as_slice());
            let file = format!("{}.safetensors", case_id("case", geometry));
            export_case(&dir.join(file), &case, probs)?;
        }
        if wanted(self, "evaluate_shared", "evaluate") {
            let flops = windows as f64 * 2.0 * shared_macs(&summary, &all);
            let spec = base("evaluate_shared", "evaluate", all.len(), flops);
            self.measure_case(spec, extra, |_| {
                predictor.predict_subsets(&case, &all)?;
                Ok(())
            })?;
        }
        if wanted(self, "evaluate_separate", "evaluate") {
            let macs: f64 = all.iter().map(|s| forward_macs(s.len())).sum();
            let spec = base(
                "evaluate_separate",
                "evaluate",
                all.len(),
                windows as f64 * 2.0 * macs,
            );
            self.measure_case(spec, extra, |_| {
                for s in &all {
                    predictor.predict_case(&case, *s)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The training preset `preset` with the model `model`, whose patch size is the measured
/// shape.
fn train_config(preset: &str, model: &ModelConfig) -> Result<TrainConfig> {
    let preset = Preset::from_str(preset).map_err(anyhow::Error::msg)?;
    let mut cfg = TrainConfig::preset(preset);
    cfg.model = model.clone();
    Ok(cfg)
}

/// MACs of one window of [`Predictor::predict_subsets`] over `subsets`: each needed MSFE
/// once without heads, then per subset its attention convs and the two fusion heads.
pub fn shared_macs(summary: &ModelSummary, subsets: &[Subset]) -> f64 {
    let body: u64 = summary
        .layers
        .iter()
        .filter(|l| l.name.starts_with("msfe.") && l.kind != "head")
        .map(|l| l.macs)
        .sum();
    let attention = summary
        .layers
        .iter()
        .find(|l| l.name.starts_with("fusion.attention."))
        .map_or(0, |l| l.macs);
    let heads: u64 = summary
        .layers
        .iter()
        .filter(|l| l.name.starts_with("fusion.") && l.kind == "head")
        .map(|l| l.macs)
        .sum();
    let union = subsets.iter().fold(0u8, |a, s| a | s.bits());
    let fusions: u64 = subsets
        .iter()
        .map(|s| s.len() as u64 * attention + heads)
        .sum();
    (Subset::from_bits(union).len() as u64 * body + fusions) as f64
}

/// Phantom case 0 of `seed` on `dims` in `geometry`, preprocessed as `predict` does.
pub fn phantom_case(
    seed: u64,
    dims: [usize; 3],
    geometry: PhantomGeometry,
) -> Result<PreprocessedCase> {
    ensure!(
        dims.iter().all(|&d| d >= 8),
        "the phantom case needs at least 8 voxels per axis, got {dims:?}"
    );
    let p = crate::phantom::generate_case_with(seed, 0, dims, geometry);
    let [t1, t1c, t2, flair] = p.images;
    let loaded = LoadedCase {
        id: p.id,
        geometry: p.geometry,
        images: [Some(t1), Some(t1c), Some(t2), Some(flair)],
        classes: Some(p.classes),
        convention: LabelConvention::Brats,
    };
    preprocess_case(&loaded, &PreprocessSettings::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brats_geometry_case_needs_8_paper_windows_the_old_one_4() {
        // The bench's default case (seed 0) on BraTS's grid, and the case of earlier runs.
        let patch = ModelConfig::preset("paper").unwrap().patch_size;
        let window = SlidingWindow::new(patch, 0.5, Tta::OFF).unwrap();
        let brats = phantom_case(0, crate::bench::CASE_DIMS, PhantomGeometry::Brats).unwrap();
        let [x, y, z] = brats.crop.dims;
        assert!(x.abs_diff(140) <= 10 && y.abs_diff(175) <= 10 && z.abs_diff(140) <= 10);
        assert_eq!(window.windows(brats.crop.dims).len(), 8, "{:?}", brats.crop);
        let fit = phantom_case(0, crate::bench::CASE_DIMS, PhantomGeometry::Fit).unwrap();
        assert_eq!(window.windows(fit.crop.dims).len(), 4, "{:?}", fit.crop);
    }

    #[test]
    fn shared_path_counts_each_msfe_once() {
        let cfg = ModelConfig::preset("small").unwrap();
        let s = ModelSummary::new(&cfg);
        let all: Vec<Subset> = Subset::all_nonempty().collect();
        let shared = shared_macs(&s, &all);
        let separate: f64 = all
            .iter()
            .map(|x| s.macs_by_modalities[x.len() - 1].macs as f64)
            .sum();
        // 32 MSFE runs against 4: the shared path is far cheaper but not free.
        assert!(shared > 4.0 * (s.macs_per_msfe as f64) * 0.9);
        assert!(separate / shared > 6.0, "{separate} / {shared}");
        let one = shared_macs(&s, &[Subset::FULL]);
        assert!(one < s.macs_by_modalities[3].macs as f64);
    }
}
