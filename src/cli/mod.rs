//! The command-line interface: argument definitions (clap) and dispatch to the library.
//!
//! Each subcommand lives in its own file with its `Args` struct and a `run` function; the
//! binary (`src/main.rs`) only parses arguments and calls [`run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod args;
pub mod bench;
pub mod compare;
pub mod dataset;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod info;
pub mod metrics;
pub mod model;
pub mod phantom;
pub mod predict;
pub mod train;
pub mod view;

/// A2FSeg: brain-tumour segmentation from any subset of T1, T1c, T2 and FLAIR.
#[derive(Debug, Parser)]
#[command(name = "a2fseg", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Worker threads for compute (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// Print only errors and final results: no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the shape, datatype, spacing, affine and value statistics of a NIfTI file.
    Info(info::InfoArgs),
    /// Write synthetic BraTS-like cases (phantoms) in the BraTS 2020 layout.
    Phantom(phantom::PhantomArgs),
    /// Inspect a dataset folder, measure its intensities and sizes, or split it into
    /// train/validation/test.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Describe the network: layers, parameters and multiply-accumulates.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Train A2FSeg on a dataset folder.
    Train(train::TrainArgs),
    /// Segment cases with a trained model.
    Predict(predict::PredictArgs),
    /// Evaluate a trained model over modality subsets (the paper's Table 1).
    Evaluate(evaluate::EvaluateArgs),
    /// Dice, HD95 and more between a predicted and a reference label map.
    Metrics(metrics::MetricsArgs),
    /// Train and evaluate several methods on one split and report them side by side.
    Compare(compare::CompareArgs),
    /// Write an offline HTML page with an interactive 3D viewer of one case: images,
    /// predictions, ground truth and attention maps.
    View(view::ViewArgs),
    /// Run the whole pipeline on synthetic data: phantoms, training, evaluation, report.
    Demo(demo::DemoArgs),
    /// Measure speed and memory (JSON lines).
    Bench(bench::BenchArgs),
    /// Write a trained model for other runtimes (ONNX).
    #[command(subcommand)]
    Export(export::ExportCommand),
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, Copy)]
pub struct Global {
    /// Suppress progress bars and chatter.
    pub quiet: bool,
}

/// Runs a parsed command line and turns its outcome into an exit code: 0 on success, 1 for
/// an error (printed on one line).
pub fn run(cli: Cli) -> ExitCode {
    let global = Global { quiet: cli.quiet };
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(1);
        }
        // Only fails if a pool already exists, which cannot happen this early.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let result = match cli.command {
        Command::Info(a) => info::run(a, global),
        Command::Phantom(a) => phantom::run(a, global),
        Command::Dataset(a) => dataset::run(a, global),
        Command::Model(a) => model::run(a, global),
        Command::Train(a) => train::run(a, global),
        Command::Predict(a) => predict::run(a, global),
        Command::Evaluate(a) => evaluate::run(a, global),
        Command::Metrics(a) => metrics::run(a, global),
        Command::Compare(a) => compare::run(a, global),
        Command::View(a) => view::run(a, global),
        Command::Demo(a) => demo::run(a, global),
        Command::Bench(a) => bench::run(a, global),
        Command::Export(a) => export::run(a, global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain on one line: "cannot read X: reason".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
