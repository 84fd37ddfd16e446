//! Writing a phantom dataset in the BraTS 2020 layout.
//!
//! `OUT/BraTS20_Training_NNN/BraTS20_Training_NNN_{t1,t1ce,t2,flair,seg}.nii.gz` with
//! labels 0/1/2/4, plus `OUT/phantom.json` (the [`PhantomManifest`]). Everything is written
//! into a temporary folder beside `OUT` that is renamed into place at the end, so an
//! interrupted run never leaves a complete-looking dataset behind.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    GENERATOR_VERSION, Grade, PhantomCase, PhantomGeometry, TumourSummary, generate_case_with,
};
use crate::fsutil::atomic_write_bytes;
use crate::labels::{LabelConvention, TumourClass};
use crate::volume::{Grid, write_float, write_labels};

/// Name of the manifest file inside a phantom dataset.
pub const MANIFEST: &str = "phantom.json";

/// Value of [`PhantomManifest::generator`]: how a phantom dataset recognises itself.
pub const GENERATOR: &str = "a2fseg phantom";

/// File suffixes of the four modalities (T1, T1c, T2, FLAIR) in the BraTS 2020 layout.
const SUFFIXES: [&str; 4] = ["t1", "t1ce", "t2", "flair"];

/// Largest accepted grid side.
pub const MAX_SIDE: usize = 1024;
/// Smallest accepted grid side.
pub const MIN_SIDE: usize = 8;

/// One case in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestCase {
    /// Case id (folder name).
    pub id: String,
    /// Tumour grade.
    pub grade: Grade,
    /// Tumour parameters.
    pub tumour: TumourSummary,
    /// Voxels of NCR, ED and ET.
    pub voxels: ClassVoxels,
}

/// Voxel counts per tumour class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassVoxels {
    /// Necrotic / non-enhancing core (label 1).
    pub ncr: usize,
    /// Edema (label 2).
    pub ed: usize,
    /// Enhancing tumour (label 4).
    pub et: usize,
}

/// `phantom.json`: what made the dataset, so a later run can tell whether it can reuse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhantomManifest {
    /// Always [`GENERATOR`].
    pub generator: String,
    /// [`GENERATOR_VERSION`] of the writer.
    pub generator_version: u32,
    /// Version of the a2fseg crate that wrote it.
    pub crate_version: String,
    /// Seed of the set.
    pub seed: u64,
    /// Grid `[x, y, z]`.
    pub shape: [usize; 3],
    /// Field of view and brain size (`fit` in manifests written before geometries existed).
    #[serde(default = "fit")]
    pub geometry: PhantomGeometry,
    /// Voxel size (mm).
    pub spacing: [f64; 3],
    /// Label convention of the seg files (`brats`: 0, 1, 2, 4).
    pub labels: LabelConvention,
    /// Cases in id order.
    pub cases: Vec<ManifestCase>,
}

/// The geometry of manifests written before geometries existed.
fn fit() -> PhantomGeometry {
    PhantomGeometry::Fit
}

impl PhantomManifest {
    /// Whether this dataset is exactly what `write_dataset(_, n_cases, dims, seed, _)` with
    /// the current generator would write (the default geometry).
    pub fn matches(&self, n_cases: usize, dims: [usize; 3], seed: u64) -> bool {
        self.matches_with(n_cases, dims, seed, PhantomGeometry::default())
    }

    /// [`PhantomManifest::matches`] for a set written in `geometry` ([`write_dataset_with`]).
    pub fn matches_with(
        &self,
        n_cases: usize,
        dims: [usize; 3],
        seed: u64,
        geometry: PhantomGeometry,
    ) -> bool {
        self.generator == GENERATOR
            && self.generator_version == GENERATOR_VERSION
            && self.seed == seed
            && self.shape == dims
            && self.geometry == geometry
            && self.cases.len() == n_cases
    }
}

/// Reads `DIR/phantom.json`; `Ok(None)` when the folder has none.
pub fn read_manifest(dir: &Path) -> Result<Option<PhantomManifest>> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let m: PhantomManifest =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    if m.generator != GENERATOR {
        bail!("{} was not written by {GENERATOR}", path.display());
    }
    Ok(Some(m))
}

/// Checks a user-given grid: every side in `MIN_SIDE..=MAX_SIDE`.
pub fn validate_shape(dims: [usize; 3]) -> Result<()> {
    if dims.iter().any(|&d| !(MIN_SIDE..=MAX_SIDE).contains(&d)) {
        bail!(
            "every side of the shape must be between {MIN_SIDE} and {MAX_SIDE} voxels, got {}x{}x{}",
            dims[0],
            dims[1],
            dims[2]
        );
    }
    Ok(())
}

/// What to do with an existing `out`.
enum Existing {
    Nothing,
    EmptyFolder,
    PhantomDataset,
}

fn inspect_out(out: &Path) -> Result<Existing> {
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    if !meta.is_dir() {
        bail!(
            "cannot write phantoms to {}: it exists and is not a folder",
            out.display()
        );
    }
    let mut entries =
        fs::read_dir(out).with_context(|| format!("cannot read folder {}", out.display()))?;
    if entries.next().is_none() {
        return Ok(Existing::EmptyFolder);
    }
    match read_manifest(out) {
        Ok(Some(_)) => Ok(Existing::PhantomDataset),
        _ => bail!(
            "refusing to overwrite {}: it is not empty and not a phantom dataset (no valid {MANIFEST})",
            out.display()
        ),
    }
}

/// Writes one case's five files into `dir/<id>/`.
fn write_case(dir: &Path, case: &PhantomCase) -> Result<()> {
    let case_dir = dir.join(&case.id);
    fs::create_dir_all(&case_dir)
        .with_context(|| format!("cannot create folder {}", case_dir.display()))?;
    let geometry = &case.geometry;
    for (img, suffix) in case.images.iter().zip(SUFFIXES) {
        write_float(
            &case_dir.join(format!("{}_{suffix}.nii.gz", case.id)),
            geometry,
            img,
        )?;
    }
    let labels: Grid<u8> = case.classes.map(|c| {
        LabelConvention::Brats
            .from_class(TumourClass::from_index(c as usize).unwrap_or(TumourClass::Background))
    });
    write_labels(
        &case_dir.join(format!("{}_seg.nii.gz", case.id)),
        geometry,
        &labels,
    )
}

fn count(case: &PhantomCase) -> ClassVoxels {
    let mut n = [0usize; 4];
    for &c in case.classes.data() {
        n[(c as usize).min(3)] += 1;
    }
    ClassVoxels {
        ncr: n[1],
        ed: n[2],
        et: n[3],
    }
}

/// Writes `n_cases` phantoms of the set `seed` on a grid of `dims` into `out` (BraTS 2020
/// layout, see the module doc) in the default geometry, with a progress bar unless `quiet`.
///
/// `out` may be missing, an empty folder, or an earlier phantom dataset (which is
/// replaced); anything else is refused. Returns the manifest written.
pub fn write_dataset(
    out: &Path,
    n_cases: usize,
    dims: [usize; 3],
    seed: u64,
    quiet: bool,
) -> Result<PhantomManifest> {
    write_dataset_with(out, n_cases, dims, seed, PhantomGeometry::default(), quiet)
}

/// [`write_dataset`] in `geometry`.
pub fn write_dataset_with(
    out: &Path,
    n_cases: usize,
    dims: [usize; 3],
    seed: u64,
    geometry: PhantomGeometry,
    quiet: bool,
) -> Result<PhantomManifest> {
    if n_cases == 0 {
        bail!("the number of cases must be at least 1");
    }
    validate_shape(dims)?;
    let existing = inspect_out(out)?;
    let parent: PathBuf = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create folder {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".phantom-partial-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temporary folder in {}", parent.display()))?;

    let bar = crate::progress::labelled_bar(n_cases as u64, "phantoms", "cases", quiet);
    let cases: Vec<ManifestCase> = (0..n_cases)
        .into_par_iter()
        .map(|i| {
            let case = generate_case_with(seed, i, dims, geometry);
            write_case(tmp.path(), &case)?;
            bar.inc(1);
            Ok(ManifestCase {
                id: case.id.clone(),
                grade: case.tumour.grade,
                tumour: case.tumour,
                voxels: count(&case),
            })
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();

    let manifest = PhantomManifest {
        generator: GENERATOR.to_string(),
        generator_version: GENERATOR_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        seed,
        shape: dims,
        geometry,
        spacing: geometry.spacing(dims),
        labels: LabelConvention::Brats,
        cases,
    };
    let json = serde_json::to_string_pretty(&manifest)?;
    atomic_write_bytes(&tmp.path().join(MANIFEST), json.as_bytes())?;

    // Move the finished set into place; an older phantom set is moved aside first and
    // deleted only once the new one is in place.
    let finished = tmp.keep();
    let result = (|| -> Result<()> {
        match existing {
            Existing::Nothing => {}
            Existing::EmptyFolder => {
                fs::remove_dir(out).with_context(|| format!("cannot replace {}", out.display()))?
            }
            Existing::PhantomDataset => {
                let old = tempfile::Builder::new()
                    .prefix(".phantom-old-")
                    .tempdir_in(&parent)
                    .with_context(|| {
                        format!("cannot create a temporary folder in {}", parent.display())
                    })?;
                let aside = old.path().join("old");
                fs::rename(out, &aside)
                    .with_context(|| format!("cannot move {} aside", out.display()))?;
                if let Err(e) = fs::rename(&finished, out) {
                    // Put the old set back before `old` (then empty) is deleted.
                    let _ = fs::rename(&aside, out);
                    return Err(e)
                        .with_context(|| format!("cannot move the phantoms to {}", out.display()));
                }
                drop(old); // deletes the old set
                return Ok(());
            }
        }
        fs::rename(&finished, out)
            .with_context(|| format!("cannot move the phantoms to {}", out.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&finished);
    }
    result?;
    Ok(manifest)
}
