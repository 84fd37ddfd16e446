//! mmFormer's own settings, one [`ModelConfig`](super::super::ModelConfig) field
//! (`mmformer` in `config.json`), and the token layout of its inter-modal transformer.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::config::Config;
use serde::{Deserialize, Serialize};

/// How the inter-modal transformer's output tokens `[B, 4·N, E]` (the four modalities'
/// N tokens one after the other) become the bottleneck volume `[B, 4·E, d, h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenLayout {
    /// Voxel `n` holds the four modalities' tokens `n`, concatenated on channels in modality
    /// order: what the method describes. The default.
    Intended,
    /// The official code's `.view(B, d, h, w, 4·E)` of the token sequence: voxel `n` holds
    /// tokens `4n … 4n + 3` of the concatenated sequence, i.e. four neighbouring tokens of
    /// one modality (the first quarter of the voxels reads T1's tokens only, and so on).
    Released,
}

impl TokenLayout {
    /// Both layouts.
    pub const ALL: [TokenLayout; 2] = [TokenLayout::Intended, TokenLayout::Released];

    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TokenLayout::Intended => "intended",
            TokenLayout::Released => "released",
        }
    }
}

impl fmt::Display for TokenLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TokenLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "intended" => Ok(TokenLayout::Intended),
            "released" => Ok(TokenLayout::Released),
            other => Err(format!(
                "unknown token layout '{other}' (expected intended or released)"
            )),
        }
    }
}

/// The transformers of mmFormer (the other methods ignore these). The defaults are the
/// official code's: embedding 512, 8 heads, MLP 4096, depth 1, dropout 0.1. The number of
/// tokens is not a setting: it is the bottleneck's voxel count, `Π patch_size / 2^poolings`
/// (8³ = 512 at 128³ with 4 poolings), and the learned positional embeddings have that many
/// rows, so a trained mmFormer only runs on windows of its patch size.
#[derive(Config, Debug, PartialEq)]
pub struct MmformerConfig {
    /// Token width E (the 1×1 convolution from the bottleneck's channels to E).
    #[config(default = 512)]
    pub embedding: usize,
    /// Attention heads; E must be a multiple.
    #[config(default = 8)]
    pub heads: usize,
    /// Hidden width of each transformer layer's MLP.
    #[config(default = 4096)]
    pub mlp: usize,
    /// Transformer layers (attention + MLP) in each intra-modal and the inter-modal
    /// transformer.
    #[config(default = 1)]
    pub depth: usize,
    /// Dropout rate of the transformers during training (drawn from the step's seed).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// The inter-modal transformer's output layout: `intended` or `released`.
    #[config(default = "TokenLayout::Intended")]
    pub token_layout: TokenLayout,
}

impl Default for MmformerConfig {
    fn default() -> Self {
        MmformerConfig::new()
    }
}

impl MmformerConfig {
    /// Checks that the settings describe a buildable transformer.
    pub fn validate(&self) -> Result<()> {
        if self.embedding == 0 || self.heads == 0 || !self.embedding.is_multiple_of(self.heads) {
            bail!(
                "mmformer.embedding ({}) must be a positive multiple of mmformer.heads ({})",
                self.embedding,
                self.heads
            );
        }
        if self.mlp == 0 || self.depth == 0 {
            bail!("mmformer.mlp and mmformer.depth must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("mmformer.dropout must be in [0, 1), got {}", self.dropout);
        }
        Ok(())
    }
}
