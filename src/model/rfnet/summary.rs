//! RFNet's layers and parameter counts, computed from the configuration without building
//! the network (`a2fseg model summary --arch rfnet`). Instance norms have no parameters
//! and are not listed; MACs count the convolutions and the modal-weight layers.

use serde::Serialize;

use super::super::config::ModelConfig;
use super::super::summary::{Builder, LayerInfo, MacsByModalities, ModelSummary};
use super::layers::{CLASSES, MAP_HIDDEN, MODALITIES, WEIGHT_HIDDEN};

/// Parameters of RFNet's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RfnetCounts {
    /// One modality encoder.
    pub encoder: usize,
    /// The fused decoder (region maps, fusions, decoder levels, head).
    pub fused_decoder: usize,
    /// The auxiliary decoder (training only).
    pub auxiliary_decoder: usize,
    /// 4 encoders + the fused decoder: the network used at inference.
    pub inference: usize,
    /// All parameters.
    pub total: usize,
}

/// A 3³ or 1³ convolution with bias of scale `s`.
fn conv(
    b: &mut Builder,
    name: String,
    (cin, cout, k): (usize, usize, usize),
    stride: usize,
    s: usize,
) {
    b.conv(name, "conv3d", cin, cout, k, stride, s, true);
}

/// The three units `1×1 (cin → mid) → 3³ (mid) → 1×1 (mid → cout)` named `{prefix}.{i}`.
fn bottleneck(b: &mut Builder, prefix: &str, (cin, mid, cout): (usize, usize, usize), s: usize) {
    conv(b, format!("{prefix}.0"), (cin, mid, 1), 1, s);
    conv(b, format!("{prefix}.1"), (mid, mid, 3), 1, s);
    conv(b, format!("{prefix}.2"), (mid, cout, 1), 1, s);
}

/// A fully connected layer (one output voxel).
fn linear(b: &mut Builder, name: String, cin: usize, cout: usize) {
    b.layers.push(LayerInfo {
        name,
        kind: "linear",
        in_channels: cin,
        out_channels: cout,
        kernel: 1,
        stride: 1,
        output_size: [1, 1, 1],
        parameters: cin * cout + cout,
        macs: (cin * cout) as u64,
    });
}

/// The decoder levels and head of a decoder named `name`; with `fused`, each level's region
/// maps and fusion before it.
fn decoder(b: &mut Builder, cfg: &ModelConfig, name: &str, fused: bool) {
    let f = cfg.features();
    let deepest = f.len() - 1;
    for s in (0..=deepest).rev() {
        let c = f[s];
        if s < deepest {
            let p = format!("{name}.levels.{s}");
            conv(b, format!("{p}.up"), (f[s + 1], c, 3), 1, s);
            conv(b, format!("{p}.merge"), (2 * c, c, 3), 1, s);
            conv(b, format!("{p}.out"), (c, c, 1), 1, s);
        }
        if fused {
            let m = format!("{name}.maps.{s}");
            bottleneck(b, &format!("{m}.embed"), (MODALITIES * c, c / 4, c), s);
            let hidden_in = if s == deepest { c } else { 2 * c };
            conv(b, format!("{m}.hidden"), (hidden_in, MAP_HIDDEN, 1), 1, s);
            conv(b, format!("{m}.out"), (MAP_HIDDEN, CLASSES, 1), 1, s);
            let u = format!("{name}.fusions.{s}");
            for r in 0..CLASSES {
                linear(
                    b,
                    format!("{u}.weights.{r}.hidden"),
                    MODALITIES * c + 1,
                    WEIGHT_HIDDEN,
                );
                linear(b, format!("{u}.weights.{r}.out"), WEIGHT_HIDDEN, MODALITIES);
            }
            bottleneck(b, &format!("{u}.region"), (CLASSES * c, c, c / 2), s);
            bottleneck(b, &format!("{u}.shortcut"), (MODALITIES * c, c, c / 2), s);
        }
    }
    conv(b, format!("{name}.seg"), (f[0], CLASSES, 1), 1, 0);
}

/// The layers of one encoder, the fused decoder and the auxiliary decoder, and the index
/// where each part starts.
fn layers(cfg: &ModelConfig) -> (Builder, [usize; 2]) {
    let f = cfg.features();
    let mut b = Builder::new(cfg.patch_size);
    for (s, &c) in f.iter().enumerate() {
        let p = format!("encoders.{{m}}.levels.{s}");
        let (cin, stride) = if s == 0 { (1, 1) } else { (f[s - 1], 2) };
        conv(&mut b, format!("{p}.c1"), (cin, c, 3), stride, s);
        conv(&mut b, format!("{p}.c2"), (c, c, 3), 1, s);
        conv(&mut b, format!("{p}.c3"), (c, c, 3), 1, s);
    }
    let fused_start = b.layers.len();
    decoder(&mut b, cfg, "fused", true);
    let auxiliary_start = b.layers.len();
    decoder(&mut b, cfg, "auxiliary", false);
    (b, [fused_start, auxiliary_start])
}

/// Parameter counts of the network `cfg` describes.
pub fn counts(cfg: &ModelConfig) -> RfnetCounts {
    let (b, [fused, aux]) = layers(cfg);
    let all = b.parameters_from(0);
    let encoder = all - b.parameters_from(fused);
    let auxiliary_decoder = b.parameters_from(aux);
    let fused_decoder = b.parameters_from(fused) - auxiliary_decoder;
    RfnetCounts {
        encoder,
        fused_decoder,
        auxiliary_decoder,
        inference: MODALITIES * encoder + fused_decoder,
        total: MODALITIES * encoder + fused_decoder + auxiliary_decoder,
    }
}

/// The [`ModelSummary`] of RFNet: layers of one encoder (`{m}`), the fused decoder and the
/// auxiliary decoder. In the A2FSeg-shaped fields, an "MSFE" is one encoder and the "fusion
/// heads" are both decoders; MACs per number of available modalities count the inference
/// pass (the available encoders and the fused decoder, which always runs on all four
/// feature slots).
pub fn describe(cfg: &ModelConfig) -> ModelSummary {
    let (b, [fused, aux]) = layers(cfg);
    let c = counts(cfg);
    let macs_encoder = b.macs_from(0) - b.macs_from(fused);
    let macs_fused = b.macs_from(fused) - b.macs_from(aux);
    ModelSummary {
        config: cfg.clone(),
        features: cfg.features(),
        parameters_total: c.total,
        parameters_per_msfe: c.encoder,
        parameters_per_msfe_body: c.encoder,
        parameters_per_msfe_heads: 0,
        parameters_attention: 0,
        parameters_fusion_heads: c.fused_decoder + c.auxiliary_decoder,
        macs_per_msfe: macs_encoder,
        macs_by_modalities: (1..=MODALITIES)
            .map(|n| MacsByModalities {
                modalities: n,
                macs: n as u64 * macs_encoder + macs_fused,
            })
            .collect(),
        layers: b.layers,
    }
}

/// RFNet's headline, parameter rows and name of one modality's branch for
/// [`ModelSummary::to_text`].
pub fn text_parts(summary: &ModelSummary) -> (String, Vec<(&'static str, usize)>, &'static str) {
    let cfg = &summary.config;
    let features = summary
        .features
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("-");
    let headline = format!(
        "RFNet: targets {} ({}), features {features}, region-aware fusion at every level, \
         fused term from epoch {}",
        cfg.targets,
        cfg.channel_names().join(", "),
        cfg.region_fusion_start_epoch,
    );
    let c = counts(cfg);
    let rows = vec![
        ("parameters per encoder", c.encoder),
        ("4 encoders", MODALITIES * c.encoder),
        ("fused decoder", c.fused_decoder),
        ("at inference", c.inference),
        ("auxiliary decoder", c.auxiliary_decoder),
        ("total", c.total),
    ];
    (headline, rows, "one encoder")
}
