//! Phantom geometries: which field of view a phantom's grid covers, and how large the brain
//! is drawn in it. The anatomy itself (`model`) is the same in every geometry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The field of view (mm, x y z) of [`PhantomGeometry::Fit`]: the brain at its own size with
/// a margin.
const FIT_FIELD_OF_VIEW: [f64; 3] = [160.0, 192.0, 150.0];

/// BraTS's grid `[x, y, z]` (1 mm voxels): the default grid of [`PhantomGeometry::Brats`].
pub const BRATS_SHAPE: [usize; 3] = [240, 240, 155];

/// The field of view (mm) of [`PhantomGeometry::Brats`]: [`BRATS_SHAPE`] at 1 mm.
const BRATS_FIELD_OF_VIEW: [f64; 3] = [240.0, 240.0, 155.0];

/// The brain box (mm, x y z) that [`PhantomGeometry::Brats`] draws the brain to: about the
/// size of a skull-stripped BraTS brain (real cases measure 126–142 × 159–181 × 135–146
/// voxels of 1 mm).
const BRATS_BRAIN_BOX: [f64; 3] = [140.0, 175.0, 140.0];

/// Where a phantom's brain sits in its grid and how large it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhantomGeometry {
    /// The brain at the anatomy's own size (a box of about 134×168×115 mm), on the isotropic
    /// voxel size that fits a 160×192×150 mm field of view into the grid: 2 mm at 96³,
    /// 0.97 mm at 240×240×155 (the default of generator version 1).
    Fit,
    /// BraTS's geometry: a 240×240×155 mm field of view (1 mm voxels on the 240×240×155 grid,
    /// proportionally larger voxels on smaller grids) and the brain drawn to a box of about
    /// 140×175×140 mm, near the grid's centre as in BraTS's atlas-registered cases. The
    /// default: tumours keep their real size in millimetres on any grid.
    #[default]
    Brats,
}

impl PhantomGeometry {
    /// Every geometry, in the order of the docs.
    pub const ALL: [PhantomGeometry; 2] = [PhantomGeometry::Fit, PhantomGeometry::Brats];

    /// Name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PhantomGeometry::Fit => "fit",
            PhantomGeometry::Brats => "brats",
        }
    }

    /// The grid a phantom of this geometry gets when none is asked for: 96³ (2 mm voxels)
    /// for `Fit`, [`BRATS_SHAPE`] (1 mm) for `Brats`.
    pub fn default_shape(self) -> [usize; 3] {
        match self {
            PhantomGeometry::Fit => super::DEFAULT_SHAPE,
            PhantomGeometry::Brats => BRATS_SHAPE,
        }
    }

    /// The extent (mm) that the grid covers along x, y, z.
    fn field_of_view(self) -> [f64; 3] {
        match self {
            PhantomGeometry::Fit => FIT_FIELD_OF_VIEW,
            PhantomGeometry::Brats => BRATS_FIELD_OF_VIEW,
        }
    }

    /// Isotropic voxel size (mm) for a grid of `dims`: the smallest that covers the field of
    /// view on every axis (for `Fit`, 2 mm at 96³; for `Brats`, exactly 1 mm at 240×240×155).
    pub fn spacing(self, dims: [usize; 3]) -> [f64; 3] {
        let fov = self.field_of_view();
        let s = (0..3)
            .map(|i| fov[i] / dims[i].max(1) as f64)
            .fold(0.0, f64::max);
        [s; 3]
    }

    /// The affine written with a phantom of `dims`: BraTS's orientation (x and y reversed,
    /// as in its `[-1, -1, 1]` diagonal) at [`PhantomGeometry::spacing`].
    pub fn affine(self, dims: [usize; 3]) -> [[f64; 4]; 4] {
        let s = self.spacing(dims);
        [
            [-s[0], 0.0, 0.0, 0.0],
            [0.0, -s[1], 0.0, (dims[1].max(1) - 1) as f64 * s[1]],
            [0.0, 0.0, s[2], 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// The brain box (mm, x y z) the anatomy is drawn to; `None`: the anatomy's own size.
    pub(crate) fn brain_box_mm(self) -> Option<[f64; 3]> {
        match self {
            PhantomGeometry::Fit => None,
            PhantomGeometry::Brats => Some(BRATS_BRAIN_BOX),
        }
    }
}

impl fmt::Display for PhantomGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PhantomGeometry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhantomGeometry::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown geometry '{s}' (expected fit or brats)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brats_is_one_millimetre_on_the_brats_grid() {
        assert_eq!(PhantomGeometry::Brats.spacing(BRATS_SHAPE), [1.0; 3]);
        let fov = PhantomGeometry::Brats.field_of_view();
        assert_eq!(BRATS_SHAPE.map(|d| d as f64), fov);
        assert_eq!(PhantomGeometry::Brats.spacing([120, 120, 78]), [2.0; 3]);
        let a = PhantomGeometry::Brats.affine([240, 240, 155]);
        assert_eq!((a[0][0], a[1][1], a[2][2]), (-1.0, -1.0, 1.0));
        assert_eq!(a[1][3], 239.0);
        assert_eq!(PhantomGeometry::Fit.spacing([96, 96, 96]), [2.0; 3]);
    }

    #[test]
    fn names_round_trip() {
        for g in PhantomGeometry::ALL {
            assert_eq!(g.name().parse::<PhantomGeometry>(), Ok(g));
            assert_eq!(
                serde_json::to_string(&g).unwrap(),
                format!("\"{}\"", g.name())
            );
        }
        assert_eq!(
            "BraTS".parse::<PhantomGeometry>(),
            Ok(PhantomGeometry::Brats)
        );
        assert!("mni".parse::<PhantomGeometry>().is_err());
        assert_eq!(PhantomGeometry::default(), PhantomGeometry::Brats);
    }
}
