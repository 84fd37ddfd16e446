//! The methods `a2fseg compare` knows: the one owner of the mapping from a `--methods` name
//! to a network configuration and a training recipe.
//!
//! | name | network | report label |
//! |---|---|---|
//! | `a2fseg` | A2FSeg: average then adaptive fusion | A2FSeg |
//! | `average` | A2FSeg's MSFEs, average fusion only (the paper's Table 2 baseline) | Average fusion |
//! | `hemis` | A2FSeg's MSFEs, HeMIS fusion (mean and variance) | HeMIS fusion |
//!
//! `--recipe own` trains every method with its own training recipe, `--recipe common` with
//! A2FSeg's; for the three fusion variants both recipes are the preset's
//! ([`TrainConfig::preset`]), since they share A2FSeg's network and its training.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::{Fusion, Preset};
use crate::train::TrainConfig;

/// A method of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// A2FSeg (adaptive fusion), the reference method of the statistical tests.
    A2fseg,
    /// Average fusion only.
    Average,
    /// HeMIS fusion.
    Hemis,
}

impl Method {
    /// Every known method, in the order tables list them.
    pub const ALL: [Method; 3] = [Method::A2fseg, Method::Average, Method::Hemis];

    /// The name in `--methods`, folder names and files.
    pub fn name(self) -> &'static str {
        match self {
            Method::A2fseg => "a2fseg",
            Method::Average => "average",
            Method::Hemis => "hemis",
        }
    }

    /// The name in tables and figures.
    pub fn label(self) -> &'static str {
        match self {
            Method::A2fseg => "A2FSeg",
            Method::Average => "Average fusion",
            Method::Hemis => "HeMIS fusion",
        }
    }

    /// The training configuration of this method for `preset` under `recipe`: the recipe's
    /// optimiser, schedule, subset draw and patch with this method's network.
    pub fn train_config(self, preset: Preset, recipe: Recipe) -> TrainConfig {
        let mut cfg = match recipe {
            Recipe::Own => self.own_recipe(preset),
            Recipe::Common => Method::A2fseg.own_recipe(preset),
        };
        cfg.model.fusion = self.fusion();
        cfg
    }

    /// The method's own recipe (today the preset's for every fusion variant).
    fn own_recipe(self, preset: Preset) -> TrainConfig {
        TrainConfig::preset(preset)
    }

    /// The fusion of A2FSeg's network this method uses.
    fn fusion(self) -> Fusion {
        match self {
            Method::A2fseg => Fusion::Adaptive,
            Method::Average => Fusion::Average,
            Method::Hemis => Fusion::Hemis,
        }
    }

    /// The known names, comma-separated (for messages and help).
    pub fn known() -> String {
        Method::ALL.map(Method::name).join(", ")
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
        Method::ALL
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
/// is kept (the first `a2fseg` is the reference of the tests wherever it stands).
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
            [Method::A2fseg, Method::Average]
        );
        assert_eq!(parse_methods("HEMIS").unwrap(), [Method::Hemis]);
        let e = parse_methods("a2fseg,mmformer").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown method 'mmformer' (known: a2fseg, average, hemis)"
        );
        assert!(parse_methods("a2fseg,a2fseg").is_err());
        assert!(parse_methods(" , ").is_err());
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
    }

    #[test]
    fn each_method_gets_its_network_and_the_recipe() {
        let a = Method::A2fseg.train_config(Preset::Small, Recipe::Own);
        let h = Method::Hemis.train_config(Preset::Small, Recipe::Common);
        assert_eq!(a.model.fusion, Fusion::Adaptive);
        assert_eq!(h.model.fusion, Fusion::Hemis);
        assert_eq!(h.lr, a.lr);
        assert_eq!(h.model.patch_size, a.model.patch_size);
        assert_eq!(
            Method::Average
                .train_config(Preset::Small, Recipe::Own)
                .model
                .fusion,
            Fusion::Average
        );
    }
}
