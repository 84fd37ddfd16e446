//! `a2fseg predict`: segment one case given as files, a case folder, or a whole dataset
//! (optionally one part of a split), writing labels with the input's exact geometry in the
//! input's label convention.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use super::Global;
use crate::dataset;
use crate::fsutil;
use crate::infer::evaluate::select_cases;
use crate::infer::{Prediction, Predictor, Tta};
use crate::labels::{LabelConvention, Region, TumourClass};
use crate::modality::{Modality, Subset};
use crate::volume::{self, Geometry, Grid};

/// Arguments of `a2fseg predict`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    a2fseg predict --model runs/a2f --t1c c_t1ce.nii.gz --flair c_flair.nii.gz --output seg.nii.gz\n  \
    a2fseg predict --model runs/a2f --input data/ --split split.json --part test --output preds/")]
pub struct PredictArgs {
    /// Training run folder (its checkpoints/best is used) or a model folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// The images of a single case.
    #[command(flatten)]
    pub images: super::args::ImageArgs,
    /// A case folder or a dataset folder (instead of --t1/--t1c/--t2/--flair).
    #[arg(long, short, value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// Split file: predict only the cases of --part.
    #[arg(long, value_name = "FILE", requires = "input")]
    pub split: Option<PathBuf>,
    /// Part of the split: test, validation, train or all.
    #[arg(long, default_value = "test", requires = "split")]
    pub part: String,
    /// Output label file (single case from files) or folder (with --input).
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// Use only these modalities (bit string such as 0101 or names such as t1c,flair).
    #[arg(long, value_name = "SUBSET")]
    pub subset: Option<Subset>,
    /// Sliding-window step as a fraction of the patch.
    #[arg(long, default_value_t = 0.5)]
    pub step: f64,
    /// Test-time mirroring: off, 8 (all axes) or axes such as xy.
    #[arg(long, default_value = "off")]
    pub tta: Tta,
    /// Also write the WT/TC/ET probabilities (float NIfTI, `<name>_prob_wt.nii.gz`, …).
    #[arg(long)]
    pub save_probabilities: bool,
    /// Also write the adaptive fusion's attention maps (`<name>_attention_t1.nii.gz`, …).
    #[arg(long)]
    pub save_attention: bool,
    /// Label convention of the written labels: brats (0/1/2/4), brats2023 (ET = 3) or msd
    /// [default: the dataset's; brats for files].
    #[arg(long, value_parser = parse_convention)]
    pub convention: Option<LabelConvention>,
    /// Write the network's label map as decoded: no brain mask, no largest-component or
    /// small-ET rule
    /// (by default the model's post-processing is applied: its postprocess.json, else the
    /// brain mask alone).
    #[arg(long)]
    pub no_postprocess: bool,
    /// Compute device: cpu, cuda[:N], wgpu or wgpu:cpu|discrete:N|integrated:N (GPU builds
    /// only).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: crate::model::ComputeDevice,
    #[command(flatten)]
    pub plan: super::args::PlanArgs,
    #[command(flatten)]
    pub finite: super::args::FiniteArgs,
}

/// Parses `brats` (also `brats2020`, `brats2021`), `brats2023` or `msd`.
pub fn parse_convention(s: &str) -> Result<LabelConvention, String> {
    match s.to_ascii_lowercase().as_str() {
        "brats" | "brats2020" | "brats2021" => Ok(LabelConvention::Brats),
        "brats2023" => Ok(LabelConvention::Brats2023),
        "msd" => Ok(LabelConvention::Msd),
        other => Err(format!(
            "unknown label convention '{other}' (expected brats, brats2023 or msd)"
        )),
    }
}

/// Runs `a2fseg predict`.
pub fn run(args: PredictArgs, global: Global) -> Result<()> {
    check_inputs(&args)?;
    args.plan.max_memory_bytes()?;
    let device = args.device.open()?;
    if let Some(d) = args.device.describe()?
        && !global.quiet
    {
        eprintln!("device {d}");
    }
    let mut predictor = Predictor::load(&args.model, device, args.step, args.tta)?;
    run_with(&args, &mut predictor, global)
}

/// Runs `a2fseg predict` with `predictor`, a model already loaded from `args.model` (the
/// Python package's `Model.predict_files`): the step, mirroring, plan and attention
/// settings of `args` are set on it; `--no-postprocess` sets [`Postprocess::NONE`], which
/// the caller restores for later predictions. `args.device` is not used.
///
/// [`Postprocess::NONE`]: crate::infer::Postprocess::NONE
pub fn run_with(args: &PredictArgs, predictor: &mut Predictor, global: Global) -> Result<()> {
    let files = check_inputs(args)?;
    predictor.step = args.step;
    predictor.tta = args.tta;
    predictor.window()?;
    predictor.window = args.plan.window;
    predictor.max_memory = args.plan.max_memory_bytes()?;
    predictor.keep_attention = args.save_attention && predictor.has_attention();
    if args.no_postprocess {
        predictor.postprocess = crate::infer::Postprocess::NONE;
    }
    if args.save_attention && !predictor.has_attention() {
        eprintln!("note: the model does not fuse with attention: no attention maps to save");
    }
    if files.is_empty() {
        predict_dataset(args, predictor, global)?;
    } else {
        predict_files(args, predictor, &files, global.quiet)?;
    }
    // Said after the outputs are written: a failure is its one-line error alone.
    if predictor.config().spacing.is_none() {
        eprintln!(
            "note: {}",
            crate::infer::unrecorded_spacing_note(&args.model)
        );
    }
    Ok(())
}

/// The image files of `args` by modality; an error unless exactly one of image files and
/// `--input` is given.
fn check_inputs(args: &PredictArgs) -> Result<Vec<(Modality, PathBuf)>> {
    let files: Vec<(Modality, PathBuf)> = args.images.given();
    if files.is_empty() && args.input.is_none() {
        bail!("give the images (--t1, --t1c, --t2, --flair: any non-empty subset) or --input DIR");
    }
    if !files.is_empty() && args.input.is_some() {
        bail!("give either image files (--t1 …) or --input, not both");
    }
    Ok(files)
}

/// One case from explicit files.
fn predict_files(
    args: &PredictArgs,
    predictor: &Predictor,
    files: &[(Modality, PathBuf)],
    quiet: bool,
) -> Result<()> {
    ensure!(
        volume_extension(&args.output).is_some(),
        "--output {} must be a .nii or .nii.gz file when predicting from image files",
        args.output.display()
    );
    let mut subset = Subset::from_modalities(files.iter().map(|(m, _)| *m));
    if let Some(s) = args.subset {
        subset = Subset::from_bits(subset.bits() & s.bits());
        ensure!(
            !subset.is_empty(),
            "--subset {s} keeps none of the given images"
        );
    }
    let inputs: Vec<&Path> = files.iter().map(|(_, p)| p.as_path()).collect();
    fsutil::refuse_overwriting_inputs(&output_paths(&args.output, args), &inputs)?;
    let mut images: [Option<Grid<f32>>; 4] = Default::default();
    let mut geometry: Option<(Geometry, &Path)> = None;
    for (m, path) in files.iter().filter(|(m, _)| subset.contains(*m)) {
        let v = dataset::read_input_volume(path, args.finite.strict_finite)?;
        ensure!(
            v.channels.len() == 1,
            "{} has {} volumes (4D); give one 3D image per modality",
            path.display(),
            v.channels.len()
        );
        match &geometry {
            None => geometry = Some((v.geometry.clone(), path)),
            Some((g, first)) => ensure!(
                g.same_grid(&v.geometry),
                "{} and {} are on different grids (shape, spacing or orientation); register and \
                 resample them to one grid first",
                first.display(),
                path.display()
            ),
        }
        images[m.index()] = v.channels.into_iter().next();
    }
    let (geometry, _) = geometry.expect("at least one image");
    for (m, path) in files {
        if let Some(image) = &images[m.index()] {
            dataset::warn_if_not_skull_stripped(path, image);
        }
    }
    let convention = args.convention.unwrap_or(LabelConvention::Brats);
    let id = case_name(&args.output);
    let loaded = dataset::LoadedCase {
        id: id.clone(),
        geometry: geometry.clone(),
        images,
        classes: None,
        convention,
    };
    let (pred, note) = predict_one(predictor, &loaded, subset, &files[0].1)?;
    if !quiet {
        eprintln!("plan {}", pred.plan.describe());
    }
    write_prediction(&args.output, &geometry, convention, &pred, args)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// Every case (or a split's part) of a case or dataset folder.
fn predict_dataset(args: &PredictArgs, predictor: &Predictor, global: Global) -> Result<()> {
    let input = args.input.as_ref().expect("checked");
    let (ds, ids) = match dataset::discover(input) {
        Ok(ds) => {
            let ds = ds.with_strict_finite(args.finite.strict_finite);
            let ids = select_cases(&ds, args.split.as_deref(), &args.part)?;
            (ds, ids)
        }
        Err(e) => match case_folder(input) {
            Some((ds, ids)) => (ds.with_strict_finite(args.finite.strict_finite), ids),
            None => return Err(e),
        },
    };
    ensure!(!ids.is_empty(), "no case to predict in {}", input.display());
    let _lock = fsutil::FolderLock::acquire(&args.output, "prediction")?;
    let bar = crate::progress::bar(ids.len() as u64, "cases", global.quiet);
    for id in &ids {
        bar.set_message(id.clone());
        let case = ds
            .cases
            .iter()
            .find(|c| &c.id == id)
            .with_context(|| format!("case {id} is not in {}", input.display()))?;
        let mut subset = case.available();
        if let Some(s) = args.subset {
            subset = Subset::from_bits(subset.bits() & s.bits());
        }
        if subset.is_empty() {
            bar.suspend(|| {
                eprintln!("warning: case {id} has none of the requested modalities; skipped")
            });
            bar.inc(1);
            continue;
        }
        let out = args.output.join(format!("{id}.nii.gz"));
        let inputs = case
            .images
            .iter()
            .flatten()
            .map(|f| f.path.as_path())
            .chain(case.seg.as_deref());
        fsutil::refuse_overwriting_inputs(&output_paths(&out, args), &inputs.collect::<Vec<_>>())?;
        let loaded = dataset::load_case(&ds, case)?;
        let geometry = loaded.geometry.clone();
        let first = case.images.iter().flatten().next().map(|f| f.path.clone());
        let (pred, note) = predict_one(predictor, &loaded, subset, &first.unwrap_or_default())?;
        drop(loaded);
        if !global.quiet {
            bar.suspend(|| eprintln!("{id}: plan {}", pred.plan.describe()));
        }
        let convention = args.convention.unwrap_or(ds.convention_of(case));
        write_prediction(&out, &geometry, convention, &pred, args)?;
        if let Some(note) = note {
            bar.suspend(|| eprintln!("note: {note}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !global.quiet {
        eprintln!(
            "wrote {} segmentations to {}",
            ids.len(),
            args.output.display()
        );
    }
    Ok(())
}

/// Predicts `loaded` from `subset` on its own grid, with a note (naming the first image
/// `path`) when it was resampled to the model's spacing.
fn predict_one(
    predictor: &Predictor,
    loaded: &dataset::LoadedCase,
    subset: Subset,
    path: &Path,
) -> Result<(Prediction, Option<String>)> {
    let note = predictor
        .resampling_of(loaded)
        .map(|to| resampling_note(path, loaded.geometry.spacing, to));
    let mut preds = predictor.predict_loaded(loaded, &[subset])?;
    Ok((preds.remove(0).1, note))
}

/// `PATH: voxel spacing A × B × C mm resampled to the model's X × Y × Z mm (and the
/// prediction back)`.
pub fn resampling_note(path: &Path, from: [f64; 3], to: [f64; 3]) -> String {
    let mm = |s: [f64; 3]| {
        s.map(|v| format!("{}", (v.abs() * 1000.0).round() / 1000.0))
            .join(" × ")
    };
    format!(
        "{}: voxel spacing {} mm resampled to the model's {} mm (the prediction back to the \
         input's grid)",
        path.display(),
        mm(from),
        mm(to)
    )
}

/// `dir` read as a single case folder: the dataset of its parent folder, restricted to the
/// case stored in `dir`.
fn case_folder(dir: &Path) -> Option<(dataset::Dataset, Vec<String>)> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let target = canon(dir)?;
    let ds = dataset::discover(dir.parent()?).ok()?;
    let id = ds
        .cases
        .iter()
        .find(|c| c.dir.as_deref().and_then(canon).as_ref() == Some(&target))?
        .id
        .clone();
    Some((ds, vec![id]))
}

/// The class map converted to `convention`'s labels.
pub fn to_labels(classes: &Grid<u8>, convention: LabelConvention) -> Grid<u8> {
    classes.map(|c| {
        convention
            .from_class(TumourClass::from_index(c as usize).unwrap_or(TumourClass::Background))
    })
}

/// The file of the probability map of `region` beside the labels `out`.
fn probability_path(out: &Path, region: Region) -> PathBuf {
    let (stem, ext) = split_name(out);
    let name = format!(
        "{}_prob_{}{ext}",
        file_name(&stem),
        region.name().to_lowercase()
    );
    stem.with_file_name(name)
}

/// The file of the attention map of modality `m` beside the labels `out`.
fn attention_path(out: &Path, m: Modality) -> PathBuf {
    let (stem, ext) = split_name(out);
    stem.with_file_name(format!("{}_attention_{}{ext}", file_name(&stem), m.key()))
}

/// Every file that writing the prediction `out` may create with these arguments: the labels,
/// and the probability and attention maps when asked for.
fn output_paths(out: &Path, args: &PredictArgs) -> Vec<PathBuf> {
    let mut paths = vec![out.to_path_buf()];
    if args.save_probabilities {
        paths.extend(Region::ALL.iter().map(|&r| probability_path(out, r)));
    }
    if args.save_attention {
        paths.extend(Modality::ALL.iter().map(|&m| attention_path(out, m)));
    }
    paths
}

/// Writes the labels (and the requested probability and attention maps beside them).
fn write_prediction(
    out: &Path,
    geometry: &Geometry,
    convention: LabelConvention,
    pred: &Prediction,
    args: &PredictArgs,
) -> Result<()> {
    volume::write_labels(out, geometry, &to_labels(&pred.classes, convention))?;
    if args.save_probabilities {
        for (&r, g) in Region::ALL.iter().zip(pred.probabilities_full()) {
            volume::write_float(&probability_path(out, r), geometry, &g)?;
        }
    }
    if args.save_attention {
        for (m, g) in pred.attention_full() {
            volume::write_float(&attention_path(out, m), geometry, &g)?;
        }
    }
    Ok(())
}

/// `.nii.gz` or `.nii` if `path` ends so.
fn volume_extension(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii.gz") {
        Some(".nii.gz")
    } else if name.ends_with(".nii") {
        Some(".nii")
    } else {
        None
    }
}

/// `path` without its NIfTI extension, and the extension (`.nii.gz` by default).
fn split_name(path: &Path) -> (PathBuf, &'static str) {
    let ext = volume_extension(path).unwrap_or(".nii.gz");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = if volume_extension(path).is_some() {
        name[..name.len() - ext.len()].to_string()
    } else {
        name
    };
    (path.with_file_name(stem), ext)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A case id from the output file name (`seg.nii.gz` → `seg`).
fn case_name(out: &Path) -> String {
    file_name(&split_name(out).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_conventions() {
        assert_eq!(
            split_name(Path::new("/a/b.nii.gz")),
            (PathBuf::from("/a/b"), ".nii.gz")
        );
        assert_eq!(split_name(Path::new("b.NII")), (PathBuf::from("b"), ".nii"));
        assert_eq!(case_name(Path::new("/x/case_7.nii.gz")), "case_7");
        assert!(volume_extension(Path::new("out/")).is_none());
        assert_eq!(parse_convention("BraTS2021"), Ok(LabelConvention::Brats));
        assert!(parse_convention("kits").is_err());
        let g = Grid::from_vec([4, 1, 1], vec![0u8, 1, 2, 3]).unwrap();
        assert_eq!(to_labels(&g, LabelConvention::Brats).data(), &[0, 1, 2, 4]);
        assert_eq!(to_labels(&g, LabelConvention::Msd).data(), &[0, 2, 1, 3]);
    }
}
