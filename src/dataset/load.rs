//! Reading a case's voxels, and checking a case for every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use super::inputs::{input_policy, read_warning, skull_stripping_note, warn_if_not_skull_stripped};
use super::{CaseFiles, Dataset};
use crate::labels::LabelConvention;
use crate::modality::{Modality, Subset};
use crate::volume::{Geometry, Grid, NonFinite, Volume};

/// A case read into memory: images in canonical order, classes as
/// [`crate::labels::TumourClass`] indices, all on one grid.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCase {
    /// Case id.
    pub id: String,
    /// The grid shared by every file of the case (taken from its first image, or the seg).
    pub geometry: Geometry,
    /// Image of each modality (T1, T1c, T2, FLAIR), dims `geometry.dims`.
    pub images: [Option<Grid<f32>>; 4],
    /// TumourClass indices (0..=3), if the case has a segmentation.
    pub classes: Option<Grid<u8>>,
    /// The dataset's label convention (for writing predictions back).
    pub convention: LabelConvention,
}

impl LoadedCase {
    /// The modalities present.
    pub fn available(&self) -> Subset {
        Subset::from_modalities(
            Modality::ALL
                .into_iter()
                .filter(|m| self.images[m.index()].is_some()),
        )
    }
}

/// Reads volumes, reading each file once even when several modalities share it (MSD).
struct Reader {
    cache: BTreeMap<PathBuf, Volume>,
    /// What happens to NaN and infinite voxels.
    policy: NonFinite,
}

impl Reader {
    fn new(policy: NonFinite) -> Reader {
        Reader {
            cache: BTreeMap::new(),
            policy,
        }
    }

    /// The reader of [`load_case`]: NaN and infinite voxels refused (`--strict-finite`) or
    /// set to 0 with a warning.
    fn for_loading(dataset: &Dataset) -> Reader {
        Reader::new(input_policy(dataset.strict_finite))
    }

    fn volume(&mut self, path: &Path) -> Result<&Volume> {
        if !self.cache.contains_key(path) {
            // read_volume's errors already name the file.
            let v = read_warning(path, self.policy)?;
            self.cache.insert(path.to_path_buf(), v);
        }
        Ok(&self.cache[path])
    }

    /// The 3D image of one modality: the file's only volume, or its `channel` for a 4D file.
    fn image(
        &mut self,
        path: &Path,
        channel: Option<usize>,
        m: Modality,
    ) -> Result<(Geometry, Grid<f32>)> {
        let vol = self.volume(path)?;
        let n = vol.channels.len();
        let grid = match channel {
            None if n == 1 => &vol.channels[0],
            None => bail!(
                "{}: expected a 3D image for {} but the file has {n} volumes",
                path.display(),
                m.label()
            ),
            Some(c) => vol.channels.get(c).ok_or_else(|| {
                anyhow!(
                    "{}: {} is channel {c} but the file has only {n} volume(s)",
                    path.display(),
                    m.label()
                )
            })?,
        };
        Ok((vol.geometry.clone(), grid.clone()))
    }
}

/// Counts of NaN and infinite voxels.
fn non_finite(grid: &Grid<f32>) -> (usize, usize) {
    let mut nan = 0;
    let mut inf = 0;
    for v in grid.data() {
        if v.is_nan() {
            nan += 1;
        } else if v.is_infinite() {
            inf += 1;
        }
    }
    (nan, inf)
}

fn non_finite_message(path: &Path, what: &str, (nan, inf): (usize, usize)) -> Option<String> {
    if nan + inf == 0 {
        return None;
    }
    Some(format!(
        "{}: {what} has {nan} NaN and {inf} infinite voxels (read as 0 by train, predict and \
         evaluate; refused with --strict-finite)",
        path.display(),
    ))
}

/// An error naming `path` if the segmentation `labels` holds a value that is not a whole
/// number (labels may be stored as any integer or float type, but must be integral).
fn check_integral(path: &Path, labels: &Grid<f32>) -> Result<()> {
    let mut bad = labels
        .data()
        .iter()
        .filter(|v| v.is_finite() && v.fract() != 0.0);
    if let Some(first) = bad.next() {
        bail!(
            "{}: the segmentation holds {} voxel(s) with non-integral values (e.g. {first}); \
             labels must be whole numbers",
            path.display(),
            1 + bad.count()
        );
    }
    Ok(())
}

fn grid_message(a: &Path, ga: &Geometry, b: &Path, gb: &Geometry) -> String {
    if ga.dims != gb.dims {
        format!(
            "{} has shape {:?} but {} has shape {:?}",
            b.display(),
            gb.dims,
            a.display(),
            ga.dims
        )
    } else {
        format!(
            "{} and {} have the same shape {:?} but different affines",
            a.display(),
            b.display(),
            ga.dims
        )
    }
}

/// Reads a case: every available image and the seg, checked to share one grid (shape and
/// affine), and the seg's labels integral and valid in the dataset's convention. NaN and
/// infinite voxels become 0 with a warning, or are an error if the dataset is
/// [`Dataset::strict_finite`]. The first problem is the error, naming the file(s).
pub fn load_case(dataset: &Dataset, case: &CaseFiles) -> Result<LoadedCase> {
    let mut reader = Reader::for_loading(dataset);
    let mut images: [Option<Grid<f32>>; 4] = [None, None, None, None];
    let mut reference: Option<(PathBuf, Geometry)> = None;
    for m in Modality::ALL {
        let Some(file) = case.image(m) else { continue };
        let (geom, grid) = reader.image(&file.path, file.channel, m)?;
        if let Some((rp, rg)) = &reference {
            if !rg.same_grid(&geom) {
                bail!(
                    "case {}: {}",
                    case.id,
                    grid_message(rp, rg, &file.path, &geom)
                );
            }
        } else {
            reference = Some((file.path.clone(), geom));
        }
        images[m.index()] = Some(grid);
    }
    let mut classes = None;
    if let Some(seg) = &case.seg {
        let vol = reader.volume(seg)?;
        if vol.channels.len() != 1 {
            bail!(
                "{}: a segmentation must be 3D but the file has {} volumes",
                seg.display(),
                vol.channels.len()
            );
        }
        if let Some((rp, rg)) = &reference
            && !rg.same_grid(&vol.geometry)
        {
            bail!(
                "case {}: {}",
                case.id,
                grid_message(rp, rg, seg, &vol.geometry)
            );
        }
        check_integral(seg, &vol.channels[0])?;
        let c = dataset
            .convention_of(case)
            .classes_from_values(&vol.channels[0])
            .with_context(|| format!("{}", seg.display()))?;
        if reference.is_none() {
            reference = Some((seg.clone(), vol.geometry.clone()));
        }
        classes = Some(c);
    }
    let Some((_, geometry)) = reference else {
        bail!("case {} has no image and no segmentation", case.id);
    };
    // Only a case that loads is judged, so an error stays the one line the user sees.
    for m in Modality::ALL {
        if let (Some(file), Some(grid)) = (case.image(m), &images[m.index()]) {
            warn_if_not_skull_stripped(&file.path, grid);
        }
    }
    Ok(LoadedCase {
        id: case.id.clone(),
        geometry,
        images,
        classes,
        convention: dataset.convention_of(case),
    })
}

/// What `dataset check` reports for one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Case id.
    pub id: String,
    /// Modalities present, as a subset name (`"1111"`).
    pub subset: Subset,
    /// Modalities present, by key (`["t1", "t1c", …]`).
    pub modalities: Vec<Modality>,
    /// Whether the case has a segmentation file.
    pub seg: bool,
    /// The label convention its segmentation is read in (`"brats"`, `"brats2023"`, `"msd"`;
    /// cases of a folder mixing BraTS years may differ).
    pub convention: &'static str,
    /// The shape `[x, y, z]` of its first readable file.
    pub shape: Option<[usize; 3]>,
    /// Every problem found, one sentence each, naming the file.
    pub problems: Vec<String>,
    /// Harmless oddities.
    pub warnings: Vec<String>,
}

/// Reads every file of a case and collects every problem instead of stopping at the first:
/// unreadable files, wrong number of volumes, NaN/Inf voxels, files on different grids
/// (shape or affine), non-integral labels or labels outside the convention, no image at
/// all. Never fails.
pub fn check_case(dataset: &Dataset, case: &CaseFiles) -> CaseReport {
    let mut problems = case.problems.clone();
    let mut warnings = case.warnings.clone();
    let mut reader = Reader::new(NonFinite::Keep);
    let mut reference: Option<(PathBuf, Geometry)> = None;
    let mut compare = |path: &Path, geom: &Geometry, problems: &mut Vec<String>| {
        if let Some((rp, rg)) = &reference {
            if !rg.same_grid(geom) {
                problems.push(grid_message(rp, rg, path, geom));
            }
        } else {
            reference = Some((path.to_path_buf(), geom.clone()));
        }
    };
    let mut failed: Vec<PathBuf> = Vec::new();
    for m in Modality::ALL {
        let Some(file) = case.image(m) else { continue };
        if failed.contains(&file.path) {
            continue;
        }
        match reader.image(&file.path, file.channel, m) {
            Ok((geom, grid)) => {
                let what = format!("{} image", m.label());
                if let Some(msg) = non_finite_message(&file.path, &what, non_finite(&grid)) {
                    problems.push(msg);
                }
                if let Some(note) = skull_stripping_note(&grid) {
                    let w = format!("{} {note}", file.path.display());
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                compare(&file.path, &geom, &mut problems);
            }
            Err(e) => {
                if !reader.cache.contains_key(&file.path) {
                    failed.push(file.path.clone());
                }
                problems.push(format!("{e:#}"));
            }
        }
    }
    if let Some(seg) = &case.seg {
        match reader.volume(seg) {
            Ok(vol) => {
                if vol.channels.len() != 1 {
                    problems.push(format!(
                        "{}: a segmentation must be 3D but the file has {} volumes",
                        seg.display(),
                        vol.channels.len()
                    ));
                } else if let Some(msg) =
                    non_finite_message(seg, "segmentation", non_finite(&vol.channels[0]))
                {
                    problems.push(msg);
                } else if let Err(e) = check_integral(seg, &vol.channels[0]) {
                    problems.push(e.to_string());
                } else if let Err(e) = dataset
                    .convention_of(case)
                    .classes_from_values(&vol.channels[0])
                {
                    problems.push(format!("{}: {e}", seg.display()));
                }
                let geom = vol.geometry.clone();
                compare(seg, &geom, &mut problems);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if case.available().is_empty() {
        problems.push(format!("case {} has no image of any modality", case.id));
    }
    let available = case.available();
    CaseReport {
        id: case.id.clone(),
        subset: available,
        modalities: available.modalities().collect(),
        seg: case.has_seg(),
        convention: dataset.convention_of(case).name(),
        shape: reference.map(|(_, g)| g.dims),
        problems: problems.into_iter().map(|p| p.replace('\n', " ")).collect(),
        warnings,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::dataset::discover;
    use crate::volume::{write_float, write_labels};

    pub(crate) const DIMS: [usize; 3] = [5, 4, 3];

    pub(crate) fn geometry(shift: f64) -> Geometry {
        let mut a = [[0.0; 4]; 4];
        for (i, row) in a.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        a[0][3] = shift;
        Geometry::from_affine(DIMS, a)
    }

    /// A small image: zero border, values rising inside.
    pub(crate) fn image(seed: f32) -> Grid<f32> {
        let mut g = Grid::zeros(DIMS);
        for z in 1..3 {
            for y in 1..3 {
                for x in 1..4 {
                    g.set(x, y, z, seed + (x + 3 * y + 7 * z) as f32);
                }
            }
        }
        g
    }

    /// A BraTS-2020-style case folder `root/id` with `labels` (NCR, ED, ET values) in its seg.
    pub(crate) fn write_case(root: &Path, id: &str, labels: [u8; 3]) {
        let g = geometry(0.0);
        for (i, m) in ["t1", "t1ce", "t2", "flair"].iter().enumerate() {
            write_float(
                &root.join(format!("{id}/{id}_{m}.nii.gz")),
                &g,
                &image(i as f32),
            )
            .unwrap();
        }
        let mut seg = Grid::<u8>::zeros(DIMS);
        seg.set(1, 1, 1, labels[0]);
        seg.set(2, 1, 1, labels[1]);
        seg.set(3, 1, 1, labels[2]);
        write_labels(&root.join(format!("{id}/{id}_seg.nii.gz")), &g, &seg).unwrap();
    }

    #[test]
    fn loads_a_case_into_classes() {
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path(), "BraTS20_Training_001", [1, 2, 4]);
        let ds = discover(dir.path()).unwrap();
        let case = load_case(&ds, &ds.cases[0]).unwrap();
        assert_eq!(case.available(), Subset::FULL);
        assert_eq!(case.geometry.dims, DIMS);
        assert_eq!(case.images[2].as_ref().unwrap(), &image(2.0));
        let c = case.classes.unwrap();
        assert_eq!(
            [
                c.get(1, 1, 1),
                c.get(2, 1, 1),
                c.get(3, 1, 1),
                c.get(0, 0, 0)
            ],
            [1, 2, 3, 0]
        );
        let report = check_case(&ds, &ds.cases[0]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.shape, Some(DIMS));
    }

    #[test]
    fn bad_labels_and_grids_name_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let id = "BraTS20_Training_002";
        write_case(dir.path(), id, [1, 2, 3]);
        let ds = discover(dir.path()).unwrap();
        let e = format!("{:#}", load_case(&ds, &ds.cases[0]).unwrap_err());
        assert!(e.contains("_seg.nii.gz") && e.contains(": 3"), "{e}");
        // The same file is fine read as BraTS 2023.
        let ds23 = ds.clone().with_convention(LabelConvention::Brats2023);
        assert!(load_case(&ds23, &ds23.cases[0]).is_ok());

        let flair = dir.path().join(format!("{id}/{id}_flair.nii.gz"));
        write_float(&flair, &geometry(2.0), &image(0.0)).unwrap();
        let e = format!("{:#}", load_case(&ds23, &ds23.cases[0]).unwrap_err());
        assert!(
            e.contains("_t1.nii.gz") && e.contains("_flair.nii.gz") && e.contains("affine"),
            "{e}"
        );

        let t2 = dir.path().join(format!("{id}/{id}_t2.nii.gz"));
        std::fs::write(&t2, b"not a nifti").unwrap();
        let report = check_case(&ds, &ds.cases[0]);
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(report.problems.iter().any(|p| p.contains("_t2.nii.gz")));
    }

    /// `values` as a single-file NIfTI-1 of numpy type `dtype` on [`geometry`]`(0.0)`.
    fn write_typed(path: &Path, dtype: &str, values: &[f64]) {
        let (code, bytes): (i16, Vec<u8>) = match dtype {
            "uint16" => (
                512,
                values
                    .iter()
                    .flat_map(|&v| (v as u16).to_le_bytes())
                    .collect(),
            ),
            "int16" => (
                4,
                values
                    .iter()
                    .flat_map(|&v| (v as i16).to_le_bytes())
                    .collect(),
            ),
            "int32" => (
                8,
                values
                    .iter()
                    .flat_map(|&v| (v as i32).to_le_bytes())
                    .collect(),
            ),
            "float64" => (64, values.iter().flat_map(|&v| v.to_le_bytes()).collect()),
            _ => panic!("{dtype}"),
        };
        let mut b = geometry(0.0).header_bytes();
        b[70..72].copy_from_slice(&code.to_le_bytes());
        let bitpix = (8 * bytes.len() / values.len()) as i16;
        b[72..74].copy_from_slice(&bitpix.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&bytes);
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn segmentations_of_any_type_holding_whole_labels() {
        let dir = tempfile::tempdir().unwrap();
        let id = "BraTS20_Training_003";
        write_case(dir.path(), id, [1, 2, 4]);
        let seg = dir.path().join(format!("{id}/{id}_seg.nii.gz"));
        let ds = discover(dir.path()).unwrap();
        let want = load_case(&ds, &ds.cases[0]).unwrap().classes.unwrap();
        let n = DIMS.iter().product::<usize>();
        let mut values = vec![0.0f64; n];
        let grid = Grid::<u8>::zeros(DIMS);
        for (x, label) in [(1, 1.0), (2, 2.0), (3, 4.0)] {
            values[grid.index(x, 1, 1)] = label;
        }
        for dtype in ["uint16", "int16", "int32", "float64"] {
            std::fs::remove_file(&seg).ok();
            let plain = seg.with_extension("");
            write_typed(&plain, dtype, &values);
            let case = &discover(dir.path()).unwrap().cases[0];
            let got = load_case(&ds, case).unwrap().classes.unwrap();
            assert_eq!(got, want, "{dtype}");
            std::fs::remove_file(&plain).unwrap();
        }
        // Non-integral labels: one error naming the file, the count and a value.
        values[grid.index(1, 1, 1)] = 1.5;
        values[grid.index(2, 1, 1)] = 2.25;
        let plain = seg.with_extension("");
        write_typed(&plain, "float64", &values);
        let ds = discover(dir.path()).unwrap();
        let e = format!("{:#}", load_case(&ds, &ds.cases[0]).unwrap_err());
        assert!(
            e.contains("_seg.nii")
                && e.contains("2 voxel(s) with non-integral values")
                && !e.contains('\n'),
            "{e}"
        );
        let report = check_case(&ds, &ds.cases[0]);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("non-integral"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn nan_voxels_become_zero_or_are_refused_when_strict() {
        let dir = tempfile::tempdir().unwrap();
        let id = "BraTS20_Training_004";
        write_case(dir.path(), id, [1, 2, 4]);
        let mut img = image(3.0);
        img.set(2, 2, 1, f32::NAN);
        img.set(0, 0, 0, f32::INFINITY);
        let t2 = dir.path().join(format!("{id}/{id}_t2.nii.gz"));
        write_float(&t2, &geometry(0.0), &img).unwrap();
        let ds = discover(dir.path()).unwrap();
        let case = load_case(&ds, &ds.cases[0]).unwrap();
        let got = case.images[Modality::T2.index()].as_ref().unwrap();
        assert_eq!((got.get(2, 2, 1), got.get(0, 0, 0)), (0.0, 0.0));
        assert_eq!(got.get(1, 1, 1), img.get(1, 1, 1));
        assert!(super::super::inputs::was_warned(&t2));

        let strict = ds.with_strict_finite(true);
        let e = format!("{:#}", load_case(&strict, &strict.cases[0]).unwrap_err());
        assert!(
            e.contains("_t2.nii.gz") && e.contains("2 voxel value(s) are NaN or infinite"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            crate::dataset::read_input_volume(&t2, true).unwrap_err()
        );
        assert!(
            e.contains("_t2.nii.gz") && e.contains("2 voxel value(s)"),
            "{e}"
        );
        assert_eq!(
            crate::dataset::read_input_volume(&t2, false)
                .unwrap()
                .non_finite,
            2
        );

        // dataset check still lists it, saying what train/predict/evaluate do.
        let report = check_case(&strict, &strict.cases[0]);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("1 NaN and 1 infinite voxels (read as 0"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn mixed_years_read_each_seg_in_its_own_convention() {
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path(), "BraTS19_2013_10_1", [1, 2, 4]);
        let id = "BraTS-GLI-00001-000";
        let g = geometry(0.0);
        for (i, m) in ["t1n", "t1c", "t2w", "t2f"].iter().enumerate() {
            write_float(
                &dir.path().join(format!("{id}/{id}-{m}.nii.gz")),
                &g,
                &image(i as f32),
            )
            .unwrap();
        }
        let mut seg = Grid::<u8>::zeros(DIMS);
        seg.set(1, 1, 1, 1);
        seg.set(2, 1, 1, 2);
        seg.set(3, 1, 1, 3);
        write_labels(&dir.path().join(format!("{id}/{id}-seg.nii.gz")), &g, &seg).unwrap();
        let ds = discover(dir.path()).unwrap();
        let a = load_case(&ds, ds.case("BraTS19_2013_10_1").unwrap()).unwrap();
        let b = load_case(&ds, ds.case(id).unwrap()).unwrap();
        assert_eq!(a.classes, b.classes);
        assert_eq!(b.convention, LabelConvention::Brats2023);
        assert_eq!(a.convention, LabelConvention::Brats);
    }
}
