//! Metrics of two label maps as `a2fseg metrics` computes them: label values checked and
//! read in a label convention (given, or guessed from the values), then
//! [`evaluate_case`](super::evaluate_case) with the reference's voxel spacing. The CLI reads
//! the maps from files; the Python package gives arrays.

use anyhow::{Context, Result, bail};

use super::{CaseMetrics, MetricOptions};
use crate::labels::LabelConvention;
use crate::volume::Grid;

/// The metrics of two label maps (see [`compare_labels`]).
#[derive(Debug, Clone)]
pub struct LabelComparison {
    /// Dice, HD95, sensitivity, specificity and volumes per region.
    pub metrics: CaseMetrics,
    /// The label convention the maps were read in.
    pub convention: LabelConvention,
    /// Whether the convention was guessed from the label values.
    pub guessed: bool,
    /// The voxel spacing distances were measured with (absolute values), mm.
    pub spacing: [f64; 3],
}

/// The metrics of the label map `pred` against `gt` (each with the name errors give it: a
/// file, or an argument), as `a2fseg metrics` reports them: `gt`'s voxel `spacing` (mm), the
/// label `convention` (guessed from the label values when `None`: a 4 means brats, a 3
/// brats2023). Errors: a map that is not integer labels 0..=255, a label the convention
/// does not have, different dims, a non-positive spacing, a bad `opts.hd95_penalty`.
pub fn compare_labels(
    (pred, pred_name): (&Grid<f32>, &str),
    (gt, gt_name): (&Grid<f32>, &str),
    spacing: [f64; 3],
    convention: Option<LabelConvention>,
    opts: &MetricOptions,
) -> Result<LabelComparison> {
    check_penalty(opts)?;
    let pred = Labels::new(pred, pred_name)?;
    let gt = Labels::new(gt, gt_name)?;
    if pred.grid.dims() != gt.grid.dims() {
        bail!(
            "{pred_name} and {gt_name} are not on the same voxel grid (dims {:?} vs {:?})",
            pred.grid.dims(),
            gt.grid.dims()
        );
    }
    let spacing = spacing.map(f64::abs);
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("{gt_name}: voxel spacing {spacing:?} is not positive; cannot measure distances");
    }
    let (convention, guessed) = match convention {
        Some(c) => (c, false),
        None => {
            let present = pred.present().chain(gt.present());
            let c = super::guess_convention(present).with_context(|| {
                format!(
                    "cannot guess the label convention of {pred_name} and {gt_name} from their \
                     label values {:?} and {:?}; pass --convention",
                    pred.present().collect::<Vec<_>>(),
                    gt.present().collect::<Vec<_>>()
                )
            })?;
            (c, true)
        }
    };
    let pred_classes = pred.classes(convention, pred_name)?;
    let gt_classes = gt.classes(convention, gt_name)?;
    Ok(LabelComparison {
        metrics: super::evaluate_case(&pred_classes, &gt_classes, spacing, opts),
        convention,
        guessed,
        spacing,
    })
}

impl LabelComparison {
    /// The JSON of `a2fseg metrics --json`: a key per region (WT, TC, ET) and
    /// `conventions` (labels, whether guessed, spacing, HD95 penalty, ET post-processing).
    pub fn to_json(&self, opts: &MetricOptions) -> serde_json::Value {
        let mut obj = self.metrics.to_json();
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "conventions".to_string(),
                serde_json::json!({
                    "labels": convention_name(self.convention),
                    "labels_guessed": self.guessed,
                    "spacing_mm": self.spacing,
                    "hd95_penalty_mm": opts.hd95_penalty,
                    "et_postprocess_min_voxels": opts.et_postprocess,
                    "text": super::conventions_text(opts),
                }),
            );
        }
        obj
    }
}

/// An error unless the HD95 penalty is a non-negative number.
pub fn check_penalty(opts: &MetricOptions) -> Result<()> {
    if !(opts.hd95_penalty.is_finite() && opts.hd95_penalty >= 0.0) {
        bail!(
            "--hd95-penalty must be a non-negative number of mm, not {}",
            opts.hd95_penalty
        );
    }
    Ok(())
}

/// A label map checked to hold integer values in 0..=255, with the set of values it holds.
struct Labels<'a> {
    grid: &'a Grid<f32>,
    /// `seen[v]`: whether integer label `v` occurs.
    seen: Box<[bool; 256]>,
}

impl<'a> Labels<'a> {
    /// Checks `grid` (called `name` in errors) and records its label values.
    fn new(grid: &'a Grid<f32>, name: &str) -> Result<Self> {
        let mut seen = Box::new([false; 256]);
        for &v in grid.data() {
            if !(v.fract() == 0.0 && (0.0..=255.0).contains(&v)) {
                bail!("{name}: value {v} is not a label (labels are integers 0..=255)");
            }
            seen[v as usize] = true;
        }
        Ok(Labels { grid, seen })
    }

    /// The label values present, ascending.
    fn present(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&v| self.seen[v as usize])
    }

    /// The map of `TumourClass` indices under `convention`; an error names the first label
    /// value the convention does not have.
    fn classes(&self, convention: LabelConvention, name: &str) -> Result<Grid<u8>> {
        let mut lut = [None; 256];
        for v in self.present() {
            lut[v as usize] = Some(
                convention
                    .to_class(v)
                    .with_context(|| format!("{name}: label {v} is not a label of {convention}"))?
                    .index() as u8,
            );
        }
        Ok(self.grid.map(|v| lut[v as usize].unwrap_or(0)))
    }
}

/// The name `a2fseg metrics` gives a label convention (its `--convention` value).
pub fn convention_name(c: LabelConvention) -> &'static str {
    match c {
        LabelConvention::Brats => "brats",
        LabelConvention::Brats2023 => "brats2023",
        LabelConvention::Msd => "msd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Region;

    /// A 4 × 3 × 2 map with `values` in its first voxels, background elsewhere.
    fn map(values: &[f32]) -> Grid<f32> {
        let mut g = Grid::zeros([4, 3, 2]);
        g.data_mut()[..values.len()].copy_from_slice(values);
        g
    }

    fn opts() -> MetricOptions {
        MetricOptions {
            hd95_penalty: 100.0,
            et_postprocess: None,
        }
    }

    #[test]
    fn guesses_brats_from_a_4_and_scores_each_region() {
        let pred = map(&[4.0, 2.0, 1.0]);
        let gt = map(&[4.0, 2.0, 2.0]);
        let c = compare_labels((&pred, "p"), (&gt, "g"), [1.0, -2.0, 1.0], None, &opts()).unwrap();
        assert_eq!(c.convention, LabelConvention::Brats);
        assert!(c.guessed);
        assert_eq!(c.spacing, [1.0, 2.0, 1.0]);
        // WT: {0,1,2} in both; TC: pred {0,2} (ET, NCR), gt {0}; ET: {0} in both.
        assert_eq!(c.metrics.region(Region::Wt).dice, 1.0);
        assert!((c.metrics.region(Region::Tc).dice - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.metrics.region(Region::Et).dice, 1.0);
        let json = c.to_json(&opts());
        assert_eq!(json["conventions"]["labels"], "brats");
        assert_eq!(json["conventions"]["labels_guessed"], true);
    }

    #[test]
    fn errors_name_the_map_and_the_problem() {
        let good = map(&[1.0]);
        let err = |pred: &Grid<f32>, gt: &Grid<f32>, c, o: &MetricOptions| {
            format!(
                "{:#}",
                compare_labels((pred, "P"), (gt, "G"), [1.0; 3], c, o).unwrap_err()
            )
        };
        assert_eq!(
            err(&map(&[1.5]), &good, None, &opts()),
            "P: value 1.5 is not a label (labels are integers 0..=255)"
        );
        assert_eq!(
            err(&good, &map(&[4.0]), Some(LabelConvention::Msd), &opts()),
            format!("G: label 4 is not a label of {}", LabelConvention::Msd)
        );
        assert!(err(&good, &Grid::zeros([4, 3, 3]), None, &opts()).contains("same voxel grid"));
        assert!(
            err(&map(&[3.0]), &map(&[4.0]), None, &opts())
                .starts_with("cannot guess the label convention of P and G")
        );
        let bad = MetricOptions {
            hd95_penalty: -1.0,
            et_postprocess: None,
        };
        assert!(err(&good, &good, None, &bad).contains("--hd95-penalty"));
        let zero = compare_labels((&good, "P"), (&good, "G"), [1.0, 0.0, 1.0], None, &opts());
        assert!(format!("{:#}", zero.unwrap_err()).contains("is not positive"));
    }
}
