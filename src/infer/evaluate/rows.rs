//! `cases.csv` (this module owns the format): one row per (model, case, subset) with the
//! case's scores and mean attention, written after every case so an evaluation resumes
//! from it. Columns are the fields of [`CaseRow`] in order; an empty cell is no value.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::attention::ClassAttention;
use crate::fsutil::atomic_write_bytes;
use crate::metrics::{CaseMetrics, RegionMetrics};
use crate::modality::Subset;
use crate::report::{RegionScore, SubsetScores};

/// One row of `cases.csv`: the scores of one model on one case from one subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    /// Model name.
    pub model: String,
    /// Case id.
    pub case: String,
    /// Subset bit string (`0101`).
    pub subset: Subset,
    /// Subset as names (`T1c+FLAIR`).
    pub modalities: String,
    /// WT Dice.
    pub wt_dice: f64,
    /// TC Dice.
    pub tc_dice: f64,
    /// ET Dice.
    pub et_dice: f64,
    /// WT HD95 (mm).
    pub wt_hd95: f64,
    /// TC HD95 (mm).
    pub tc_hd95: f64,
    /// ET HD95 (mm).
    pub et_hd95: f64,
    /// ET Dice after post-processing.
    pub et_pp_dice: Option<f64>,
    /// ET HD95 after post-processing.
    pub et_pp_hd95: Option<f64>,
    /// WT sensitivity.
    pub wt_sensitivity: f64,
    /// TC sensitivity.
    pub tc_sensitivity: f64,
    /// ET sensitivity.
    pub et_sensitivity: f64,
    /// WT specificity.
    pub wt_specificity: f64,
    /// TC specificity.
    pub tc_specificity: f64,
    /// ET specificity.
    pub et_specificity: f64,
    /// Predicted WT voxels.
    pub wt_pred_voxels: u64,
    /// Reference WT voxels.
    pub wt_gt_voxels: u64,
    /// Predicted TC voxels.
    pub tc_pred_voxels: u64,
    /// Reference TC voxels.
    pub tc_gt_voxels: u64,
    /// Predicted ET voxels.
    pub et_pred_voxels: u64,
    /// Reference ET voxels.
    pub et_gt_voxels: u64,
    /// Mean attention of T1 over reference ET voxels.
    pub attn_et_t1: Option<f64>,
    /// .. of T1c.
    pub attn_et_t1c: Option<f64>,
    /// .. of T2.
    pub attn_et_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_et_flair: Option<f64>,
    /// Mean attention of T1 over reference edema voxels.
    pub attn_ed_t1: Option<f64>,
    /// .. of T1c.
    pub attn_ed_t1c: Option<f64>,
    /// .. of T2.
    pub attn_ed_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_ed_flair: Option<f64>,
    /// Mean attention of T1 over reference NCR/NET voxels.
    pub attn_ncr_t1: Option<f64>,
    /// .. of T1c.
    pub attn_ncr_t1c: Option<f64>,
    /// .. of T2.
    pub attn_ncr_t2: Option<f64>,
    /// .. of FLAIR.
    pub attn_ncr_flair: Option<f64>,
}

impl CaseRow {
    /// A row from the metrics of a case and the per-class mean attention
    /// (`attention[class][modality]`, classes in [`ATTENTION_CLASSES`](super::attention::ATTENTION_CLASSES) order).
    pub fn new(
        model: &str,
        case: &str,
        subset: Subset,
        m: &CaseMetrics,
        attention: ClassAttention,
    ) -> CaseRow {
        let r = |i: usize| -> &RegionMetrics { &m.regions[i] };
        let [a_et, a_ed, a_ncr] = attention;
        CaseRow {
            model: model.to_string(),
            case: case.to_string(),
            subset,
            modalities: subset.describe(),
            wt_dice: r(0).dice,
            tc_dice: r(1).dice,
            et_dice: r(2).dice,
            wt_hd95: r(0).hd95,
            tc_hd95: r(1).hd95,
            et_hd95: r(2).hd95,
            et_pp_dice: m.et_postprocessed.as_ref().map(|p| p.dice),
            et_pp_hd95: m.et_postprocessed.as_ref().map(|p| p.hd95),
            wt_sensitivity: r(0).sensitivity,
            tc_sensitivity: r(1).sensitivity,
            et_sensitivity: r(2).sensitivity,
            wt_specificity: r(0).specificity,
            tc_specificity: r(1).specificity,
            et_specificity: r(2).specificity,
            wt_pred_voxels: r(0).pred_voxels as u64,
            wt_gt_voxels: r(0).gt_voxels as u64,
            tc_pred_voxels: r(1).pred_voxels as u64,
            tc_gt_voxels: r(1).gt_voxels as u64,
            et_pred_voxels: r(2).pred_voxels as u64,
            et_gt_voxels: r(2).gt_voxels as u64,
            attn_et_t1: a_et[0],
            attn_et_t1c: a_et[1],
            attn_et_t2: a_et[2],
            attn_et_flair: a_et[3],
            attn_ed_t1: a_ed[0],
            attn_ed_t1c: a_ed[1],
            attn_ed_t2: a_ed[2],
            attn_ed_flair: a_ed[3],
            attn_ncr_t1: a_ncr[0],
            attn_ncr_t1c: a_ncr[1],
            attn_ncr_t2: a_ncr[2],
            attn_ncr_flair: a_ncr[3],
        }
    }

    /// Dice of WT, TC, ET.
    pub fn dice(&self) -> [f64; 3] {
        [self.wt_dice, self.tc_dice, self.et_dice]
    }

    /// HD95 of WT, TC, ET.
    pub fn hd95(&self) -> [f64; 3] {
        [self.wt_hd95, self.tc_hd95, self.et_hd95]
    }

    /// Sensitivity of WT, TC, ET.
    pub fn sensitivity(&self) -> [f64; 3] {
        [
            self.wt_sensitivity,
            self.tc_sensitivity,
            self.et_sensitivity,
        ]
    }

    /// Specificity of WT, TC, ET.
    pub fn specificity(&self) -> [f64; 3] {
        [
            self.wt_specificity,
            self.tc_specificity,
            self.et_specificity,
        ]
    }

    /// Mean attention per class (in [`ATTENTION_CLASSES`](super::attention::ATTENTION_CLASSES) order) per modality.
    pub fn attention(&self) -> ClassAttention {
        [
            [
                self.attn_et_t1,
                self.attn_et_t1c,
                self.attn_et_t2,
                self.attn_et_flair,
            ],
            [
                self.attn_ed_t1,
                self.attn_ed_t1c,
                self.attn_ed_t2,
                self.attn_ed_flair,
            ],
            [
                self.attn_ncr_t1,
                self.attn_ncr_t1c,
                self.attn_ncr_t2,
                self.attn_ncr_flair,
            ],
        ]
    }
    /// The row's scores as one case's [`SubsetScores`] (`cases` = 1), to be averaged.
    pub fn scores(&self) -> SubsetScores {
        let region = |i: usize| RegionScore {
            dice: self.dice()[i],
            hd95: Some(self.hd95()[i]),
            sensitivity: Some(self.sensitivity()[i]),
            specificity: Some(self.specificity()[i]),
        };
        SubsetScores {
            regions: std::array::from_fn(region),
            et_postprocessed: self
                .et_pp_dice
                .map(|dice| RegionScore::new(dice, self.et_pp_hd95)),
            cases: 1,
        }
    }
}

/// last line) is dropped.
pub fn read_case_rows(path: &Path) -> Result<Vec<CaseRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(r.deserialize::<CaseRow>().filter_map(|x| x.ok()).collect())
}

/// Writes all `rows` to `cases.csv` atomically.
pub fn write_case_rows(path: &Path, rows: &[CaseRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner()?;
    atomic_write_bytes(path, &bytes)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::infer::evaluate) fn row(
        model: &str,
        case: &str,
        subset: &str,
        dice: f64,
        hd: f64,
        pp: Option<f64>,
    ) -> CaseRow {
        let rm = |dice: f64| RegionMetrics {
            dice,
            hd95: hd,
            sensitivity: dice,
            specificity: 1.0,
            pred_voxels: 10,
            gt_voxels: 12,
            pred_volume_ml: 0.01,
            gt_volume_ml: 0.012,
        };
        let m = CaseMetrics {
            regions: [rm(dice); 3],
            et_postprocessed: pp.map(rm),
        };
        let mut att = [[None; 4]; 3];
        att[0] = [Some(0.1), Some(0.2), Some(0.3), Some(0.4)];
        CaseRow::new(model, case, subset.parse().unwrap(), &m, att)
    }

    #[test]
    fn case_rows_round_trip_through_csv_and_truncation_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cases.csv");
        let rows = vec![
            row("a", "c1", "0101", 0.5, 3.0, Some(0.4)),
            row("a", "c1", "1111", 0.75, 1.0, None),
        ];
        write_case_rows(&p, &rows).unwrap();
        assert_eq!(read_case_rows(&p).unwrap(), rows);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() - 30]).unwrap();
        assert_eq!(read_case_rows(&p).unwrap(), rows[..1].to_vec());
        assert!(
            read_case_rows(&dir.path().join("none.csv"))
                .unwrap()
                .is_empty()
        );
    }
}
