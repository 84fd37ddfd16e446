//! `a2fseg info`: shape, datatype, spacing, affine and value statistics of a NIfTI file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::volume::{read_volume, volume_info};

/// Arguments of `a2fseg info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The NIfTI-1 file (.nii, .nii.gz, or the .hdr or .img of a pair).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print one JSON object with the keys shape, datatype, spacing, affine (row-major
    /// list of 4 lists), min, max, mean and sum.
    #[arg(long)]
    pub json: bool,
}

/// Runs `a2fseg info`.
pub fn run(args: InfoArgs, _global: Global) -> Result<()> {
    let volume = read_volume(&args.file)?;
    let info = volume_info(&volume);
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!("file:     {}", args.file.display());
        print!("{}", info.to_text());
    }
    Ok(())
}
