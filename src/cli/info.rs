//! `a2fseg info`: format, shape, datatype, spacing, affine and value statistics of a NIfTI
//! file, and how many of its voxels are NaN or infinite.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::volume::{NonFinite, read_volume_with, volume_info};

/// Arguments of `a2fseg info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The NIfTI-1 or NIfTI-2 file (.nii, .nii.gz, or the .hdr or .img of a pair).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print one JSON object with the keys format, shape, datatype, spacing, affine
    /// (row-major list of 4 lists), min, max, mean, sum and non_finite.
    #[arg(long)]
    pub json: bool,
}

/// Runs `a2fseg info`.
pub fn run(args: InfoArgs, _global: Global) -> Result<()> {
    // NaN and infinite voxels are reported, not refused: info is where a user finds them.
    let volume = read_volume_with(&args.file, NonFinite::Keep)?;
    let info = volume_info(&volume);
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!("file:     {}", args.file.display());
        print!("{}", info.to_text());
    }
    Ok(())
}
