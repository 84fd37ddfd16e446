//! `a2fseg dataset check`, `a2fseg dataset split` and `a2fseg dataset stats`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;

use super::Global;
use crate::dataset::{CaseReport, Split, check_case, dataset_stats, discover};
use crate::labels::LabelConvention;

/// Subcommands of `a2fseg dataset`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Report the layout, cases, modalities, shapes and every problem found; exits with 1
    /// if any problem was found.
    Check {
        /// The dataset folder (BraTS 2020/2021/2023, MSD Task01, or a folder of case folders).
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Label convention of the segmentations (brats, brats2023, msd); default: from the layout.
        #[arg(long, value_name = "CONVENTION")]
        labels: Option<LabelConvention>,
    },
    /// Per modality, the mean z-score (over the brain, as preprocessing normalises) of the
    /// healthy brain, NCR, edema and ET, mean ± s.d. across the labelled cases; region
    /// volumes as a share of the brain; the range of brain box sizes.
    Stats {
        /// The dataset folder (BraTS, MSD Task01, phantoms, or a folder of case folders).
        dir: PathBuf,
        /// Print one JSON object (with every case's numbers) instead of the table.
        #[arg(long)]
        json: bool,
        /// Label convention of the segmentations (brats, brats2023, msd); default: from the layout.
        #[arg(long, value_name = "CONVENTION")]
        labels: Option<LabelConvention>,
    },
    /// Write a reproducible train/validation/test split of the cases that have a segmentation.
    Split {
        /// The dataset folder.
        dir: PathBuf,
        /// Output JSON file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Random seed: the same ids and seed give the same split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train, validation and test proportions.
        #[arg(long, value_name = "T,V,T", default_value = "70,10,20", value_parser = parse_ratios)]
        ratios: [u32; 3],
    },
}

/// Parses `70,10,20`.
fn parse_ratios(s: &str) -> Result<[u32; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(format!(
            "expected three numbers such as 70,10,20, got '{s}'"
        ));
    };
    let parse = |p: &str| {
        p.parse::<u32>()
            .map_err(|_| format!("'{p}' is not a non-negative whole number (in '{s}')"))
    };
    let r = [parse(a)?, parse(b)?, parse(c)?];
    if r.iter().all(|&v| v == 0) {
        return Err("the ratios cannot all be zero".to_string());
    }
    Ok(r)
}

/// The `--json` output of `dataset check`.
#[derive(Serialize)]
struct CheckReport {
    root: PathBuf,
    layout: String,
    convention: String,
    valid_labels: [u8; 4],
    cases: Vec<CaseReport>,
    /// Every problem, prefixed with its case id.
    problems: Vec<String>,
    ok: bool,
}

/// Runs `a2fseg dataset …`.
pub fn run(cmd: DatasetCommand, global: Global) -> Result<()> {
    match cmd {
        DatasetCommand::Check { dir, json, labels } => check(dir, json, labels, global),
        DatasetCommand::Stats { dir, json, labels } => stats(dir, json, labels, global),
        DatasetCommand::Split {
            dir,
            out,
            seed,
            ratios,
        } => split(dir, out, seed, ratios, global),
    }
}

fn check(dir: PathBuf, json: bool, labels: Option<LabelConvention>, global: Global) -> Result<()> {
    let mut ds = discover(&dir)?;
    if let Some(conv) = labels {
        ds = ds.with_convention(conv);
    }
    let bar =
        crate::progress::labelled_bar(ds.cases.len() as u64, "checking", "cases", global.quiet);
    let mut reports = Vec::with_capacity(ds.cases.len());
    for case in &ds.cases {
        bar.set_message(case.id.clone());
        reports.push(check_case(&ds, case));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let problems: Vec<String> = reports
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.id)))
        .collect();
    let n_problems = problems.len();
    if json {
        let report = CheckReport {
            root: ds.root.clone(),
            layout: ds.layout.name().to_string(),
            convention: ds.convention.name().to_string(),
            valid_labels: ds.convention.valid_labels(),
            cases: reports,
            ok: problems.is_empty(),
            problems,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&ds, &reports, &problems);
    }
    if n_problems > 0 {
        bail!(
            "{n_problems} problem(s) found in {} (listed above)",
            ds.root.display()
        );
    }
    Ok(())
}

fn stats(dir: PathBuf, json: bool, labels: Option<LabelConvention>, global: Global) -> Result<()> {
    let mut ds = discover(&dir)?;
    if let Some(conv) = labels {
        ds = ds.with_convention(conv);
    }
    let stats = dataset_stats(&ds, global.quiet)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!("dataset: {}", ds.root.display());
        println!("layout: {}, labels: {}", ds.layout, ds.convention);
        print!("{}", stats.to_text());
    }
    Ok(())
}

fn print_text(ds: &crate::dataset::Dataset, reports: &[CaseReport], problems: &[String]) {
    let with_seg = reports.iter().filter(|r| r.seg).count();
    println!("dataset: {}", ds.root.display());
    println!("layout: {}", ds.layout);
    println!("labels: {}", ds.convention);
    println!("cases: {} ({with_seg} with a segmentation)", reports.len());
    let width = reports.iter().map(|r| r.id.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  modalities              seg  shape", "case");
    for r in reports {
        let shape = r
            .shape
            .map(|[x, y, z]| format!("{x}x{y}x{z}"))
            .unwrap_or_else(|| "?".to_string());
        println!(
            "{:width$}  {} {:18}  {:3}  {shape}",
            r.id,
            r.subset,
            r.subset.describe(),
            if r.seg { "yes" } else { "no" },
        );
    }
    for r in reports {
        for w in &r.warnings {
            println!("warning: {}: {w}", r.id);
        }
    }
    if problems.is_empty() {
        println!("no problems found");
    } else {
        println!("problems ({}):", problems.len());
        for p in problems {
            println!("{p}");
        }
    }
}

fn split(dir: PathBuf, out: PathBuf, seed: u64, ratios: [u32; 3], global: Global) -> Result<()> {
    let ds = discover(&dir)?;
    let ids = ds.labelled_ids();
    if ids.is_empty() {
        bail!(
            "no case in {} has a segmentation: nothing to split",
            ds.root.display()
        );
    }
    let left_out = ds.cases.len() - ids.len();
    let split = Split::random(&ids, seed, ratios)?;
    split.save(&out)?;
    if !global.quiet && left_out > 0 {
        eprintln!("note: {left_out} case(s) without a segmentation were left out");
    }
    println!(
        "train {}, validation {}, test {} cases (seed {seed}, ratios {}) written to {}",
        split.train.len(),
        split.validation.len(),
        split.test.len(),
        ratios.map(|r| r.to_string()).join(","),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_parse() {
        assert_eq!(parse_ratios("70,10,20"), Ok([70, 10, 20]));
        assert_eq!(parse_ratios(" 8, 1 ,1"), Ok([8, 1, 1]));
        assert!(parse_ratios("70,30").is_err());
        assert!(parse_ratios("0,0,0").is_err());
        assert!(parse_ratios("70,-1,31").is_err());
    }
}
