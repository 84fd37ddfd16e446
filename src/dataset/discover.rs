//! Finding the cases of a dataset folder from file names alone (no file is opened except an
//! optional MSD `dataset.json`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{CaseFiles, Dataset, ImageFile, Layout};
use crate::labels::LabelConvention;
use crate::modality::Modality;

/// What a NIfTI file in a case folder holds, judged from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileRole {
    Image(Modality),
    Seg,
}

/// The stem of a NIfTI file name (without `.nii`, `.nii.gz` or `.hdr`), or `None` if the
/// name is not one of a NIfTI image we read. Hidden files (`.x`, macOS `._x`) never count.
pub(crate) fn nifti_stem(name: &str) -> Option<&str> {
    if name.starts_with('.') {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii", ".hdr", ".hdr.gz"] {
        if lower.ends_with(ext) && name.len() > ext.len() {
            return Some(&name[..name.len() - ext.len()]);
        }
    }
    None
}

/// The role of a file from its stem: the last `_`/`-`/`.`-separated token names the
/// modality (`t1`, `t1ce`, `t1n`, `t1c`, `t2`, `t2w`, `flair`, `t2f`, …) or the
/// segmentation (`seg`, `segm`, `label`, `mask`, `gt`, …). Any other stem containing
/// "seg" also counts as a segmentation, which covers BraTS 2020 case 355
/// (`W39_1998.09.19_Segm.nii`).
pub(crate) fn file_role(stem: &str) -> Option<FileRole> {
    let lower = stem.to_ascii_lowercase();
    let last = lower.rsplit(['_', '-', '.']).next().unwrap_or(&lower);
    if let Ok(m) = last.parse::<Modality>() {
        // `f` and `fl` are accepted by Modality::from_str for user input, but are too
        // ambiguous as file-name tokens.
        if last.len() > 2 {
            return Some(FileRole::Image(m));
        }
        if last.starts_with('t') {
            return Some(FileRole::Image(m));
        }
    }
    if seg_rank(&lower) > 0 {
        return Some(FileRole::Seg);
    }
    None
}

/// How surely a (lower-case) stem names a tumour segmentation: 3 for `seg`, `segm`,
/// `segmentation`; 2 for `label(s)`, `gt`, `truth` or any other stem containing "seg";
/// 1 for a bare `mask`; 0 for anything else, including brain masks (`brain_mask`,
/// `brainmask`, `skull_mask`, …), which skull-stripping tools leave beside the images.
/// When a case folder holds two candidates, the higher rank is its segmentation.
pub(crate) fn seg_rank(lower: &str) -> u8 {
    let mut tokens = lower.rsplit(['_', '-', '.']);
    let last = tokens.next().unwrap_or(lower);
    let before = tokens.next().unwrap_or("");
    let brain_mask = last.ends_with("mask")
        && ["brain", "skull", "head", "bet", "brainmask"]
            .iter()
            .any(|w| last.starts_with(w) || before == *w);
    if brain_mask {
        return 0;
    }
    match last {
        "seg" | "segm" | "segmentation" => 3,
        "label" | "labels" | "gt" | "truth" => 2,
        "mask" => 1,
        _ if lower.contains("seg") => 2,
        _ => 0,
    }
}

/// Lists a folder's entries sorted by name (deterministic across file systems).
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let rd = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Follow symlinks: datasets are often linked in.
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Scans one case folder: the files of each role, plus problems (two files for one role)
/// and warnings (files ignored: NIfTI files of unknown role such as brain masks, a weaker
/// segmentation candidate, and non-image files such as JSON sidecars).
fn scan_case_folder(id: String, dir: &Path) -> Result<CaseFiles> {
    let mut case = CaseFiles::empty(id);
    case.dir = Some(dir.to_path_buf());
    let mut other: Vec<String> = Vec::new();
    for (name, path, is_dir) in sorted_entries(dir)? {
        if is_dir || name.starts_with('.') {
            continue;
        }
        let Some(stem) = nifti_stem(&name) else {
            other.push(name);
            continue;
        };
        match file_role(stem) {
            Some(FileRole::Image(m)) => {
                let slot = &mut case.images[m.index()];
                if let Some(prev) = slot {
                    case.problems.push(format!(
                        "two {} files: {} and {} (using the first)",
                        m.label(),
                        prev.path.display(),
                        path.display()
                    ));
                } else {
                    *slot = Some(ImageFile {
                        path,
                        channel: None,
                    });
                }
            }
            Some(FileRole::Seg) => {
                let Some(prev) = case.seg.clone() else {
                    case.seg = Some(path);
                    continue;
                };
                let rank = |p: &Path| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().to_ascii_lowercase());
                    seg_rank(nifti_stem(&name.unwrap_or_default()).unwrap_or(""))
                };
                let (new, old) = (rank(&path), rank(&prev));
                if new == old {
                    case.problems.push(format!(
                        "two segmentation files: {} and {} (using the first)",
                        prev.display(),
                        path.display()
                    ));
                    continue;
                }
                let (kept, dropped) = if new > old {
                    (path, prev)
                } else {
                    (prev, path)
                };
                case.warnings.push(format!(
                    "ignored {} (the segmentation is {})",
                    dropped.display(),
                    kept.display()
                ));
                case.seg = Some(kept);
            }
            None => case.warnings.push(format!(
                "ignored {} (not a known modality or segmentation name)",
                path.display()
            )),
        }
    }
    if !other.is_empty() {
        case.warnings.push(format!(
            "ignored {} file(s) that are not NIfTI images: {}",
            other.len(),
            other.join(", ")
        ));
    }
    Ok(case)
}

/// Whether a folder directly holds at least one file with a known role.
fn looks_like_case(dir: &Path) -> bool {
    let Ok(entries) = sorted_entries(dir) else {
        return false;
    };
    entries
        .iter()
        .any(|(name, _, is_dir)| !is_dir && nifti_stem(name).and_then(file_role).is_some())
}

/// Case-folder name prefixes of the BraTS 2023 challenges.
const BRATS2023_PREFIXES: [&str; 5] = [
    "BraTS-GLI-",
    "BraTS-MEN-",
    "BraTS-MET-",
    "BraTS-PED-",
    "BraTS-SSA-",
];

/// The BraTS year layout a case folder's name belongs to, if any.
fn brats_year(id: &str) -> Option<Layout> {
    if id.starts_with("BraTS19_") {
        Some(Layout::Brats2019)
    } else if id.starts_with("BraTS20_") {
        Some(Layout::Brats2020)
    } else if id.starts_with("BraTS2021_") {
        Some(Layout::Brats2021)
    } else if BRATS2023_PREFIXES.iter().any(|p| id.starts_with(p)) {
        Some(Layout::Brats2023)
    } else {
        None
    }
}

/// The layout of a folder of case folders, from the case folder names: one BraTS year,
/// several (mixed), or a plain folder.
fn folder_layout(ids: &[String]) -> Layout {
    let years: Option<Vec<Layout>> = ids.iter().map(|id| brats_year(id)).collect();
    match years {
        Some(years) if !years.is_empty() => {
            if years.iter().all(|y| *y == years[0]) {
                years[0]
            } else {
                Layout::BratsMixed
            }
        }
        _ => Layout::Folder,
    }
}

/// The convention of a case from its own names: BraTS 2023 if its folder has a 2023 name or
/// its files use the 2023 modality names (`t1n`, `t2w`, `t2f`), else BraTS 2019–2021.
fn case_convention(case: &CaseFiles) -> LabelConvention {
    if brats_year(&case.id) == Some(Layout::Brats2023) {
        return LabelConvention::Brats2023;
    }
    folder_convention(std::slice::from_ref(case))
}

/// The convention of a plain folder: BraTS 2023 if its files use the 2023 modality names
/// (`t1n`, `t2w`, `t2f`), otherwise BraTS 2020/2021.
fn folder_convention(cases: &[CaseFiles]) -> LabelConvention {
    let mut new_names = 0usize;
    let mut old_names = 0usize;
    for img in cases.iter().flat_map(|c| c.images.iter().flatten()) {
        let stem = img
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(nifti_stem)
            .unwrap_or("")
            .to_ascii_lowercase();
        let last = stem.rsplit(['_', '-', '.']).next().unwrap_or("");
        match last {
            "t1n" | "t2w" | "t2f" => new_names += 1,
            "t1" | "t1ce" | "t2" | "flair" => old_names += 1,
            _ => {}
        }
    }
    if new_names > old_names {
        LabelConvention::Brats2023
    } else {
        LabelConvention::Brats
    }
}

/// Finds the cases under `root` (see [`super::discover`]).
pub(crate) fn discover(root: &Path) -> Result<Dataset> {
    if !root.exists() {
        bail!("dataset folder {} does not exist", root.display());
    }
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    if let Some(ds) = try_msd(root)? {
        return Ok(ds);
    }
    let (mut ids, mut dirs) = case_folders(root)?;
    if ids.is_empty() && looks_like_case(root) {
        // A single case folder given directly: a dataset of one case named after it.
        let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case".to_string());
        ids.push(name);
        dirs.push(root.to_path_buf());
    }
    if ids.is_empty() {
        // Archives often unpack to one wrapping folder (MICCAI_BraTS2020_TrainingData,
        // Task01_BrainTumour): look one level down when that is all there is.
        let subdirs: Vec<_> = sorted_entries(root)?
            .into_iter()
            .filter(|(name, _, is_dir)| *is_dir && !name.starts_with('.'))
            .collect();
        if let [(_, only, _)] = subdirs.as_slice() {
            if let Some(ds) = try_msd(only)? {
                return Ok(ds);
            }
            let (ids, _) = case_folders(only)?;
            if !ids.is_empty() {
                return discover(only);
            }
        }
        // Group folders (BraTS 2019's HGG/ and LGG/): the case folders of every group.
        for (_, group, _) in &subdirs {
            let (group_ids, group_dirs) = case_folders(group)?;
            for (id, dir) in group_ids.into_iter().zip(group_dirs) {
                if let Some(i) = ids.iter().position(|x| *x == id) {
                    bail!(
                        "case {id} appears twice: {} and {}",
                        dirs[i].display(),
                        dir.display()
                    );
                }
                ids.push(id);
                dirs.push(dir);
            }
        }
    }
    if ids.is_empty() {
        bail!(
            "no cases found in {}: expected case folders holding NIfTI files named like \
             CASE_t1.nii.gz, CASE_t1ce.nii.gz, CASE_t2.nii.gz, CASE_flair.nii.gz, CASE_seg.nii.gz \
             (BraTS 2020/2021), CASE-t1n/t1c/t2w/t2f/seg.nii.gz (BraTS 2023), or an MSD Task01 \
             folder with imagesTr/labelsTr",
            root.display()
        );
    }
    let layout = folder_layout(&ids);
    let mut cases = Vec::with_capacity(ids.len());
    for (id, dir) in ids.into_iter().zip(dirs) {
        cases.push(scan_case_folder(id, &dir)?);
    }
    let convention = match layout {
        Layout::Brats2019 | Layout::Brats2020 | Layout::Brats2021 => LabelConvention::Brats,
        Layout::Brats2023 => LabelConvention::Brats2023,
        Layout::Msd => LabelConvention::Msd,
        Layout::BratsMixed | Layout::Folder => folder_convention(&cases),
    };
    // Mixed years: a case whose own names say otherwise keeps its year's convention.
    if matches!(layout, Layout::BratsMixed | Layout::Folder) {
        for case in &mut cases {
            let own = case_convention(case);
            case.convention = (own != convention).then_some(own);
        }
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Dataset {
        root: root.to_path_buf(),
        layout,
        convention,
        cases,
        strict_finite: false,
    })
}

/// The subfolders of `root` that look like case folders, sorted by name.
fn case_folders(root: &Path) -> Result<(Vec<String>, Vec<PathBuf>)> {
    let mut ids = Vec::new();
    let mut dirs = Vec::new();
    for (name, path, is_dir) in sorted_entries(root)? {
        if is_dir && !name.starts_with('.') && looks_like_case(&path) {
            ids.push(name);
            dirs.push(path);
        }
    }
    Ok((ids, dirs))
}

/// The MSD channel of each of our modalities, from `dataset.json` when present (its
/// `"modality"` object, e.g. `{"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}`), else
/// Task01's documented order FLAIR, T1w, T1gd, T2w.
fn msd_channels(root: &Path) -> Result<[Option<usize>; 4]> {
    let default = {
        let mut c = [None; 4];
        c[Modality::Flair.index()] = Some(0);
        c[Modality::T1.index()] = Some(1);
        c[Modality::T1c.index()] = Some(2);
        c[Modality::T2.index()] = Some(3);
        c
    };
    let path = root.join("dataset.json");
    if !path.is_file() {
        return Ok(default);
    }
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse {} as JSON", path.display()))?;
    let Some(map) = json.get("modality").and_then(|m| m.as_object()) else {
        return Ok(default);
    };
    let mut channels = [None; 4];
    for (k, v) in map {
        let ch: usize = k.parse().with_context(|| {
            format!(
                "{}: modality key '{k}' is not a channel number",
                path.display()
            )
        })?;
        let name = v.as_str().unwrap_or("");
        let m: Modality = name
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", path.display()))?;
        if channels[m.index()].is_some() {
            bail!("{}: modality {} is listed twice", path.display(), m.label());
        }
        channels[m.index()] = Some(ch);
    }
    Ok(channels)
}

/// An MSD Task01 folder (`imagesTr/`, `labelsTr/`, optional `imagesTs/`), or `None`.
fn try_msd(root: &Path) -> Result<Option<Dataset>> {
    let images_tr = root.join("imagesTr");
    let images_ts = root.join("imagesTs");
    if !images_tr.is_dir() && !images_ts.is_dir() {
        return Ok(None);
    }
    let channels = msd_channels(root)?;
    let labels_tr = root.join("labelsTr");
    let mut by_id: BTreeMap<String, CaseFiles> = BTreeMap::new();
    for images in [&images_tr, &images_ts] {
        if !images.is_dir() {
            continue;
        }
        for (name, path, is_dir) in sorted_entries(images)? {
            let Some(stem) = nifti_stem(&name).filter(|_| !is_dir) else {
                continue;
            };
            // nnU-Net style per-channel files (BRATS_001_0000.nii.gz) are not MSD's 4D files.
            let id = stem.to_string();
            let mut case = CaseFiles::empty(id.clone());
            for m in Modality::ALL {
                case.images[m.index()] = channels[m.index()].map(|ch| ImageFile {
                    path: path.clone(),
                    channel: Some(ch),
                });
            }
            if images == &images_tr {
                for ext in [".nii.gz", ".nii"] {
                    let seg = labels_tr.join(format!("{id}{ext}"));
                    if seg.is_file() {
                        case.seg = Some(seg);
                        break;
                    }
                }
            }
            if let Some(prev) = by_id.get_mut(&id) {
                prev.problems.push(format!(
                    "case id {id} appears twice (also {})",
                    path.display()
                ));
                continue;
            }
            by_id.insert(id, case);
        }
    }
    Ok(Some(Dataset {
        root: root.to_path_buf(),
        layout: Layout::Msd,
        convention: LabelConvention::Msd,
        cases: by_id.into_values().collect(),
        strict_finite: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_names() {
        let role = |n: &str| nifti_stem(n).and_then(file_role);
        assert_eq!(
            role("BraTS20_Training_001_t1.nii.gz"),
            Some(FileRole::Image(Modality::T1))
        );
        assert_eq!(
            role("BraTS20_Training_001_t1ce.nii"),
            Some(FileRole::Image(Modality::T1c))
        );
        assert_eq!(
            role("BraTS2021_00000_flair.nii.gz"),
            Some(FileRole::Image(Modality::Flair))
        );
        assert_eq!(
            role("BraTS-GLI-00000-000-t1n.nii.gz"),
            Some(FileRole::Image(Modality::T1))
        );
        assert_eq!(
            role("BraTS-GLI-00000-000-t1c.nii.gz"),
            Some(FileRole::Image(Modality::T1c))
        );
        assert_eq!(
            role("BraTS-PED-00000-000-t2w.nii.gz"),
            Some(FileRole::Image(Modality::T2))
        );
        assert_eq!(
            role("BraTS-SSA-00000-000-t2f.nii.gz"),
            Some(FileRole::Image(Modality::Flair))
        );
        assert_eq!(role("BraTS-MET-00000-000-seg.nii.gz"), Some(FileRole::Seg));
        assert_eq!(role("W39_1998.09.19_Segm.nii"), Some(FileRole::Seg));
        assert_eq!(role("t2.nii.gz"), Some(FileRole::Image(Modality::T2)));
        assert_eq!(role("._BraTS20_Training_001_t1.nii.gz"), None);
        assert_eq!(role("notes.txt"), None);
        assert_eq!(role("case_f.nii.gz"), None);
        assert_eq!(role("brain.nii.gz"), None);
    }

    #[test]
    fn layouts_from_folder_names() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            folder_layout(&ids(&["BraTS20_Training_001"])),
            Layout::Brats2020
        );
        assert_eq!(folder_layout(&ids(&["BraTS2021_00000"])), Layout::Brats2021);
        assert_eq!(
            folder_layout(&ids(&["BraTS-GLI-00000-000", "BraTS-MEN-00001-000"])),
            Layout::Brats2023
        );
        assert_eq!(
            folder_layout(&ids(&["BraTS20_Training_001", "mine"])),
            Layout::Folder
        );
    }
}
