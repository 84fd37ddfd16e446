//! `a2fseg metrics PRED GT`: Dice, HD95, sensitivity, specificity and volumes per tumour
//! region between two label files (for instance a prediction from another tool and its
//! reference segmentation).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::Global;
use crate::labels::{LabelConvention, Region};
use crate::metrics::{
    self, CaseMetrics, DEFAULT_ET_MIN_VOXELS, DEFAULT_HD95_PENALTY, LabelComparison, MetricOptions,
    RegionMetrics, check_penalty, compare_labels,
};
use crate::volume::{Geometry, Grid, read_volume};

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
    check_penalty(&opts)?;
    let pred = read_labels(&args.pred)?;
    let gt = read_labels(&args.gt)?;
    if !pred.geometry.same_grid(&gt.geometry) {
        let (a, b) = (&pred.geometry, &gt.geometry);
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
    let spacing = gt.geometry.spacing;
    let comparison = compare_labels(
        (&pred.labels, &args.pred.display().to_string()),
        (&gt.labels, &args.gt.display().to_string()),
        spacing,
        args.convention.map(LabelConvention::from),
        &opts,
    )?;
    let LabelComparison {
        metrics: m,
        convention,
        guessed,
        spacing,
    } = &comparison;
    let (convention, spacing) = (*convention, *spacing);
    let source = if *guessed {
        "guessed from the label values"
    } else {
        "given"
    };
    if args.json {
        let obj = comparison.to_json(&opts);
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print!(
            "{}",
            table(&args.pred, &args.gt, m, &opts, convention, source, spacing)
        );
    }
    Ok(())
}

/// A label file: its geometry and its one 3D grid of values.
struct LabelFile {
    geometry: Geometry,
    labels: Grid<f32>,
}

/// Reads a label map: one 3D channel.
fn read_labels(path: &Path) -> Result<LabelFile> {
    let volume = read_volume(path)?;
    if volume.channels.len() != 1 {
        bail!(
            "{}: a label map has one 3D volume, this file has {}",
            path.display(),
            volume.channels.len()
        );
    }
    Ok(LabelFile {
        geometry: volume.geometry,
        labels: volume.channels.into_iter().next().expect("one channel"),
    })
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
