//! `dataset stats`: how a labelled dataset looks to the network, so that phantoms and real
//! data can be compared number for number.
//!
//! Per case: each modality z-scored over its brain (its non-zero voxels, as preprocessing
//! normalises it: [`zscore_nonzero`]), then the mean z of the healthy brain (label 0 inside
//! that modality's brain), NCR, edema and ET (classes from the case's label convention, so
//! BraTS's ET 4, BraTS 2023's and MSD's ET 3 alike); the volume of NCR, edema and ET as a
//! share of the brain (voxels non-zero in at least one modality); the brain's bounding box.
//! Across cases: mean and sample standard deviation of each number, over the cases that
//! have it (a case without ET gives no ET z-score, but a 0 % ET volume).

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Dataset, load_case};
use crate::dataset::LoadedCase;
use crate::labels::{LabelConvention, TumourClass};
use crate::modality::Modality;
use crate::preprocess::{CropBox, zscore_nonzero};
use crate::volume::Grid;

/// One case's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseStats {
    /// Case id.
    pub id: String,
    /// Voxels of the brain: non-zero in at least one modality.
    pub brain_voxels: usize,
    /// Bounding box `[x, y, z]` (voxels) of the brain.
    pub brain_box: [usize; 3],
    /// Mean z-score per modality (T1, T1c, T2, FLAIR) and class (healthy brain, NCR, edema,
    /// ET), over the class's voxels inside that modality's brain; `None` when the modality
    /// is missing or the class has no voxel there.
    pub mean_z: [[Option<f64>; 4]; 4],
    /// Volume of NCR, edema and ET as a percentage of the brain's voxels.
    pub volume_percent: [f64; 3],
}

/// Mean and sample standard deviation of one number across cases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Mean over the cases that have the number.
    pub mean: f64,
    /// Sample standard deviation (n − 1); `None` with fewer than two cases.
    pub sd: Option<f64>,
    /// How many cases have the number.
    pub cases: usize,
}

impl Summary {
    /// The summary of `values`; `None` when there is none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Some(Summary { mean, sd, cases: n })
    }
}

/// The mean z-scores of one modality, by class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModalityRow {
    /// `t1`, `t1c`, `t2` or `flair`.
    pub modality: String,
    /// Healthy brain (label 0 inside the brain).
    pub healthy: Option<Summary>,
    /// Necrotic / non-enhancing core.
    pub ncr: Option<Summary>,
    /// Edema.
    pub edema: Option<Summary>,
    /// Enhancing tumour.
    pub et: Option<Summary>,
}

/// Region volumes (percent of the brain).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volumes {
    /// Necrotic / non-enhancing core.
    pub ncr: Summary,
    /// Edema.
    pub edema: Summary,
    /// Enhancing tumour.
    pub et: Summary,
}

/// The table of `dataset stats`, and the per-case numbers it summarises.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    /// Labelled cases measured.
    pub cases: usize,
    /// The label values of NCR, edema and ET in the dataset's convention.
    pub labels: [u8; 3],
    /// Mean z-score per modality and class, across cases.
    pub z: Vec<ModalityRow>,
    /// Region volumes as a percentage of the brain, across cases.
    pub volume_percent: Volumes,
    /// Smallest brain box `[x, y, z]` (voxels), axis by axis.
    pub brain_box_min: [usize; 3],
    /// Largest brain box `[x, y, z]` (voxels), axis by axis.
    pub brain_box_max: [usize; 3],
    /// Every case's numbers.
    pub per_case: Vec<CaseStats>,
}

/// The numbers of one loaded case; it must have a segmentation.
pub fn case_stats(case: &LoadedCase) -> Result<CaseStats> {
    let classes = case
        .classes
        .as_ref()
        .with_context(|| format!("case {} has no segmentation", case.id))?;
    let dims = classes.dims();
    let present: Vec<&Grid<f32>> = case.images.iter().flatten().collect();
    if present.is_empty() {
        bail!("case {} has no image", case.id);
    }
    for g in &present {
        if g.dims() != dims {
            bail!(
                "case {}: an image of dims {:?} does not match the segmentation's {dims:?}",
                case.id,
                g.dims()
            );
        }
    }
    let mut mean_z = [[None; 4]; 4];
    for (m, img) in case.images.iter().enumerate() {
        let Some(img) = img else { continue };
        let z = zscore_nonzero(img);
        let (mut sum, mut n) = ([0.0f64; 4], [0usize; 4]);
        for ((&v, &zv), &c) in img.data().iter().zip(z.data()).zip(classes.data()) {
            if v != 0.0 {
                let k = usize::from(c).min(3);
                sum[k] += f64::from(zv);
                n[k] += 1;
            }
        }
        mean_z[m] = std::array::from_fn(|k| (n[k] > 0).then(|| sum[k] / n[k] as f64));
    }
    let mut region = [0usize; 3];
    let mut brain = 0usize;
    for (i, &c) in classes.data().iter().enumerate() {
        if present.iter().any(|g| g.data()[i] != 0.0) {
            brain += 1;
            if c > 0 {
                region[usize::from(c).min(3) - 1] += 1;
            }
        }
    }
    if brain == 0 {
        bail!("case {}: every image is zero (no brain)", case.id);
    }
    Ok(CaseStats {
        id: case.id.clone(),
        brain_voxels: brain,
        brain_box: CropBox::nonzero(dims, &present, 0).dims,
        mean_z,
        volume_percent: region.map(|r| 100.0 * r as f64 / brain as f64),
    })
}

/// Summarises per-case numbers into the table; `convention` names the labels.
pub fn summarise(per_case: Vec<CaseStats>, convention: LabelConvention) -> Result<DatasetStats> {
    if per_case.is_empty() {
        bail!("no labelled case to summarise");
    }
    let z_of = |m: usize, k: usize| {
        let v: Vec<f64> = per_case.iter().filter_map(|c| c.mean_z[m][k]).collect();
        Summary::of(&v)
    };
    let z = Modality::ALL
        .iter()
        .enumerate()
        .map(|(m, modality)| ModalityRow {
            modality: modality.key().to_string(),
            healthy: z_of(m, 0),
            ncr: z_of(m, 1),
            edema: z_of(m, 2),
            et: z_of(m, 3),
        })
        .collect();
    let volume = |r: usize| {
        let v: Vec<f64> = per_case.iter().map(|c| c.volume_percent[r]).collect();
        Summary::of(&v).expect("at least one case")
    };
    let axis = |a: usize| per_case.iter().map(move |c| c.brain_box[a]);
    let brain_box_min = std::array::from_fn(|a| axis(a).min().unwrap_or(0));
    let brain_box_max = std::array::from_fn(|a| axis(a).max().unwrap_or(0));
    let label = |c| convention.from_class(c);
    Ok(DatasetStats {
        cases: per_case.len(),
        labels: [
            label(TumourClass::Necrosis),
            label(TumourClass::Edema),
            label(TumourClass::Enhancing),
        ],
        z,
        volume_percent: Volumes {
            ncr: volume(0),
            edema: volume(1),
            et: volume(2),
        },
        brain_box_min,
        brain_box_max,
        per_case,
    })
}

/// Reads every labelled case of `ds` (one at a time, with a progress bar unless `quiet`) and
/// summarises them. Cases without a segmentation are left out; none at all is an error.
pub fn dataset_stats(ds: &Dataset, quiet: bool) -> Result<DatasetStats> {
    let labelled: Vec<_> = ds.cases.iter().filter(|c| c.has_seg()).collect();
    if labelled.is_empty() {
        bail!(
            "no case in {} has a segmentation: nothing to measure",
            ds.root.display()
        );
    }
    let bar = crate::progress::labelled_bar(labelled.len() as u64, "measuring", "cases", quiet);
    let mut per_case = Vec::with_capacity(labelled.len());
    for files in labelled {
        bar.set_message(files.id.clone());
        let case = load_case(ds, files)?;
        per_case.push(case_stats(&case)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    summarise(per_case, ds.convention)
}

/// `-0.02 ± 0.04` (`–` for a missing number; the case count in brackets when only `of` of
/// `total` cases have it).
fn cell(s: Option<&Summary>, total: usize) -> String {
    let Some(s) = s else {
        return "–".to_string();
    };
    let sd = s.sd.map_or("–".to_string(), |v| format!("{v:.2}"));
    let mut text = format!("{:+.2} ± {sd}", s.mean);
    if s.cases < total {
        text.push_str(&format!(" (n={})", s.cases));
    }
    text
}

impl DatasetStats {
    /// The text table: z-scores per modality and class, region volumes, brain box range.
    pub fn to_text(&self) -> String {
        let [ncr, ed, et] = self.labels;
        let header = vec![
            "modality".to_string(),
            "healthy".to_string(),
            format!("NCR (label {ncr})"),
            format!("edema ({ed})"),
            format!("ET ({et})"),
        ];
        let mut rows = vec![header];
        for (row, m) in self.z.iter().zip(Modality::ALL) {
            let mut r = vec![m.label().to_string()];
            for s in [&row.healthy, &row.ncr, &row.edema, &row.et] {
                r.push(cell(s.as_ref(), self.cases));
            }
            rows.push(r);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "cases: {}\nz-score over the brain (non-zero voxels), mean ± s.d. across cases:\n",
            self.cases
        );
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(t, &w)| format!("{t}{}", " ".repeat(w - t.chars().count())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        let v = &self.volume_percent;
        let pct = |s: &Summary| {
            let sd = s.sd.map_or("–".to_string(), |v| format!("{v:.2}"));
            format!("{:.2} ± {sd} %", s.mean)
        };
        out.push_str(&format!(
            "volume, share of the brain: NCR {}, edema {}, ET {}\n",
            pct(&v.ncr),
            pct(&v.edema),
            pct(&v.et)
        ));
        let (lo, hi) = (self.brain_box_min, self.brain_box_max);
        let range = |a: usize| {
            if lo[a] == hi[a] {
                lo[a].to_string()
            } else {
                format!("{}–{}", lo[a], hi[a])
            }
        };
        out.push_str(&format!(
            "brain box: {} × {} × {} voxels\n",
            range(0),
            range(1),
            range(2)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;

    /// A 4×2×1 case: brain = the first 3 voxels of row 0 and all of row 1 except its last
    /// voxel (6 voxels; x = 3 of row 0 is outside), labels known per voxel.
    fn tiny() -> LoadedCase {
        let dims = [4, 2, 1];
        let mut affine = [[0.0; 4]; 4];
        for (i, row) in affine.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        // Row 0: healthy, healthy, NCR, outside; row 1: edema, edema, ET, outside.
        let t1 = vec![1.0, 3.0, 5.0, 0.0, 7.0, 9.0, 11.0, 0.0];
        // FLAIR is zero at (1, 0, 0), so that voxel is outside FLAIR's brain but inside T1's.
        let flair = vec![2.0, 0.0, 2.0, 0.0, 6.0, 6.0, 2.0, 0.0];
        let classes = vec![0, 0, 1, 0, 2, 2, 3, 0];
        LoadedCase {
            id: "tiny".into(),
            geometry: Geometry::from_affine(dims, affine),
            images: [
                Some(Grid::from_vec(dims, t1).unwrap()),
                None,
                None,
                Some(Grid::from_vec(dims, flair).unwrap()),
            ],
            classes: Some(Grid::from_vec(dims, classes).unwrap()),
            convention: LabelConvention::Brats,
        }
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn a_tiny_case_has_its_hand_computed_numbers() {
        let s = case_stats(&tiny()).unwrap();
        assert_eq!(s.brain_voxels, 6);
        assert_eq!(s.brain_box, [3, 2, 1]);
        // T1 over its 6 brain voxels 1, 3, 5, 7, 9, 11: mean 6, s.d. sqrt(35/3).
        let sd = (35.0f64 / 3.0).sqrt();
        close(s.mean_z[0][0], (2.0 - 6.0) / sd); // healthy: 1 and 3
        close(s.mean_z[0][1], (5.0 - 6.0) / sd); // NCR: 5
        close(s.mean_z[0][2], (8.0 - 6.0) / sd); // edema: 7 and 9
        close(s.mean_z[0][3], (11.0 - 6.0) / sd); // ET: 11
        // FLAIR over its 5 brain voxels 2, 2, 6, 6, 2: mean 3.6, s.d. sqrt(3.84); its
        // healthy brain is the one voxel of value 2 (the other is outside its brain).
        let sd = 3.84f64.sqrt();
        close(s.mean_z[3][0], (2.0 - 3.6) / sd);
        close(s.mean_z[3][2], (6.0 - 3.6) / sd);
        close(s.mean_z[3][3], (2.0 - 3.6) / sd);
        assert_eq!(s.mean_z[1], [None; 4], "T1c is missing");
        let pct = 100.0 / 6.0;
        assert_eq!(s.volume_percent, [pct, 2.0 * pct, pct]);
    }

    #[test]
    fn cases_summarise_with_sample_sd_and_counts() {
        let a = case_stats(&tiny()).unwrap();
        let mut case = tiny();
        // A second case without ET (label 3 → edema) and with doubled T1 contrast: z-scores
        // are scale-free, so only the ET cell and the volumes change.
        case.classes.as_mut().unwrap().data_mut()[6] = 2;
        for v in case.images[0].as_mut().unwrap().data_mut() {
            *v *= 2.0;
        }
        let b = case_stats(&case).unwrap();
        assert_eq!(b.mean_z[0][3], None);
        let t = summarise(vec![a.clone(), b], LabelConvention::Msd).unwrap();
        assert_eq!(t.cases, 2);
        assert_eq!(t.labels, [2, 1, 3]);
        let t1 = &t.z[0];
        assert_eq!(t1.modality, "t1");
        let et = t1.et.unwrap();
        assert_eq!((et.cases, et.sd), (1, None));
        close(Some(et.mean), a.mean_z[0][3].unwrap());
        let healthy = t1.healthy.unwrap();
        assert_eq!(healthy.cases, 2);
        close(healthy.sd, 0.0);
        // ET volume: 1/6 and 0 → mean 1/12, sample s.d. (1/6)/sqrt(2), as percentages.
        let v = t.volume_percent.et;
        close(Some(v.mean), 100.0 / 12.0);
        close(v.sd, 100.0 / 6.0 / 2f64.sqrt());
        assert_eq!((t.brain_box_min, t.brain_box_max), ([3, 2, 1], [3, 2, 1]));
        assert!(t.z[1].healthy.is_none());
        let text = t.to_text();
        assert!(text.contains("ET (3)"), "{text}");
        assert!(text.contains("(n=1)"), "{text}");
        assert!(text.contains("brain box: 3 × 2 × 1 voxels"), "{text}");
    }

    #[test]
    fn unlabelled_or_empty_cases_are_errors() {
        let mut case = tiny();
        case.classes = None;
        assert!(case_stats(&case).is_err());
        let mut case = tiny();
        for img in case.images.iter_mut().flatten() {
            img.data_mut().fill(0.0);
        }
        assert!(case_stats(&case).is_err());
        assert!(summarise(Vec::new(), LabelConvention::Brats).is_err());
    }
}
