//! `a2fseg model summary`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::Global;
use crate::model::{Arch, Fusion, ModelConfig, Network, Targets};

/// Subcommands of `a2fseg model`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print layers, parameter counts and multiply-accumulates.
    Summary {
        /// The method: a2fseg (default), … (see `a2fseg train --help`).
        #[arg(long, value_name = "ARCH", conflicts_with = "config")]
        arch: Option<Arch>,
        /// Model preset: `paper` (the method's native size), `small` (CPU-sized) or
        /// `authors` (the authors' released code).
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
            arch,
            preset,
            config,
            fusion,
            targets,
            patch,
            json,
        } => {
            let mut cfg = match (&preset, &config) {
                (_, Some(path)) => ModelConfig::load_json(path)?,
                (p, None) => ModelConfig::named_preset(
                    arch.unwrap_or_default(),
                    p.as_deref().unwrap_or("paper"),
                )?,
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
            let summary = crate::with_network!(cfg.arch, N => N::describe(&cfg));
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
            Ok(())
        }
    }
}
