//! Unit tests of the ONNX export: file names, and the graph's structure and weights (its
//! numbers are compared with onnxruntime in `tests/onnx_export.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use prost::Message;

use super::onnx::{LOGITS, PROBABILITIES, all_subsets_path, onnx_model};
use super::proto::{FLOAT, ModelProto, TensorProto};
use crate::modality::{Modality, Subset};
use crate::model::{A2fseg, Fusion, ModelConfig, WEIGHTS_FILE, save_model};

#[test]
fn all_subsets_paths_fill_the_pattern_or_the_folder() {
    let s: Subset = "1011".parse().unwrap();
    assert_eq!(
        all_subsets_path(Path::new("out/a2f_{subset}.onnx"), s),
        PathBuf::from("out/a2f_1011.onnx")
    );
    assert_eq!(
        all_subsets_path(Path::new("out"), s),
        PathBuf::from("out/subset-1011.onnx")
    );
}

/// The weights under their safetensors names, as saved by `save_model`: name → (shape,
/// little-endian bytes).
fn saved_weights(network: &A2fseg) -> BTreeMap<String, (Vec<i64>, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    save_model(dir.path(), network, network.config()).unwrap();
    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().iter().map(|&d| d as i64).collect();
            (name, (shape, view.data().to_vec()))
        })
        .collect()
}

/// For each fusion: the encoded file decodes to a graph whose inputs are the subset's
/// modalities, whose nodes only read values defined before them, and whose weights are
/// exactly the saved parameters the subset's inference uses (no head of deep
/// supervision, no other modality's MSFE or attention), byte for byte.
#[test]
fn graph_reads_exactly_the_subsets_weights_in_order() {
    let subset: Subset = "0101".parse().unwrap();
    for fusion in Fusion::ALL {
        let cfg = ModelConfig::new()
            .with_poolings(2)
            .with_base_features(4)
            .with_max_features(8)
            .with_patch_size([4, 4, 4])
            .with_fusion(fusion);
        let device = Device::flex();
        device.seed(3);
        let network = cfg.init(&device);
        let bytes = onnx_model(&network, subset).unwrap().encode_to_vec();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((model.ir_version, model.opset_import[0].version), (8, 17));
        let graph = model.graph.unwrap();
        let inputs: Vec<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(inputs, ["t1c", "flair"]);
        let outputs: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(outputs, [LOGITS, PROBABILITIES]);

        let mut defined: BTreeSet<String> = inputs.iter().map(|s| s.to_string()).collect();
        defined.extend(graph.initializer.iter().map(|t| t.name.clone()));
        for node in &graph.node {
            for i in &node.input {
                assert!(
                    defined.contains(i),
                    "{fusion}: {} reads {i} before it exists",
                    node.name
                );
            }
            for o in &node.output {
                assert!(defined.insert(o.clone()), "{fusion}: {o} defined twice");
            }
        }
        assert!(outputs.iter().all(|o| defined.contains(*o)));

        let saved = saved_weights(&network);
        let used = |name: &str| {
            let msfe = ["t1c", "flair"]
                .iter()
                .any(|m| name.starts_with(&format!("msfe.{m}.")))
                && !name.contains(".heads.");
            let attention = name.starts_with("fusion.attention.t1c.")
                || name.starts_with("fusion.attention.flair.");
            let head = match fusion {
                Fusion::Average => name.starts_with("fusion.average_head."),
                _ => name.starts_with("fusion.fused_head."),
            };
            msfe || attention || head
        };
        let expected: BTreeSet<&String> = saved.keys().filter(|n| used(n)).collect();
        let weights: BTreeMap<&String, &TensorProto> = graph
            .initializer
            .iter()
            .filter(|t| t.name != "fusion/count")
            .map(|t| (&t.name, t))
            .collect();
        assert_eq!(
            weights.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "{fusion}"
        );
        for (name, t) in weights {
            let (shape, data) = &saved[name];
            assert_eq!((&t.dims, &t.raw_data), (shape, data), "{fusion}: {name}");
            assert_eq!(t.data_type, FLOAT);
        }
        let count = graph
            .initializer
            .iter()
            .find(|t| t.name == "fusion/count")
            .unwrap();
        assert_eq!(count.raw_data, 2.0f32.to_le_bytes());
        // The modalities outside the subset have no node at all.
        for m in [Modality::T1, Modality::T2] {
            let (dotted, slashed) = (format!(".{}.", m.key()), format!("/{}/", m.key()));
            assert!(
                !graph
                    .node
                    .iter()
                    .any(|n| n.name.contains(&dotted) || n.name.contains(&slashed))
            );
        }
    }
}

#[test]
fn an_empty_subset_is_refused() {
    let cfg = ModelConfig::new()
        .with_poolings(1)
        .with_base_features(2)
        .with_max_features(2);
    let network = cfg.init(&Device::flex());
    let err = onnx_model(&network, Subset::EMPTY).unwrap_err();
    assert!(err.to_string().contains("names no modality"), "{err}");
}
