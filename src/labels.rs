//! Tumour labels and the regions WT, TC and ET.
//!
//! Every dataset layout has its own label convention; internally the tool works with the
//! canonical [`TumourClass`] (background, NCR, edema, ET) and the three overlapping BraTS
//! regions: WT = NCR ∪ ED ∪ ET, TC = NCR ∪ ET, ET. Predictions are converted back to the
//! input's convention before they are written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::volume::Grid;

/// The canonical tumour classes; the discriminant is the class index used by the
/// `classes` target encoding (softmax over 4 classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TumourClass {
    /// Healthy tissue or outside the head.
    Background = 0,
    /// Necrotic and non-enhancing tumour core (NCR/NET).
    Necrosis = 1,
    /// Peritumoral edema (ED).
    Edema = 2,
    /// Enhancing tumour (ET).
    Enhancing = 3,
}

impl TumourClass {
    /// All classes by index.
    pub const ALL: [TumourClass; 4] = [
        TumourClass::Background,
        TumourClass::Necrosis,
        TumourClass::Edema,
        TumourClass::Enhancing,
    ];

    /// Class index (0..4).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class of index `i`, if any.
    pub fn from_index(i: usize) -> Option<TumourClass> {
        Self::ALL.get(i).copied()
    }

    /// Membership in WT, TC, ET (in that order).
    pub fn regions(self) -> [bool; 3] {
        match self {
            TumourClass::Background => [false, false, false],
            TumourClass::Necrosis => [true, true, false],
            TumourClass::Edema => [true, false, false],
            TumourClass::Enhancing => [true, true, true],
        }
    }

    /// The class of a voxel given its region memberships (WT, TC, ET), resolved the way
    /// BraTS defines the regions as nested: ET wins, then TC (→ NCR), then WT (→ edema).
    pub fn from_regions(wt: bool, tc: bool, et: bool) -> TumourClass {
        if et {
            TumourClass::Enhancing
        } else if tc {
            TumourClass::Necrosis
        } else if wt {
            TumourClass::Edema
        } else {
            TumourClass::Background
        }
    }
}

/// The three evaluated tumour regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Region {
    /// Whole tumour: NCR ∪ ED ∪ ET.
    #[serde(rename = "WT")]
    Wt = 0,
    /// Tumour core: NCR ∪ ET.
    #[serde(rename = "TC")]
    Tc = 1,
    /// Enhancing tumour.
    #[serde(rename = "ET")]
    Et = 2,
}

impl Region {
    /// WT, TC, ET: the order of region channels everywhere.
    pub const ALL: [Region; 3] = [Region::Wt, Region::Tc, Region::Et];

    /// Channel index (0..3).
    pub fn index(self) -> usize {
        self as usize
    }

    /// `"WT"`, `"TC"` or `"ET"`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Wt => "WT",
            Region::Tc => "TC",
            Region::Et => "ET",
        }
    }

    /// Whether a voxel of class `c` belongs to this region.
    pub fn contains(self, c: TumourClass) -> bool {
        c.regions()[self.index()]
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a dataset writes tumour classes as integer labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelConvention {
    /// BraTS 2018–2021: 0 background, 1 NCR/NET, 2 edema, 4 enhancing.
    Brats,
    /// BraTS 2023+: 0 background, 1 NCR, 2 edema, 3 enhancing.
    Brats2023,
    /// Medical Segmentation Decathlon Task01: 0 background, 1 edema, 2 non-enhancing, 3 enhancing.
    Msd,
}

impl LabelConvention {
    /// The class of a label value, or `None` for a value outside the convention.
    pub fn to_class(self, label: u8) -> Option<TumourClass> {
        use TumourClass::*;
        match (self, label) {
            (_, 0) => Some(Background),
            (LabelConvention::Brats | LabelConvention::Brats2023, 1) => Some(Necrosis),
            (LabelConvention::Brats | LabelConvention::Brats2023, 2) => Some(Edema),
            (LabelConvention::Brats, 4) => Some(Enhancing),
            (LabelConvention::Brats2023, 3) => Some(Enhancing),
            (LabelConvention::Msd, 1) => Some(Edema),
            (LabelConvention::Msd, 2) => Some(Necrosis),
            (LabelConvention::Msd, 3) => Some(Enhancing),
            _ => None,
        }
    }

    /// The label value of a class in this convention.
    pub fn from_class(self, c: TumourClass) -> u8 {
        use TumourClass::*;
        match (self, c) {
            (_, Background) => 0,
            (LabelConvention::Brats | LabelConvention::Brats2023, Necrosis) => 1,
            (LabelConvention::Brats | LabelConvention::Brats2023, Edema) => 2,
            (LabelConvention::Brats, Enhancing) => 4,
            (LabelConvention::Brats2023, Enhancing) => 3,
            (LabelConvention::Msd, Edema) => 1,
            (LabelConvention::Msd, Necrosis) => 2,
            (LabelConvention::Msd, Enhancing) => 3,
        }
    }

    /// The valid label values, ascending.
    pub fn valid_labels(self) -> [u8; 4] {
        let mut v = TumourClass::ALL.map(|c| self.from_class(c));
        v.sort_unstable();
        v
    }
}

impl fmt::Display for LabelConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = self.valid_labels();
        let name = match self {
            LabelConvention::Brats => "brats",
            LabelConvention::Brats2023 => "brats2023",
            LabelConvention::Msd => "msd",
        };
        write!(f, "{name} (labels {labels:?})")
    }
}

impl LabelConvention {
    /// Every convention.
    pub const ALL: [LabelConvention; 3] = [
        LabelConvention::Brats,
        LabelConvention::Brats2023,
        LabelConvention::Msd,
    ];

    /// Short name used on the command line and in JSON: `brats`, `brats2023` or `msd`.
    pub fn name(self) -> &'static str {
        match self {
            LabelConvention::Brats => "brats",
            LabelConvention::Brats2023 => "brats2023",
            LabelConvention::Msd => "msd",
        }
    }

    /// Converts a label map as read from a file (any numeric datatype, as `f32`) into
    /// [`TumourClass`] indices. Values that are not integer labels of this convention
    /// (NaN included) are collected into a [`LabelError`]; nothing is silently mapped.
    pub fn classes_from_values(self, labels: &Grid<f32>) -> Result<Grid<u8>, LabelError> {
        let lut: [Option<u8>; 256] =
            std::array::from_fn(|v| self.to_class(v as u8).map(|c| c.index() as u8));
        let mut bad = BadValues::default();
        let data = labels
            .data()
            .iter()
            .map(|&v| {
                let class = if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
                    lut[v as usize]
                } else {
                    None
                };
                class.unwrap_or_else(|| {
                    bad.note(v);
                    0
                })
            })
            .collect();
        bad.into_result(self, labels.dims(), data)
    }

    /// Converts a `u8` label map into [`TumourClass`] indices (see
    /// [`LabelConvention::classes_from_values`]).
    pub fn classes_from_labels(self, labels: &Grid<u8>) -> Result<Grid<u8>, LabelError> {
        let mut bad = BadValues::default();
        let data = labels
            .data()
            .iter()
            .map(|&v| match self.to_class(v) {
                Some(c) => c.index() as u8,
                None => {
                    bad.note(f32::from(v));
                    0
                }
            })
            .collect();
        bad.into_result(self, labels.dims(), data)
    }

    /// Converts a map of [`TumourClass`] indices into this convention's labels, for
    /// writing. Indices above 3 (never produced by the tool) become background.
    pub fn labels_from_classes(self, classes: &Grid<u8>) -> Grid<u8> {
        let lut = TumourClass::ALL.map(|c| self.from_class(c));
        classes.map(|c| lut.get(c as usize).copied().unwrap_or(0))
    }

    /// Converts a label map of this convention into the labels of `to`.
    pub fn convert_labels(
        self,
        labels: &Grid<u8>,
        to: LabelConvention,
    ) -> Result<Grid<u8>, LabelError> {
        Ok(to.labels_from_classes(&self.classes_from_labels(labels)?))
    }
}

impl FromStr for LabelConvention {
    type Err = String;

    /// Accepts `brats` (also `brats2020`, `brats2021`, `0124`), `brats2023` (also `0123`)
    /// and `msd` (also `decathlon`, `task01`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "brats" | "brats2020" | "brats2021" | "brats20" | "brats21" | "0124" => {
                Ok(LabelConvention::Brats)
            }
            "brats2023" | "brats23" | "brats-2023" | "0123" => Ok(LabelConvention::Brats2023),
            "msd" | "decathlon" | "task01" => Ok(LabelConvention::Msd),
            other => Err(format!(
                "unknown label convention '{other}' (expected brats, brats2023 or msd)"
            )),
        }
    }
}

/// A label map held values outside its convention.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelError {
    /// The convention the map was read with.
    pub convention: &'static str,
    /// Its valid labels.
    pub valid: [u8; 4],
    /// The distinct invalid values found (at most [`LabelError::MAX_VALUES`]), ascending.
    pub values: Vec<f32>,
    /// Whether more distinct invalid values exist than are listed.
    pub more: bool,
    /// Number of voxels with an invalid value.
    pub count: usize,
}

impl LabelError {
    /// How many distinct bad values an error lists.
    pub const MAX_VALUES: usize = 10;
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self
            .values
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "{} voxels have labels outside the {} convention (valid {:?}): {values}{}",
            self.count,
            self.convention,
            self.valid,
            if self.more { ", …" } else { "" }
        )
    }
}

impl std::error::Error for LabelError {}

/// Collects the distinct invalid values met while converting a label map.
#[derive(Default)]
struct BadValues {
    count: usize,
    values: Vec<f32>,
    more: bool,
}

impl BadValues {
    fn note(&mut self, v: f32) {
        self.count += 1;
        if self.values.iter().any(|&u| u.total_cmp(&v).is_eq()) {
            return;
        }
        if self.values.len() < LabelError::MAX_VALUES {
            self.values.push(v);
        } else {
            self.more = true;
        }
    }

    fn into_result(
        mut self,
        conv: LabelConvention,
        dims: [usize; 3],
        data: Vec<u8>,
    ) -> Result<Grid<u8>, LabelError> {
        if self.count == 0 {
            return Ok(Grid::from_vec(dims, data).expect("same number of voxels"));
        }
        self.values.sort_by(f32::total_cmp);
        Err(LabelError {
            convention: conv.name(),
            valid: conv.valid_labels(),
            values: self.values,
            more: self.more,
            count: self.count,
        })
    }
}

/// Binary mask (0/1) of `region` in a map of [`TumourClass`] indices.
pub fn region_mask(classes: &Grid<u8>, region: Region) -> Grid<u8> {
    let lut = TumourClass::ALL.map(|c| u8::from(region.contains(c)));
    classes.map(|c| lut.get(c as usize).copied().unwrap_or(0))
}

/// The three region masks WT, TC, ET (0/1) of a map of [`TumourClass`] indices.
pub fn region_masks(classes: &Grid<u8>) -> [Grid<u8>; 3] {
    Region::ALL.map(|r| region_mask(classes, r))
}

/// The map of [`TumourClass`] indices given region masks WT, TC, ET (non-zero = inside),
/// resolved as nested regions (see [`TumourClass::from_regions`]). `None` if the masks'
/// dims differ.
pub fn classes_from_region_masks(masks: &[Grid<u8>; 3]) -> Option<Grid<u8>> {
    let dims = masks[0].dims();
    if masks.iter().any(|m| m.dims() != dims) {
        return None;
    }
    let [wt, tc, et] = masks.each_ref().map(|m| m.data());
    let data = (0..wt.len())
        .map(|i| TumourClass::from_regions(wt[i] != 0, tc[i] != 0, et[i] != 0).index() as u8)
        .collect();
    Grid::from_vec(dims, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_convention_round_trips_every_class() {
        for conv in [
            LabelConvention::Brats,
            LabelConvention::Brats2023,
            LabelConvention::Msd,
        ] {
            for c in TumourClass::ALL {
                assert_eq!(conv.to_class(conv.from_class(c)), Some(c), "{conv:?} {c:?}");
            }
        }
    }

    #[test]
    fn conventions_differ_where_the_datasets_do() {
        assert_eq!(LabelConvention::Brats.from_class(TumourClass::Enhancing), 4);
        assert_eq!(LabelConvention::Brats2023.from_class(TumourClass::Enhancing), 3);
        assert_eq!(LabelConvention::Msd.to_class(1), Some(TumourClass::Edema));
        assert_eq!(LabelConvention::Brats.to_class(3), None);
        assert_eq!(LabelConvention::Brats2023.to_class(4), None);
    }

    #[test]
    fn regions_are_nested_and_invertible() {
        for c in TumourClass::ALL {
            let [wt, tc, et] = c.regions();
            assert!(!et || tc, "ET inside TC");
            assert!(!tc || wt, "TC inside WT");
            assert_eq!(TumourClass::from_regions(wt, tc, et), c);
        }
    }

    #[test]
    fn names_parse_back() {
        for conv in LabelConvention::ALL {
            assert_eq!(conv.name().parse::<LabelConvention>(), Ok(conv));
        }
        assert_eq!("BraTS2021".parse(), Ok(LabelConvention::Brats));
        assert!("nnunet".parse::<LabelConvention>().is_err());
    }

    #[test]
    fn grid_conversion_round_trips_and_converts_between_conventions() {
        let labels = Grid::from_vec([5, 1, 1], vec![0u8, 1, 2, 4, 0]).unwrap();
        let classes = LabelConvention::Brats.classes_from_labels(&labels).unwrap();
        assert_eq!(classes.data(), &[0, 1, 2, 3, 0]);
        assert_eq!(LabelConvention::Brats.labels_from_classes(&classes), labels);
        let msd = LabelConvention::Brats
            .convert_labels(&labels, LabelConvention::Msd)
            .unwrap();
        assert_eq!(msd.data(), &[0, 2, 1, 3, 0]);
        let floats = labels.map(f32::from);
        assert_eq!(
            LabelConvention::Brats.classes_from_values(&floats).unwrap(),
            classes
        );
    }

    #[test]
    fn bad_labels_are_listed_not_mapped() {
        let floats = Grid::from_vec([6, 1, 1], vec![0.0f32, 3.0, 3.0, 1.5, f32::NAN, 4.0]).unwrap();
        let e = LabelConvention::Brats
            .classes_from_values(&floats)
            .unwrap_err();
        assert_eq!(e.count, 4);
        assert_eq!(e.values.len(), 3);
        let msg = e.to_string();
        assert!(
            msg.contains("1.5") && msg.contains('3') && msg.contains("NaN"),
            "{msg}"
        );
        let e = LabelConvention::Brats2023
            .classes_from_labels(&Grid::from_vec([2, 1, 1], vec![4u8, 0]).unwrap())
            .unwrap_err();
        assert_eq!(e.values, vec![4.0]);
    }

    #[test]
    fn region_masks_invert() {
        let classes = Grid::from_vec([4, 1, 1], vec![0u8, 1, 2, 3]).unwrap();
        let masks = region_masks(&classes);
        assert_eq!(masks[0].data(), &[0, 1, 1, 1]);
        assert_eq!(masks[1].data(), &[0, 1, 0, 1]);
        assert_eq!(masks[2].data(), &[0, 0, 0, 1]);
        assert_eq!(classes_from_region_masks(&masks).unwrap(), classes);
    }
}
