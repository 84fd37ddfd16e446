//! Segmentation metrics per tumour region: Dice, HD95, sensitivity, specificity, volumes.
//!
//! Conventions (stated in every report through [`conventions`], the one text of them):
//! - Regions WT = NCR ∪ ED ∪ ET, TC = NCR ∪ ET, ET, from maps of [`TumourClass`] indices.
//! - Dice: both masks empty → 1, exactly one empty → 0 (medpy's `dc` otherwise).
//! - HD95: surface = mask minus its 6-connected erosion (outside the volume is background,
//!   so mask voxels on the volume border are surface); exact Euclidean distances with the
//!   voxel spacing; 95th percentile, linearly interpolated, of the distances of both
//!   directions pooled (medpy's `hd95`). Both empty → 0; exactly one empty → a penalty
//!   (default [`DEFAULT_HD95_PENALTY`] mm, the diagonal of a 240 × 240 × 155 mm box).
//! - Sensitivity TP / (TP + FN) and specificity TN / (TN + FP); an empty denominator gives
//!   1 when the prediction makes no error of that kind and 0 otherwise (sensitivity with an
//!   empty reference is 1 for an empty prediction, 0 otherwise, like Dice).
//! - Optional ET post-processing (RFNet, mmFormer): a predicted ET with fewer than N voxels
//!   (default [`DEFAULT_ET_MIN_VOXELS`]) becomes NCR; reported beside the plain ET.

pub mod edt;
mod labels;
pub mod surface;

use serde::{Deserialize, Serialize};

pub use labels::{LabelComparison, check_penalty, compare_labels, convention_name};
pub use surface::{hd95, percentile_linear, surface, surface_distances};

use crate::labels::{LabelConvention, Region, TumourClass};
use crate::volume::Grid;

/// The HD95 given when exactly one of prediction and reference is empty: the diagonal of a
/// 240 × 240 × 155 mm box (BraTS's image size at 1 mm), in mm.
pub const DEFAULT_HD95_PENALTY: f64 = 373.13;

/// Dice of WT, TC, ET between two class maps of one grid ([`TumourClass`] indices); a
/// region empty in both scores 1.
pub fn region_dice(pred: &Grid<u8>, truth: &Grid<u8>) -> [f64; 3] {
    Region::ALL.map(|r| dice(&region_mask(pred, r), &region_mask(truth, r)))
}

/// The RFNet/mmFormer ET post-processing threshold: fewer predicted ET voxels become NCR.
pub const DEFAULT_ET_MIN_VOXELS: usize = 500;

/// How metrics are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricOptions {
    /// HD95 (mm) when exactly one of prediction and reference is empty.
    pub hd95_penalty: f64,
    /// When set, also report ET after turning a predicted ET of fewer than this many voxels
    /// into NCR (the RFNet/mmFormer rule; they use 500).
    pub et_postprocess: Option<usize>,
}

impl Default for MetricOptions {
    fn default() -> Self {
        MetricOptions {
            hd95_penalty: DEFAULT_HD95_PENALTY,
            et_postprocess: None,
        }
    }
}

/// The metrics of one region of one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionMetrics {
    /// Dice coefficient in [0, 1].
    pub dice: f64,
    /// 95th-percentile Hausdorff distance, mm (or spacing units).
    pub hd95: f64,
    /// TP / (TP + FN).
    pub sensitivity: f64,
    /// TN / (TN + FP).
    pub specificity: f64,
    /// Voxels of the region in the prediction.
    pub pred_voxels: usize,
    /// Voxels of the region in the reference.
    pub gt_voxels: usize,
    /// Volume of the region in the prediction, ml (= cm³, for a spacing in mm).
    pub pred_volume_ml: f64,
    /// Volume of the region in the reference, ml.
    pub gt_volume_ml: f64,
}

/// The metrics of one case: each region, and ET after post-processing when it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CaseMetrics {
    /// WT, TC, ET (the order of [`Region::ALL`]).
    pub regions: [RegionMetrics; 3],
    /// ET after the post-processing of [`MetricOptions::et_postprocess`], if enabled.
    pub et_postprocessed: Option<RegionMetrics>,
}

impl CaseMetrics {
    /// The metrics of `region`.
    pub fn region(&self, region: Region) -> &RegionMetrics {
        &self.regions[region.index()]
    }

    /// One JSON object keyed by region: `{"WT": {..}, "TC": {..}, "ET": {..}}`, plus
    /// `"ET_postprocessed"` when the post-processing was enabled.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for r in Region::ALL {
            map.insert(r.name().to_string(), json_of(self.region(r)));
        }
        if let Some(et) = &self.et_postprocessed {
            map.insert("ET_postprocessed".to_string(), json_of(et));
        }
        serde_json::Value::Object(map)
    }
}

fn json_of(m: &RegionMetrics) -> serde_json::Value {
    serde_json::to_value(m).unwrap_or_else(|e| unreachable!("plain numbers serialise: {e}"))
}

/// Scores a predicted class map against a reference one (both [`TumourClass`] indices,
/// dims `[nx, ny, nz]`) for WT, TC and ET, with voxel `spacing` `[sx, sy, sz]` in mm.
/// Index values above 3 count as background.
///
/// # Panics
/// If the two maps have different dims (callers check the grids first).
pub fn evaluate_case(
    pred: &Grid<u8>,
    gt: &Grid<u8>,
    spacing: [f64; 3],
    opts: &MetricOptions,
) -> CaseMetrics {
    assert_eq!(
        pred.dims(),
        gt.dims(),
        "prediction and reference have different dims"
    );
    let spacing = spacing.map(f64::abs);
    let masks = |g: &Grid<u8>| Region::ALL.map(|r| region_mask(g, r));
    let (pm, gm) = rayon::join(|| masks(pred), || masks(gt));
    let mut all: Vec<(&Grid<bool>, &Grid<bool>)> = (0..3).map(|i| (&pm[i], &gm[i])).collect();
    // Post-processed ET: either the plain ET (enough voxels) or an empty prediction.
    let empty;
    if let Some(min) = opts.et_postprocess {
        let et_voxels = count(&pm[Region::Et.index()]);
        if et_voxels < min {
            empty = Grid::filled(pred.dims(), false);
            all.push((&empty, &gm[Region::Et.index()]));
        } else {
            all.push((&pm[Region::Et.index()], &gm[Region::Et.index()]));
        }
    }
    use rayon::prelude::*;
    let scored: Vec<RegionMetrics> = all
        .par_iter()
        .map(|(p, g)| compare_masks(p, g, spacing, opts.hd95_penalty))
        .collect();
    CaseMetrics {
        regions: [scored[0], scored[1], scored[2]],
        et_postprocessed: scored.get(3).copied(),
    }
}

/// All metrics between a predicted and a reference binary mask of the same dims.
///
/// # Panics
/// If the masks have different dims.
pub fn compare_masks(
    pred: &Grid<bool>,
    gt: &Grid<bool>,
    spacing: [f64; 3],
    hd95_penalty: f64,
) -> RegionMetrics {
    assert_eq!(pred.dims(), gt.dims(), "masks of different dims");
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (&p, &g) in pred.data().iter().zip(gt.data()) {
        match (p, g) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            (false, false) => {}
        }
    }
    let tn = pred.len() - tp - fp - fneg;
    let voxel_ml = spacing.iter().map(|s| s.abs()).product::<f64>() / 1000.0;
    let pred_voxels = tp + fp;
    let gt_voxels = tp + fneg;
    RegionMetrics {
        dice: dice_from_counts(tp, pred_voxels, gt_voxels),
        hd95: hd95(pred, gt, spacing, hd95_penalty),
        sensitivity: ratio_or(tp, tp + fneg, pred_voxels == 0),
        specificity: ratio_or(tn, tn + fp, true),
        pred_voxels,
        gt_voxels,
        pred_volume_ml: pred_voxels as f64 * voxel_ml,
        gt_volume_ml: gt_voxels as f64 * voxel_ml,
    }
}

/// Dice coefficient of two binary masks of the same dims: `2|P ∩ G| / (|P| + |G|)`, 1 when
/// both are empty (0 when exactly one is, which the formula gives).
///
/// # Panics
/// If the masks have different dims.
pub fn dice(pred: &Grid<bool>, gt: &Grid<bool>) -> f64 {
    assert_eq!(pred.dims(), gt.dims(), "masks of different dims");
    let tp = pred
        .data()
        .iter()
        .zip(gt.data())
        .filter(|(p, g)| **p && **g)
        .count();
    dice_from_counts(tp, count(pred), count(gt))
}

fn dice_from_counts(tp: usize, pred: usize, gt: usize) -> f64 {
    if pred + gt == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (pred + gt) as f64
    }
}

/// `num / den`, or `1` / `0` (per `empty_ok`) when `den` is 0.
fn ratio_or(num: usize, den: usize, empty_ok: bool) -> f64 {
    if den == 0 {
        if empty_ok { 1.0 } else { 0.0 }
    } else {
        num as f64 / den as f64
    }
}

fn count(mask: &Grid<bool>) -> usize {
    mask.data().iter().filter(|&&v| v).count()
}

/// The binary mask of `region` in a map of [`TumourClass`] indices (values above 3 are
/// background).
pub fn region_mask(classes: &Grid<u8>, region: Region) -> Grid<bool> {
    let lut: [bool; 4] = TumourClass::ALL.map(|c| region.contains(c));
    classes.map(|v| lut.get(v as usize).copied().unwrap_or(false))
}

/// The RFNet/mmFormer ET post-processing on a class map: when it holds at least one but
/// fewer than `min_voxels` ET voxels, they all become NCR. Returns whether it changed.
pub fn postprocess_et(classes: &mut Grid<u8>, min_voxels: usize) -> bool {
    let et = TumourClass::Enhancing.index() as u8;
    let n = classes.data().iter().filter(|&&v| v == et).count();
    if n == 0 || n >= min_voxels {
        return false;
    }
    for v in classes.data_mut().iter_mut().filter(|v| **v == et) {
        *v = TumourClass::Necrosis.index() as u8;
    }
    true
}

/// The label convention that a set of label values present in files suggests: any 4 →
/// BraTS 2018–2021 (0/1/2/4); otherwise any 3 → BraTS 2023 (0/1/2/3; MSD also uses 3 for
/// ET but swaps 1 and 2, so MSD must be asked for); only 0, 1, 2 → BraTS (0/1/2 mean the
/// same in both BraTS conventions). `None` when both 3 and 4 occur or a value is above 4.
pub fn guess_convention(present: impl IntoIterator<Item = u8>) -> Option<LabelConvention> {
    let mut seen = [false; 256];
    for v in present {
        seen[v as usize] = true;
    }
    if seen[5..].iter().any(|&s| s) || (seen[3] && seen[4]) {
        return None;
    }
    Some(if seen[3] {
        LabelConvention::Brats2023
    } else {
        LabelConvention::Brats
    })
}

/// The metric conventions as `(name, statement)` items, the one text every output states
/// them with (`metrics`, `evaluate`'s `summary.md`, reports).
pub fn conventions(opts: &MetricOptions) -> Vec<(String, String)> {
    vec![
        (
            "Dice".into(),
            "per region (WT = NCR ∪ ED ∪ ET, TC = NCR ∪ ET, ET); both empty → 1, exactly one \
             empty → 0"
                .into(),
        ),
        (
            "HD95".into(),
            format!(
                "surface = mask minus its 6-connected erosion; Euclidean distances in mm using \
                 the voxel spacing; 95th percentile (linear interpolation) of the pooled \
                 distances of both directions; both empty → 0, exactly one empty → {} mm",
                opts.hd95_penalty
            ),
        ),
        (
            "ET post-processing".into(),
            match opts.et_postprocess {
                Some(n) => format!("on: predicted ET with fewer than {n} voxels becomes NCR"),
                None => "off (scores are raw)".into(),
            },
        ),
    ]
}

/// [`conventions`] as one line (`Dice: …. HD95: …. …`).
pub fn conventions_text(opts: &MetricOptions) -> String {
    conventions(opts)
        .iter()
        .map(|(name, text)| format!("{name}: {text}."))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NCR: u8 = 1;
    const ED: u8 = 2;
    const ET: u8 = 3;

    fn grid(dims: [usize; 3], set: &[([usize; 3], u8)]) -> Grid<u8> {
        let mut g = Grid::zeros(dims);
        for &([x, y, z], v) in set {
            g.set(x, y, z, v);
        }
        g
    }

    #[test]
    fn hand_computed_small_case() {
        // 4×1×1 line, spacing 2 mm along x (voxel 2 mm³ = 0.002 ml).
        // gt:   ED NCR ET .      pred: ED ET ET ED
        let gt = grid(
            [4, 1, 1],
            &[([0, 0, 0], ED), ([1, 0, 0], NCR), ([2, 0, 0], ET)],
        );
        let pred = grid(
            [4, 1, 1],
            &[
                ([0, 0, 0], ED),
                ([1, 0, 0], ET),
                ([2, 0, 0], ET),
                ([3, 0, 0], ED),
            ],
        );
        let m = evaluate_case(&pred, &gt, [2.0, 1.0, 1.0], &MetricOptions::default());
        let wt = m.region(Region::Wt);
        // WT: gt {0,1,2}, pred {0,1,2,3}: Dice 6/7; sens 1; spec 0/1.
        assert!((wt.dice - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(wt.sensitivity, 1.0);
        assert_eq!(wt.specificity, 0.0);
        assert_eq!((wt.pred_voxels, wt.gt_voxels), (4, 3));
        assert!((wt.pred_volume_ml - 0.008).abs() < 1e-12);
        // WT surfaces: every voxel of a 1-voxel-thick line. pred→gt: 0,0,0,2; gt→pred: 0,0,0.
        // Pooled sorted [0×6, 2]: rank 5.7 → 0 + 0.7 · 2 = 1.4.
        assert!((wt.hd95 - 1.4).abs() < 1e-12, "{}", wt.hd95);
        // TC: gt {1,2}, pred {1,2}: identical.
        let tc = m.region(Region::Tc);
        assert_eq!((tc.dice, tc.hd95), (1.0, 0.0));
        assert_eq!(tc.specificity, 1.0);
        // ET: gt {2}, pred {1,2}: Dice 2/3; sens 1; spec 2/3; pooled [2, 0, 0] → 1.8.
        let et = m.region(Region::Et);
        assert!((et.dice - 2.0 / 3.0).abs() < 1e-12);
        assert!((et.specificity - 2.0 / 3.0).abs() < 1e-12);
        assert!((et.hd95 - 1.8).abs() < 1e-12, "{}", et.hd95);
        assert!(m.et_postprocessed.is_none());
    }

    #[test]
    fn both_empty_and_one_empty() {
        let empty = Grid::zeros([3, 3, 3]);
        let one = grid([3, 3, 3], &[([1, 1, 1], ET)]);
        let opts = MetricOptions::default();
        let m = evaluate_case(&empty, &empty, [1.0; 3], &opts);
        for r in m.regions {
            assert_eq!(
                (r.dice, r.hd95, r.sensitivity, r.specificity),
                (1.0, 0.0, 1.0, 1.0)
            );
        }
        let m = evaluate_case(&one, &empty, [1.0; 3], &opts);
        for r in m.regions {
            assert_eq!(
                (r.dice, r.hd95, r.sensitivity),
                (0.0, DEFAULT_HD95_PENALTY, 0.0)
            );
        }
        let m = evaluate_case(
            &empty,
            &one,
            [1.0; 3],
            &MetricOptions {
                hd95_penalty: 99.0,
                et_postprocess: None,
            },
        );
        for r in m.regions {
            assert_eq!(
                (r.dice, r.hd95, r.sensitivity, r.specificity),
                (0.0, 99.0, 0.0, 1.0)
            );
        }
    }

    #[test]
    fn anisotropic_spacing_scales_hd95_and_volume() {
        // Two single voxels 3 apart along z.
        let a = grid([2, 2, 5], &[([0, 0, 0], ED)]);
        let b = grid([2, 2, 5], &[([0, 0, 3], ED)]);
        let m = evaluate_case(&a, &b, [1.0, 1.0, 2.5], &MetricOptions::default());
        assert!((m.regions[0].hd95 - 7.5).abs() < 1e-12);
        assert!((m.regions[0].gt_volume_ml - 0.0025).abs() < 1e-15);
        // Negative spacing (a flipped axis in some headers) measures the same.
        let n = evaluate_case(&a, &b, [1.0, -1.0, -2.5], &MetricOptions::default());
        assert_eq!(m, n);
    }

    #[test]
    fn masks_touching_the_border() {
        // A full volume against the same volume minus one corner: every border voxel is
        // surface, so both surfaces nearly coincide.
        let full = Grid::filled([4, 4, 4], ED);
        let mut cut = full.clone();
        cut.set(0, 0, 0, 0);
        let m = evaluate_case(&cut, &full, [1.0; 3], &MetricOptions::default());
        // full's surface: its 56 border voxels. cut's surface: the 55 border voxels left
        // ((0,0,0)'s neighbours are border voxels already), all on full's surface. Pooled:
        // 110 zeros and one 1 (from (0,0,0)); rank 0.95 · 110 = 104.5 falls on the zeros.
        assert_eq!(m.regions[0].hd95, 0.0);
        assert!((m.regions[0].dice - 2.0 * 63.0 / 127.0).abs() < 1e-12);
    }

    #[test]
    fn et_postprocessing_turns_small_et_into_ncr() {
        let gt = grid([4, 4, 4], &[([1, 1, 1], NCR)]);
        let pred = grid([4, 4, 4], &[([1, 1, 1], NCR), ([2, 2, 2], ET)]);
        let opts = MetricOptions {
            et_postprocess: Some(DEFAULT_ET_MIN_VOXELS),
            ..MetricOptions::default()
        };
        let m = evaluate_case(&pred, &gt, [1.0; 3], &opts);
        assert_eq!(m.region(Region::Et).dice, 0.0);
        assert_eq!(m.region(Region::Et).hd95, DEFAULT_HD95_PENALTY);
        let pp = m.et_postprocessed.unwrap();
        assert_eq!((pp.dice, pp.hd95, pp.pred_voxels), (1.0, 0.0, 0));
        // Large enough ET stays.
        let opts = MetricOptions {
            et_postprocess: Some(1),
            ..MetricOptions::default()
        };
        let m = evaluate_case(&pred, &gt, [1.0; 3], &opts);
        assert_eq!(m.et_postprocessed.unwrap(), *m.region(Region::Et));

        let mut p = pred.clone();
        assert!(postprocess_et(&mut p, 500));
        assert_eq!(p.get(2, 2, 2), NCR);
        assert!(!postprocess_et(&mut p, 500));
        let mut q = pred.clone();
        assert!(!postprocess_et(&mut q, 1));
        assert_eq!(q, pred);
    }

    #[test]
    fn json_has_a_key_per_region() {
        let g = grid([2, 2, 2], &[([0, 0, 0], ET)]);
        let opts = MetricOptions {
            et_postprocess: Some(500),
            ..MetricOptions::default()
        };
        let j = evaluate_case(&g, &g, [1.0; 3], &opts).to_json();
        for k in ["WT", "TC", "ET", "ET_postprocessed"] {
            assert!(j[k]["dice"].is_number() && j[k]["hd95"].is_number(), "{k}");
        }
        assert_eq!(j["ET"]["dice"], 1.0);
        assert_eq!(j["ET_postprocessed"]["dice"], 0.0);
    }

    #[test]
    fn guesses_conventions_from_label_values() {
        assert_eq!(guess_convention([0, 1, 2, 4]), Some(LabelConvention::Brats));
        assert_eq!(
            guess_convention([0, 1, 3]),
            Some(LabelConvention::Brats2023)
        );
        assert_eq!(guess_convention([0, 2]), Some(LabelConvention::Brats));
        assert_eq!(guess_convention([0, 3, 4]), None);
        assert_eq!(guess_convention([0, 7]), None);
    }

    #[test]
    fn out_of_range_indices_are_background() {
        let g = grid([2, 1, 1], &[([0, 0, 0], 9)]);
        assert!(!region_mask(&g, Region::Wt).data()[0]);
    }
}
