//! `a2fseg._native`, the native module of the Python package `a2fseg`: thin pyo3 wrappers
//! over the library. They convert numpy arrays to the library's grids and back, release the
//! GIL while the library computes, let Ctrl-C stop a prediction between network passes, and
//! raise the library's errors (the CLI's messages) as `ValueError` or `FileNotFoundError`.
//! Every algorithm is the library's; the Python modules of `a2fseg/` only pick arguments.
//!
//! Arrays are indexed `[x, y, z]` as nibabel reads NIfTI data; the library's grids store x
//! fastest, which is numpy's Fortran order for that shape, so a grid's buffer becomes an
//! array without reordering.

use std::path::PathBuf;
use std::sync::Mutex;

use a2fseg::cli::Global;
use a2fseg::cli::args::{FiniteArgs, ImageArgs, PlanArgs};
use a2fseg::cli::predict::{PredictArgs, parse_convention, run_with, to_labels};
use a2fseg::dataset::LoadedCase;
use a2fseg::infer::{Postprocess, Predictor, Tta, WindowChoice, resolve_model_dir};
use a2fseg::labels::{LabelConvention, Region};
use a2fseg::metrics::{self, MetricOptions, compare_labels};
use a2fseg::modality::Modality;
use a2fseg::model::{ComputeDevice, Network};
use a2fseg::volume::{Geometry, Grid};
use numpy::ndarray::{Array3, ShapeBuilder};
use numpy::{Element, IntoPyArray, PyArray3, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A library error as a Python exception: the error itself when it is one (Ctrl-C's
/// `KeyboardInterrupt`, raised by the interrupt check), `FileNotFoundError` when a file is
/// missing, else `ValueError`; the message is the CLI's one line (`{:#}`, context first).
fn to_py(py: Python<'_>, e: anyhow::Error) -> PyErr {
    if let Some(err) = e.chain().find_map(|c| c.downcast_ref::<PyErr>()) {
        return err.clone_ref(py);
    }
    let msg = format!("{e:#}").replace('\n', " ");
    let missing = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    });
    if missing {
        PyFileNotFoundError::new_err(msg)
    } else {
        PyValueError::new_err(msg)
    }
}

/// `value` parsed as `T` (the CLI's parser), or a `ValueError` naming the argument.
fn parse<T: std::str::FromStr>(name: &str, value: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| PyValueError::new_err(format!("{name}={value:?}: {e}")))
}

/// A `[x, y, z]` array as a grid (x fastest).
fn to_grid<T: Element + Copy>(a: &PyReadonlyArray3<'_, T>) -> Grid<T> {
    let view = a.as_array();
    let dims = [view.shape()[0], view.shape()[1], view.shape()[2]];
    let data = view.t().iter().copied().collect();
    Grid::from_vec(dims, data).expect("an array's shape matches its size")
}

/// A grid as a `[x, y, z]` array (Fortran order, no copy).
fn to_array<'py, T: Element + Copy>(py: Python<'py>, g: Grid<T>) -> Bound<'py, PyArray3<T>> {
    let [x, y, z] = g.dims();
    Array3::from_shape_vec((x, y, z).f(), g.data().to_vec())
        .expect("a grid's dims match its size")
        .into_pyarray(py)
}

/// A trained model loaded for prediction (`a2fseg.Model` wraps it).
#[pyclass(module = "a2fseg._native")]
struct Model {
    /// The predictor; predictions set their settings on it, one at a time. Boxed: the
    /// predictor holds 64-byte-aligned parts, and Python allocates objects on 16 bytes.
    predictor: Box<Mutex<Predictor>>,
    /// The model's own post-processing, restored after a prediction without it.
    postprocess: Postprocess,
    /// The folder as given to `load` (for `predict_files` and notes).
    path: PathBuf,
}

// pyo3 stores a `#[pyclass]` inside the Python object, whose memory is aligned on 16 bytes.
const _: () = assert!(std::mem::align_of::<Model>() <= 16);

/// The settings of one prediction.
struct Settings {
    step: f64,
    tta: Tta,
    window: WindowChoice,
    max_memory: u64,
    postprocess: bool,
}

impl Model {
    /// Runs `f` on the predictor set up with `s`, without the GIL.
    fn with_predictor<T: Send>(
        &self,
        py: Python<'_>,
        s: Settings,
        f: impl FnOnce(&mut Predictor) -> anyhow::Result<T> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| {
            let mut p = self.lock();
            p.step = s.step;
            p.tta = s.tta;
            p.window()?;
            p.window = s.window;
            p.max_memory = s.max_memory;
            p.postprocess = if s.postprocess {
                self.postprocess
            } else {
                Postprocess::NONE
            };
            let out = f(&mut p);
            p.postprocess = self.postprocess;
            out
        });
        result.map_err(|e| to_py(py, e))
    }
}

/// `--window` parsed, or its default (`None`).
fn window_choice(value: Option<&str>) -> PyResult<WindowChoice> {
    value.map_or(Ok(WindowChoice::default()), |w| parse("window", w))
}

/// The memory cap `--max-memory` would give (`None`: the default).
fn max_memory(value: Option<&str>) -> PyResult<u64> {
    let plan = PlanArgs {
        window: WindowChoice::default(),
        max_memory: value.map(str::to_string),
    };
    plan.max_memory_bytes()
        .map_err(|e| PyValueError::new_err(format!("{e:#}")))
}

#[pymethods]
impl Model {
    /// Loads a model folder or a training run folder (its `checkpoints/best`), as
    /// `a2fseg predict --model` does.
    #[staticmethod]
    #[pyo3(signature = (path, device = "cpu"))]
    fn load(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Self> {
        let device: ComputeDevice = parse("device", device)?;
        if !path.exists() {
            let e = resolve_model_dir(&path).expect_err("a missing folder is no model");
            return Err(PyFileNotFoundError::new_err(format!("{e:#}")));
        }
        let loaded = py.detach(|| {
            let device = device.open()?;
            let mut p = Predictor::load(&path, device, 0.5, Tta::OFF)?;
            p.interrupt = Some(Box::new(|| {
                Python::attach(|py| py.check_signals()).map_err(anyhow::Error::from)
            }));
            anyhow::Ok(p)
        });
        let predictor = loaded.map_err(|e| to_py(py, e))?;
        Ok(Model {
            postprocess: predictor.postprocess,
            predictor: Box::new(Mutex::new(predictor)),
            path,
        })
    }

    /// The model's `config.json`, as JSON text.
    fn config_json(&self) -> String {
        self.lock().config().to_json()
    }

    /// The network's layers, parameters and MACs, as `a2fseg model summary` prints them.
    fn summary(&self) -> String {
        let p = self.lock();
        let cfg = p.config();
        a2fseg::with_network!(cfg.arch, N => N::describe(cfg)).to_text()
    }

    /// Whether the model fuses with attention (has attention maps).
    fn has_attention(&self) -> bool {
        self.lock().has_attention()
    }

    /// Segments one case given as `[x, y, z]` float32 arrays on one grid with `affine`
    /// (voxel → mm, 4 × 4), with the CLI's preprocessing, plan and post-processing.
    /// Returns a dict: `labels` (uint8 in `convention`), `probabilities` (`wt`, `tc`, `et`
    /// float32 maps, or None), `attention` (a map per modality of the subset, or None),
    /// `subset` (bit string), `plan` (as `predict` prints it).
    #[pyo3(signature = (t1, t1c, t2, flair, affine, *, step, tta, window, max_memory,
                        probabilities, attention, postprocess, convention))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        t1: Option<PyReadonlyArray3<'py, f32>>,
        t1c: Option<PyReadonlyArray3<'py, f32>>,
        t2: Option<PyReadonlyArray3<'py, f32>>,
        flair: Option<PyReadonlyArray3<'py, f32>>,
        affine: PyReadonlyArray2<'py, f64>,
        step: f64,
        tta: &str,
        window: Option<&str>,
        max_memory: Option<&str>,
        probabilities: bool,
        attention: bool,
        postprocess: bool,
        convention: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let settings = Settings {
            step,
            tta: parse("tta", tta)?,
            window: window_choice(window)?,
            max_memory: self::max_memory(max_memory)?,
            postprocess,
        };
        let convention = parse_convention(convention).map_err(PyValueError::new_err)?;
        let case = in_memory_case([t1, t1c, t2, flair], &affine, convention)?;
        let subset = case.available();
        let pred = self.with_predictor(py, settings, |p| {
            p.keep_attention = attention && p.has_attention();
            let mut preds = p.predict_loaded(&case, &[subset])?;
            Ok(preds.remove(0).1)
        })?;
        let out = PyDict::new(py);
        out.set_item("subset", pred.subset.name())?;
        out.set_item("plan", pred.plan.describe())?;
        if probabilities {
            let maps = PyDict::new(py);
            for (r, g) in Region::ALL.iter().zip(pred.probabilities_full()) {
                maps.set_item(r.name().to_lowercase(), to_array(py, g))?;
            }
            out.set_item("probabilities", maps)?;
        } else {
            out.set_item("probabilities", py.None())?;
        }
        if attention {
            let maps = PyDict::new(py);
            for (m, g) in pred.attention_full() {
                maps.set_item(m.key(), to_array(py, g))?;
            }
            out.set_item("attention", maps)?;
        } else {
            out.set_item("attention", py.None())?;
        }
        out.set_item("labels", to_array(py, to_labels(&pred.classes, convention)))?;
        Ok(out)
    }

    /// Runs `a2fseg predict` with this model: image files (`t1` … `flair`) or a case or
    /// dataset folder (`input`), written to `output` as the CLI writes them.
    #[pyo3(signature = (t1, t1c, t2, flair, input, output, *, split, part, subset, step, tta,
                        window, max_memory, probabilities, attention, postprocess, convention,
                        strict_finite))]
    #[allow(clippy::too_many_arguments)]
    fn predict_files(
        &self,
        py: Python<'_>,
        t1: Option<PathBuf>,
        t1c: Option<PathBuf>,
        t2: Option<PathBuf>,
        flair: Option<PathBuf>,
        input: Option<PathBuf>,
        output: PathBuf,
        split: Option<PathBuf>,
        part: String,
        subset: Option<&str>,
        step: f64,
        tta: &str,
        window: Option<&str>,
        max_memory: Option<String>,
        probabilities: bool,
        attention: bool,
        postprocess: bool,
        convention: Option<&str>,
        strict_finite: bool,
    ) -> PyResult<()> {
        let convention = convention
            .map(parse_convention)
            .transpose()
            .map_err(PyValueError::new_err)?;
        let args = PredictArgs {
            model: self.path.clone(),
            images: ImageArgs { t1, t1c, t2, flair },
            input,
            split,
            part,
            output,
            subset: subset.map(|s| parse("subset", s)).transpose()?,
            step,
            tta: parse("tta", tta)?,
            save_probabilities: probabilities,
            save_attention: attention,
            convention,
            no_postprocess: !postprocess,
            device: ComputeDevice::Cpu,
            plan: PlanArgs {
                window: window_choice(window)?,
                max_memory,
            },
            finite: FiniteArgs { strict_finite },
        };
        let settings = Settings {
            step,
            tta: args.tta,
            window: args.plan.window,
            max_memory: self::max_memory(args.plan.max_memory.as_deref())?,
            postprocess,
        };
        self.with_predictor(py, settings, |p| run_with(&args, p, Global { quiet: true }))
    }
}

impl Model {
    /// The predictor (a panic in an earlier prediction leaves it usable: every prediction
    /// sets all its settings).
    fn lock(&self) -> std::sync::MutexGuard<'_, Predictor> {
        self.predictor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A case of the given images (T1, T1c, T2, FLAIR; at least one, all of one shape) on the
/// grid of `affine`.
fn in_memory_case(
    images: [Option<PyReadonlyArray3<'_, f32>>; 4],
    affine: &PyReadonlyArray2<'_, f64>,
    convention: LabelConvention,
) -> PyResult<LoadedCase> {
    let a = affine.as_array();
    if a.shape() != [4, 4] || a.iter().any(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "affine must be a finite 4 × 4 matrix, not shape {:?}",
            a.shape()
        )));
    }
    let affine: [[f64; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|c| a[[r, c]]));
    let mut grids: [Option<Grid<f32>>; 4] = Default::default();
    let mut first: Option<(Modality, [usize; 3])> = None;
    for (m, image) in Modality::ALL.into_iter().zip(images) {
        let Some(image) = image else { continue };
        let g = to_grid(&image);
        match first {
            None => first = Some((m, g.dims())),
            Some((f, dims)) if dims != g.dims() => {
                return Err(PyValueError::new_err(format!(
                    "{} has shape {:?} and {} {:?}: give every image on one grid (register \
                     and resample them first)",
                    f.key(),
                    dims,
                    m.key(),
                    g.dims()
                )));
            }
            Some(_) => {}
        }
        grids[m.index()] = Some(g);
    }
    let Some((_, dims)) = first else {
        return Err(PyValueError::new_err(
            "give the images (t1, t1c, t2, flair: any non-empty subset)",
        ));
    };
    Ok(LoadedCase {
        id: "array".into(),
        geometry: Geometry::from_affine(dims, affine),
        images: grids,
        classes: None,
        convention,
    })
}

/// Two masks of one shape as grids, or a `ValueError`.
fn mask_pair(
    pred: &PyReadonlyArray3<'_, bool>,
    gt: &PyReadonlyArray3<'_, bool>,
) -> PyResult<(Grid<bool>, Grid<bool>)> {
    let (p, g) = (to_grid(pred), to_grid(gt));
    if p.dims() != g.dims() {
        return Err(PyValueError::new_err(format!(
            "pred has shape {:?} and gt {:?}: they must be on one grid",
            p.dims(),
            g.dims()
        )));
    }
    Ok((p, g))
}

/// Dice of two boolean masks (1 when both are empty), as `a2fseg metrics` computes it.
#[pyfunction]
fn dice(
    py: Python<'_>,
    pred: PyReadonlyArray3<'_, bool>,
    gt: PyReadonlyArray3<'_, bool>,
) -> PyResult<f64> {
    let (p, g) = mask_pair(&pred, &gt)?;
    Ok(py.detach(|| metrics::dice(&p, &g)))
}

/// The 95th-percentile symmetric surface distance in mm of two boolean masks, with the
/// CLI's conventions (0 when both are empty, `penalty` when one is).
#[pyfunction]
fn hd95(
    py: Python<'_>,
    pred: PyReadonlyArray3<'_, bool>,
    gt: PyReadonlyArray3<'_, bool>,
    spacing: [f64; 3],
    penalty: f64,
) -> PyResult<f64> {
    let (p, g) = mask_pair(&pred, &gt)?;
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(PyValueError::new_err(format!(
            "voxel spacing {spacing:?} is not positive; cannot measure distances"
        )));
    }
    if !(penalty.is_finite() && penalty >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "penalty must be a non-negative number of mm, not {penalty}"
        )));
    }
    Ok(py.detach(|| metrics::surface::hd95(&p, &g, spacing, penalty)))
}

/// `a2fseg metrics --json` of two label maps (float arrays of integer labels): the JSON
/// text with a key per region and `conventions`.
#[pyfunction]
#[pyo3(signature = (pred, gt, spacing, *, convention, hd95_penalty, et_postprocess))]
fn evaluate_case(
    py: Python<'_>,
    pred: PyReadonlyArray3<'_, f32>,
    gt: PyReadonlyArray3<'_, f32>,
    spacing: [f64; 3],
    convention: Option<&str>,
    hd95_penalty: f64,
    et_postprocess: Option<usize>,
) -> PyResult<String> {
    let convention = convention
        .map(parse_convention)
        .transpose()
        .map_err(PyValueError::new_err)?;
    let (p, g) = (to_grid(&pred), to_grid(&gt));
    let opts = MetricOptions {
        hd95_penalty,
        et_postprocess,
    };
    let result = py.detach(|| {
        compare_labels((&p, "pred"), (&g, "gt"), spacing, convention, &opts)
            .map(|c| c.to_json(&opts).to_string())
    });
    result.map_err(|e| to_py(py, e))
}

/// The default HD95 penalty in mm (`a2fseg metrics --hd95-penalty`).
#[pyfunction]
fn default_hd95_penalty() -> f64 {
    metrics::DEFAULT_HD95_PENALTY
}

#[pymodule(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(dice, m)?)?;
    m.add_function(wrap_pyfunction!(hd95, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_case, m)?)?;
    m.add_function(wrap_pyfunction!(default_hd95_penalty, m)?)?;
    Ok(())
}
