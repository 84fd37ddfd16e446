//! Whole-case prediction with a trained model: the cropped case is covered by the plan the
//! predictor's [`WindowChoice`] selects (sliding window or one whole-volume pass, see
//! [`super::plan`]), then pasted back into the original grid.
//!
//! The network is any method behind the [`Segmenter`] seam.
//! - [`Predictor::predict_case`]: one subset;
//! - [`Predictor::predict_subsets`]: several subsets of the same case at once. A method's
//!   per-modality encoding does not depend on the other modalities, so each window encodes
//!   every needed modality once ([`Segmenter::encode`]; A2FSeg: its MSFE) and then decodes
//!   all subsets from those encodings ([`Segmenter::decode_subsets`]; A2FSeg: the attention
//!   convolutions and heads run once per feature map, see
//!   [`crate::model::fusion::adaptive_subsets`]).
//!
//! Only the modalities of a subset are ever given to the network (how a method represents
//! the missing ones is its own business). Inference runs on a device without autodiff: no
//! graph is recorded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::prelude::*;

use super::plan::{self, Plan, PlanCost, WindowChoice};
use super::postprocess::Postprocess;
use super::tta::Tta;
use super::window::SlidingWindow;
use crate::config_file::{ConfigFile, Part};
use crate::labels::Region;
use crate::modality::{Modality, Subset};
use crate::model::{self, ModelConfig, Network, Segmenter, Targets};
use crate::preprocess::{CropBox, PreprocessSettings, PreprocessedCase};
use crate::volume::Grid;

/// The model folder to load for `path`: `path` itself when it holds `config.json` (a model
/// folder), else `path/checkpoints/best` (a training run folder).
pub fn resolve_model_dir(path: &Path) -> Result<PathBuf> {
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let best = path.join("checkpoints").join("best");
    if best.join("config.json").is_file() {
        return Ok(best);
    }
    if !path.exists() {
        bail!("model folder {} does not exist", path.display());
    }
    bail!(
        "{} is neither a model folder (config.json + model.safetensors) nor a training run \
         folder with checkpoints/best",
        path.display()
    )
}

/// The preprocessing a model was trained with: the `[preprocess]` table of the
/// `train.toml` that training saves in every checkpoint folder (`model_dir` is a model
/// folder as [`resolve_model_dir`] returns). A model folder without `train.toml` (or one
/// written before the table existed) was trained with the defaults, which are returned.
pub fn model_preprocess_settings(model_dir: &Path) -> Result<PreprocessSettings> {
    let path = model_dir.join("train.toml");
    if !path.is_file() {
        return Ok(PreprocessSettings::default());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let origin = path.display().to_string();
    let (file, table) = ConfigFile::parse(&origin, &text)?;
    match table.get("preprocess") {
        Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| {
            file.error_at(
                "preprocess",
                Part::Value,
                &format!("preprocess: {}", e.message()),
            )
        }),
        None => Ok(PreprocessSettings::default()),
    }
}

/// The prediction of one case from one modality subset.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The modalities the prediction used.
    pub subset: Subset,
    /// [`crate::labels::TumourClass`] indices on the case's original (uncropped) grid.
    pub classes: Grid<u8>,
    /// Probabilities of WT, TC and ET (in that order) on the cropped grid.
    pub probabilities: Vec<Grid<f32>>,
    /// The adaptive fusion's attention map Ŵ_m per modality of the subset (mean over feature
    /// channels) on the cropped grid; empty unless requested and the model fuses adaptively.
    pub attention: Vec<(Modality, Grid<f32>)>,
    /// Where the cropped grid sits in the original grid.
    pub crop: CropBox,
    /// Dims of the original grid.
    pub full_dims: [usize; 3],
    /// The inference plan that produced it, with its estimated cost.
    pub plan: PlanCost,
}

impl Prediction {
    /// The WT, TC, ET probabilities on the original grid (zero outside the crop box).
    pub fn probabilities_full(&self) -> Vec<Grid<f32>> {
        self.probabilities
            .iter()
            .map(|g| self.crop.uncrop(g, self.full_dims, 0.0))
            .collect()
    }

    /// The attention maps on the original grid (zero outside the crop box).
    pub fn attention_full(&self) -> Vec<(Modality, Grid<f32>)> {
        self.attention
            .iter()
            .map(|(m, g)| (*m, self.crop.uncrop(g, self.full_dims, 0.0)))
            .collect()
    }
}

/// A loaded model ready to segment preprocessed cases.
pub struct Predictor {
    /// The network (on `device`, without autodiff); its configuration is [`Self::config`].
    pub model: Box<dyn Segmenter>,
    /// Where the network runs.
    pub device: Device,
    /// Step between windows as a fraction of the patch (default 0.5).
    pub step: f64,
    /// The inference plan: sliding window, whole volume, or the cheaper that fits under
    /// [`Self::max_memory`] (see [`super::plan`]).
    pub window: WindowChoice,
    /// Memory cap in bytes of [`WindowChoice::Auto`] (default: [`plan::default_max_memory`]).
    pub max_memory: u64,
    /// Test-time mirroring.
    pub tta: Tta,
    /// Whether predictions keep the adaptive fusion's attention maps.
    pub keep_attention: bool,
    /// How cases are preprocessed for this model: the training run's settings when the
    /// model folder records them ([`model_preprocess_settings`]), else the defaults.
    pub preprocess: PreprocessSettings,
    /// Post-processing of the label maps: the model folder's `postprocess.json` when it
    /// has one, else the brain mask alone (see [`super::postprocess`]).
    pub postprocess: Postprocess,
    /// Asked before every network pass (each window, each mirrored pass); an error stops
    /// the prediction with that error. How an embedding host (the Python package) lets
    /// Ctrl-C interrupt a long prediction; `None` for the command line, where Ctrl-C ends
    /// the process.
    pub interrupt: Option<Interrupt>,
}

/// A check for a request to stop (see [`Predictor::interrupt`]).
pub type Interrupt = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// The cropped dims and the images fed to the network, in canonical order.
type CaseInputs<'a> = ([usize; 3], Vec<(Modality, &'a Grid<f32>)>);

/// Channel layout of the sliding window's output for a list of subsets.
struct Layout {
    /// Per subset: first channel of its K probability channels, first channel of its
    /// attention maps, and their number (0 without attention).
    offsets: Vec<(usize, usize, usize)>,
    channels: usize,
}

impl Predictor {
    /// Wraps an already built network of any method; fails with one line when its feature
    /// maps cannot fit the device's buffers.
    pub fn new(model: impl Network, device: Device, step: f64, tta: Tta) -> Result<Self> {
        model::device::check_model_fits(Network::config(&model), 1, &device)?;
        let p = Predictor {
            model: Box::new(model),
            device,
            step,
            window: WindowChoice::default(),
            max_memory: plan::default_max_memory(),
            tta,
            keep_attention: false,
            preprocess: PreprocessSettings::default(),
            postprocess: Postprocess::default(),
            interrupt: None,
        };
        p.window()?;
        Ok(p)
    }

    /// Loads the model at `path` (a model folder, or a run folder whose `checkpoints/best` is
    /// used; see [`resolve_model_dir`]) onto `device`, with the preprocessing settings it
    /// was trained with ([`model_preprocess_settings`]) and its post-processing
    /// ([`Postprocess::load`]).
    pub fn load(path: &Path, device: Device, step: f64, tta: Tta) -> Result<Self> {
        let dir = resolve_model_dir(path)?;
        let arch = ModelConfig::load_json(&dir.join(model::CONFIG_FILE))
            .with_context(|| format!("cannot load the model in {}", dir.display()))?
            .arch;
        let mut p = crate::with_network!(arch, N => {
            let (model, _) = model::load_model::<N>(&dir, &device)
                .with_context(|| format!("cannot load the model in {}", dir.display()))?;
            Self::new(model, device, step, tta)?
        });
        p.preprocess = model_preprocess_settings(&dir)?;
        p.postprocess = Postprocess::load(&dir)?;
        Ok(p)
    }

    /// The configuration of the network (patch size, targets, fusion).
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// The sliding-window settings (the model's patch, this predictor's step and mirroring).
    pub fn window(&self) -> Result<SlidingWindow> {
        SlidingWindow::new(self.config().patch_size, self.step, self.tta)
    }

    /// The plan for a crop box of `dims` with `modalities` input images and `channels`
    /// blended output channels, as [`Self::window`] and [`Self::max_memory`] select it.
    pub fn plan(&self, dims: [usize; 3], modalities: usize, channels: usize) -> Result<PlanCost> {
        let sliding = self.window()?;
        let costs = [Plan::Sliding, Plan::Whole]
            .map(|p| plan::plan_cost(p, dims, modalities, channels, self.config(), &sliding));
        Ok(plan::choose(self.window, costs, self.max_memory))
    }

    /// Whether the model fuses with attention, and so has attention maps (A2FSeg's adaptive
    /// fusion, a2fseg-released; see [`crate::model::Network::has_attention`]).
    pub fn has_attention(&self) -> bool {
        let config = self.config();
        crate::with_network!(config.arch, N => {
            <N as crate::model::Network>::has_attention(config)
        })
    }

    /// Number of output channels of the network (3 regions or 4 classes).
    fn out_channels(&self) -> usize {
        self.config().targets.channels()
    }

    fn layout(&self, subsets: &[Subset]) -> Layout {
        let k = self.out_channels();
        let attn = self.keep_attention && self.has_attention();
        let mut offsets = Vec::with_capacity(subsets.len());
        let mut c = 0;
        for s in subsets {
            let a = if attn && s.len() > 1 { s.len() } else { 0 };
            offsets.push((c, c + k, a));
            c += k + a;
        }
        Layout {
            offsets,
            channels: c,
        }
    }

    /// Segments `case` from the modalities of `subset` (per window: encode its modalities,
    /// decode).
    pub fn predict_case(&self, case: &PreprocessedCase, subset: Subset) -> Result<Prediction> {
        self.predict_case_with_progress(case, subset, &mut |_, _| {})
    }

    /// [`Self::predict_case`], calling `on_window(done, total)` after each window.
    pub fn predict_case_with_progress(
        &self,
        case: &PreprocessedCase,
        subset: Subset,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Prediction> {
        let mut preds = self.predict_subsets_with_progress(case, &[subset], on_window)?;
        Ok(preds.remove(0).1)
    }

    /// Segments `case` from each of `subsets`, encoding each needed modality once per window
    /// and decoding each subset from the encodings. Equal to [`Self::predict_case`] per subset.
    pub fn predict_subsets(
        &self,
        case: &PreprocessedCase,
        subsets: &[Subset],
    ) -> Result<Vec<(Subset, Prediction)>> {
        self.predict_subsets_with_progress(case, subsets, &mut |_, _| {})
    }

    /// [`Self::predict_subsets`], calling `on_window(done, total)` after each window.
    pub fn predict_subsets_with_progress(
        &self,
        case: &PreprocessedCase,
        subsets: &[Subset],
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<(Subset, Prediction)>> {
        if subsets.is_empty() {
            return Ok(Vec::new());
        }
        let (dims, inputs) = self.inputs(case, subsets)?;
        let layout = self.layout(subsets);
        let mods: Vec<Modality> = inputs.iter().map(|(m, _)| *m).collect();
        let plan = self.plan(dims, mods.len(), layout.channels)?;
        let window = SlidingWindow::new(plan.window, self.step, self.tta)?;
        let [px, py, pz] = plan.window;
        let grids: Vec<&Grid<f32>> = inputs.iter().map(|(_, g)| *g).collect();
        let out = window.run(
            dims,
            &grids,
            layout.channels,
            |patches| {
                if let Some(stop) = &self.interrupt {
                    stop()?;
                }
                let mut encodings = Vec::with_capacity(mods.len());
                for (m, p) in mods.iter().zip(patches) {
                    let x = self.tensor(p, [pz, py, px]);
                    encodings.push((*m, self.model.encode(*m, x)?));
                }
                let mut v = Vec::new();
                let decoded = self.model.decode_subsets(&encodings, subsets)?;
                for ((s, &(_, _, n_attn)), fused) in
                    subsets.iter().zip(&layout.offsets).zip(decoded)
                {
                    v.extend(to_vec(model::probabilities(self.config(), fused.logits))?);
                    if n_attn > 0 {
                        let maps = fused
                            .attention
                            .context("the adaptive model returned no attention maps")?;
                        let sm: Vec<Modality> = s.modalities().collect();
                        push_attention(&mut v, &maps, &sm)?;
                    }
                }
                Ok(v)
            },
            on_window,
        )?;
        let preds = self.finish(case, subsets, &layout, out, plan)?;
        Ok(subsets.iter().copied().zip(preds).collect())
    }

    /// Checks the subsets against the case and returns the cropped dims and the images of
    /// the union of the subsets, in canonical order.
    fn inputs<'a>(&self, case: &'a PreprocessedCase, subsets: &[Subset]) -> Result<CaseInputs<'a>> {
        let available = Subset::from_modalities(
            Modality::ALL
                .into_iter()
                .filter(|m| case.images[m.index()].is_some()),
        );
        let mut union = Subset::EMPTY;
        for s in subsets {
            ensure!(
                !s.is_empty(),
                "an empty modality subset cannot be predicted"
            );
            ensure!(
                s.is_subset_of(available),
                "case {} lacks modalities for subset {} ({}); it has {}",
                case.id,
                s.name(),
                s.describe(),
                available.describe()
            );
            union = Subset::from_bits(union.bits() | s.bits());
        }
        let inputs: Vec<(Modality, &Grid<f32>)> = union
            .modalities()
            .map(|m| {
                (
                    m,
                    case.images[m.index()].as_ref().expect("checked available"),
                )
            })
            .collect();
        let dims = inputs[0].1.dims();
        for (m, g) in &inputs {
            ensure!(
                g.dims() == dims,
                "case {}: {} has dims {:?}, the other modalities {dims:?}",
                case.id,
                m.label(),
                g.dims()
            );
        }
        Ok((dims, inputs))
    }

    /// A `[1, 1, D, H, W]` tensor of a patch buffer (x fastest).
    fn tensor(&self, patch: &[f32], dhw: [usize; 3]) -> Tensor<5> {
        let data = TensorData::new(patch.to_vec(), [1, 1, dhw[0], dhw[1], dhw[2]]);
        Tensor::<5>::from_data(data, &self.device)
    }

    /// Splits the blended channels into predictions: decodes classes, post-processes them,
    /// converts class probabilities to region probabilities, uncrops the classes.
    fn finish(
        &self,
        case: &PreprocessedCase,
        subsets: &[Subset],
        layout: &Layout,
        mut out: Vec<Grid<f32>>,
        plan: PlanCost,
    ) -> Result<Vec<Prediction>> {
        let k = self.out_channels();
        let full_dims = case.geometry.dims;
        let mut preds = Vec::with_capacity(subsets.len());
        // Walk backwards so each subset's channels can be split off the end.
        for (i, s) in subsets.iter().enumerate().rev() {
            let (p0, a0, _) = layout.offsets[i];
            let attn_grids = out.split_off(a0);
            let probs = out.split_off(p0);
            let dims = probs[0].dims();
            let mut flat = Vec::with_capacity(k * probs[0].len());
            for g in &probs {
                flat.extend_from_slice(g.data());
            }
            let t = Tensor::<5>::from_data(
                TensorData::new(flat, [1, k, dims[2], dims[1], dims[0]]),
                &self.device,
            );
            let cls = model::decode_classes(self.config(), t);
            let mut cls =
                Grid::from_vec(dims, cls).context("decoded classes have the wrong size")?;
            self.postprocess.apply(&mut cls, case, *s);
            let probabilities = match self.config().targets {
                Targets::Regions => probs,
                Targets::Classes => class_to_region_probabilities(&probs),
            };
            let attention = s.modalities().zip(attn_grids).collect();
            preds.push(Prediction {
                subset: *s,
                classes: case.crop.uncrop(&cls, full_dims, 0),
                probabilities,
                attention,
                crop: case.crop,
                full_dims,
                plan,
            });
        }
        preds.reverse();
        Ok(preds)
    }
}

/// Region probabilities from class probabilities `[bg, NCR, ED, ET]`: P(WT) = NCR + ED + ET,
/// P(TC) = NCR + ET, P(ET) = ET.
fn class_to_region_probabilities(p: &[Grid<f32>]) -> Vec<Grid<f32>> {
    Region::ALL
        .iter()
        .map(|r| {
            let mut g = Grid::zeros(p[0].dims());
            for c in crate::labels::TumourClass::ALL {
                if r.contains(c) {
                    g.data_mut()
                        .iter_mut()
                        .zip(p[c.index()].data())
                        .for_each(|(a, b)| *a += b);
                }
            }
            g
        })
        .collect()
}

/// The values of a tensor, C order.
fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor: {e:?}"))
}

/// Appends the channel-mean attention map of each of `mods` (in that order) to `v`.
fn push_attention(
    v: &mut Vec<f32>,
    maps: &[(Modality, Tensor<5>)],
    mods: &[Modality],
) -> Result<()> {
    for m in mods {
        let (_, a) = maps
            .iter()
            .find(|(n, _)| n == m)
            .with_context(|| format!("no attention map for {}", m.label()))?;
        v.extend(to_vec(a.clone().mean_dim(1))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
