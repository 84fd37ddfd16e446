//! U-HVED's layers and parameter counts, computed from the configuration without building
//! the network (`a2fseg model summary --arch uhved`).

use serde::Serialize;

use super::super::config::ModelConfig;
use super::super::summary::{LayerInfo, MacsByModalities, ModelSummary};

/// Parameters of U-HVED's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UhvedCounts {
    /// One modality encoder.
    pub encoder: usize,
    /// One image-reconstruction decoder.
    pub image_decoder: usize,
    /// The segmentation decoder.
    pub segmentation_decoder: usize,
    /// 4 encoders + 4 image decoders + the segmentation decoder.
    pub total: usize,
}

/// A layer of `kind` at scale `level` of `cfg`'s patch: a convolution (no bias) with
/// `cin → cout` channels and a cubic `kernel`, or (`kind` = `instance_norm`) a norm of
/// `cin` channels.
fn layer(
    cfg: &ModelConfig,
    name: String,
    kind: &'static str,
    (cin, cout, kernel): (usize, usize, usize),
    level: usize,
) -> LayerInfo {
    let size = cfg.patch_size.map(|s| s >> level);
    let voxels: u64 = size.iter().map(|&s| s as u64).product();
    let norm = kind == "instance_norm";
    LayerInfo {
        name,
        kind,
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride: 1,
        output_size: size,
        parameters: if norm {
            2 * cin
        } else {
            cin * cout * kernel.pow(3)
        },
        macs: if norm {
            0
        } else {
            voxels * (kernel.pow(3) * cin * cout) as u64
        },
    }
}

/// The layers of one pre-activation block at scale `level`: norm, conv, norm, conv.
fn block(
    cfg: &ModelConfig,
    prefix: &str,
    (cin, mid, cout): (usize, usize, usize),
    level: usize,
) -> Vec<LayerInfo> {
    let mut out = Vec::with_capacity(4);
    for (i, (a, b)) in [(cin, mid), (mid, cout)].into_iter().enumerate() {
        let p = format!("{prefix}.convs.{i}");
        out.push(layer(
            cfg,
            format!("{p}.norm"),
            "instance_norm",
            (a, a, 1),
            level,
        ));
        out.push(layer(cfg, format!("{p}.conv"), "conv3d", (a, b, 3), level));
    }
    out
}

/// The layers of one encoder (names `encoders.{m}.…`).
pub fn encoder_layers(cfg: &ModelConfig) -> Vec<LayerInfo> {
    let f = cfg.features();
    let mut out = vec![layer(
        cfg,
        "encoders.{m}.input".into(),
        "conv3d",
        (1, f[0], 1),
        0,
    )];
    for s in 0..=cfg.poolings {
        let cin = if s == 0 { f[0] } else { f[s - 1] };
        out.extend(block(
            cfg,
            &format!("encoders.{{m}}.blocks.{s}"),
            (cin, f[s], f[s]),
            s,
        ));
    }
    out
}

/// The layers of one decoder named `name` with `out` output channels.
pub fn decoder_layers(cfg: &ModelConfig, name: &str, out: usize) -> Vec<LayerInfo> {
    let f = cfg.features();
    let mut layers = Vec::new();
    for l in (0..cfg.poolings).rev() {
        let cin = f[l + 1] / 2 + f[l] / 2;
        layers.extend(block(
            cfg,
            &format!("{name}.levels.{l}"),
            (cin, f[l], f[l] / 2),
            l,
        ));
    }
    layers.push(layer(
        cfg,
        format!("{name}.output"),
        "head",
        (f[0] / 2, out, 1),
        0,
    ));
    layers
}

fn params(layers: &[LayerInfo]) -> usize {
    layers.iter().map(|l| l.parameters).sum()
}

fn macs(layers: &[LayerInfo]) -> u64 {
    layers.iter().map(|l| l.macs).sum()
}

/// Parameter counts of the network `cfg` describes.
pub fn counts(cfg: &ModelConfig) -> UhvedCounts {
    let encoder = params(&encoder_layers(cfg));
    let image_decoder = params(&decoder_layers(cfg, "reconstructions.{m}", 1));
    let segmentation_decoder = params(&decoder_layers(cfg, "segmentation", cfg.out_channels()));
    UhvedCounts {
        encoder,
        image_decoder,
        segmentation_decoder,
        total: 4 * (encoder + image_decoder) + segmentation_decoder,
    }
}

/// The [`ModelSummary`] of U-HVED: layers of one encoder (`{m}`), one image decoder and
/// the segmentation decoder. In the A2FSeg-shaped fields, an "MSFE" is one encoder and the
/// "fusion heads" are the five decoders; MACs per number of available modalities count
/// the inference pass (the available encoders and the segmentation decoder).
pub fn describe(cfg: &ModelConfig) -> ModelSummary {
    let enc = encoder_layers(cfg);
    let seg = decoder_layers(cfg, "segmentation", cfg.out_channels());
    let mut layers = enc.clone();
    layers.extend(decoder_layers(cfg, "reconstructions.{m}", 1));
    layers.extend(seg.clone());
    let c = counts(cfg);
    let macs_per_encoder = macs(&enc);
    ModelSummary {
        config: cfg.clone(),
        features: cfg.features(),
        parameters_total: c.total,
        parameters_per_msfe: c.encoder,
        parameters_per_msfe_body: c.encoder,
        parameters_per_msfe_heads: 0,
        parameters_attention: 0,
        parameters_fusion_heads: 4 * c.image_decoder + c.segmentation_decoder,
        macs_per_msfe: macs_per_encoder,
        macs_by_modalities: (1..=4)
            .map(|n| MacsByModalities {
                modalities: n,
                macs: n as u64 * macs_per_encoder + macs(&seg),
            })
            .collect(),
        layers,
    }
}

/// U-HVED's headline, parameter rows and name of one modality's branch for
/// [`ModelSummary::to_text`].
pub fn text_parts(summary: &ModelSummary) -> (String, Vec<(&'static str, usize)>, &'static str) {
    let cfg = &summary.config;
    let join = |v: &[usize]| {
        v.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("-")
    };
    let latents: Vec<usize> = summary.features.iter().map(|f| f / 2).collect();
    let headline = format!(
        "U-HVED: targets {} ({}), features {}, latents {} (mean and log-variance each)",
        cfg.targets,
        cfg.channel_names().join(", "),
        join(&summary.features),
        join(&latents),
    );
    let c = counts(cfg);
    let rows = vec![
        ("parameters per encoder", c.encoder),
        ("4 encoders", 4 * c.encoder),
        ("image decoder (each)", c.image_decoder),
        ("4 image decoders", 4 * c.image_decoder),
        ("segmentation decoder", c.segmentation_decoder),
        ("total", c.total),
    ];
    (headline, rows, "one encoder")
}
