//! Synthetic BraTS-like cases ("phantoms"): a skull-stripped brain with grey and white
//! matter and CSF, a glioma with edema, necrotic/non-enhancing core and enhancing rim, in
//! the four contrasts T1, T1c, T2 and FLAIR, with bias field and Rician noise.
//!
//! A case is a pure function of `(seed, index, dims)`: its parameters are drawn from a
//! ChaCha8 generator seeded with `seed` on stream `index`, and every per-voxel random
//! quantity is a hash of its position, so rendering is parallel and reproducible.
//!
//! Anatomy is defined in millimetres and sampled on an isotropic grid. The default geometry,
//! [`PhantomGeometry::Brats`], is BraTS's own: a 240×240×155 mm field of view (1 mm voxels on
//! the 240×240×155 grid, 3 mm on 80×80×52) with a brain box of about 140×175×140 mm, so that
//! tumours have their real size in millimetres whatever the grid. [`PhantomGeometry::Fit`]
//! (generator version 1's default) instead fills the grid with the brain at its own size.
//!
//! Tumours follow glioma (see `model`): an enhancing rim of variable thickness, patchy or
//! absent, around necrosis; edema along white matter with finger-like borders; mass effect;
//! sometimes a second focus; a heterogeneous core inside smooth edema. Contrasts (see
//! [`contrast`]) are drawn per case, the tumour's as z-scores calibrated on real BraTS
//! statistics; each sequence gets its own bias field, blur (often thick slices along one
//! axis) and Rician noise.

pub mod contrast;
mod geometry;
mod model;
mod noise;
mod render;
mod write;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use contrast::Tissue;
pub use geometry::{BRATS_SHAPE, PhantomGeometry};
pub use model::Grade;
pub use write::{
    ClassVoxels, GENERATOR, MANIFEST, MAX_SIDE, MIN_SIDE, ManifestCase, PhantomManifest,
    read_manifest, validate_shape, write_dataset, write_dataset_with,
};

use crate::volume::{Geometry, Grid};

/// Version of the generator, written to `phantom.json`; bump it whenever the same seed
/// would give different images.
pub const GENERATOR_VERSION: u32 = 5;

/// The default grid `[x, y, z]` of [`PhantomGeometry::Fit`].
pub const DEFAULT_SHAPE: [usize; 3] = [96, 96, 96];

/// Summary of a case's tumour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TumourSummary {
    /// High grade (enhancing) or low grade (no ET).
    pub grade: Grade,
    /// Tumour centre in voxel coordinates `[x, y, z]` (fractional).
    pub centre_voxel: [f64; 3],
    /// Nominal edema radius (mm).
    pub edema_radius_mm: f64,
    /// Nominal core radius (mm).
    pub core_radius_mm: f64,
    /// Nominal necrosis radius (mm), 0 without necrosis.
    pub necrosis_radius_mm: f64,
    /// Number of foci: 1, or 2 for a multifocal tumour (the other fields describe the main
    /// focus).
    #[serde(default = "one")]
    pub foci: usize,
}

fn one() -> usize {
    1
}

/// One synthetic case.
#[derive(Debug, Clone)]
pub struct PhantomCase {
    /// BraTS 2020 case id, `BraTS20_Training_NNN` with NNN = index + 1.
    pub id: String,
    /// T1, T1c, T2, FLAIR; dims `[x, y, z]`; exactly 0 outside the brain.
    pub images: [Grid<f32>; 4],
    /// `TumourClass` indices (0 background, 1 NCR, 2 ED, 3 ET).
    pub classes: Grid<u8>,
    /// Dominant healthy tissue per voxel: 0 outside the brain, 1 CSF, 2 grey matter,
    /// 3 white matter (ignores the tumour; useful for tests and figures).
    pub tissues: Grid<u8>,
    /// Grid, isotropic spacing ([`PhantomGeometry::spacing`]) and the affine in the form
    /// BraTS uses ([`PhantomGeometry::affine`]).
    pub geometry: Geometry,
    /// What the tumour was drawn as.
    pub tumour: TumourSummary,
}

/// BraTS 2020 training-case id for 0-based `index`.
pub fn case_id(index: usize) -> String {
    format!("BraTS20_Training_{:03}", index + 1)
}

/// Isotropic voxel size (mm) for a grid of `dims`: the smallest that covers the field of
/// view on every axis, in the default geometry (BraTS's: 1 mm at 240×240×155, 3 mm at
/// 80×80×52).
pub fn phantom_spacing(dims: [usize; 3]) -> [f64; 3] {
    PhantomGeometry::default().spacing(dims)
}

/// The affine written with a phantom of `dims` in the default geometry: BraTS's orientation
/// (x and y reversed, as in its `[-1, -1, 1]` diagonal) at the phantom's spacing.
pub fn phantom_affine(dims: [usize; 3]) -> [[f64; 4]; 4] {
    PhantomGeometry::default().affine(dims)
}

/// Generates case `index` of the phantom set `seed` on a grid of `dims` (`[x, y, z]`, each
/// at least 1; callers validate user input) in the default geometry. Deterministic; uses
/// the rayon pool.
pub fn generate_case(seed: u64, index: usize, dims: [usize; 3]) -> PhantomCase {
    generate_case_with(seed, index, dims, PhantomGeometry::default())
}

/// [`generate_case`] in `geometry`: the same random draws (so the same tumour type, contrasts
/// and acquisition), with the brain drawn to the geometry's size on its voxel size.
pub fn generate_case_with(
    seed: u64,
    index: usize,
    dims: [usize; 3],
    geometry: PhantomGeometry,
) -> PhantomCase {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let mut m = model::CaseModel::draw(&mut rng, geometry.brain_box_mm());
    let spacing = geometry.spacing(dims);
    m.calibrate(render::partial_volume(spacing));
    let r = render::render(&m, dims, spacing);
    let t = m.tumour.main();
    PhantomCase {
        id: case_id(index),
        images: r.images,
        classes: r.classes,
        tissues: r.tissues,
        geometry: Geometry::from_affine(dims, geometry.affine(dims)),
        tumour: TumourSummary {
            grade: m.tumour.grade,
            foci: m.tumour.foci.len(),
            centre_voxel: {
                let q = m.anatomy.brain_to_scanner(t.centre);
                [0, 1, 2].map(|i| q[i] / spacing[i] + dims[i] as f64 * 0.5 - 0.5)
            },
            edema_radius_mm: t.edema_radius,
            core_radius_mm: t.core_radius,
            necrosis_radius_mm: t.necrosis_radius,
        },
    }
}

#[cfg(test)]
mod tests;
