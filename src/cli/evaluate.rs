//! `a2fseg evaluate`: score one or more models over modality subsets (the paper's Table 1,
//! Table 2 and Fig. 3). See [`crate::infer::evaluate`] for the files written.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::infer::Tta;
use crate::infer::evaluate::{EvaluateOptions, evaluate};
use crate::metrics::MetricOptions;
use crate::modality::Subset;

/// Arguments of `a2fseg evaluate`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    a2fseg evaluate --model runs/a2f --data data/ --split split.json --part test \
    --subsets all --et-postprocess --out eval/")]
pub struct EvaluateArgs {
    /// Training run folder (its checkpoints/best) or model folder; repeat to compare models.
    #[arg(long, value_name = "RUN_DIR", required = true)]
    pub model: Vec<PathBuf>,
    /// Dataset folder.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Split file: evaluate only the cases of --part (default: every labelled case).
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// Part of the split: test, validation, train or all.
    #[arg(long, default_value = "test")]
    pub part: String,
    /// Subsets: all, or a comma-separated list of bit strings (0101,1111) in T1,T1c,T2,FLAIR
    /// order.
    #[arg(long, default_value = "all", value_parser = parse_subsets)]
    pub subsets: SubsetList,
    /// Output folder (cases.csv, summary.md/.csv/.json, attention.json); rerunning resumes.
    #[arg(long, default_value = "evaluation", value_name = "DIR")]
    pub out: PathBuf,
    /// Also report ET after relabelling a predicted ET of fewer than N voxels as NCR
    /// (RFNet/mmFormer; N defaults to 500).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "500")]
    pub et_postprocess: Option<usize>,
    /// HD95 (mm) when exactly one of prediction and reference is empty.
    #[arg(long, default_value_t = crate::metrics::DEFAULT_HD95_PENALTY, value_name = "MM",
          value_parser = super::args::parse_hd95_penalty)]
    pub hd95_penalty: f64,
    /// Sliding-window step as a fraction of the patch.
    #[arg(long, default_value_t = 0.5)]
    pub step: f64,
    /// Test-time mirroring: off, 8 (all axes) or axes such as xy.
    #[arg(long, default_value = "off")]
    pub tta: Tta,
    /// Score the network's label maps as decoded: no brain mask, no largest-component or
    /// small-ET rule
    /// (by default each model's post-processing is applied: its postprocess.json, else the
    /// brain mask alone).
    #[arg(long)]
    pub no_postprocess: bool,
    /// Compute device: cpu, cuda[:N], wgpu or wgpu:cpu|discrete:N|integrated:N (GPU builds
    /// only).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: crate::model::ComputeDevice,
    /// Preprocessing cache folder to read and fill, e.g. the training run's RUN_DIR/cache
    /// [default: none: every case is preprocessed afresh, as nnU-Net's prediction does].
    /// Cases are preprocessed with the settings each model was trained with either way.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Labelled cases (the first N evaluated) shown in report.html's interactive viewer,
    /// with the predictions made to score them (0: none).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub view_cases: usize,
    #[command(flatten)]
    pub plan: super::args::PlanArgs,
    #[command(flatten)]
    pub finite: super::args::FiniteArgs,
}

/// A parsed `--subsets` value.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetList(pub Vec<Subset>);

/// Parses `all` or a comma-separated list of bit strings, sorted in Table 1 order.
pub fn parse_subsets(s: &str) -> Result<SubsetList, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(SubsetList(Subset::all_nonempty().collect()));
    }
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let sub: Subset = part.parse()?;
        if sub.is_empty() {
            return Err(format!("subset '{part}' is empty"));
        }
        if !v.contains(&sub) {
            v.push(sub);
        }
    }
    if v.is_empty() {
        return Err("no subset given (use all or e.g. 0101,1111)".to_string());
    }
    v.sort();
    Ok(SubsetList(v))
}

/// Runs `a2fseg evaluate`.
pub fn run(args: EvaluateArgs, global: Global) -> Result<()> {
    let max_memory = args.plan.max_memory_bytes()?;
    if let Some(d) = args.device.describe()?
        && !global.quiet
    {
        eprintln!("device {d}");
    }
    let opts = EvaluateOptions {
        models: args.model,
        data: args.data,
        split: args.split,
        part: args.part,
        subsets: args.subsets.0,
        out: args.out.clone(),
        metrics: MetricOptions {
            hd95_penalty: args.hd95_penalty,
            et_postprocess: args.et_postprocess,
        },
        step: args.step,
        window: args.plan.window,
        max_memory: Some(max_memory),
        tta: args.tta,
        postprocess: !args.no_postprocess,
        device: args.device,
        quiet: global.quiet,
        cache: args.cache,
        strict_finite: args.finite.strict_finite,
        view_cases: args.view_cases,
    };
    let outcome = evaluate(&opts)?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    for p in &outcome.partial {
        eprintln!("note: {}", p.note());
    }
    if !outcome.unlabelled.is_empty() {
        eprintln!(
            "warning: {} case(s) without segmentation skipped: {}",
            outcome.unlabelled.len(),
            outcome.unlabelled.join(", ")
        );
    }
    for s in &outcome.summaries {
        let d = s.scores.mean.regions.map(|r| 100.0 * r.dice);
        println!(
            "{}: mean Dice over {} subset(s), {} case(s): WT {:.2}  TC {:.2}  ET {:.2}",
            s.model,
            s.scores.subsets.len(),
            s.scores.mean.cases,
            d[0],
            d[1],
            d[2]
        );
    }
    if !global.quiet && !outcome.plans.is_empty() {
        let used: Vec<String> = outcome
            .plans
            .iter()
            .map(|(plan, n)| format!("{plan} for {n} case(s)"))
            .collect();
        eprintln!("plan ({}): {}", args.plan.window, used.join(", "));
    }
    if !global.quiet {
        eprintln!(
            "scored {} case(s), {} already scored; summary in {}",
            outcome.scored,
            outcome.resumed,
            args.out.join("summary.md").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse() {
        assert_eq!(parse_subsets("all").unwrap().0.len(), 15);
        let v = parse_subsets("1111, 0101,0101").unwrap().0;
        assert_eq!(
            v.iter().map(|s| s.name()).collect::<Vec<_>>(),
            ["0101", "1111"]
        );
        assert!(parse_subsets("0000").is_err());
        assert!(parse_subsets("01x1").is_err());
        assert!(parse_subsets("").is_err());
    }
}
