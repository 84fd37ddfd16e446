//! Attention statistics (the paper's Fig. 3): the mean of each modality's attention map Ŵ_m
//! over the voxels of each reference class (NCR/NET, ED, ET) per case, averaged over the
//! cases that have that class, and their `attention.json` tables (the format is
//! [`crate::report::attention`]'s).

use super::rows::CaseRow;
use crate::infer::predictor::Prediction;
use crate::labels::TumourClass;
use crate::modality::{Modality, Subset};
use crate::report::scores::mean_present;
use crate::report::{ModalityWeights, RegionWeights};
use crate::volume::Grid;

/// The tumour classes of the paper's Fig. 3 with their display names.
pub const ATTENTION_CLASSES: [(TumourClass, &str); 3] = [
    (TumourClass::Enhancing, "ET"),
    (TumourClass::Edema, "ED"),
    (TumourClass::Necrosis, "NCR/NET"),
];

/// Mean attention `[class in ATTENTION_CLASSES order][modality index]`; `None` where there
/// is no value.
pub type ClassAttention = [[Option<f64>; 4]; 3];

/// Mean of the attention map of each modality over the voxels of each reference class;
/// `None` where the class is absent from the reference or the modality has no map. `gt` is
/// on the original grid.
pub fn attention_by_class(pred: &Prediction, gt: &Grid<u8>) -> ClassAttention {
    let mut out = [[None; 4]; 3];
    if pred.attention.is_empty() || gt.dims() != pred.full_dims {
        return out;
    }
    let gt = pred.crop.crop(gt);
    for (ci, (class, _)) in ATTENTION_CLASSES.iter().enumerate() {
        let want = class.index() as u8;
        for (m, map) in &pred.attention {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for (&g, &a) in gt.data().iter().zip(map.data()) {
                if g == want {
                    sum += a as f64;
                    n += 1;
                }
            }
            if n > 0 {
                out[ci][m.index()] = Some(sum / n as f64);
            }
        }
    }
    out
}

/// The mean over `rows` (the cases of one subset) of each class's and modality's attention,
/// over the rows that have a value.
pub fn mean_attention(rows: &[&CaseRow]) -> ClassAttention {
    std::array::from_fn(|c| {
        std::array::from_fn(|m| mean_present(rows.iter().map(|r| r.attention()[c][m])))
    })
}

/// The `attention.json` table of one subset: per class (by name) the weights of the
/// subset's modalities; classes without any weight are left out.
pub fn region_weights(subset: Subset, attention: &ClassAttention) -> RegionWeights {
    let mut table = RegionWeights::default();
    for (ci, (_, name)) in ATTENTION_CLASSES.iter().enumerate() {
        let w: [Option<f64>; 4] = std::array::from_fn(|m| {
            let present = Modality::from_index(m).is_some_and(|m| subset.contains(m));
            attention[ci][m].filter(|_| present)
        });
        if w.iter().any(Option::is_some) {
            table.0.insert(name.to_string(), ModalityWeights(w));
        }
    }
    table
}
