//! `a2fseg phantom`: write synthetic BraTS-like cases in the BraTS 2020 layout.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::phantom::{PhantomGeometry, validate_shape, write_dataset_with};

/// Arguments of `a2fseg phantom`.
#[derive(Debug, Args)]
pub struct PhantomArgs {
    /// Output folder (created; an earlier phantom set there is replaced, anything else is
    /// refused).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Number of cases.
    #[arg(long, value_name = "N")]
    pub cases: usize,

    /// Grid size in voxels, x,y,z: the voxel size follows from it (with the brats geometry,
    /// 240,240,155 is 1 mm, 80,80,52 is 3 mm); default 240,240,155, or 96,96,96 with
    /// --geometry fit.
    #[arg(long, value_name = "X,Y,Z")]
    pub shape: Option<String>,

    /// brats: BraTS's geometry, a 240×240×155 mm field of view (1 mm voxels on 240,240,155)
    /// with a brain box of about 140×175×140 mm; fit: the brain at its own size filling the
    /// grid (2 mm voxels at 96³).
    #[arg(long, value_name = "GEOMETRY", default_value = "brats")]
    pub geometry: PhantomGeometry,

    /// Seed: the same seed, count and shape always give the same files.
    #[arg(long, value_name = "S", default_value_t = 2020)]
    pub seed: u64,
}

/// Parses `X,Y,Z` (also `XxYxZ`) into a shape.
fn parse_shape(text: &str) -> Result<[usize; 3]> {
    let dims = super::args::parse_xyz(text).map_err(|e| anyhow::anyhow!("invalid --shape: {e}"))?;
    validate_shape(dims).map_err(|e| anyhow::anyhow!("invalid --shape '{text}': {e}"))?;
    Ok(dims)
}

/// Runs `a2fseg phantom`.
pub fn run(args: PhantomArgs, global: Global) -> Result<()> {
    if args.cases == 0 {
        bail!("--cases must be at least 1");
    }
    let dims = match &args.shape {
        Some(text) => parse_shape(text)?,
        None => args.geometry.default_shape(),
    };
    let manifest = write_dataset_with(
        &args.out,
        args.cases,
        dims,
        args.seed,
        args.geometry,
        global.quiet,
    )?;
    let s = manifest.spacing[0];
    let [x, y, z] = manifest.shape;
    println!(
        "wrote {} phantom case{} ({x}x{y}x{z} voxels of {s:.2} mm, {} geometry, seed {}) to {}",
        manifest.cases.len(),
        if manifest.cases.len() == 1 { "" } else { "s" },
        manifest.geometry,
        manifest.seed,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_bad_ones_name_the_option() {
        assert_eq!(parse_shape("96,96,96").unwrap(), [96, 96, 96]);
        assert_eq!(parse_shape("240x240x155").unwrap(), [240, 240, 155]);
        for bad in ["96,96", "a,b,c", "0,96,96", "96,96,96,96", "4,96,96"] {
            let e = format!("{:#}", parse_shape(bad).unwrap_err());
            assert!(e.contains("--shape"), "{e}");
        }
    }
}
