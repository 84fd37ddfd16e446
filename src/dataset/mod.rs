//! Datasets: finding the cases of the layouts users have, loading a case, and
//! reproducible train/validation/test splits.
//!
//! Layouts (README, "dataset check"): BraTS 2019 (case folders `BraTS19_…`, grouped in
//! `HGG/` and `LGG/`), 2020 and 2021 (a folder per case, files
//! `CASE_{t1,t1ce,t2,flair,seg}.nii[.gz]`, labels 0/1/2/4), several BraTS years in one folder, BraTS 2023 (`CASE-{t1n,t1c,t2w,t2f,seg}`,
//! prefixes GLI, MEN, MET, PED, SSA, ET is label 3), MSD Task01 (`imagesTr/`, `labelsTr/`,
//! `imagesTs/`, one 4D image per case with channels FLAIR, T1w, T1gd, T2w, labels
//! 1 edema, 2 non-enhancing, 3 enhancing), and any plain folder of case folders whose file
//! names end in a modality or segmentation token. Discovery looks at names only; reading
//! and checking voxels happens in [`load_case`] and [`check_case`]; [`stats`] measures a
//! labelled dataset's intensities and sizes (`dataset stats`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::labels::LabelConvention;
use crate::modality::{Modality, Subset};

mod discover;
mod inputs;
pub(crate) mod load;
mod split;
pub mod stats;

pub use inputs::{
    MIN_ZERO_BORDER_FRACTION, read_input_volume, skull_stripping_note, warn_if_not_skull_stripped,
};
pub use load::{CaseReport, LoadedCase, check_case, load_case};
pub use split::Split;
pub use stats::{DatasetStats, dataset_stats};

/// How a dataset folder is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `BraTS19_CENTRE_N_1/BraTS19_CENTRE_N_1_{t1,t1ce,t2,flair,seg}.nii.gz`, the training
    /// cases grouped in `HGG/` and `LGG/` folders.
    Brats2019,
    /// `BraTS20_Training_NNN/BraTS20_Training_NNN_{t1,t1ce,t2,flair,seg}.nii[.gz]`.
    Brats2020,
    /// `BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz`.
    Brats2021,
    /// `BraTS-GLI-NNNNN-NNN/BraTS-GLI-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}.nii.gz` (and MEN, MET,
    /// PED, SSA).
    Brats2023,
    /// Case folders of several BraTS years in one folder (each case read in its year's
    /// label convention).
    BratsMixed,
    /// Medical Segmentation Decathlon Task01_BrainTumour.
    Msd,
    /// Any other folder of case folders.
    Folder,
}

impl Layout {
    /// Name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Brats2019 => "brats2019",
            Layout::Brats2020 => "brats2020",
            Layout::Brats2021 => "brats2021",
            Layout::Brats2023 => "brats2023",
            Layout::BratsMixed => "brats-mixed",
            Layout::Msd => "msd",
            Layout::Folder => "folder",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "brats2019" => Ok(Layout::Brats2019),
            "brats2020" => Ok(Layout::Brats2020),
            "brats2021" => Ok(Layout::Brats2021),
            "brats2023" => Ok(Layout::Brats2023),
            "brats-mixed" => Ok(Layout::BratsMixed),
            "msd" => Ok(Layout::Msd),
            "folder" => Ok(Layout::Folder),
            other => Err(format!(
                "unknown layout '{other}' (expected brats2019, brats2020, brats2021, brats2023, \
                 brats-mixed, msd or folder)"
            )),
        }
    }
}

/// Where one modality of a case is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// The NIfTI file.
    pub path: PathBuf,
    /// For 4D files (MSD), the channel (4th-dimension index) holding this modality;
    /// `None` for a 3D file.
    pub channel: Option<usize>,
}

/// The files of one case, found from their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFiles {
    /// Case id: the case folder's name, or the MSD file stem (`BRATS_001`).
    pub id: String,
    /// The case folder (`None` for MSD, whose cases share folders).
    pub dir: Option<PathBuf>,
    /// Image of each modality, in canonical order T1, T1c, T2, FLAIR.
    pub images: [Option<ImageFile>; 4],
    /// The segmentation, if the case has one.
    pub seg: Option<PathBuf>,
    /// Problems visible from the names alone (two files claiming one modality, …).
    pub problems: Vec<String>,
    /// Harmless oddities (files ignored: NIfTI files of unknown role, non-image files).
    pub warnings: Vec<String>,
    /// The case's own label convention when it differs from the dataset's (a folder that
    /// mixes BraTS 2023 cases, ET = 3, with earlier years' 0/1/2/4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convention: Option<LabelConvention>,
}

impl CaseFiles {
    /// A case without any file.
    pub fn empty(id: String) -> Self {
        CaseFiles {
            id,
            dir: None,
            images: [None, None, None, None],
            seg: None,
            problems: Vec::new(),
            warnings: Vec::new(),
            convention: None,
        }
    }

    /// The modalities this case has.
    pub fn available(&self) -> Subset {
        Subset::from_modalities(
            Modality::ALL
                .into_iter()
                .filter(|m| self.images[m.index()].is_some()),
        )
    }

    /// Whether the case has a segmentation.
    pub fn has_seg(&self) -> bool {
        self.seg.is_some()
    }

    /// The image of `m`, if present.
    pub fn image(&self, m: Modality) -> Option<&ImageFile> {
        self.images[m.index()].as_ref()
    }

    /// The notes discovery left about this case's folder (files ignored), each as
    /// `case ID: ignored …`: what `train` and `evaluate` print as `note:` lines.
    pub fn notes(&self) -> Vec<String> {
        self.warnings
            .iter()
            .map(|w| format!("case {}: {w}", self.id))
            .collect()
    }

    /// Every distinct file of the case (images then seg), in a fixed order.
    pub fn files(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for img in self.images.iter().flatten() {
            if !out.contains(&img.path.as_path()) {
                out.push(&img.path);
            }
        }
        if let Some(seg) = &self.seg {
            out.push(seg);
        }
        out
    }
}

/// A dataset folder: its layout, label convention and cases (sorted by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The folder the cases were found in.
    pub root: PathBuf,
    /// How it is organised.
    pub layout: Layout,
    /// How its segmentations encode the tumour classes.
    pub convention: LabelConvention,
    /// The cases, sorted by id.
    pub cases: Vec<CaseFiles>,
    /// Whether a file with NaN or infinite voxels is refused (`--strict-finite`) instead
    /// of read with those voxels set to 0 (outside the brain) and a warning.
    #[serde(default)]
    pub strict_finite: bool,
}

impl Dataset {
    /// The case with id `id`.
    pub fn case(&self, id: &str) -> Option<&CaseFiles> {
        self.cases
            .binary_search_by(|c| c.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.cases[i])
    }

    /// All case ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.cases.iter().map(|c| c.id.clone()).collect()
    }

    /// The ids of the cases with a segmentation (those a split divides), sorted.
    pub fn labelled_ids(&self) -> Vec<String> {
        self.cases
            .iter()
            .filter(|c| c.has_seg())
            .map(|c| c.id.clone())
            .collect()
    }

    /// This dataset read with another label convention for every case (for a plain folder
    /// whose convention the names cannot tell).
    pub fn with_convention(mut self, convention: LabelConvention) -> Self {
        self.convention = convention;
        for case in &mut self.cases {
            case.convention = None;
        }
        self
    }

    /// The label convention of `case`'s segmentation (and of predictions written for it).
    pub fn convention_of(&self, case: &CaseFiles) -> LabelConvention {
        case.convention.unwrap_or(self.convention)
    }

    /// This dataset with files holding NaN or infinite voxels refused (`true`) or repaired
    /// (`false`, the default: those voxels become 0, with a warning once per file).
    pub fn with_strict_finite(mut self, strict: bool) -> Self {
        self.strict_finite = strict;
        self
    }
}

/// Finds the cases under `root`: an MSD Task01 folder (`imagesTr/`…), or a folder of case
/// folders (BraTS 2019/2020/2021/2023, several years mixed, or plain), or a folder wrapping
/// exactly one of those, or a folder of group folders (BraTS 2019's `HGG/` and `LGG/`), or
/// a single case folder (a dataset of that one case, named after the folder).
/// Only names are looked at; an empty or unrecognisable folder is an error.
pub fn discover(root: &Path) -> Result<Dataset> {
    discover::discover(root)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    #[test]
    fn brats2020_with_case_355_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("MICCAI_BraTS2020_TrainingData");
        for m in ["t1", "t1ce", "t2", "flair", "seg"] {
            touch(
                &r,
                &format!("BraTS20_Training_002/BraTS20_Training_002_{m}.nii.gz"),
            );
        }
        for m in ["t1", "t1ce", "t2", "flair"] {
            touch(
                &r,
                &format!("BraTS20_Training_355/BraTS20_Training_355_{m}.nii"),
            );
        }
        touch(&r, "BraTS20_Training_355/W39_1998.09.19_Segm.nii");
        touch(&r, "BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz");
        touch(&r, "BraTS20_Training_001/._BraTS20_Training_001_t1.nii.gz");
        touch(&r, "name_mapping.csv");
        // Found through the wrapping folder.
        let ds = discover(dir.path()).unwrap();
        assert_eq!(ds.layout, Layout::Brats2020);
        assert_eq!(ds.convention, LabelConvention::Brats);
        assert_eq!(
            ds.ids(),
            [
                "BraTS20_Training_001",
                "BraTS20_Training_002",
                "BraTS20_Training_355"
            ]
        );
        assert_eq!(ds.cases[0].available().name(), "0001");
        assert!(!ds.cases[0].has_seg());
        assert_eq!(ds.cases[1].available(), Subset::FULL);
        assert!(
            ds.cases[2]
                .seg
                .as_ref()
                .unwrap()
                .ends_with("W39_1998.09.19_Segm.nii")
        );
        assert!(ds.cases.iter().all(|c| c.problems.is_empty()));
    }

    #[test]
    fn brats2023_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for id in ["BraTS-PED-00002-000", "BraTS-GLI-00001-000"] {
            for m in ["t1n", "t1c", "t2w", "t2f", "seg"] {
                touch(r, &format!("{id}/{id}-{m}.nii.gz"));
            }
        }
        touch(r, "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii");
        let ds = discover(r).unwrap();
        assert_eq!(ds.layout, Layout::Brats2023);
        assert_eq!(ds.convention, LabelConvention::Brats2023);
        assert_eq!(ds.ids(), ["BraTS-GLI-00001-000", "BraTS-PED-00002-000"]);
        assert_eq!(ds.cases[0].problems.len(), 1, "{:?}", ds.cases[0].problems);
        assert!(ds.case("BraTS-PED-00002-000").is_some());
    }

    #[test]
    fn msd_task01() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("Task01_BrainTumour");
        touch(&r, "imagesTr/BRATS_002.nii.gz");
        touch(&r, "imagesTr/BRATS_001.nii.gz");
        touch(&r, "imagesTr/._BRATS_001.nii.gz");
        touch(&r, "labelsTr/BRATS_001.nii.gz");
        touch(&r, "labelsTr/BRATS_002.nii.gz");
        touch(&r, "labelsTr/._BRATS_002.nii.gz");
        touch(&r, "imagesTs/BRATS_485.nii.gz");
        let ds = discover(&r).unwrap();
        assert_eq!(ds.layout, Layout::Msd);
        assert_eq!(ds.convention, LabelConvention::Msd);
        assert_eq!(ds.ids(), ["BRATS_001", "BRATS_002", "BRATS_485"]);
        let c = &ds.cases[0];
        assert_eq!(c.image(Modality::Flair).unwrap().channel, Some(0));
        assert_eq!(c.image(Modality::T1).unwrap().channel, Some(1));
        assert_eq!(c.image(Modality::T1c).unwrap().channel, Some(2));
        assert_eq!(c.image(Modality::T2).unwrap().channel, Some(3));
        assert!(c.has_seg());
        assert!(!ds.cases[2].has_seg());
        assert_eq!(c.files().len(), 2);
    }

    #[test]
    fn msd_dataset_json_reorders_channels() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, "imagesTr/BRATS_001.nii.gz");
        fs::write(
            r.join("dataset.json"),
            r#"{"modality": {"0": "T2w", "1": "FLAIR", "2": "T1w", "3": "t1gd"}}"#,
        )
        .unwrap();
        let ds = discover(r).unwrap();
        let c = &ds.cases[0];
        assert_eq!(c.image(Modality::T2).unwrap().channel, Some(0));
        assert_eq!(c.image(Modality::T1c).unwrap().channel, Some(3));
    }

    #[test]
    fn plain_folder_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, "b/t1.nii.gz");
        touch(r, "b/flair.nii.gz");
        touch(r, "b/other.nii.gz");
        touch(r, "a/a_t2f.nii.gz");
        touch(r, "a/a_t1n.nii.gz");
        touch(r, "a/a_t2w.nii.gz");
        let ds = discover(r).unwrap();
        assert_eq!(ds.layout, Layout::Folder);
        assert_eq!(ds.convention, LabelConvention::Brats2023);
        assert_eq!(ds.ids(), ["a", "b"]);
        assert_eq!(ds.cases[1].warnings.len(), 1);

        // One case folder given directly.
        let one = discover(&r.join("b")).unwrap();
        assert_eq!(one.ids(), ["b"]);
        assert_eq!(one.cases[0].available().name(), "1001");

        let empty = tempfile::tempdir().unwrap();
        let e = discover(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no cases found"), "{e}");
        let e = discover(&r.join("missing")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn brats2019_grade_folders_and_mixed_years() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("MICCAI_BraTS_2019_Data_Training");
        for (grade, id) in [
            ("HGG", "BraTS19_2013_10_1"),
            ("LGG", "BraTS19_TCIA09_141_1"),
        ] {
            for m in ["t1", "t1ce", "t2", "flair", "seg"] {
                touch(&r, &format!("{grade}/{id}/{id}_{m}.nii.gz"));
            }
        }
        touch(&r, "name_mapping.csv");
        let ds = discover(&r).unwrap();
        assert_eq!(ds.layout, Layout::Brats2019);
        assert_eq!(ds.convention, LabelConvention::Brats);
        assert_eq!(ds.ids(), ["BraTS19_2013_10_1", "BraTS19_TCIA09_141_1"]);
        assert!(
            ds.cases
                .iter()
                .all(|c| c.has_seg() && c.available() == Subset::FULL)
        );
        // The same id in both groups is an error naming both folders.
        touch(&r, "LGG/BraTS19_2013_10_1/BraTS19_2013_10_1_t1.nii.gz");
        let e = discover(&r).unwrap_err().to_string();
        assert!(
            e.contains("appears twice") && e.contains("HGG") && e.contains("LGG"),
            "{e}"
        );

        // 2019, 2020, 2021 and 2023 cases side by side: each keeps its year's labels.
        let m = dir.path().join("mixed");
        for id in [
            "BraTS19_2013_10_1",
            "BraTS20_Training_001",
            "BraTS2021_00002",
        ] {
            for t in ["t1", "t1ce", "t2", "flair", "seg"] {
                touch(&m, &format!("{id}/{id}_{t}.nii.gz"));
            }
        }
        let id23 = "BraTS-GLI-00003-000";
        for t in ["t1n", "t1c", "t2w", "t2f", "seg"] {
            touch(&m, &format!("{id23}/{id23}-{t}.nii.gz"));
        }
        let ds = discover(&m).unwrap();
        assert_eq!(ds.layout, Layout::BratsMixed);
        assert_eq!(ds.cases.len(), 4);
        let conv = |id: &str| ds.convention_of(ds.case(id).unwrap());
        assert_eq!(conv("BraTS19_2013_10_1"), LabelConvention::Brats);
        assert_eq!(conv("BraTS2021_00002"), LabelConvention::Brats);
        assert_eq!(conv(id23), LabelConvention::Brats2023);
        // An explicit convention applies to every case.
        let all = ds.clone().with_convention(LabelConvention::Msd);
        assert_eq!(
            all.convention_of(all.case(id23).unwrap()),
            LabelConvention::Msd
        );
    }

    #[test]
    fn extra_files_in_case_folders_are_ignored_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let id = "BraTS20_Training_001";
        for m in ["t1", "t1ce", "t2", "flair", "seg"] {
            touch(r, &format!("{id}/{id}_{m}.nii.gz"));
        }
        for extra in [
            "brain_mask.nii.gz",
            "BraTS20_Training_001_brainmask.nii.gz",
            "tumor_mask.nii.gz",
            "BraTS20_Training_001_t1.json",
            "notes.txt",
            ".DS_Store",
        ] {
            touch(r, &format!("{id}/{extra}"));
        }
        let ds = discover(r).unwrap();
        let c = &ds.cases[0];
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.available(), Subset::FULL);
        assert!(
            c.seg
                .as_ref()
                .unwrap()
                .ends_with(format!("{id}_seg.nii.gz"))
        );
        let notes = c.warnings.join("\n");
        assert_eq!(c.warnings.len(), 4, "{notes}");
        for name in [
            "brain_mask.nii.gz",
            "_brainmask.nii.gz",
            "tumor_mask.nii.gz",
        ] {
            assert!(notes.contains(name), "{name} in {notes}");
        }
        assert!(
            notes.contains(
                "2 file(s) that are not NIfTI images: BraTS20_Training_001_t1.json, notes.txt"
            ),
            "{notes}"
        );
        assert!(!notes.contains("DS_Store"), "{notes}");
    }
}
