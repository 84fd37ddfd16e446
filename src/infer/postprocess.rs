//! Post-processing of predicted label maps, applied by every prediction path (`predict`,
//! `evaluate`, validation during training, the demo).
//!
//! Two rules, both on the cropped grid of a case, both only ever turning tumour voxels into
//! background:
//! - **brain mask** (always on unless disabled): a voxel where every image of the subset
//!   is exactly 0 (the background of skull-stripped scans, which the normalisation keeps at
//!   0) lies outside the head, where BraTS never labels tumour; the network's output there
//!   is set to background. A scan that is not skull-stripped has no such voxel, so the
//!   rule does nothing to it.
//! - **largest component** (decided per model): keep only the largest 26-connected
//!   component of the whole tumour (NCR ∪ ED ∪ ET), as nnU-Net's post-processing does for
//!   the foreground. Whether this helps depends on the data (BraTS has multifocal
//!   tumours), so, as nnU-Net, it is decided on the validation cases after training
//!   ([`determine`]): kept when it raises the mean Dice over WT, TC and ET of the
//!   validation predictions from every modality subset. The decision is saved as
//!   `postprocess.json` in the model folder and read by [`super::Predictor::load`].
//!
//! Probability maps (`--save-probabilities`) are the network's and are not post-processed.

use std::path::Path;

use anyhow::{Context, Result};
use ndarray::ArrayView3;
use ndarray_ndimage::{Kernel3d, label};
use serde::{Deserialize, Serialize};

use super::Predictor;
use crate::metrics::region_dice;
use crate::modality::Subset;
use crate::preprocess::PreprocessedCase;
use crate::volume::Grid;

/// File name of the decision in a model folder.
pub const FILE: &str = "postprocess.json";

/// Which rules a predictor applies to its label maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Postprocess {
    /// Set voxels outside the head (every image of the subset 0) to background.
    pub brain_mask: bool,
    /// Keep only the largest 26-connected component of the whole tumour.
    pub largest_component: bool,
}

impl Default for Postprocess {
    /// The rules of a model folder without `postprocess.json`: the brain mask only.
    fn default() -> Self {
        Postprocess {
            brain_mask: true,
            largest_component: false,
        }
    }
}

impl Postprocess {
    /// No post-processing: the network's label map as decoded (`--no-postprocess`).
    pub const NONE: Postprocess = Postprocess {
        brain_mask: false,
        largest_component: false,
    };

    /// The rules saved in `model_dir` ([`FILE`]), else [`Postprocess::default`].
    pub fn load(model_dir: &Path) -> Result<Postprocess> {
        let path = model_dir.join(FILE);
        if !path.is_file() {
            return Ok(Postprocess::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let saved: Decision = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a post-processing decision", path.display()))?;
        Ok(saved.rules)
    }

    /// Applies the rules to `classes` (TumourClass indices on the cropped grid of `case`),
    /// predicted from the modalities of `subset`.
    pub fn apply(&self, classes: &mut Grid<u8>, case: &PreprocessedCase, subset: Subset) {
        let images: Vec<&Grid<f32>> = subset.modalities().filter_map(|m| case.image(m)).collect();
        self.apply_with_images(classes, &images);
    }

    /// Applies the rules to `classes` predicted from `images` (the subset's images on the
    /// same grid).
    pub fn apply_with_images(&self, classes: &mut Grid<u8>, images: &[&Grid<f32>]) {
        if self.brain_mask {
            mask_outside_brain(classes, images);
        }
        if self.largest_component {
            keep_largest_component(classes);
        }
    }

    /// A short description of the rules for reports ("none" without any).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.brain_mask {
            parts.push("labels only inside the head (where an image is non-zero)");
        }
        if self.largest_component {
            parts.push("largest connected whole-tumour component only");
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// Sets every voxel of `classes` where all `images` are exactly 0 to background.
/// Returns the number of tumour voxels removed. Without images nothing is masked.
pub fn mask_outside_brain(classes: &mut Grid<u8>, images: &[&Grid<f32>]) -> usize {
    if images.is_empty() {
        return 0;
    }
    let mut removed = 0;
    for (v, c) in classes.data_mut().iter_mut().enumerate() {
        if *c != 0 && images.iter().all(|g| g.data()[v] == 0.0) {
            *c = 0;
            removed += 1;
        }
    }
    removed
}

/// Keeps only the largest 26-connected component of the non-background voxels of
/// `classes` (ties: the component met first in x-fastest order). Returns the number of
/// voxels removed.
pub fn keep_largest_component(classes: &mut Grid<u8>) -> usize {
    let [nx, ny, nz] = classes.dims();
    let mask: Vec<bool> = classes.data().iter().map(|&c| c != 0).collect();
    let view = ArrayView3::from_shape((nz, ny, nx), &mask).expect("grid dims match its data");
    let kernel = Kernel3d::Full.generate();
    let (labels, count) = label::<u32>(&view, &kernel.view());
    if count <= 1 {
        return 0;
    }
    let mut sizes = vec![0usize; count + 1];
    // `labels` is C order over (z, y, x), the grid's x-fastest order.
    for &l in labels.iter() {
        sizes[l as usize] += 1;
    }
    let keep = (1..=count)
        .max_by_key(|&l| (sizes[l], std::cmp::Reverse(l)))
        .expect("count > 1");
    let mut removed = 0;
    for (c, &l) in classes.data_mut().iter_mut().zip(labels.iter()) {
        if l != 0 && l as usize != keep {
            *c = 0;
            removed += 1;
        }
    }
    removed
}

/// The decision saved as [`FILE`]: the rules and the validation scores they were chosen on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rules to apply.
    pub rules: Postprocess,
    /// Validation cases the decision was made on.
    pub cases: usize,
    /// Predictions scored (cases × subsets).
    pub predictions: usize,
    /// Mean Dice `[WT, TC, ET]` of those predictions with the brain mask only.
    pub dice_without: [f64; 3],
    /// The same with the largest-component rule on top.
    pub dice_with: [f64; 3],
}

impl Decision {
    /// Writes the decision into `model_dir` atomically.
    pub fn save(&self, model_dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the decision")?;
        crate::fsutil::atomic_write_bytes(&model_dir.join(FILE), text.as_bytes())
    }

    /// One line for logs and reports: the rule chosen and the scores behind it.
    pub fn summary(&self) -> String {
        let mean = |d: &[f64; 3]| d.iter().sum::<f64>() / 3.0;
        format!(
            "largest whole-tumour component {} (mean validation Dice over {} \
             predictions: {:.2}% without, {:.2}% with; WT {:.2}→{:.2}, TC {:.2}→{:.2}, ET \
             {:.2}→{:.2})",
            if self.rules.largest_component {
                "kept"
            } else {
                "not used"
            },
            self.predictions,
            100.0 * mean(&self.dice_without),
            100.0 * mean(&self.dice_with),
            100.0 * self.dice_without[0],
            100.0 * self.dice_with[0],
            100.0 * self.dice_without[1],
            100.0 * self.dice_with[1],
            100.0 * self.dice_without[2],
            100.0 * self.dice_with[2],
        )
    }
}

/// Decides the largest-component rule for the model of `predictor` (whose own
/// post-processing is replaced by the brain mask alone) on the `count` validation cases
/// `case(0..count)`, each with its segmentation, predicted from every non-empty subset of
/// its modalities. `on_case(done, count)` is called after each case; when it returns
/// false, the work stops and `None` is returned (nothing decided).
pub fn determine<'a>(
    predictor: &mut Predictor,
    count: usize,
    case: impl Fn(usize) -> Result<std::borrow::Cow<'a, PreprocessedCase>>,
    on_case: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<Decision>> {
    predictor.postprocess = Postprocess::default();
    let mut without = [0f64; 3];
    let mut with = [0f64; 3];
    let mut n = 0usize;
    for i in 0..count {
        let case = case(i)?;
        let truth = case.truth("validation")?;
        let subsets: Vec<Subset> = Subset::all_nonempty()
            .filter(|s| s.is_subset_of(case.available()))
            .collect();
        let preds = predictor
            .predict_subsets(&case, &subsets)
            .with_context(|| format!("cannot predict validation case {}", case.id))?;
        for (_, pred) in preds {
            let mut classes = case.crop.crop(&pred.classes);
            let before = region_dice(&classes, truth);
            keep_largest_component(&mut classes);
            let after = region_dice(&classes, truth);
            for r in 0..3 {
                without[r] += before[r];
                with[r] += after[r];
            }
            n += 1;
        }
        if !on_case(i + 1, count) {
            return Ok(None);
        }
    }
    let d = n.max(1) as f64;
    let without = without.map(|x| x / d);
    let with = with.map(|x| x / d);
    let gain = with.iter().sum::<f64>() - without.iter().sum::<f64>();
    Ok(Some(Decision {
        rules: Postprocess {
            brain_mask: true,
            largest_component: n > 0 && gain > 0.0,
        },
        cases: count,
        predictions: n,
        dice_without: without,
        dice_with: with,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid of `dims` with the listed voxels set to `class`.
    fn grid(dims: [usize; 3], voxels: &[([usize; 3], u8)]) -> Grid<u8> {
        let mut g = Grid::zeros(dims);
        for &([x, y, z], c) in voxels {
            g.set(x, y, z, c);
        }
        g
    }

    #[test]
    fn largest_component_keeps_the_biggest_blob_with_its_classes() {
        // A 2×2×2 blob of mixed classes, a diagonal neighbour (26-connected to it), and two
        // separate voxels far away.
        let mut voxels = Vec::new();
        for z in 1..3 {
            for y in 1..3 {
                for x in 1..3 {
                    voxels.push(([x, y, z], if x == 1 { 3 } else { 2 }));
                }
            }
        }
        voxels.push(([3, 3, 3], 1)); // corner-touching: same component under 26-connectivity
        voxels.push(([7, 7, 7], 2));
        voxels.push(([7, 0, 0], 3));
        let mut g = grid([8, 8, 8], &voxels);
        let before = g.clone();
        assert_eq!(keep_largest_component(&mut g), 2);
        assert_eq!(g.get(7, 7, 7), 0);
        assert_eq!(g.get(7, 0, 0), 0);
        assert_eq!(g.get(3, 3, 3), 1);
        for z in 1..3 {
            for y in 1..3 {
                for x in 1..3 {
                    assert_eq!(g.get(x, y, z), before.get(x, y, z));
                }
            }
        }
        assert_eq!(g.data().iter().filter(|&&c| c != 0).count(), 9);
    }

    #[test]
    fn largest_component_leaves_single_and_empty_maps_alone() {
        let mut empty = Grid::<u8>::zeros([4, 3, 2]);
        assert_eq!(keep_largest_component(&mut empty), 0);
        let mut one = grid([4, 3, 2], &[([0, 0, 0], 2), ([1, 0, 0], 1), ([3, 2, 1], 0)]);
        let copy = one.clone();
        assert_eq!(keep_largest_component(&mut one), 0);
        assert_eq!(one, copy);
    }

    #[test]
    fn components_follow_the_grid_order_in_non_cubic_grids() {
        // Two blobs in a 9×4×3 grid: 3 voxels along x at y=0,z=0 and 2 voxels at x=8.
        let mut g = grid(
            [9, 4, 3],
            &[
                ([0, 0, 0], 2),
                ([1, 0, 0], 2),
                ([2, 0, 0], 2),
                ([8, 3, 2], 1),
                ([8, 2, 2], 1),
            ],
        );
        assert_eq!(keep_largest_component(&mut g), 2);
        assert_eq!(g.get(2, 0, 0), 2);
        assert_eq!(g.get(8, 3, 2), 0);
    }

    #[test]
    fn brain_mask_removes_tumour_only_where_every_image_is_zero() {
        let dims = [3, 1, 1];
        let a = Grid::from_vec(dims, vec![0.0, 1.0, 0.0]).unwrap();
        let b = Grid::from_vec(dims, vec![0.0, 0.0, -0.5]).unwrap();
        let mut c = grid(dims, &[([0, 0, 0], 2), ([1, 0, 0], 3), ([2, 0, 0], 1)]);
        assert_eq!(mask_outside_brain(&mut c, &[&a, &b]), 1);
        assert_eq!(c.data(), &[0, 3, 1]);
        // With `a` alone, the third voxel is outside too.
        let mut c2 = grid(dims, &[([0, 0, 0], 2), ([1, 0, 0], 3), ([2, 0, 0], 1)]);
        assert_eq!(mask_outside_brain(&mut c2, &[&a]), 2);
        assert_eq!(c2.data(), &[0, 3, 0]);
        assert_eq!(mask_outside_brain(&mut c2, &[]), 0);
    }

    /// A case of 4×1×1 voxels: T1c is zero on voxels 0 and 1, FLAIR on voxels 0 and 2.
    fn case() -> PreprocessedCase {
        use crate::labels::LabelConvention;
        use crate::modality::Modality;
        use crate::preprocess::CropBox;
        use crate::volume::Geometry;
        let dims = [4, 1, 1];
        let mut images: [Option<Grid<f32>>; 4] = Default::default();
        images[Modality::T1c.index()] = Grid::from_vec(dims, vec![0.0, 0.0, 1.0, 2.0]);
        images[Modality::Flair.index()] = Grid::from_vec(dims, vec![0.0, -1.0, 0.0, 3.0]);
        let mut affine = [[0.0; 4]; 4];
        for (a, row) in affine.iter_mut().enumerate() {
            row[a] = 1.0;
        }
        PreprocessedCase {
            id: "c".into(),
            images,
            classes: None,
            crop: CropBox {
                start: [0; 3],
                dims,
            },
            geometry: Geometry::from_affine(dims, affine),
            convention: LabelConvention::Brats,
        }
    }

    #[test]
    fn apply_masks_with_the_subsets_images_only() {
        let case = case();
        let all = || Grid::from_vec([4, 1, 1], vec![2u8, 2, 2, 2]).unwrap();
        let both: Subset = "0101".parse().unwrap();
        let t1c: Subset = "0100".parse().unwrap();
        let flair: Subset = "0001".parse().unwrap();
        for (subset, want) in [
            (both, [0u8, 2, 2, 2]),
            (t1c, [0, 0, 2, 2]),
            (flair, [0, 2, 0, 2]),
        ] {
            let mut c = all();
            Postprocess::default().apply(&mut c, &case, subset);
            assert_eq!(c.data(), &want, "{}", subset.name());
            let mut raw = all();
            Postprocess::NONE.apply(&mut raw, &case, subset);
            assert_eq!(raw, all());
        }
        // Brain mask, then the largest component: voxels 2–3 remain after masking with
        // T1c; with FLAIR, voxels 1 and 3 are two components of one voxel each (the
        // first is kept).
        let rules = Postprocess {
            brain_mask: true,
            largest_component: true,
        };
        let mut c = all();
        rules.apply(&mut c, &case, t1c);
        assert_eq!(c.data(), &[0, 0, 2, 2]);
        let mut c = all();
        rules.apply(&mut c, &case, flair);
        assert_eq!(c.data(), &[0, 2, 0, 0]);
        assert!(rules.describe().contains("largest"));
        assert_eq!(Postprocess::NONE.describe(), "none");
    }

    #[test]
    fn decisions_round_trip_and_missing_files_give_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Postprocess::load(dir.path()).unwrap(),
            Postprocess::default()
        );
        let d = Decision {
            rules: Postprocess {
                brain_mask: true,
                largest_component: true,
            },
            cases: 2,
            predictions: 30,
            dice_without: [0.8, 0.7, 0.6],
            dice_with: [0.9, 0.7, 0.6],
        };
        d.save(dir.path()).unwrap();
        assert!(Postprocess::load(dir.path()).unwrap().largest_component);
        assert!(d.summary().contains("kept"), "{}", d.summary());
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        let e = Postprocess::load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains(FILE), "{e:#}");
    }
}
