//! MFI's layers and parameter counts, computed from the configuration without building the
//! network (`a2fseg model summary --arch mfi`). Group norms are listed as `group_norm`
//! layers and the interaction MLPs as `linear` layers (their MACs: 16 target–source pairs
//! per sample).

use serde::Serialize;

use super::super::config::ModelConfig;
use super::super::summary::{Builder, LayerInfo, MacsByModalities, ModelSummary};

/// Parameters of MFI's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MfiCounts {
    /// One modality's U-Net, its output convolution included.
    pub branch: usize,
    /// All interaction blocks.
    pub interactions: usize,
    /// The fused-output convolution.
    pub fuse: usize,
    /// The deep-supervision heads (shared by the branches).
    pub deep: usize,
    /// 4 branches + interactions + fuse + deep.
    pub total: usize,
}

/// Adds a group norm of `c` channels at `1 / 2^level` of the patch `patch`.
fn group_norm(b: &mut Builder, patch: [usize; 3], name: String, c: usize, level: usize) {
    b.layers.push(LayerInfo {
        name,
        kind: "group_norm",
        in_channels: c,
        out_channels: c,
        kernel: 1,
        stride: 1,
        output_size: patch.map(|s| s >> level),
        parameters: 2 * c,
        macs: 0,
    });
}

/// Adds a linear layer `cin → cout` applied to the 16 (target, source) pairs.
fn linear(b: &mut Builder, name: String, cin: usize, cout: usize) {
    b.layers.push(LayerInfo {
        name,
        kind: "linear",
        in_channels: cin,
        out_channels: cout,
        kernel: 1,
        stride: 1,
        output_size: [1; 3],
        parameters: cin * cout + cout,
        macs: 16 * (cin * cout) as u64,
    });
}

/// Adds a residual block of `c` channels at `level`, named `{prefix}.…`.
fn res_block(b: &mut Builder, patch: [usize; 3], prefix: &str, c: usize, level: usize) {
    for i in 0..2 {
        group_norm(b, patch, format!("{prefix}.norms.{i}"), c, level);
        b.conv(
            format!("{prefix}.convs.{i}"),
            "conv3d",
            c,
            c,
            3,
            1,
            level,
            true,
        );
    }
}

/// The layers of one branch (names `branches.{m}.…`), in forward order.
pub fn branch_layers(cfg: &ModelConfig) -> Vec<LayerInfo> {
    let f = cfg.features();
    let p = cfg.poolings;
    let mut b = Builder::new(cfg.patch_size);
    let name = |s: String| format!("branches.{{m}}.{s}");
    b.conv(name("input".into()), "conv3d", 1, f[0], 3, 1, 0, true);
    for s in 0..=p {
        res_block(
            &mut b,
            cfg.patch_size,
            &name(format!("encoder.{s}")),
            f[s],
            s,
        );
        if s < p {
            b.conv(
                name(format!("downs.{s}")),
                "conv3d",
                f[s],
                f[s + 1],
                3,
                2,
                s + 1,
                true,
            );
        }
    }
    for l in (0..p).rev() {
        let c = f[l + 1];
        b.conv(
            name(format!("ups.{l}.mix")),
            "conv3d",
            c,
            c,
            1,
            1,
            l + 1,
            true,
        );
        b.conv(
            name(format!("ups.{l}.up")),
            "conv_transpose3d",
            c,
            f[l],
            2,
            2,
            l,
            true,
        );
        res_block(
            &mut b,
            cfg.patch_size,
            &name(format!("decoder.{l}")),
            f[l],
            l,
        );
    }
    b.conv(
        name("output".into()),
        "head",
        f[0],
        cfg.out_channels(),
        1,
        1,
        0,
        true,
    );
    b.layers
}

/// The layers shared by the branches: interaction blocks, the fused output, the
/// deep-supervision heads.
pub fn shared_layers(cfg: &ModelConfig) -> (Vec<LayerInfo>, Vec<LayerInfo>, Vec<LayerInfo>) {
    let f = cfg.features();
    let p = cfg.poolings;
    let k = cfg.out_channels();
    let mut inter = Builder::new(cfg.patch_size);
    let blocks = (1..=p)
        .map(|s| (format!("down_interactions.{}", s - 1), f[s]))
        .chain(
            (1..p)
                .rev()
                .map(|l| (format!("up_interactions.{}", l - 1), f[l])),
        );
    for (name, c) in blocks {
        linear(&mut inter, format!("{name}.relation.0"), 4 * c, 2 * c);
        linear(&mut inter, format!("{name}.relation.1"), 2 * c, c);
    }
    let mut fuse = Builder::new(cfg.patch_size);
    fuse.conv("fuse".into(), "head", 4 * k, k, 1, 1, 0, true);
    let mut deep = Builder::new(cfg.patch_size);
    if cfg.deep_supervision {
        for l in (1..p).rev() {
            deep.conv(format!("deep.{}", l - 1), "head", f[l], k, 3, 1, l, true);
        }
    }
    (inter.layers, fuse.layers, deep.layers)
}

fn params(layers: &[LayerInfo]) -> usize {
    layers.iter().map(|l| l.parameters).sum()
}

fn macs(layers: &[LayerInfo]) -> u64 {
    layers.iter().map(|l| l.macs).sum()
}

/// Parameter counts of the network `cfg` describes.
pub fn counts(cfg: &ModelConfig) -> MfiCounts {
    let branch = params(&branch_layers(cfg));
    let (inter, fuse, deep) = shared_layers(cfg);
    let (interactions, fuse, deep) = (params(&inter), params(&fuse), params(&deep));
    MfiCounts {
        branch,
        interactions,
        fuse,
        deep,
        total: 4 * branch + interactions + fuse + deep,
    }
}

/// The [`ModelSummary`] of MFI: the layers of one branch (`{m}`), then the interaction
/// blocks, the fused output and the deep-supervision heads. In the A2FSeg-shaped fields an
/// "MSFE" is one branch (its output convolution is its head) and the "fusion heads" are
/// the interactions, the fused output and the deep-supervision heads. Inference runs all
/// four branches whatever the subset, so its MACs (without the training-only deep
/// supervision) are the same for 1 to 4 available modalities.
pub fn describe(cfg: &ModelConfig) -> ModelSummary {
    let branch = branch_layers(cfg);
    let (inter, fuse, deep) = shared_layers(cfg);
    let c = counts(cfg);
    let head = branch.last().map_or(0, |l| l.parameters);
    let macs_per_branch = macs(&branch);
    let inference = 4 * macs_per_branch + macs(&inter) + macs(&fuse);
    let mut layers = branch;
    layers.extend(inter);
    layers.extend(fuse);
    layers.extend(deep);
    ModelSummary {
        config: cfg.clone(),
        features: cfg.features(),
        parameters_total: c.total,
        parameters_per_msfe: c.branch,
        parameters_per_msfe_body: c.branch - head,
        parameters_per_msfe_heads: head,
        parameters_attention: 0,
        parameters_fusion_heads: c.interactions + c.fuse + c.deep,
        macs_per_msfe: macs_per_branch,
        macs_by_modalities: (1..=4)
            .map(|n| MacsByModalities {
                modalities: n,
                macs: inference,
            })
            .collect(),
        layers,
    }
}

/// MFI's headline, parameter rows and name of one modality's branch for
/// [`ModelSummary::to_text`].
pub fn text_parts(summary: &ModelSummary) -> (String, Vec<(&'static str, usize)>, &'static str) {
    let cfg = &summary.config;
    let features: Vec<String> = summary.features.iter().map(|f| f.to_string()).collect();
    let headline = format!(
        "MFI: targets {} ({}), features {}, group norms of {} channels, deep supervision {}",
        cfg.targets,
        cfg.channel_names().join(", "),
        features.join("-"),
        super::layers::CHANNELS_PER_GROUP,
        if cfg.deep_supervision { "on" } else { "off" },
    );
    let c = counts(cfg);
    let rows = vec![
        ("parameters per branch", c.branch),
        ("4 branches", 4 * c.branch),
        ("interaction blocks", c.interactions),
        ("fused output", c.fuse),
        ("deep supervision heads", c.deep),
        ("total", c.total),
    ];
    (headline, rows, "one branch")
}
