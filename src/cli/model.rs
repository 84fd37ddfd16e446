//! `a2fseg model summary`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::Global;
use crate::model::{A2fseg, Fusion, ModelConfig, Network, Targets};

/// Subcommands of `a2fseg model`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print layers, parameter counts and multiply-accumulates.
    Summary {
        /// Model preset: `paper` (the authors' network) or `small` (CPU-sized).
        #[arg(long, value_name = "P", conflicts_with = "config")]
        preset: Option<String>,
        /// A model configuration JSON file (e.g. a model folder's config.json).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Override the fusion strategy: adaptive, average or hemis.
        #[arg(long, value_name = "F")]
        fusion: Option<Fusion>,
        /// Override the targets: regions or classes.
        #[arg(long, value_name = "T")]
        targets: Option<Targets>,
        /// Override the patch size the MACs are computed for, as x,y,z (or one number).
        #[arg(long, value_name = "X,Y,Z", value_parser = super::args::parse_xyz)]
        patch: Option<[usize; 3]>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `a2fseg model …`.
pub fn run(cmd: ModelCommand, _global: Global) -> Result<()> {
    match cmd {
        ModelCommand::Summary {
            preset,
            config,
            fusion,
            targets,
            patch,
            json,
        } => {
            let mut cfg = match (&preset, &config) {
                (_, Some(path)) => ModelConfig::load_json(path)?,
                (Some(p), None) => ModelConfig::preset(p)?,
                (None, None) => ModelConfig::preset("paper")?,
            };
            if let Some(f) = fusion {
                cfg.fusion = f;
            }
            if let Some(t) = targets {
                cfg.targets = t;
            }
            if let Some(p) = patch {
                cfg.patch_size = p;
            }
            cfg.validate()?;
            let summary = A2fseg::describe(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
            Ok(())
        }
    }
}
