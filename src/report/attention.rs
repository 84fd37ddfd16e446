//! `attention.json` (this module owns the format): the mean attention weight of each
//! modality over the voxels of each tumour class (the paper's Fig. 3). `a2fseg evaluate`
//! writes it for adaptive-fusion models ([`AttentionFile`]); reports read it
//! ([`Attention::load`]).
//!
//! The evaluator writes, per subset with at least two modalities,
//! `{"1111": {"ED": {"flair": w, "t1": w, "t1c": w, "t2": w}, "ET": .., "NCR/NET": ..}, …}`
//! (keys sorted; an empty object for a model without adaptive fusion), keyed by model name
//! when several models are evaluated. The reader also accepts hand-made files: the region
//! table alone, modality keys in any case (`T1c`, `flair`), weights as
//! `[w_t1, w_t1c, w_t2, w_flair]`, and the table wrapped in a key such as `"mean"`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::inputs::parse_file;
use crate::modality::{Modality, Subset};

/// The weight of each modality in canonical order (`None`: no weight). Written as
/// `{"flair": w, "t1": w, …}` with the weights present; read from such an object (modality
/// names as [`Modality`] parses them, other keys ignored) or a 4-element array.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModalityWeights(pub [Option<f64>; 4]);

impl ModalityWeights {
    /// Reads `{MODALITY: weight}` or `[w_t1, w_t1c, w_t2, w_flair]`; `None` for any other
    /// value or when no weight is a number.
    fn from_value(v: &Value) -> Option<ModalityWeights> {
        let mut w = [None; 4];
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if let (Ok(modality), Some(x)) = (k.parse::<Modality>(), x.as_f64()) {
                        w[modality.index()] = Some(x);
                    }
                }
            }
            Value::Array(a) if a.len() == 4 => {
                for (i, x) in a.iter().enumerate() {
                    w[i] = x.as_f64();
                }
            }
            _ => return None,
        }
        w.iter().any(Option::is_some).then_some(ModalityWeights(w))
    }
}

impl Serialize for ModalityWeights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let named: BTreeMap<&str, f64> = Modality::ALL
            .iter()
            .filter_map(|m| self.0[m.index()].map(|w| (m.key(), w)))
            .collect();
        named.serialize(s)
    }
}

/// The weights per tumour class or region, keyed by its name (`"ET"`, `"ED"`, `"NCR/NET"`,
/// or `"WT"` in a hand-made file). Entries that hold no weights are skipped when read.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct RegionWeights(pub BTreeMap<String, ModalityWeights>);

impl RegionWeights {
    /// The entries of `v` that hold weights; `None` when `v` is not an object or none does.
    fn from_value(v: &Value) -> Option<RegionWeights> {
        let map: BTreeMap<String, ModalityWeights> = v
            .as_object()?
            .iter()
            .filter_map(|(k, x)| ModalityWeights::from_value(x).map(|w| (k.clone(), w)))
            .collect();
        (!map.is_empty()).then_some(RegionWeights(map))
    }
}

impl<'de> Deserialize<'de> for RegionWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        RegionWeights::from_value(&v)
            .ok_or_else(|| serde::de::Error::custom("no region with per-modality weights"))
    }
}

/// One model's `attention.json` as the evaluator writes it: per subset (bit string key).
pub type AttentionFile = BTreeMap<Subset, RegionWeights>;

/// Mean attention weight per modality for each tumour region (the paper's Fig. 3), as a
/// report shows it: one region table of an `attention.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Rows in key order: region name (e.g. `"ET"`, `"ED"`, `"NCR/NET"` or `"WT"`) and the
    /// mean weight of each modality, in canonical order (`None` if the file has none).
    pub regions: Vec<(String, [Option<f64>; 4])>,
}

impl Attention {
    /// Reads `attention.json` (see the module docs); of an evaluator's file, the all-four
    /// subset `"1111"` when present, else the first subset.
    pub fn load(path: &Path) -> Result<Attention> {
        parse_file(path, Attention::from_json)
    }

    /// Reads `attention.json` if it holds attention: `None` when the file is missing or is
    /// the empty object `evaluate` writes for a model without adaptive fusion.
    pub fn load_optional(path: &Path) -> Result<Option<Attention>> {
        if !path.exists() {
            return Ok(None);
        }
        parse_file(path, |text| {
            if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text)
                && o.is_empty()
            {
                return Ok(None);
            }
            Attention::from_json(text).map(Some)
        })
    }

    /// Parses the text of an `attention.json` (see [`Attention::load`]).
    pub fn from_json(text: &str) -> Result<Attention> {
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        let table = find_regions(&value, 0)
            .context("expected {REGION: {MODALITY: weight}} (e.g. {\"ET\": {\"t1\": 0.2, ...}})")?;
        Ok(Attention {
            regions: table.0.into_iter().map(|(k, w)| (k, w.0)).collect(),
        })
    }

    /// The modality with the largest weight for region `name`, if any.
    pub fn dominant(&self, name: &str) -> Option<Modality> {
        let (_, w) = self.regions.iter().find(|(n, _)| n == name)?;
        (0..4)
            .filter_map(|i| w[i].map(|v| (i, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .and_then(|(i, _)| Modality::from_index(i))
    }
}

/// The region table in `v`: `v` itself, else (up to three levels down) the value under a
/// preferred key (`"1111"` first, then the wrappers of hand-made files), else the first
/// value that holds one.
fn find_regions(v: &Value, depth: usize) -> Result<RegionWeights> {
    let Some(obj) = v.as_object() else {
        bail!("not a JSON object");
    };
    if let Some(table) = RegionWeights::from_value(v) {
        return Ok(table);
    }
    if depth < 3 {
        for key in ["1111", "mean", "regions", "by_region", "attention"] {
            if let Some(inner) = obj.get(key)
                && let Ok(a) = find_regions(inner, depth + 1)
            {
                return Ok(a);
            }
        }
        for inner in obj.values() {
            if let Ok(a) = find_regions(inner, depth + 1) {
                return Ok(a);
            }
        }
    }
    bail!("no region with per-modality weights")
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn attention_shapes() {
        let a = Attention::from_json(
            r#"{"ET": {"t1": 0.2, "t1c": 0.4, "t2": 0.2, "flair": 0.2}, "ED": {"T1": 0.1, "T1c": 0.1, "T2": 0.3, "FLAIR": 0.5}, "cases": 2}"#,
        )
        .unwrap();
        assert_eq!(a.regions.len(), 2);
        assert_eq!(a.dominant("ET"), Some(Modality::T1c));
        assert_eq!(a.dominant("ED"), Some(Modality::Flair));
        let nested =
            Attention::from_json(r#"{"cases": 3, "mean": {"WT": [0.1, 0.2, 0.3, 0.4]}}"#).unwrap();
        assert_eq!(nested.regions[0].1[3], Some(0.4));
        assert!(Attention::from_json(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn attention_files_of_models_without_attention() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attention.json");
        assert_eq!(Attention::load_optional(&path).unwrap(), None);
        fs::write(&path, "{}").unwrap();
        assert_eq!(Attention::load_optional(&path).unwrap(), None);
        fs::write(&path, r#"{"1111": {"ET": [0.1, 0.2, 0.3, 0.4]}}"#).unwrap();
        assert!(Attention::load_optional(&path).unwrap().is_some());
        for bad in ["{", r#"{"a": 1}"#] {
            fs::write(&path, bad).unwrap();
            let e = Attention::load_optional(&path).unwrap_err();
            assert!(format!("{e:#}").contains("attention.json"), "{e:#}");
        }
    }

    #[test]
    fn the_evaluator_file_round_trips_with_sorted_keys_and_prefers_all_four() {
        let mut file = AttentionFile::new();
        let weights = |x: f64| ModalityWeights([Some(x), Some(0.1), None, Some(0.3)]);
        for (subset, x) in [(Subset::from_bits(0b0011), 0.9), (Subset::FULL, 0.2)] {
            let table = [("NCR/NET", x), ("ET", x)]
                .map(|(k, x)| (k.to_string(), weights(x)))
                .into();
            file.insert(subset, RegionWeights(table));
        }
        let text = serde_json::to_string(&file).unwrap();
        assert!(
            text.starts_with(r#"{"0011":{"ET":{"flair":0.3,"t1":0.9,"t1c":0.1},"NCR/NET""#),
            "{text}"
        );
        let back: AttentionFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, file);
        let a = Attention::from_json(&text).unwrap();
        assert_eq!(a.regions[0], ("ET".to_string(), weights(0.2).0));
    }
}
