//! Value grammars and options shared by several subcommands' arguments.

use std::path::PathBuf;

use clap::Args;

use crate::infer::WindowChoice;
use crate::modality::Modality;

/// The four image files of one case, any of them optional (`predict`, `view`).
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// T1 image (NIfTI).
    #[arg(long, value_name = "FILE")]
    pub t1: Option<PathBuf>,
    /// Contrast-enhanced T1 image.
    #[arg(long, value_name = "FILE")]
    pub t1c: Option<PathBuf>,
    /// T2 image.
    #[arg(long, value_name = "FILE")]
    pub t2: Option<PathBuf>,
    /// FLAIR image.
    #[arg(long, value_name = "FILE")]
    pub flair: Option<PathBuf>,
}

impl ImageArgs {
    /// The files in canonical modality order, `None` where not given.
    pub fn by_modality(&self) -> [Option<PathBuf>; 4] {
        [&self.t1, &self.t1c, &self.t2, &self.flair].map(Clone::clone)
    }

    /// The given files with their modality, in canonical order.
    pub fn given(&self) -> Vec<(Modality, PathBuf)> {
        Modality::ALL
            .into_iter()
            .zip(self.by_modality())
            .filter_map(|(m, p)| p.map(|p| (m, p)))
            .collect()
    }
}

/// Parses `--hd95-penalty`: a finite, non-negative number of mm.
pub fn parse_hd95_penalty(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a non-negative number of mm, not '{s}'")),
    }
}

/// What `train`, `predict` and `evaluate` do with input images holding NaN or infinite
/// voxels (resampling tools leave NaN outside the field of view).
#[derive(Debug, Clone, Copy, Args)]
pub struct FiniteArgs {
    /// Refuse an input file with NaN or infinite voxels (one-line error naming the file and
    /// the count) instead of reading those voxels as 0, outside the brain, with a warning.
    #[arg(long)]
    pub strict_finite: bool,
}

/// How `predict` and `evaluate` cover a case with network passes (see
/// [`crate::infer::plan`]).
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Inference plan: sliding (windows of the training patch, Gaussian-blended), whole
    /// (one pass over the brain box padded to a multiple of 2^poolings) or auto (the one
    /// with fewer convolution FLOPs whose estimated memory fits under --max-memory).
    #[arg(long, default_value_t = WindowChoice::default(), value_name = "PLAN")]
    pub window: WindowChoice,
    /// Memory cap of --window auto, e.g. 4G or 512M [default: half of the physical memory].
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
}

impl PlanArgs {
    /// The memory cap in bytes: --max-memory parsed, else the default.
    pub fn max_memory_bytes(&self) -> anyhow::Result<u64> {
        match &self.max_memory {
            Some(s) => crate::infer::plan::parse_memory_size(s),
            None => Ok(crate::infer::plan::default_max_memory()),
        }
    }
}

/// Parses a 3D size given as `X,Y,Z` (also `XxYxZ`), or one number `N` for `N,N,N`, into
/// `[x, y, z]`: positive integers, spaces around the numbers allowed. Every shape, patch and
/// case-size option of the CLI reads its value through this one grammar.
pub fn parse_xyz(s: &str) -> Result<[usize; 3], String> {
    let bad = || format!("'{s}' is not a size X,Y,Z (three positive integers, or one for a cube)");
    let nums = s
        .split([',', 'x', 'X'])
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(bad)?;
    match *nums.as_slice() {
        [n] => Ok([n; 3]),
        [x, y, z] => Ok([x, y, z]),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_hd95_penalty, parse_xyz};

    #[test]
    fn hd95_penalties_are_finite_non_negative_millimetres() {
        assert_eq!(parse_hd95_penalty("100"), Ok(100.0));
        assert_eq!(parse_hd95_penalty("0"), Ok(0.0));
        for bad in ["-1", "inf", "NaN", "ten"] {
            let e = parse_hd95_penalty(bad).unwrap_err();
            assert!(
                e.contains("non-negative number of mm") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn sizes_in_every_accepted_spelling() {
        assert_eq!(parse_xyz("240,240,155"), Ok([240, 240, 155]));
        assert_eq!(parse_xyz("16x24X32"), Ok([16, 24, 32]));
        assert_eq!(parse_xyz(" 64 , 32 ,16 "), Ok([64, 32, 16]));
        assert_eq!(parse_xyz("128"), Ok([128; 3]));
        for bad in [
            "", "1,2", "1,2,3,4", "0,2,3", "a,2,3", "-1,2,3", "2,,3", "1.5",
        ] {
            let e = parse_xyz(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }
}
