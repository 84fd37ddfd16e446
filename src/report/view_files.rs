//! `a2fseg view`: a viewer page ([`super::viewer`]) for any case from NIfTI files: the
//! images, predicted and reference label maps, and attention maps (as `predict
//! --save-attention` writes them). Every file must lie on the first image's voxel grid;
//! errors name the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::viewer::{AttentionMap, Segmentation, ViewerCase, ViewerMethod, case_page};
use crate::fsutil::atomic_write_bytes;
use crate::labels::LabelConvention;
use crate::metrics::{self, MetricOptions};
use crate::modality::Modality;
use crate::volume::{Geometry, Grid, Volume, read_volume};

/// The files of one case to view.
#[derive(Debug, Clone, Default)]
pub struct ViewFiles {
    /// Images in canonical order T1, T1c, T2, FLAIR (at least one).
    pub images: [Option<PathBuf>; 4],
    /// Predicted label maps, each selectable.
    pub segmentations: Vec<PathBuf>,
    /// The reference label map.
    pub truth: Option<PathBuf>,
    /// Attention maps (weights in [0, 1]).
    pub attention: Vec<PathBuf>,
    /// Label convention of the label maps (default: guessed from their values, as `a2fseg
    /// metrics` does).
    pub convention: Option<LabelConvention>,
    /// How the Dice and HD95 beside the viewer are computed.
    pub metrics: MetricOptions,
    /// Case id in the title (default: the first image's name without extension).
    pub id: Option<String>,
}

/// The file name of `path` without `.nii` / `.nii.gz`.
fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name
}

/// Reads a 3D volume of `path` that must lie on `grid` (when given).
fn read_on_grid(path: &Path, grid: Option<&(PathBuf, Geometry)>) -> Result<Volume> {
    let v = read_volume(path)?;
    if v.channels.len() != 1 {
        bail!(
            "{}: expected one 3D volume, the file has {}",
            path.display(),
            v.channels.len()
        );
    }
    if let Some((first, g)) = grid
        && !g.same_grid(&v.geometry)
    {
        bail!(
            "{} is not on the voxel grid of {} (dims {:?} vs {:?}, or another spacing or affine)",
            path.display(),
            first.display(),
            v.geometry.dims,
            g.dims
        );
    }
    Ok(v)
}

/// The modality an attention file is of, from its name (`…_attention_t1c.nii.gz`), else
/// its file name.
fn attention_label(path: &Path) -> String {
    let s = stem(path);
    s.rsplit_once("_attention_")
        .and_then(|(_, key)| key.parse::<Modality>().ok())
        .map_or(s, |m| m.label().to_string())
}

/// Reads every file of `files` into the viewer's case.
pub fn load_view_case(files: &ViewFiles) -> Result<ViewerCase> {
    let mut grid: Option<(PathBuf, Geometry)> = None;
    let mut images: [Option<Grid<f32>>; 4] = [None, None, None, None];
    for (slot, path) in images.iter_mut().zip(&files.images) {
        if let Some(p) = path {
            let v = read_on_grid(p, grid.as_ref())?;
            grid.get_or_insert_with(|| (p.clone(), v.geometry.clone()));
            *slot = v.channels.into_iter().next();
        }
    }
    let (first, geometry) = grid
        .clone()
        .context("no image given: pass at least one of --t1, --t1c, --t2, --flair")?;
    let mut labels: Vec<(PathBuf, Grid<f32>)> = Vec::new();
    for p in files.truth.iter().chain(&files.segmentations) {
        let v = read_on_grid(p, grid.as_ref())?;
        labels.push((
            p.clone(),
            v.channels.into_iter().next().expect("one channel"),
        ));
    }
    let convention = match files.convention {
        Some(c) => c,
        None => guess(&labels)?,
    };
    let mut classes = Vec::with_capacity(labels.len());
    for (p, values) in &labels {
        let c = convention
            .classes_from_values(values)
            .map_err(|e| anyhow!("{}: {e}", p.display()))?;
        classes.push(c);
    }
    let mut classes = classes.into_iter();
    let truth = files.truth.as_ref().and_then(|_| classes.next());
    let segmentations: Vec<Segmentation> = files
        .segmentations
        .iter()
        .zip(classes)
        .map(|(p, c)| Segmentation {
            label: stem(p),
            classes: c,
        })
        .collect();
    let mut attention = Vec::new();
    for p in &files.attention {
        let v = read_on_grid(p, grid.as_ref())?;
        attention.push(AttentionMap {
            label: attention_label(p),
            weights: v.channels.into_iter().next().expect("one channel"),
            fused: files.attention.len(),
        });
    }
    let methods = if segmentations.is_empty() && attention.is_empty() {
        Vec::new()
    } else {
        let note = if attention.is_empty() {
            String::new()
        } else {
            format!(
                "Attention: the maps given, coloured where the weight exceeds an equal share \
                 (1/{}).",
                attention.len()
            )
        };
        vec![ViewerMethod {
            label: String::new(),
            segmentations,
            attention,
            attention_note: note,
        }]
    };
    Ok(ViewerCase {
        id: files.id.clone().unwrap_or_else(|| stem(&first)),
        geometry,
        images,
        truth,
        methods,
        metrics: files.metrics,
    })
}

/// The label convention of `labels` from the values they hold (as
/// [`metrics::guess_convention`] guesses it); an error names the file of a value no
/// convention has.
fn guess(labels: &[(PathBuf, Grid<f32>)]) -> Result<LabelConvention> {
    let mut seen = [false; 256];
    for (p, g) in labels {
        for &v in g.data() {
            if !(v.fract() == 0.0 && (0.0..=4.0).contains(&v)) {
                bail!(
                    "{}: value {v} is not a tumour label (0, 1, 2, 3 or 4)",
                    p.display()
                );
            }
            seen[v as usize] = true;
        }
    }
    let present: Vec<u8> = (0..=4u8).filter(|&v| seen[v as usize]).collect();
    metrics::guess_convention(present.iter().copied()).with_context(|| {
        format!(
            "cannot guess the label convention of the label maps from their values {present:?}; \
             pass --convention"
        )
    })
}

/// Reads `files` and writes their viewer page to `out` (atomically); returns its size in
/// bytes.
pub fn write_view_page(files: &ViewFiles, out: &Path) -> Result<usize> {
    let case = load_view_case(files)?;
    let page = case_page(&case)?;
    atomic_write_bytes(out, page.as_bytes())?;
    Ok(page.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{write_float, write_labels};

    fn geometry(dims: [usize; 3]) -> Geometry {
        let mut a = [[0.0; 4]; 4];
        for (i, row) in a.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        Geometry::from_affine(dims, a)
    }

    #[test]
    fn reads_a_case_guesses_labels_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let g = geometry([6, 5, 4]);
        let img = Grid::from_vec([6, 5, 4], (0..120).map(|v| v as f32).collect()).unwrap();
        write_float(&d.join("flair.nii.gz"), &g, &img).unwrap();
        let mut gt = Grid::<u8>::zeros([6, 5, 4]);
        gt.set(2, 2, 2, 4);
        gt.set(3, 2, 2, 2);
        write_labels(&d.join("gt.nii.gz"), &g, &gt).unwrap();
        write_labels(&d.join("pred.nii"), &g, &gt).unwrap();
        let attn = img.map(|v| v / 120.0);
        write_float(&d.join("case_attention_t1c.nii.gz"), &g, &attn).unwrap();
        let files = ViewFiles {
            images: [None, None, None, Some(d.join("flair.nii.gz"))],
            segmentations: vec![d.join("pred.nii")],
            truth: Some(d.join("gt.nii.gz")),
            attention: vec![d.join("case_attention_t1c.nii.gz")],
            ..ViewFiles::default()
        };
        let case = load_view_case(&files).unwrap();
        assert_eq!(case.id, "flair");
        // BraTS labels 4 and 2 → enhancing (3) and edema (2).
        assert_eq!(case.truth.as_ref().unwrap().get(2, 2, 2), 3);
        assert_eq!(case.methods[0].segmentations[0].label, "pred");
        assert_eq!(case.methods[0].attention[0].label, "T1c");
        let out = d.join("case.html");
        let size = write_view_page(&files, &out).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len() as usize, size);

        // A file on another grid, a non-label value and no image are refused by name.
        write_labels(
            &d.join("small.nii"),
            &geometry([2, 2, 2]),
            &Grid::zeros([2, 2, 2]),
        )
        .unwrap();
        let e = load_view_case(&ViewFiles {
            truth: Some(d.join("small.nii")),
            ..files.clone()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("small.nii"), "{e:#}");
        let e = load_view_case(&ViewFiles {
            segmentations: vec![d.join("flair.nii.gz")],
            ..files.clone()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("flair.nii.gz"), "{e:#}");
        let e = load_view_case(&ViewFiles {
            images: [None, None, None, None],
            ..files
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--flair"), "{e:#}");
    }
}
