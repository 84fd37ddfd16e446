//! `a2fseg metrics PRED GT`: Dice, HD95, sensitivity, specificity and volumes per tumour
//! region between two label files (for instance a prediction from another tool and its
//! reference segmentation).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::Global;
use crate::labels::{LabelConvention, Region};
use crate::metrics::{
    self, CaseMetrics, DEFAULT_ET_MIN_VOXELS, DEFAULT_HD95_PENALTY, MetricOptions, RegionMetrics,
};
use crate::volume::{Grid, Volume, read_volume};

/// A label convention, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConventionArg {
    /// BraTS 2018–2021: 0 background, 1 NCR, 2 edema, 4 ET.
    Brats,
    /// BraTS 2023: 0 background, 1 NCR, 2 edema, 3 ET.
    Brats2023,
    /// MSD Task01: 0 background, 1 edema, 2 non-enhancing, 3 ET.
    Msd,
}

impl From<ConventionArg> for LabelConvention {
    fn from(c: ConventionArg) -> Self {
        match c {
            ConventionArg::Brats => LabelConvention::Brats,
            ConventionArg::Brats2023 => LabelConvention::Brats2023,
            ConventionArg::Msd => LabelConvention::Msd,
        }
    }
}

/// Arguments of `a2fseg metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The predicted label map (NIfTI, .nii or .nii.gz).
    pub pred: PathBuf,

    /// The reference label map, on the same voxel grid.
    pub gt: PathBuf,

    /// Print one JSON object with a key per region (WT, TC, ET) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Label convention of both files [default: guessed from the label values: a 4 means
    /// brats, a 3 brats2023; MSD must be asked for].
    #[arg(long, value_enum)]
    pub convention: Option<ConventionArg>,

    /// Also report ET after the RFNet/mmFormer post-processing: a predicted ET of fewer than
    /// N voxels becomes NCR [N: 500]. Give N as `--et-postprocess=N`, or put the option
    /// after PRED and GT.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "500")]
    pub et_postprocess: Option<usize>,

    /// HD95 in mm when exactly one of prediction and reference is empty.
    #[arg(long, value_name = "MM", default_value_t = DEFAULT_HD95_PENALTY,
          value_parser = super::args::parse_hd95_penalty)]
    pub hd95_penalty: f64,
}

/// Runs `a2fseg metrics`.
pub fn run(args: MetricsArgs, _global: Global) -> Result<()> {
    let opts = MetricOptions {
        hd95_penalty: args.hd95_penalty,
        et_postprocess: args.et_postprocess,
    };
    let pred = read_labels(&args.pred)?;
    let gt = read_labels(&args.gt)?;
    if !pred.volume.geometry.same_grid(&gt.volume.geometry) {
        let (a, b) = (&pred.volume.geometry, &gt.volume.geometry);
        bail!(
            "{} and {} are not on the same voxel grid (dims {:?} vs {:?}, spacing {:?} vs {:?}, \
             or a different affine)",
            args.pred.display(),
            args.gt.display(),
            a.dims,
            b.dims,
            a.spacing,
            b.spacing
        );
    }
    let spacing = gt.volume.geometry.spacing.map(f64::abs);
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        bail!(
            "{}: voxel spacing {:?} is not positive; cannot measure distances",
            args.gt.display(),
            spacing
        );
    }
    let (convention, guessed) = match args.convention {
        Some(c) => (LabelConvention::from(c), false),
        None => {
            let present = pred.present().chain(gt.present());
            let c = metrics::guess_convention(present).with_context(|| {
                format!(
                    "cannot guess the label convention of {} and {} from their label values \
                     {:?} and {:?}; pass --convention",
                    args.pred.display(),
                    args.gt.display(),
                    pred.present().collect::<Vec<_>>(),
                    gt.present().collect::<Vec<_>>()
                )
            })?;
            (c, true)
        }
    };
    let pred_classes = pred.classes(convention, &args.pred)?;
    let gt_classes = gt.classes(convention, &args.gt)?;
    let m = metrics::evaluate_case(&pred_classes, &gt_classes, spacing, &opts);
    let source = if guessed {
        "guessed from the label values"
    } else {
        "given"
    };
    if args.json {
        let mut obj = m.to_json();
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "conventions".to_string(),
                serde_json::json!({
                    "labels": convention_name(convention),
                    "labels_guessed": guessed,
                    "spacing_mm": spacing,
                    "hd95_penalty_mm": opts.hd95_penalty,
                    "et_postprocess_min_voxels": opts.et_postprocess,
                    "text": metrics::conventions_text(&opts),
                }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print!(
            "{}",
            table(&args.pred, &args.gt, &m, &opts, convention, source, spacing)
        );
    }
    Ok(())
}

/// A label file read as a 3D grid, with the set of label values it holds.
struct Labels {
    volume: Volume,
    /// `seen[v]`: whether integer label `v` occurs.
    seen: Box<[bool; 256]>,
}

/// Reads a label map: one 3D channel of integer values in 0..=255.
fn read_labels(path: &Path) -> Result<Labels> {
    let volume = read_volume(path)?;
    if volume.channels.len() != 1 {
        bail!(
            "{}: a label map has one 3D volume, this file has {}",
            path.display(),
            volume.channels.len()
        );
    }
    let mut seen = Box::new([false; 256]);
    for &v in volume.channels[0].data() {
        if !(v.fract() == 0.0 && (0.0..=255.0).contains(&v)) {
            bail!(
                "{}: value {v} is not a label (labels are integers 0..=255)",
                path.display()
            );
        }
        seen[v as usize] = true;
    }
    Ok(Labels { volume, seen })
}

impl Labels {
    /// The label values present, ascending.
    fn present(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&v| self.seen[v as usize])
    }

    /// The map of `TumourClass` indices under `convention`; an error names the first label
    /// value the convention does not have.
    fn classes(&self, convention: LabelConvention, path: &Path) -> Result<Grid<u8>> {
        let mut lut = [None; 256];
        for v in self.present() {
            lut[v as usize] = Some(
                convention
                    .to_class(v)
                    .with_context(|| {
                        format!(
                            "{}: label {v} is not a label of {convention}",
                            path.display()
                        )
                    })?
                    .index() as u8,
            );
        }
        Ok(self.volume.channels[0].map(|v| lut[v as usize].unwrap_or(0)))
    }
}

fn convention_name(c: LabelConvention) -> &'static str {
    match c {
        LabelConvention::Brats => "brats",
        LabelConvention::Brats2023 => "brats2023",
        LabelConvention::Msd => "msd",
    }
}

/// The human-readable report: a header, one row per region, the conventions.
fn table(
    pred: &Path,
    gt: &Path,
    m: &CaseMetrics,
    opts: &MetricOptions,
    convention: LabelConvention,
    source: &str,
    spacing: [f64; 3],
) -> String {
    let mut s = format!(
        "prediction: {}\nreference:  {}\nlabels: {convention}, {source}; spacing {} × {} × {} mm\n\n",
        pred.display(),
        gt.display(),
        spacing[0],
        spacing[1],
        spacing[2]
    );
    s.push_str(&format!(
        "{:<14} {:>7} {:>9} {:>7} {:>7} {:>10} {:>10}\n",
        "region", "Dice", "HD95 mm", "sens", "spec", "pred ml", "ref ml"
    ));
    let mut row = |name: &str, r: &RegionMetrics| {
        s.push_str(&format!(
            "{:<14} {:>7.4} {:>9.3} {:>7.4} {:>7.4} {:>10.3} {:>10.3}\n",
            name, r.dice, r.hd95, r.sensitivity, r.specificity, r.pred_volume_ml, r.gt_volume_ml
        ));
    };
    for r in Region::ALL {
        row(r.name(), m.region(r));
    }
    if let (Some(pp), Some(n)) = (&m.et_postprocessed, opts.et_postprocess) {
        row(&format!("ET (pp {n})"), pp);
    }
    s.push_str(&format!("\n{}\n", metrics::conventions_text(opts)));
    s
}

// Keeps the documented default of `--et-postprocess` and the library's in step.
const _: () = assert!(DEFAULT_ET_MIN_VOXELS == 500);
