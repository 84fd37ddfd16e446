//! The methods `a2fseg compare` knows: the one owner of the mapping from a `--methods` name
//! to a network configuration and a training recipe.
//!
//! | name | network | report label |
//! |---|---|---|
//! | `a2fseg` | A2FSeg: average then adaptive fusion | A2FSeg |
//! | `average` | A2FSeg's MSFEs, average fusion only (the paper's Table 2 baseline) | Average fusion |
//! | `hemis` | A2FSeg's MSFEs, HeMIS fusion (mean and variance) | HeMIS fusion |
//! | every other [`Arch`] by its name (`uhved`, `a2fseg-released`, …) | that architecture | see [`Method::label`] |
//!
//! `--recipe own` trains every method with its own recipe ([`TrainConfig::recipe`] of its
//! architecture); `--recipe common` gives every method A2FSeg's recipe (optimiser, schedule,
//! modality draw, epochs, batch and patch size) around the method's own network.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::{Arch, Fusion, ModelConfig, Preset};
use crate::train::TrainConfig;

/// A method of the comparison: an architecture, and for A2FSeg's the fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method {
    arch: Arch,
    fusion: Fusion,
}

impl Method {
    /// A2FSeg (adaptive fusion), the reference method of the statistical tests.
    pub const A2FSEG: Method = Method::a2fseg(Fusion::Adaptive);
    /// A2FSeg's network with average fusion only.
    pub const AVERAGE: Method = Method::a2fseg(Fusion::Average);
    /// A2FSeg's network with HeMIS fusion.
    pub const HEMIS: Method = Method::a2fseg(Fusion::Hemis);

    const fn a2fseg(fusion: Fusion) -> Method {
        Method {
            arch: Arch::A2fseg,
            fusion,
        }
    }

    /// Every known method, in the order tables list them: the three A2FSeg fusions, then
    /// every other architecture.
    pub fn all() -> Vec<Method> {
        let mut v = vec![Method::A2FSEG, Method::AVERAGE, Method::HEMIS];
        v.extend(
            Arch::ALL
                .into_iter()
                .filter(|&a| a != Arch::A2fseg)
                .map(Method::from),
        );
        v
    }

    /// The architecture.
    pub fn arch(self) -> Arch {
        self.arch
    }

    /// The name in `--methods`, folder names and files.
    pub fn name(self) -> &'static str {
        match (self.arch, self.fusion) {
            (Arch::A2fseg, Fusion::Adaptive) => "a2fseg",
            (Arch::A2fseg, Fusion::Average) => "average",
            (Arch::A2fseg, Fusion::Hemis) => "hemis",
            #[allow(unreachable_patterns)]
            (arch, _) => arch.name(),
        }
    }

    /// The name in tables and figures (an architecture without a label here shows its name).
    pub fn label(self) -> &'static str {
        match self.name() {
            "a2fseg" => "A2FSeg",
            "average" => "Average fusion",
            "hemis" => "HeMIS fusion",
            "uhved" => "U-HVED",
            "mfi" => "MFI",
            "rfnet" => "RFNet",
            "a2fseg-released" => "A2FSeg (released code)",
            "mmformer" => "mmFormer",
            other => other,
        }
    }

    /// The training configuration of this method for `preset` under `recipe`.
    pub fn train_config(self, preset: Preset, recipe: Recipe) -> TrainConfig {
        let mut cfg = match recipe {
            Recipe::Own => TrainConfig::recipe(self.arch, preset),
            Recipe::Common => {
                let mut c = TrainConfig::recipe(Arch::A2fseg, preset);
                let patch = c.model.patch_size;
                c.model = ModelConfig::of(self.arch, preset);
                c.model.patch_size = patch;
                c
            }
        };
        if self.arch == Arch::A2fseg {
            cfg.model.fusion = self.fusion;
        }
        cfg
    }

    /// The known names, comma-separated (for messages and help).
    pub fn known() -> String {
        Method::all()
            .into_iter()
            .map(Method::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl From<Arch> for Method {
    /// The method of architecture `arch` (A2FSeg's with adaptive fusion).
    fn from(arch: Arch) -> Method {
        Method {
            arch,
            fusion: Fusion::Adaptive,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Method::all()
            .into_iter()
            .find(|m| m.name() == t)
            .ok_or_else(|| format!("unknown method '{}' (known: {})", s.trim(), Method::known()))
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a `--methods` list: comma-separated names, at least one, no repeats; the order
/// is kept (A2FSeg is the reference of the tests wherever it stands).
pub fn parse_methods(s: &str) -> Result<Vec<Method>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m: Method = part.parse().map_err(anyhow::Error::msg)?;
        if v.contains(&m) {
            bail!("method '{m}' is listed twice");
        }
        v.push(m);
    }
    if v.is_empty() {
        bail!("no method given (known: {})", Method::known());
    }
    Ok(v)
}

/// Which training recipe each method gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Each method its own recipe (optimiser, schedule, subset draw, patch).
    Own,
    /// Every method A2FSeg's recipe.
    Common,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_list_the_known_ones() {
        assert_eq!(
            parse_methods("a2fseg, average").unwrap(),
            [Method::A2FSEG, Method::AVERAGE]
        );
        assert_eq!(parse_methods("HEMIS").unwrap(), [Method::HEMIS]);
        let e = parse_methods("a2fseg,unet3d").unwrap_err().to_string();
        assert!(
            e.starts_with("unknown method 'unet3d' (known: a2fseg, average, hemis"),
            "{e}"
        );
        assert!(parse_methods("a2fseg,a2fseg").is_err());
        assert!(parse_methods(" , ").is_err());
        let all = Method::all();
        assert_eq!(all.len(), 2 + Arch::ALL.len());
        for m in all {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            assert!(!m.label().is_empty());
        }
    }

    #[test]
    fn each_method_gets_its_network_and_the_recipe() {
        let a = Method::A2FSEG.train_config(Preset::Small, Recipe::Own);
        let h = Method::HEMIS.train_config(Preset::Small, Recipe::Common);
        assert_eq!(a, TrainConfig::recipe(Arch::A2fseg, Preset::Small));
        assert_eq!(h.model.fusion, Fusion::Hemis);
        assert_eq!(h.lr, a.lr);
        assert_eq!(h.model.patch_size, a.model.patch_size);
        assert_eq!(
            Method::AVERAGE
                .train_config(Preset::Small, Recipe::Own)
                .model
                .fusion,
            Fusion::Average
        );
        for m in Method::all() {
            for recipe in [Recipe::Own, Recipe::Common] {
                let c = m.train_config(Preset::Small, recipe);
                assert_eq!(c.model.arch, m.arch());
                if recipe == Recipe::Common {
                    assert_eq!(c.optimizer, a.optimizer);
                    assert_eq!(c.epochs, a.epochs);
                    assert_eq!(c.modality_dropout, a.modality_dropout);
                    assert_eq!(c.model.patch_size, a.model.patch_size);
                }
            }
        }
    }
}
