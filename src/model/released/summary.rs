//! The description of the released network computed from its configuration (no network is
//! built): layers, parameter counts per part and multiply-accumulates per number of
//! available modalities, on the model summary's conventions ([`ModelSummary`]).

use serde::Serialize;

use crate::model::config::{ModelConfig, ReleasedVariant};
use crate::model::summary::{Builder, MacsByModalities, ModelSummary};

/// Parameters of each part of the released network. At the native size (`paper`): MSFEs
/// 4 × 31,195,584 = 124,782,336, fusion decoder 17,170,464, attention 332,288, head 55,488,
/// total 142,340,576; `post` has no fusion decoder (total 125,170,112).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReleasedParameters {
    /// The four MSFEs with their heads.
    pub msfes: usize,
    /// The fusion decoder with its heads (0 in `post`).
    pub fusion_decoder: usize,
    /// The four attention modules.
    pub attention: usize,
    /// The concatenating head.
    pub head: usize,
}

impl ReleasedParameters {
    /// Parameters of the whole network.
    pub fn total(&self) -> usize {
        self.msfes + self.fusion_decoder + self.attention + self.head
    }

    /// The parameters of the network of `cfg`.
    pub fn of(cfg: &ModelConfig) -> ReleasedParameters {
        Layers::of(cfg).parameters
    }
}

/// The layer list and where each part starts in it.
struct Layers {
    builder: Builder,
    parameters: ReleasedParameters,
    /// MACs of one MSFE with its heads.
    msfe_macs: u64,
    /// MACs of one attention module.
    attention_macs: u64,
    /// MACs of the fusion decoder (with heads) and the head.
    shared_macs: u64,
    msfe_body_parameters: usize,
}

impl Layers {
    fn of(cfg: &ModelConfig) -> Layers {
        let c = cfg.feature_channels();
        let mut b = Builder::new(cfg.patch_size);
        b.msfe(cfg);
        let msfe_end = b.layers.len();
        let msfe_body_parameters =
            b.parameters_from(0) - b.parameters_from(msfe_end - cfg.heads_per_msfe());
        let msfe_macs = b.macs_from(0);
        if cfg.released_variant == ReleasedVariant::Channel {
            b.decoder(cfg, "fusion_decoder");
            b.heads(cfg, "fusion_decoder");
        }
        let decoder_end = b.layers.len();
        b.block("attention.{m}.block".into(), 2 * c, c, 1, 0);
        b.conv("attention.{m}.conv".into(), "conv3d", c, c, 3, 1, 0, true);
        let attention_end = b.layers.len();
        b.block("head.block".into(), 2 * c, c, 1, 0);
        b.conv(
            "head.output".into(),
            "head",
            c,
            cfg.out_channels(),
            1,
            1,
            0,
            false,
        );
        let part = |from: usize, to: usize| b.parameters_from(from) - b.parameters_from(to);
        let parameters = ReleasedParameters {
            msfes: 4 * part(0, msfe_end),
            fusion_decoder: part(msfe_end, decoder_end),
            attention: 4 * part(decoder_end, attention_end),
            head: b.parameters_from(attention_end),
        };
        let attention_macs = b.macs_from(decoder_end) - b.macs_from(attention_end);
        let shared_macs = b.macs_from(msfe_end) - attention_macs;
        Layers {
            builder: b,
            parameters,
            msfe_macs,
            attention_macs,
            shared_macs,
            msfe_body_parameters,
        }
    }
}

/// Describes the released network of `cfg` at `cfg.patch_size`. The layer list holds one
/// MSFE and one attention module (names with `{m}`), the fusion decoder and the head;
/// `parameters_attention` counts the four attention modules and `parameters_fusion_heads`
/// the fusion decoder and the concatenating head together.
pub fn describe(cfg: &ModelConfig) -> ModelSummary {
    let layers = Layers::of(cfg);
    let p = layers.parameters;
    let macs_by_modalities = (1..=4)
        .map(|n| MacsByModalities {
            modalities: n,
            macs: n as u64 * (layers.msfe_macs + layers.attention_macs) + layers.shared_macs,
        })
        .collect();
    ModelSummary {
        config: cfg.clone(),
        features: cfg.features(),
        parameters_total: p.total(),
        parameters_per_msfe: p.msfes / 4,
        parameters_per_msfe_body: layers.msfe_body_parameters,
        parameters_per_msfe_heads: p.msfes / 4 - layers.msfe_body_parameters,
        parameters_attention: p.attention,
        parameters_fusion_heads: p.fusion_decoder + p.head,
        macs_per_msfe: layers.msfe_macs,
        macs_by_modalities,
        layers: layers.builder.layers,
    }
}

/// `a2fseg-released`'s headline, parameter rows and branch name for
/// [`ModelSummary::to_text`].
pub fn text_parts(summary: &ModelSummary) -> (String, Vec<(&'static str, usize)>, &'static str) {
    let cfg = &summary.config;
    let p = ReleasedParameters::of(cfg);
    let features: Vec<String> = summary.features.iter().map(|f| f.to_string()).collect();
    let headline = format!(
        "A2FSeg as released ({} variant): targets {} ({}), features {}, {} conv(s) per stage, \
         deep supervision {}",
        cfg.released_variant,
        cfg.targets,
        cfg.channel_names().join(", "),
        features.join("-"),
        cfg.convs_per_stage,
        if cfg.deep_supervision { "on" } else { "off" },
    );
    let rows = vec![
        ("parameters per MSFE", p.msfes / 4),
        ("4 MSFEs", p.msfes),
        ("fusion decoder", p.fusion_decoder),
        ("attention modules", p.attention),
        ("concatenating head", p.head),
        ("total", p.total()),
    ];
    (headline, rows, "one MSFE")
}
