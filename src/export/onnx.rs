//! A2FSeg's inference forward pass as a standard ONNX graph (opset [`OPSET`]), one graph per
//! modality subset.
//!
//! The graph computes what [`Network::encode`](crate::model::Network::encode) followed by
//! [`Network::decode`](crate::model::Network::decode) compute for the subset: the MSFE of each
//! available modality (Conv → InstanceNormalization → LeakyRelu blocks, ConvTranspose
//! upsampling, Concat of the skip), then the fusion of the model's configuration (average,
//! adaptive attention or HeMIS) and its final 1×1×1 head.
//!
//! - Inputs: one per available modality, named by its key (`t1`, `t1c`, `t2`, `flair`),
//!   float32 `[N, 1, D, H, W]`. N, D, H and W are symbolic: every operator here is exact for
//!   any size, and D, H, W must be multiples of `2^poolings` as for the network itself (the
//!   model's `size_divisor` metadata).
//! - Outputs: `logits` `[N, K, D, H, W]` (the fused head's logits) and `probabilities`, their
//!   sigmoid (`regions` targets: WT, TC, ET) or softmax over the channels (`classes`).
//!
//! Not in the graph: the deep-supervision and per-modality heads (training only), the
//! adaptive fusion's attention maps, and everything around the network at inference
//! (preprocessing, sliding window, mirroring, post-processing).
//!
//! Weights are initializers named by their module paths, as in `model.safetensors`
//! ([`crate::model::weights`]), float32 little-endian in `raw_data`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Param;
use burn::nn::conv::{Conv3d, ConvTranspose3d};
use burn::nn::{InstanceNorm, PaddingConfig3d};
use burn::tensor::{Device, Tensor};
use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, Dimension, DimensionValue, FLOAT, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::fsutil::{atomic_write_bytes, refuse_overwriting_inputs};
use crate::infer::resolve_model_dir;
use crate::modality::Subset;
use crate::model::msfe::{ConvBlock, Msfe};
use crate::model::{A2fseg, Arch, CONFIG_FILE, Fusion, ModelConfig, Targets, WEIGHTS_FILE};

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 17;
/// The ONNX IR version of the files (8: the IR of opset 17).
pub const IR_VERSION: i64 = 8;
/// Name of the logits output.
pub const LOGITS: &str = "logits";
/// Name of the probabilities output.
pub const PROBABILITIES: &str = "probabilities";
/// The symbolic names of the input and output axes `[N, ·, D, H, W]`.
const AXES: [&str; 5] = ["N", "", "D", "H", "W"];

/// Which subsets `export onnx` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsetChoice {
    /// One graph for this (non-empty) subset, written to the output path itself.
    One(Subset),
    /// One graph per non-empty subset (15), named by [`all_subsets_path`].
    All,
}

/// Where `--all-subsets` writes the graph of `subset`: `out` with `{subset}` replaced by the
/// subset's bit string (`T1 T1c T2 FLAIR`, e.g. `1011`) if `out` contains `{subset}`,
/// otherwise `out/subset-1011.onnx` (`out` is a folder).
pub fn all_subsets_path(out: &Path, subset: Subset) -> PathBuf {
    let text = out.to_string_lossy();
    if text.contains("{subset}") {
        PathBuf::from(text.replace("{subset}", &subset.name()))
    } else {
        out.join(format!("subset-{}.onnx", subset.name()))
    }
}

/// Exports the A2FSeg model of `model` (a model folder or a training run folder, as
/// `predict` takes it) to ONNX, one file per subset of `choice` (see [`SubsetChoice`]), each
/// written atomically. Returns the subsets and the files written.
///
/// Other methods are refused with an error naming the configuration: their graphs are not
/// written yet.
pub fn export_onnx(
    model: &Path,
    out: &Path,
    choice: SubsetChoice,
) -> Result<Vec<(Subset, PathBuf)>> {
    let targets: Vec<(Subset, PathBuf)> = match choice {
        SubsetChoice::One(subset) if subset.is_empty() => {
            bail!("the subset {subset} names no modality")
        }
        SubsetChoice::One(subset) => vec![(subset, out.to_path_buf())],
        SubsetChoice::All => Subset::all_nonempty()
            .map(|s| (s, all_subsets_path(out, s)))
            .collect(),
    };
    let dir = resolve_model_dir(model)?;
    let config_path = dir.join(CONFIG_FILE);
    let config = ModelConfig::load_json(&config_path)?;
    if config.arch != Arch::A2fseg {
        bail!(
            "export onnx supports a2fseg only ({} is a {} model)",
            config_path.display(),
            config.arch
        );
    }
    let paths: Vec<&PathBuf> = targets.iter().map(|(_, p)| p).collect();
    refuse_overwriting_inputs(&paths, &[config_path, dir.join(WEIGHTS_FILE)])?;
    let (network, _) = crate::model::load_model::<A2fseg>(&dir, &Device::flex())?;
    for (subset, path) in &targets {
        let bytes = onnx_model(&network, *subset)?.encode_to_vec();
        atomic_write_bytes(path, &bytes)?;
    }
    Ok(targets)
}

/// The ONNX model of `network`'s inference forward pass for the modalities of `subset`
/// (non-empty); see the module documentation for its inputs and outputs.
pub fn onnx_model(network: &A2fseg, subset: Subset) -> Result<ModelProto> {
    if subset.is_empty() {
        bail!("the subset {subset} names no modality");
    }
    let cfg = network.config();
    let mut g = GraphBuilder::default();
    let features: Vec<String> = subset
        .modalities()
        .map(|m| g.msfe(&format!("msfe.{}", m.key()), network.msfe.get(m), m.key()))
        .collect::<Result<_>>()?;
    let logits = g.fusion(network, subset, &features)?;
    g.node("Identity", LOGITS, &[&logits], vec![]);
    match cfg.targets {
        Targets::Regions => g.node("Sigmoid", PROBABILITIES, &[LOGITS], vec![]),
        Targets::Classes => g.node("Softmax", PROBABILITIES, &[LOGITS], vec![int("axis", 1)]),
    };

    let k = cfg.out_channels();
    let input = subset
        .modalities()
        .map(|m| value_info(m.key(), 1, &format!("{} image", m.label())))
        .collect();
    let output = vec![
        value_info(LOGITS, k, "logits of the fused head"),
        value_info(PROBABILITIES, k, probabilities_doc(cfg.targets)),
    ];
    let graph = GraphProto {
        node: g.nodes,
        name: format!("a2fseg_{}", subset.name()),
        initializer: g.initializers,
        doc_string: format!(
            "A2FSeg ({} fusion) from {}: inputs [N, 1, D, H, W] with D, H, W multiples of {}",
            cfg.fusion,
            subset.describe(),
            cfg.size_divisor()
        ),
        input,
        output,
    };
    let metadata = [
        ("subset", subset.name()),
        ("modalities", subset.describe()),
        ("fusion", cfg.fusion.name().to_string()),
        ("targets", cfg.targets.name().to_string()),
        ("size_divisor", cfg.size_divisor().to_string()),
        ("a2fseg_config", cfg.to_json()),
    ];
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "a2fseg".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        domain: String::new(),
        model_version: 1,
        doc_string: "A2FSeg brain-tumour segmentation network (inference forward pass)".to_string(),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.to_string(),
                value,
            })
            .collect(),
    })
}

/// What the `probabilities` output holds for `targets`.
fn probabilities_doc(targets: Targets) -> &'static str {
    match targets {
        Targets::Regions => "sigmoid of the logits: WT, TC, ET",
        Targets::Classes => "softmax of the logits over background, NCR, edema, ET",
    }
}

/// A float32 graph input or output `[N, channels, D, H, W]` with symbolic N, D, H, W.
fn value_info(name: &str, channels: usize, doc: &str) -> ValueInfoProto {
    let dim = AXES
        .iter()
        .map(|axis| Dimension {
            value: Some(if axis.is_empty() {
                DimensionValue::DimValue(channels as i64)
            } else {
                DimensionValue::DimParam(axis.to_string())
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: doc.to_string(),
    }
}

/// An integer attribute.
fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// A float attribute.
fn float(name: &str, value: f64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Float as i32,
        f: value as f32,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
fn ints(name: &str, values: impl IntoIterator<Item = usize>) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.into_iter().map(|v| v as i64).collect(),
        ..Default::default()
    }
}

/// The nodes and initializers of a graph under construction. Every node has one output,
/// named after the node (the module path of the layer it computes, then `/` and the step),
/// so names are unique as module paths are.
#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    /// Appends the node `op(inputs)` with output `name`; returns `name`.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
            domain: String::new(),
        });
        name.to_string()
    }

    /// Adds the constant `values` of shape `dims` as the initializer `name`; returns `name`.
    fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// Adds the parameter `param` as the initializer `name`; returns `name`.
    fn weight<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) -> Result<String> {
        let t = param.val();
        let dims = t.dims();
        let values: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| anyhow!("cannot read the parameter {name}: {e:?}"))?;
        Ok(self.constant(name, &dims, &values))
    }

    /// A scalar constant (broadcast by the arithmetic operators).
    fn scalar(&mut self, name: &str, value: f32) -> String {
        self.constant(name, &[], &[value])
    }

    /// `Conv` of the module `conv` (weights under `path`) on `x`: `[N, in, D, H, W]` →
    /// `[N, out, D', H', W']`.
    fn conv(&mut self, path: &str, conv: &Conv3d, x: &str) -> Result<String> {
        let pads = match conv.padding {
            PaddingConfig3d::Explicit(d, h, w) => [d, h, w, d, h, w],
            PaddingConfig3d::Valid => [0; 6],
            PaddingConfig3d::Same => bail!("{path}: 'same' padding is not exported"),
        };
        self.convolution(
            "Conv",
            path,
            x,
            (&conv.weight, conv.bias.as_ref()),
            vec![
                ints("kernel_shape", conv.kernel_size),
                ints("strides", conv.stride),
                ints("pads", pads),
                ints("dilations", conv.dilation),
                int("group", conv.groups as i64),
            ],
        )
    }

    /// `ConvTranspose` of the module `up` (weight `[in, out, k, k, k]` under `path`) on `x`.
    fn conv_transpose(&mut self, path: &str, up: &ConvTranspose3d, x: &str) -> Result<String> {
        let [pd, ph, pw] = up.padding;
        self.convolution(
            "ConvTranspose",
            path,
            x,
            (&up.weight, up.bias.as_ref()),
            vec![
                ints("kernel_shape", up.kernel_size),
                ints("strides", up.stride),
                ints("pads", [pd, ph, pw, pd, ph, pw]),
                ints("output_padding", up.padding_out),
                ints("dilations", up.dilation),
                int("group", up.groups as i64),
            ],
        )
    }

    /// The node `op` (`Conv` or `ConvTranspose`, output `{path}/{op}`) on `x` with the
    /// module's weight and optional bias, added as the initializers `{path}.weight` and
    /// `{path}.bias`.
    fn convolution(
        &mut self,
        op: &str,
        path: &str,
        x: &str,
        (weight, bias): (&Param<Tensor<5>>, Option<&Param<Tensor<1>>>),
        attribute: Vec<AttributeProto>,
    ) -> Result<String> {
        let mut inputs = vec![
            x.to_string(),
            self.weight(&format!("{path}.weight"), weight)?,
        ];
        if let Some(bias) = bias {
            inputs.push(self.weight(&format!("{path}.bias"), bias)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node(op, &format!("{path}/{op}"), &inputs, attribute))
    }

    /// `InstanceNormalization` of the module `norm` (under `path`) on `x` `[N, C, D, H, W]`;
    /// a norm without affine parameters gets scale 1 and shift 0.
    fn instance_norm(&mut self, path: &str, norm: &InstanceNorm, x: &str) -> Result<String> {
        let c = norm.num_channels;
        let scale = match &norm.gamma {
            Some(g) => self.weight(&format!("{path}.gamma"), g)?,
            None => self.constant(&format!("{path}.gamma"), &[c], &vec![1.0; c]),
        };
        let shift = match &norm.beta {
            Some(b) => self.weight(&format!("{path}.beta"), b)?,
            None => self.constant(&format!("{path}.beta"), &[c], &vec![0.0; c]),
        };
        Ok(self.node(
            "InstanceNormalization",
            &format!("{path}/instance_norm"),
            &[x, &scale, &shift],
            vec![float("epsilon", norm.epsilon)],
        ))
    }

    /// A [`ConvBlock`] (module path `path`) on `x`: Conv → InstanceNormalization → LeakyRelu.
    fn block(&mut self, path: &str, block: &ConvBlock, x: &str) -> Result<String> {
        let y = self.conv(&format!("{path}.conv"), &block.conv, x)?;
        let y = self.instance_norm(&format!("{path}.norm"), &block.norm, &y)?;
        Ok(self.node(
            "LeakyRelu",
            &format!("{path}/leaky_relu"),
            &[&y],
            vec![float("alpha", block.slope)],
        ))
    }

    /// The feature F_m `[N, C, D, H, W]` of the MSFE `msfe` (module path `path`) on the
    /// input `x` `[N, 1, D, H, W]`, as [`Msfe::features`]: the encoder stages, then the
    /// decoder stages from the deepest, each upsampling and reading `[upsampled; skip]`.
    fn msfe(&mut self, path: &str, msfe: &Msfe, x: &str) -> Result<String> {
        let mut x = x.to_string();
        let mut skips = Vec::with_capacity(msfe.encoder.len());
        for (s, stage) in msfe.encoder.iter().enumerate() {
            for (i, c) in stage.convs.iter().enumerate() {
                x = self.block(&format!("{path}.encoder.{s}.convs.{i}"), c, &x)?;
            }
            if s + 1 < msfe.encoder.len() {
                skips.push(x.clone());
            }
        }
        for l in (0..msfe.decoder.len()).rev() {
            let stage = &msfe.decoder[l];
            let skip = skips
                .pop()
                .ok_or_else(|| anyhow!("{path}: more decoder than encoder stages"))?;
            let up = self.conv_transpose(&format!("{path}.decoder.{l}.up"), &stage.up, &x)?;
            x = self.node(
                "Concat",
                &format!("{path}.decoder.{l}/concat"),
                &[&up, &skip],
                vec![int("axis", 1)],
            );
            for (i, c) in stage.convs.iter().enumerate() {
                x = self.block(&format!("{path}.decoder.{l}.convs.{i}"), c, &x)?;
            }
        }
        Ok(x)
    }

    /// The sum of `values` (one or more tensors of one shape, or broadcastable).
    fn sum(&mut self, name: &str, values: &[String]) -> String {
        let inputs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.node("Sum", name, &inputs, vec![])
    }

    /// The final logits `[N, K, D, H, W]` from the features of the subset's modalities (in
    /// canonical order), as [`A2fseg::fuse`] computes them: F̄ = (1/n) Σ F_m, then the head
    /// of the configuration's fusion.
    fn fusion(&mut self, network: &A2fseg, subset: Subset, features: &[String]) -> Result<String> {
        let fusion = &network.fusion;
        let n = self.scalar("fusion/count", features.len() as f32);
        let total = self.sum("fusion/sum", features);
        let mean = self.node("Div", "fusion/mean", &[&total, &n], vec![]);
        match (network.config().fusion, &fusion.fused_head) {
            (Fusion::Adaptive, Some(head)) => {
                let convs = fusion
                    .attention
                    .as_ref()
                    .ok_or_else(|| anyhow!("adaptive fusion without attention convolutions"))?;
                // Eq. 1–3: e_m = exp(σ(conv_m([F̄; F_m]))), Ŵ_m = e_m / Σ e_j, F̂ = Σ Ŵ_m F_m.
                let mut exps = Vec::with_capacity(features.len());
                for (m, f) in subset.modalities().zip(features) {
                    let path = format!("fusion.attention.{}", m.key());
                    let cat = self.node(
                        "Concat",
                        &format!("{path}/concat"),
                        &[&mean, f],
                        vec![int("axis", 1)],
                    );
                    let w = self.conv(&path, convs.get(m), &cat)?;
                    let w = self.node("Sigmoid", &format!("{path}/sigmoid"), &[&w], vec![]);
                    exps.push(self.node("Exp", &format!("{path}/exp"), &[&w], vec![]));
                }
                let denom = self.sum("fusion/attention_sum", &exps);
                let mut weighted = Vec::with_capacity(features.len());
                for ((m, f), e) in subset.modalities().zip(features).zip(&exps) {
                    let path = format!("fusion.attention.{}", m.key());
                    let w = self.node("Div", &format!("{path}/weight"), &[e, &denom], vec![]);
                    weighted.push(self.node("Mul", &format!("{path}/weighted"), &[&w, f], vec![]));
                }
                let fused = self.sum("fusion/adaptive", &weighted);
                self.conv("fusion.fused_head", head, &fused)
            }
            (Fusion::Hemis, Some(head)) => {
                let mut squares = Vec::with_capacity(features.len());
                for (m, f) in subset.modalities().zip(features) {
                    let d = self.node(
                        "Sub",
                        &format!("fusion/{}/deviation", m.key()),
                        &[f, &mean],
                        vec![],
                    );
                    squares.push(self.node(
                        "Mul",
                        &format!("fusion/{}/square", m.key()),
                        &[&d, &d],
                        vec![],
                    ));
                }
                let total = self.sum("fusion/square_sum", &squares);
                let var = self.node("Div", "fusion/variance", &[&total, &n], vec![]);
                let cat = self.node(
                    "Concat",
                    "fusion/mean_variance",
                    &[&mean, &var],
                    vec![int("axis", 1)],
                );
                self.conv("fusion.fused_head", head, &cat)
            }
            _ => self.conv("fusion.average_head", &fusion.average_head, &mean),
        }
        .with_context(|| format!("cannot export the {} fusion", network.config().fusion))
    }
}
