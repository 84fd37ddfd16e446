//! mmFormer's layers and parameter counts, computed from the configuration without building
//! the network (`a2fseg model summary --arch mmformer`).

use serde::Serialize;

use super::super::config::ModelConfig;
use super::super::summary::{LayerInfo, MacsByModalities, ModelSummary};
use super::Mmformer;

/// Parameters of mmFormer's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MmformerCounts {
    /// One modality encoder.
    pub encoder: usize,
    /// One modality's tokenizer, positional embedding and intra-modal transformer.
    pub intra: usize,
    /// The inter-modal transformer and the detokenizer.
    pub inter: usize,
    /// The fused decoder (fusions, decoder levels, deep-supervision heads, output).
    pub decoder: usize,
    /// The auxiliary decoder (training only).
    pub auxiliary: usize,
    /// 4 encoders + 4 intra-modal parts + inter + decoder + auxiliary decoder.
    pub total: usize,
}

/// Builds the layer list with the configuration's sizes.
struct Layers<'a> {
    cfg: &'a ModelConfig,
    out: Vec<LayerInfo>,
}

impl Layers<'_> {
    /// The size `[x, y, z]` at level `l`.
    fn size(&self, level: usize) -> [usize; 3] {
        self.cfg.patch_size.map(|s| s >> level)
    }

    fn voxels(&self, level: usize) -> u64 {
        self.size(level).iter().map(|&s| s as u64).product()
    }

    /// A convolution with bias, `cin → cout`, cubic `kernel`, output at `level`.
    fn conv(
        &mut self,
        name: String,
        (cin, cout, kernel): (usize, usize, usize),
        stride: usize,
        level: usize,
    ) {
        let k3 = kernel.pow(3);
        self.out.push(LayerInfo {
            name,
            kind: "conv3d",
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
            output_size: self.size(level),
            parameters: cin * cout * k3 + cout,
            macs: self.voxels(level) * (cin * cout * k3) as u64,
        });
    }

    /// A parameter-free instance norm of `c` channels at `level`.
    fn norm(&mut self, name: String, c: usize, level: usize) {
        self.out.push(LayerInfo {
            name,
            kind: "instance_norm",
            in_channels: c,
            out_channels: c,
            kernel: 1,
            stride: 1,
            output_size: self.size(level),
            parameters: 0,
            macs: 0,
        });
    }

    /// A pre-norm convolution (`{name}.norm`, `{name}.conv`).
    fn prenorm(&mut self, name: &str, io: (usize, usize, usize), stride: usize, level: usize) {
        let in_level = if stride == 2 { level - 1 } else { level };
        self.norm(format!("{name}.norm"), io.0, in_level);
        self.conv(format!("{name}.conv"), io, stride, level);
    }

    /// A transformer of `seq` tokens of width E (per layer: norms, attention, MLP).
    fn transformer(&mut self, name: &str, seq: usize) {
        let t = &self.cfg.mmformer;
        let (e, mlp) = (t.embedding, t.mlp);
        let level = self.cfg.poolings;
        let params = 2 * e + 3 * e * e + e * e + e + 2 * e + e * mlp + mlp + mlp * e + e;
        let linear = (4 * e * e + 2 * e * mlp) as u64 * seq as u64;
        let attention = 2 * (seq * seq * e) as u64;
        for j in 0..t.depth {
            self.out.push(LayerInfo {
                name: format!("{name}.layers.{j}"),
                kind: "transformer",
                in_channels: e,
                out_channels: e,
                kernel: 1,
                stride: 1,
                output_size: self.size(level),
                parameters: params,
                macs: linear + attention,
            });
        }
    }

    /// The layers of one decoder level `l` of decoder `d`.
    fn decoder_level(&mut self, d: &str, l: usize) {
        let f = self.cfg.features();
        self.prenorm(&format!("{d}.levels.{l}.up"), (f[l + 1], f[l], 3), 1, l);
        self.prenorm(&format!("{d}.levels.{l}.merge"), (2 * f[l], f[l], 3), 1, l);
        self.prenorm(&format!("{d}.levels.{l}.out"), (f[l], f[l], 1), 1, l);
    }

    fn take(&mut self) -> Vec<LayerInfo> {
        std::mem::take(&mut self.out)
    }
}

/// The layers of one modality's encoder, tokenizer, positional embedding and intra-modal
/// transformer (names with `{m}`): `(encoder, intra)`.
fn modality_layers(cfg: &ModelConfig) -> (Vec<LayerInfo>, Vec<LayerInfo>) {
    let f = cfg.features();
    let mut b = Layers {
        cfg,
        out: Vec::new(),
    };
    for l in 0..=cfg.poolings {
        let p = format!("encoders.{{m}}.levels.{l}");
        if l == 0 {
            b.conv(format!("{p}.first.conv"), (1, f[0], 3), 1, 0);
        } else {
            b.prenorm(&format!("{p}.first"), (f[l - 1], f[l], 3), 2, l);
        }
        for i in 0..2 {
            b.prenorm(&format!("{p}.residual.{i}"), (f[l], f[l], 3), 1, l);
        }
    }
    let encoder = b.take();
    let e = cfg.mmformer.embedding;
    let n = Mmformer::tokens(cfg);
    b.conv(
        "tokenizers.{m}".into(),
        (f[cfg.poolings], e, 1),
        1,
        cfg.poolings,
    );
    b.out.push(LayerInfo {
        name: "positions.{m}".into(),
        kind: "embedding",
        in_channels: e,
        out_channels: e,
        kernel: 1,
        stride: 1,
        output_size: b.size(cfg.poolings),
        parameters: n * e,
        macs: 0,
    });
    b.transformer("intra.{m}", n);
    (encoder, b.take())
}

/// The layers after the modalities' branches: `(inter + detokenizer, fused decoder,
/// auxiliary decoder)`.
fn shared_layers(cfg: &ModelConfig) -> (Vec<LayerInfo>, Vec<LayerInfo>, Vec<LayerInfo>) {
    let f = cfg.features();
    let k = cfg.out_channels();
    let top = cfg.poolings;
    let e = cfg.mmformer.embedding;
    let mut b = Layers {
        cfg,
        out: Vec::new(),
    };
    b.transformer("inter", 4 * Mmformer::tokens(cfg));
    b.conv("detokenizer".into(), (4 * e, 4 * f[top], 1), 1, top);
    let inter = b.take();
    for (l, &c) in f.iter().enumerate() {
        let p = format!("decoder.fusions.{l}");
        b.prenorm(&format!("{p}.reduce"), (4 * c, c, 1), 1, l);
        b.norm(format!("{p}.norm"), c, l);
        b.conv(format!("{p}.conv"), (c, c, 3), 1, l);
        b.prenorm(&format!("{p}.expand"), (c, c, 1), 1, l);
    }
    for l in (0..top).rev() {
        b.decoder_level("decoder", l);
    }
    for (l, &c) in f.iter().enumerate().skip(1) {
        b.conv(format!("decoder.heads.{}", l - 1), (c, k, 1), 1, l);
    }
    b.conv("decoder.output".into(), (f[0], k, 1), 1, 0);
    let decoder = b.take();
    for l in (0..top).rev() {
        b.decoder_level("auxiliary", l);
    }
    b.conv("auxiliary.output".into(), (f[0], k, 1), 1, 0);
    (inter, decoder, b.take())
}

fn params(layers: &[LayerInfo]) -> usize {
    layers.iter().map(|l| l.parameters).sum()
}

fn macs(layers: &[LayerInfo]) -> u64 {
    layers.iter().map(|l| l.macs).sum()
}

/// Parameter counts of the network `cfg` describes.
pub fn counts(cfg: &ModelConfig) -> MmformerCounts {
    let (encoder, intra) = modality_layers(cfg);
    let (inter, decoder, auxiliary) = shared_layers(cfg);
    let c = MmformerCounts {
        encoder: params(&encoder),
        intra: params(&intra),
        inter: params(&inter),
        decoder: params(&decoder),
        auxiliary: params(&auxiliary),
        total: 0,
    };
    MmformerCounts {
        total: 4 * (c.encoder + c.intra) + c.inter + c.decoder + c.auxiliary,
        ..c
    }
}

/// The [`ModelSummary`] of mmFormer: layers of one modality's branch (`{m}`), the
/// inter-modal transformer, the fused and the auxiliary decoder. In the A2FSeg-shaped
/// fields an "MSFE" is one modality's branch (encoder, tokenizer, positional embedding,
/// intra-modal transformer) and the "fusion heads" are everything after the branches; MACs
/// per number of available modalities count the inference pass (the available branches,
/// the inter-modal transformer and the fused decoder).
pub fn describe(cfg: &ModelConfig) -> ModelSummary {
    let (encoder, intra) = modality_layers(cfg);
    let (inter, decoder, auxiliary) = shared_layers(cfg);
    let c = counts(cfg);
    let branch = macs(&encoder) + macs(&intra);
    let after = macs(&inter) + macs(&decoder);
    let mut layers = encoder;
    layers.extend(intra);
    layers.extend(inter);
    layers.extend(decoder);
    layers.extend(auxiliary);
    ModelSummary {
        config: cfg.clone(),
        features: cfg.features(),
        parameters_total: c.total,
        parameters_per_msfe: c.encoder + c.intra,
        parameters_per_msfe_body: c.encoder + c.intra,
        parameters_per_msfe_heads: 0,
        parameters_attention: 0,
        parameters_fusion_heads: c.inter + c.decoder + c.auxiliary,
        macs_per_msfe: branch,
        macs_by_modalities: (1..=4)
            .map(|n| MacsByModalities {
                modalities: n,
                macs: n as u64 * branch + after,
            })
            .collect(),
        layers,
    }
}

/// mmFormer's headline, parameter rows and name of one modality's branch for
/// [`ModelSummary::to_text`].
pub fn text_parts(summary: &ModelSummary) -> (String, Vec<(&'static str, usize)>, &'static str) {
    let cfg = &summary.config;
    let t = &cfg.mmformer;
    let features: Vec<String> = summary.features.iter().map(|f| f.to_string()).collect();
    let b = Mmformer::bottleneck(cfg);
    let headline = format!(
        "mmFormer: targets {} ({}), features {}, {} tokens per modality ({}×{}×{}), \
         embedding {}, {} heads, MLP {}, depth {}, dropout {}, token layout {}",
        cfg.targets,
        cfg.channel_names().join(", "),
        features.join("-"),
        Mmformer::tokens(cfg),
        b[0],
        b[1],
        b[2],
        t.embedding,
        t.heads,
        t.mlp,
        t.depth,
        t.dropout,
        t.token_layout,
    );
    let c = counts(cfg);
    let rows = vec![
        ("parameters per encoder", c.encoder),
        ("4 encoders", 4 * c.encoder),
        ("intra-modal part (each)", c.intra),
        ("4 intra-modal parts", 4 * c.intra),
        ("inter-modal transformer", c.inter),
        ("fused decoder", c.decoder),
        ("auxiliary decoder (training)", c.auxiliary),
        ("total", c.total),
    ];
    (headline, rows, "one modality's branch")
}
