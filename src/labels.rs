//! Tumour labels and the regions WT, TC and ET.
//!
//! Every dataset layout has its own label convention; internally the tool works with the
//! canonical [`TumourClass`] (background, NCR, edema, ET) and the three overlapping BraTS
//! regions: WT = NCR ∪ ED ∪ ET, TC = NCR ∪ ET, ET. Predictions are converted back to the
//! input's convention before they are written.

use std::fmt;

use serde::{Deserialize, Serialize};

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
}
