//! A description of the network computed from its configuration: layers, parameter counts
//! per part, and multiply-accumulates (MACs) of one forward pass per number of available
//! modalities.
//!
//! MACs count the convolutions (including the transposed ones and the 1×1×1 heads) at the
//! configuration's patch size, batch 1; normalisations, activations and the element-wise
//! fusion arithmetic are a few operations per voxel and are left out. One FLOP count is
//! about 2 × MACs. The forward pass is the training one (A2fseg::forward): every available
//! MSFE with its deep-supervision heads, then the fusion and its heads.

use serde::Serialize;

use super::config::{Arch, Fusion, ModelConfig};

/// One layer of the network.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// Tensor-name prefix of the layer (see [`weights`](super::weights)), with `{m}` for
    /// the modality in MSFE layers.
    pub name: String,
    /// `conv3d`, `conv_transpose3d`, `instance_norm`, `group_norm`, `linear` or `head`.
    pub kind: &'static str,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size (cubic).
    pub kernel: usize,
    /// Stride (cubic).
    pub stride: usize,
    /// Output size `[x, y, z]` at the configuration's patch size.
    pub output_size: [usize; 3],
    /// Learned parameters.
    pub parameters: usize,
    /// Multiply-accumulates at the patch size (0 for normalisations).
    pub macs: u64,
}

/// MACs of one forward pass with `modalities` available inputs.
#[derive(Debug, Clone, Serialize)]
pub struct MacsByModalities {
    /// Number of available modalities (1..=4).
    pub modalities: usize,
    /// Multiply-accumulates.
    pub macs: u64,
}

/// The whole description; serialised as the `--json` output of `a2fseg model summary`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// The configuration described.
    pub config: ModelConfig,
    /// Channels per MSFE stage.
    pub features: Vec<usize>,
    /// Parameters of the whole network (4 MSFEs and the fusion stage).
    pub parameters_total: usize,
    /// Parameters of one MSFE, including its segmentation heads.
    pub parameters_per_msfe: usize,
    /// Parameters of one MSFE's encoder and decoder only (the paper preset: 31,193,184,
    /// the figure of the authors' nnU-Net).
    pub parameters_per_msfe_body: usize,
    /// Parameters of one MSFE's segmentation heads.
    pub parameters_per_msfe_heads: usize,
    /// Parameters of the attention convolutions (all four modalities).
    pub parameters_attention: usize,
    /// Parameters of the average and final fusion heads.
    pub parameters_fusion_heads: usize,
    /// MACs of one MSFE with its heads at the patch size.
    pub macs_per_msfe: u64,
    /// MACs of one forward pass per number of available modalities.
    pub macs_by_modalities: Vec<MacsByModalities>,
    /// Layers of one MSFE (names with `{m}`), then the fusion layers.
    pub layers: Vec<LayerInfo>,
}

/// Accumulates the layers of a description; shared with the other methods' descriptions.
pub(crate) struct Builder {
    /// The layers so far, in forward order.
    pub(crate) layers: Vec<LayerInfo>,
    patch: [usize; 3],
}

impl Builder {
    /// An empty description at patch size `patch` `[x, y, z]`.
    pub(crate) fn new(patch: [usize; 3]) -> Builder {
        Builder {
            layers: Vec::new(),
            patch,
        }
    }

    /// Adds a convolution of `kind` (`conv3d`, `conv_transpose3d` or `head`) whose output is
    /// at `1 / 2^level` of the patch size.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv(
        &mut self,
        name: String,
        kind: &'static str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        level: usize,
        bias: bool,
    ) {
        let size = self.patch.map(|s| s >> level);
        let voxels: u64 = size.iter().map(|&s| s as u64).product();
        let taps = (kernel * kernel * kernel) as u64;
        // A k2 s2 transposed conv feeds each output voxel from one tap per input channel.
        let per_voxel = if kind == "conv_transpose3d" { 1 } else { taps };
        self.layers.push(LayerInfo {
            name,
            kind,
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
            output_size: size,
            parameters: cin * cout * kernel.pow(3) + if bias { cout } else { 0 },
            macs: voxels * per_voxel * (cin * cout) as u64,
        });
    }

    /// Adds an affine instance normalisation of `channels` at `1 / 2^level` resolution.
    pub(crate) fn norm(&mut self, name: String, channels: usize, level: usize) {
        self.layers.push(LayerInfo {
            name,
            kind: "instance_norm",
            in_channels: channels,
            out_channels: channels,
            kernel: 1,
            stride: 1,
            output_size: self.patch.map(|s| s >> level),
            parameters: 2 * channels,
            macs: 0,
        });
    }

    /// Adds a [`ConvBlock`](super::msfe::ConvBlock): Conv3d(k3, bias) and its norm.
    pub(crate) fn block(
        &mut self,
        prefix: String,
        cin: usize,
        cout: usize,
        stride: usize,
        level: usize,
    ) {
        self.conv(
            format!("{prefix}.conv"),
            "conv3d",
            cin,
            cout,
            3,
            stride,
            level,
            true,
        );
        self.norm(format!("{prefix}.norm"), cout, level);
    }
}

impl Builder {
    /// Adds the layers of one MSFE (names `msfe.{m}.…`): encoder, decoder, then heads.
    pub(crate) fn msfe(&mut self, cfg: &ModelConfig) {
        let f = cfg.features();
        for s in 0..=cfg.poolings {
            for i in 0..cfg.convs_per_stage {
                let cin = match (s, i) {
                    (0, 0) => 1,
                    (_, 0) => f[s - 1],
                    _ => f[s],
                };
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                self.block(
                    format!("msfe.{{m}}.encoder.{s}.convs.{i}"),
                    cin,
                    f[s],
                    stride,
                    s,
                );
            }
        }
        self.decoder(cfg, "msfe.{m}");
        self.heads(cfg, "msfe.{m}");
    }

    /// Adds the decoder stages of a U-Net of `cfg`, deepest first, named `{prefix}.decoder.…`.
    pub(crate) fn decoder(&mut self, cfg: &ModelConfig, prefix: &str) {
        let f = cfg.features();
        for l in (0..cfg.poolings).rev() {
            self.conv(
                format!("{prefix}.decoder.{l}.up"),
                "conv_transpose3d",
                f[l + 1],
                f[l],
                2,
                2,
                l,
                false,
            );
            for i in 0..cfg.convs_per_stage {
                let cin = if i == 0 { 2 * f[l] } else { f[l] };
                self.block(format!("{prefix}.decoder.{l}.convs.{i}"), cin, f[l], 1, l);
            }
        }
    }

    /// Adds the segmentation heads of a U-Net of `cfg`, named `{prefix}.heads.{l}`.
    pub(crate) fn heads(&mut self, cfg: &ModelConfig, prefix: &str) {
        let f = cfg.features();
        for (l, &fl) in f.iter().enumerate().take(cfg.heads_per_msfe()) {
            self.conv(
                format!("{prefix}.heads.{l}"),
                "head",
                fl,
                cfg.out_channels(),
                1,
                1,
                l,
                false,
            );
        }
    }

    /// Parameters of the layers from index `from` on.
    pub(crate) fn parameters_from(&self, from: usize) -> usize {
        self.layers[from..].iter().map(|l| l.parameters).sum()
    }

    /// Multiply-accumulates of the layers from index `from` on.
    pub(crate) fn macs_from(&self, from: usize) -> u64 {
        self.layers[from..].iter().map(|l| l.macs).sum()
    }
}

impl ModelSummary {
    /// Describes the network of `cfg` at `cfg.patch_size`.
    pub fn new(cfg: &ModelConfig) -> ModelSummary {
        let f = cfg.features();
        let k = cfg.out_channels();
        let c = cfg.feature_channels();
        let mut b = Builder::new(cfg.patch_size);
        b.msfe(cfg);
        let body_layers = b.layers.len() - cfg.heads_per_msfe();
        let msfe_layers = b.layers.len();
        let sum_params = |ls: &[LayerInfo]| ls.iter().map(|l| l.parameters).sum::<usize>();
        let body = sum_params(&b.layers[..body_layers]);
        let heads = sum_params(&b.layers[body_layers..]);
        let macs_per_msfe: u64 = b.layers.iter().map(|l| l.macs).sum();

        if cfg.fusion == Fusion::Adaptive {
            for m in cfg.modalities() {
                b.conv(
                    format!("fusion.attention.{}", m.key()),
                    "conv3d",
                    2 * c,
                    cfg.attention_channels,
                    cfg.attention_kernel,
                    1,
                    0,
                    true,
                );
            }
        }
        let attention_layers = b.layers.len();
        b.conv("fusion.average_head".into(), "head", c, k, 1, 1, 0, false);
        match cfg.fusion {
            Fusion::Adaptive => b.conv("fusion.fused_head".into(), "head", c, k, 1, 1, 0, false),
            Fusion::Hemis => b.conv("fusion.fused_head".into(), "head", 2 * c, k, 1, 1, 0, false),
            Fusion::Average => {}
        }
        let attention = sum_params(&b.layers[msfe_layers..attention_layers]);
        let fusion_heads = sum_params(&b.layers[attention_layers..]);
        let attention_macs_each = if attention_layers > msfe_layers {
            b.layers[msfe_layers].macs
        } else {
            0
        };
        let head_macs: u64 = b.layers[attention_layers..].iter().map(|l| l.macs).sum();
        let macs_by_modalities = (1..=4)
            .map(|n| MacsByModalities {
                modalities: n,
                macs: n as u64 * (macs_per_msfe + attention_macs_each) + head_macs,
            })
            .collect();
        ModelSummary {
            config: cfg.clone(),
            features: f,
            parameters_total: 4 * (body + heads) + attention + fusion_heads,
            parameters_per_msfe: body + heads,
            parameters_per_msfe_body: body,
            parameters_per_msfe_heads: heads,
            parameters_attention: attention,
            parameters_fusion_heads: fusion_heads,
            macs_per_msfe,
            macs_by_modalities,
            layers: b.layers,
        }
    }

    /// A2FSeg's headline, parameter rows and name of one modality's branch for
    /// [`ModelSummary::to_text`].
    fn a2fseg_text_parts(&self) -> (String, Vec<(&'static str, usize)>, &'static str) {
        let cfg = &self.config;
        let headline = format!(
            "A2FSeg: fusion {}, targets {} ({}), features {}, {} conv(s) per stage, deep supervision {}",
            cfg.fusion,
            cfg.targets,
            cfg.channel_names().join(", "),
            self.features
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("-"),
            cfg.convs_per_stage,
            if cfg.deep_supervision { "on" } else { "off" },
        );
        let rows = vec![
            ("parameters per MSFE", self.parameters_per_msfe),
            ("  encoder + decoder", self.parameters_per_msfe_body),
            ("  segmentation heads", self.parameters_per_msfe_heads),
            ("4 MSFEs", 4 * self.parameters_per_msfe),
            ("attention convolutions", self.parameters_attention),
            ("fusion heads", self.parameters_fusion_heads),
            ("total", self.parameters_total),
        ];
        (headline, rows, "one MSFE")
    }

    /// A human-readable table of the layers and the totals.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let cfg = &self.config;
        let mut s = String::new();
        let p = cfg.patch_size;
        let (headline, rows, unit) = match cfg.arch {
            Arch::Uhved => super::uhved::summary::text_parts(self),
            Arch::Mfi => super::mfi::summary::text_parts(self),
            Arch::Mmformer => super::mmformer::summary::text_parts(self),
            Arch::A2fsegReleased => super::released::summary::text_parts(self),
            Arch::A2fseg => self.a2fseg_text_parts(),
            Arch::Rfnet => super::rfnet::summary::text_parts(self),
        };
        let _ = writeln!(s, "{headline}");
        let _ = writeln!(s, "patch size [x, y, z] = [{}, {}, {}]\n", p[0], p[1], p[2]);
        let _ = writeln!(
            s,
            "{:<40} {:<17} {:>5} {:>5} {:>2} {:>2} {:>16} {:>12} {:>10}",
            "layer ({m} = t1, t1c, t2, flair)",
            "kind",
            "in",
            "out",
            "k",
            "s",
            "output [x,y,z]",
            "params",
            "GMAC"
        );
        for l in &self.layers {
            let o = l.output_size;
            let _ = writeln!(
                s,
                "{:<40} {:<17} {:>5} {:>5} {:>2} {:>2} {:>16} {:>12} {:>10.3}",
                l.name,
                l.kind,
                l.in_channels,
                l.out_channels,
                l.kernel,
                l.stride,
                format!("{}x{}x{}", o[0], o[1], o[2]),
                group(l.parameters as u64),
                l.macs as f64 / 1e9
            );
        }
        let _ = writeln!(s);
        for (name, n) in rows {
            let _ = writeln!(s, "{name:<26} {:>14}", group(n as u64));
        }
        let _ = writeln!(
            s,
            "\nmultiply-accumulates of one forward pass (convolutions, batch 1):"
        );
        let _ = writeln!(
            s,
            "{:<26} {:>14.1} GMAC",
            unit,
            self.macs_per_msfe as f64 / 1e9
        );
        for m in &self.macs_by_modalities {
            let _ = writeln!(
                s,
                "{:<26} {:>14.1} GMAC",
                format!(
                    "{} modalit{}",
                    m.modalities,
                    if m.modalities == 1 { "y" } else { "ies" }
                ),
                m.macs as f64 / 1e9
            );
        }
        s
    }
}

/// `31193184` → `31,193,184`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::Device;

    #[test]
    fn counts_match_the_built_network() {
        for preset in ["small", "paper"] {
            for fusion in Fusion::ALL {
                let cfg = ModelConfig::preset(preset).unwrap().with_fusion(fusion);
                let s = ModelSummary::new(&cfg);
                let model = cfg.init(&Device::flex());
                assert_eq!(s.parameters_total, model.num_params(), "{preset} {fusion}");
                assert_eq!(s.parameters_per_msfe, model.msfe.t1.num_params());
            }
        }
        let paper = ModelSummary::new(&ModelConfig::preset("paper").unwrap());
        assert_eq!(paper.parameters_per_msfe_body, 31_193_184);
        // ≈ 0.48 TMAC per MSFE at 128³.
        assert!((paper.macs_per_msfe as f64 / 1e12 - 0.477).abs() < 0.01);
        assert!(paper.macs_by_modalities[3].macs > 4 * paper.macs_per_msfe);
        assert!(paper.to_text().contains("31,193,184"));
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(31_193_184), "31,193,184");
    }
}
