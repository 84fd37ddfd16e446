//! `a2fseg export onnx`: write a trained A2FSeg model as ONNX graphs.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};

use super::Global;
use crate::export::{SubsetChoice, export_onnx};
use crate::modality::Subset;

/// Subcommands of `a2fseg export`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write the network's inference forward pass as a standard ONNX graph (opset 17) for one
    /// modality subset, or one file per subset.
    Onnx(OnnxArgs),
}

/// Arguments of `a2fseg export onnx`.
#[derive(Debug, Args)]
#[command(
    after_help = "Inputs are named t1, t1c, t2, flair ([N, 1, D, H, W], D, H, W multiples \
    of 2^poolings); outputs are logits and probabilities ([N, K, D, H, W]).\n\n\
    Examples:\n  \
    a2fseg export onnx --model runs/a2f --out a2f_1111.onnx\n  \
    a2fseg export onnx --model runs/a2f --subset 0101 --out a2f_t1c_flair.onnx\n  \
    a2fseg export onnx --model runs/a2f --all-subsets --out onnx/\n  \
    a2fseg export onnx --model runs/a2f --all-subsets --out 'onnx/a2f_{subset}.onnx'"
)]
pub struct OnnxArgs {
    /// Training run folder (its checkpoints/best is used) or a model folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Output file; with --all-subsets a folder (files subset-1011.onnx, …) or a name with
    /// `{subset}`, replaced by each subset's bit string.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The modalities the graph takes: a bit string in the order T1 T1c T2 FLAIR (1011 is
    /// T1 + T2 + FLAIR) or names such as t1c,flair [default: 1111].
    #[arg(long, value_name = "SUBSET", conflicts_with = "all_subsets")]
    pub subset: Option<String>,
    /// Write one graph per non-empty subset (15 files).
    #[arg(long)]
    pub all_subsets: bool,
}

/// Runs `a2fseg export …`.
pub fn run(cmd: ExportCommand, global: Global) -> Result<()> {
    match cmd {
        ExportCommand::Onnx(args) => {
            let choice = if args.all_subsets {
                SubsetChoice::All
            } else {
                let subset = match &args.subset {
                    Some(text) => text
                        .parse::<Subset>()
                        .map_err(|e| anyhow!("--subset {text}: {e}"))?,
                    None => Subset::FULL,
                };
                SubsetChoice::One(subset)
            };
            let written = export_onnx(&args.model, &args.out, choice)?;
            if !global.quiet {
                for (subset, path) in written {
                    println!("{} ({}): {}", subset, subset.describe(), path.display());
                }
            }
            Ok(())
        }
    }
}
