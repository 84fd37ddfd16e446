//! `a2fseg phantom`: write synthetic BraTS-like cases in the BraTS 2020 layout.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::phantom::{phantom_spacing, validate_shape, write_dataset};

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

    /// Grid size in voxels, x,y,z (the anatomy scales with it: 96³ is 2 mm voxels,
    /// 240,240,155 about 1 mm).
    #[arg(long, value_name = "X,Y,Z", default_value = "96,96,96")]
    pub shape: String,

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
    let dims = parse_shape(&args.shape)?;
    let manifest = write_dataset(&args.out, args.cases, dims, args.seed, global.quiet)?;
    let s = phantom_spacing(dims)[0];
    let [x, y, z] = manifest.shape;
    println!(
        "wrote {} phantom case{} ({x}x{y}x{z} voxels of {s:.2} mm, seed {}) to {}",
        manifest.cases.len(),
        if manifest.cases.len() == 1 { "" } else { "s" },
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
