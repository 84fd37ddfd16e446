//! The four MRI modalities and subsets of them.
//!
//! Order everywhere: T1, T1c, T2, FLAIR. A [`Subset`] is a 4-bit set whose name is the bit
//! string in that order: `"0101"` is T1c + FLAIR. Read as a binary number (FLAIR the least
//! significant bit), the 15 non-empty subsets `0001..=1111` are exactly the rows of the
//! paper's Table 1 in the paper's order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One MRI contrast. The discriminant is the modality's index in the canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    /// Native T1-weighted.
    T1 = 0,
    /// Contrast-enhanced (gadolinium) T1-weighted.
    T1c = 1,
    /// T2-weighted.
    T2 = 2,
    /// T2 fluid-attenuated inversion recovery.
    Flair = 3,
}

impl Modality {
    /// All modalities in canonical order.
    pub const ALL: [Modality; 4] = [Modality::T1, Modality::T1c, Modality::T2, Modality::Flair];

    /// Index in the canonical order (0..4).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The modality at `index` in the canonical order.
    pub fn from_index(index: usize) -> Option<Modality> {
        Self::ALL.get(index).copied()
    }

    /// Lower-case key used in file names, tensor names and JSON (`t1`, `t1c`, `t2`, `flair`).
    pub fn key(self) -> &'static str {
        match self {
            Modality::T1 => "t1",
            Modality::T1c => "t1c",
            Modality::T2 => "t2",
            Modality::Flair => "flair",
        }
    }

    /// Display name as in the paper (`T1`, `T1c`, `T2`, `FLAIR`).
    pub fn label(self) -> &'static str {
        match self {
            Modality::T1 => "T1",
            Modality::T1c => "T1c",
            Modality::T2 => "T2",
            Modality::Flair => "FLAIR",
        }
    }

    /// The bit of this modality in a [`Subset`] mask (T1 = 8, T1c = 4, T2 = 2, FLAIR = 1).
    pub fn bit(self) -> u8 {
        1 << (3 - self.index())
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Modality {
    type Err = String;

    /// Accepts the names used by BraTS 2020/2021 (`t1`, `t1ce`, `t2`, `flair`), BraTS 2023
    /// (`t1n`, `t1c`, `t2w`, `t2f`) and common spellings (`T1Gd`, `T1w`, `T2w`, `FLAIR`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "t1" | "t1n" | "t1w" => Ok(Modality::T1),
            "t1c" | "t1ce" | "t1gd" | "t1-gd" => Ok(Modality::T1c),
            "t2" | "t2w" => Ok(Modality::T2),
            "flair" | "t2f" | "fl" | "f" => Ok(Modality::Flair),
            other => Err(format!(
                "unknown modality '{other}' (expected one of t1, t1c, t2, flair)"
            )),
        }
    }
}

impl Serialize for Modality {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Modality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of modalities, stored as a 4-bit mask (see [`Modality::bit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Subset(u8);

impl Subset {
    /// All four modalities (`1111`).
    pub const FULL: Subset = Subset(0b1111);
    /// No modality (never valid as a network input).
    pub const EMPTY: Subset = Subset(0);

    /// The subset with mask `bits` (only the low 4 bits are kept).
    pub fn from_bits(bits: u8) -> Subset {
        Subset(bits & 0b1111)
    }

    /// The 4-bit mask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The subset holding exactly `modalities`.
    pub fn from_modalities<I: IntoIterator<Item = Modality>>(modalities: I) -> Subset {
        Subset(modalities.into_iter().fold(0, |acc, m| acc | m.bit()))
    }

    /// The 15 non-empty subsets in the order of the paper's Table 1 (`0001`, `0010`, …, `1111`).
    pub fn all_nonempty() -> impl Iterator<Item = Subset> {
        (1u8..=15).map(Subset)
    }

    /// Whether `m` is in the subset.
    pub fn contains(self, m: Modality) -> bool {
        self.0 & m.bit() != 0
    }

    /// The subset with `m` added.
    pub fn with(self, m: Modality) -> Subset {
        Subset(self.0 | m.bit())
    }

    /// Whether every modality of `self` is also in `other`.
    pub fn is_subset_of(self, other: Subset) -> bool {
        self.0 & !other.0 == 0
    }

    /// Number of modalities in the subset.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the subset is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The modalities of the subset in canonical order.
    pub fn modalities(self) -> impl Iterator<Item = Modality> {
        Modality::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// The bit-string name, e.g. `"0101"` for T1c + FLAIR.
    pub fn name(self) -> String {
        format!("{:04b}", self.0)
    }

    /// The paper's ○/● marks in canonical order, e.g. `"○●○●"`.
    pub fn marks(self) -> String {
        Modality::ALL
            .iter()
            .map(|m| if self.contains(*m) { '●' } else { '○' })
            .collect()
    }

    /// Human-readable list, e.g. `"T1c+FLAIR"`.
    pub fn describe(self) -> String {
        let names: Vec<&str> = self.modalities().map(Modality::label).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join("+")
        }
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Subset {
    type Err = String;

    /// Parses a 4-character bit string (`"0101"`) or a list of modality names separated by
    /// `,` or `+` (`"t1c,flair"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 4 && s.chars().all(|c| c == '0' || c == '1') {
            return Ok(Subset(
                u8::from_str_radix(s, 2).expect("checked bit string"),
            ));
        }
        let mut subset = Subset::EMPTY;
        for part in s.split([',', '+']).map(str::trim).filter(|p| !p.is_empty()) {
            subset = subset.with(part.parse()?);
        }
        if subset.is_empty() {
            return Err(format!(
                "'{s}' names no modality (use a bit string such as 0101 or names such as t1c,flair)"
            ));
        }
        Ok(subset)
    }
}

impl Serialize for Subset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Subset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_string_follows_canonical_order() {
        let s = Subset::from_modalities([Modality::T1c, Modality::Flair]);
        assert_eq!(s.name(), "0101");
        assert_eq!(s.marks(), "○●○●");
        assert_eq!("0101".parse::<Subset>().unwrap(), s);
        assert_eq!("flair+t1ce".parse::<Subset>().unwrap(), s);
        assert_eq!(s.describe(), "T1c+FLAIR");
    }

    #[test]
    fn table_one_order_starts_with_flair_and_ends_with_all() {
        let all: Vec<String> = Subset::all_nonempty().map(Subset::name).collect();
        assert_eq!(all.len(), 15);
        assert_eq!(all[0], "0001");
        assert_eq!(all[3], "0100");
        assert_eq!(all[14], "1111");
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!("0000".parse::<Subset>().is_ok_and(|s| s.is_empty()));
        assert!("t3".parse::<Subset>().is_err());
        assert!("".parse::<Subset>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let s: Subset = serde_json::from_str("\"1010\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"1010\"");
        let m: Modality = serde_json::from_str("\"t1ce\"").unwrap();
        assert_eq!(m, Modality::T1c);
    }
}
