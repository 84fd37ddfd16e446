//! `a2fseg view`: an offline HTML page with the interactive viewer of one case (see
//! [`crate::report::view_files`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use super::metrics::ConventionArg;
use crate::fsutil::refuse_overwriting_inputs;
use crate::metrics::{DEFAULT_HD95_PENALTY, MetricOptions};
use crate::report::view_files::{ViewFiles, write_view_page};

/// Arguments of `a2fseg view`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    a2fseg view --t1 c_t1.nii.gz --t1c c_t1ce.nii.gz --t2 c_t2.nii.gz --flair c_flair.nii.gz \
    --seg pred.nii.gz --gt c_seg.nii.gz --attention pred_attention_flair.nii.gz --out case.html")]
pub struct ViewArgs {
    /// The case's images (at least one).
    #[command(flatten)]
    pub images: super::args::ImageArgs,
    /// A predicted label map; repeat to switch between several.
    #[arg(long, value_name = "PRED")]
    pub seg: Vec<PathBuf>,
    /// The reference label map (the scores beside the viewer are against it).
    #[arg(long, value_name = "GT")]
    pub gt: Option<PathBuf>,
    /// An attention map (e.g. from `predict --save-attention`); repeat for each modality.
    #[arg(long, value_name = "FILE")]
    pub attention: Vec<PathBuf>,
    /// Label convention of the label maps [default: guessed from the label values, as
    /// `a2fseg metrics` does].
    #[arg(long, value_enum)]
    pub convention: Option<ConventionArg>,
    /// HD95 (mm) when exactly one of prediction and reference is empty.
    #[arg(long, default_value_t = DEFAULT_HD95_PENALTY, value_name = "MM",
          value_parser = super::args::parse_hd95_penalty)]
    pub hd95_penalty: f64,
    /// Case name in the page's title [default: the first image's file name].
    #[arg(long)]
    pub id: Option<String>,
    /// The HTML page to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `a2fseg view`.
pub fn run(args: ViewArgs, global: Global) -> Result<()> {
    let files = ViewFiles {
        images: args.images.by_modality(),
        segmentations: args.seg,
        truth: args.gt,
        attention: args.attention,
        convention: args.convention.map(Into::into),
        metrics: MetricOptions {
            hd95_penalty: args.hd95_penalty,
            et_postprocess: None,
        },
        id: args.id,
    };
    let inputs: Vec<&PathBuf> = files
        .images
        .iter()
        .flatten()
        .chain(&files.segmentations)
        .chain(&files.truth)
        .chain(&files.attention)
        .collect();
    refuse_overwriting_inputs(&[&args.out], &inputs)?;
    let size = write_view_page(&files, &args.out)?;
    if !global.quiet {
        eprintln!("wrote {} ({:.1} MB)", args.out.display(), size as f64 / 1e6);
    }
    Ok(())
}
