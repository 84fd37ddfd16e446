//! Inference plans: how the network's passes cover a cropped case.
//!
//! - [`Plan::Sliding`]: windows of the training patch every `step × patch`, blended with the
//!   Gaussian importance map (nnU-Net's procedure, [`super::window`]).
//! - [`Plan::Whole`]: one pass over the whole crop box, zero-padded up to a multiple of the
//!   network's size divisor `2^poolings` per axis ([`whole_window`]); a single window needs
//!   no blending. The instance normalisations then see the whole box instead of a patch, so
//!   the outputs differ slightly from the sliding window's (README: "Inference plans").
//! - [`WindowChoice::Auto`]: of the plans whose estimated memory ([`PlanCost::bytes`]) fits
//!   under a cap, the one with the fewest convolution multiply-accumulates.
//!
//! Costs come from the network's description ([`crate::model::Network::describe`]) at the
//! window size: MACs per pass times passes; memory from the sizes of the layers' outputs
//! (see [`activation_floats`]).

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::window::SlidingWindow;
use crate::model::summary::LayerInfo;
use crate::model::{ModelConfig, ModelSummary, Network};

/// The plan a user asks for (`--window`). The default is the sliding window: on the demo's
/// small model the whole-volume pass was about 3× faster but 3.9 points of mean Dice worse
/// (README: "Inference plans").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowChoice {
    /// The cheaper of the plans that fit under the memory cap.
    Auto,
    /// Always the sliding window.
    #[default]
    Sliding,
    /// Always one pass over the whole crop box (whatever the memory cap).
    Whole,
}

impl fmt::Display for WindowChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowChoice::Auto => "auto",
            WindowChoice::Sliding => "sliding",
            WindowChoice::Whole => "whole",
        })
    }
}

impl FromStr for WindowChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(WindowChoice::Auto),
            "sliding" => Ok(WindowChoice::Sliding),
            "whole" => Ok(WindowChoice::Whole),
            other => Err(format!(
                "invalid --window '{other}' (expected auto, sliding or whole)"
            )),
        }
    }
}

/// A concrete plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Gaussian-blended windows of the training patch.
    Sliding,
    /// One pass over the padded crop box.
    Whole,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Plan::Sliding => "sliding",
            Plan::Whole => "whole",
        })
    }
}

/// A plan for one case and what it is estimated to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanCost {
    /// The plan.
    pub plan: Plan,
    /// The window `[x, y, z]` of every pass (the patch, or the padded crop box).
    pub window: [usize; 3],
    /// Network passes (windows × test-time mirrorings).
    pub passes: usize,
    /// Convolution multiply-accumulates of all passes.
    pub macs: u64,
    /// Estimated peak memory in bytes: weights, one pass's activations, and the case's
    /// blending buffers.
    pub bytes: u64,
}

impl PlanCost {
    /// One line for the log, e.g. `whole: 1 pass of 64×64×48, 3.1 GMAC, ≈ 0.21 GiB`.
    pub fn describe(&self) -> String {
        let [x, y, z] = self.window;
        format!(
            "{}: {} pass{} of {x}×{y}×{z}, {:.1} GMAC, ≈ {:.2} GiB",
            self.plan,
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            self.macs as f64 / 1e9,
            self.bytes as f64 / GIB
        )
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The whole plan's window for a crop box of `dims`: each axis rounded up to a multiple of
/// the network's size divisor `2^poolings` (at least one divisor).
pub fn whole_window(dims: [usize; 3], config: &ModelConfig) -> [usize; 3] {
    let d = config.size_divisor();
    dims.map(|s| s.max(1).div_ceil(d) * d)
}

/// Floats alive at the peak of one inference pass with `modalities` inputs, from the
/// description `summary` (made at the window size). Intermediate tensors are freed once
/// used (no autodiff graph), so the peak is about: one skip connection per resolution (the
/// largest per-modality output at each size), four times the largest layer output (at the
/// full-resolution decoder block: the upsampled features, their concatenation with the skip
/// at twice the channels, and the block's output), and the full-resolution features each
/// modality's encoding keeps until the fusion.
pub fn activation_floats(summary: &ModelSummary, modalities: usize) -> u64 {
    let elements = |l: &LayerInfo| {
        l.out_channels as u64 * l.output_size.iter().map(|&s| s as u64).product::<u64>()
    };
    let voxels = |l: &LayerInfo| l.output_size.iter().map(|&s| s as u64).product::<u64>();
    let per_modality: Vec<_> = summary
        .layers
        .iter()
        .filter(|l| l.name.contains("{m}"))
        .collect();
    let mut sizes: Vec<u64> = per_modality.iter().map(|l| voxels(l)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let largest_at = |v: u64| {
        per_modality
            .iter()
            .filter(|l| voxels(l) == v)
            .map(|l| elements(l))
            .max()
            .unwrap_or(0)
    };
    let skips: u64 = sizes.iter().map(|&v| largest_at(v)).sum();
    let full = sizes.last().map_or(0, |&v| largest_at(v));
    let largest = summary.layers.iter().map(elements).max().unwrap_or(0);
    skips + 4 * largest + modalities as u64 * full
}

/// The cost of `plan` on a crop box of `dims` with `modalities` inputs and `channels` blended
/// output channels, for the network of `config` (described by its method's
/// [`crate::model::Network::describe`]) and the sliding window `sliding`.
pub fn plan_cost(
    plan: Plan,
    dims: [usize; 3],
    modalities: usize,
    channels: usize,
    config: &ModelConfig,
    sliding: &SlidingWindow,
) -> PlanCost {
    let (window, windows) = match plan {
        Plan::Sliding => (sliding.patch, sliding.windows(dims).len()),
        Plan::Whole => (whole_window(dims, config), 1),
    };
    let passes = windows * sliding.tta.flips().len();
    let at_window = config.clone().with_patch_size(window);
    let summary = crate::with_network!(config.arch, N => N::describe(&at_window));
    let n = modalities.clamp(1, summary.macs_by_modalities.len().max(1));
    let macs_per_pass = summary.macs_by_modalities.get(n - 1).map_or(0, |m| m.macs);
    let window_voxels: u64 = window.iter().map(|&s| s as u64).product();
    let case_voxels: u64 = dims.iter().map(|&s| s as u64).product();
    // The case's inputs, accumulators and weight map, plus one window's inputs and outputs.
    let buffers = (modalities + channels + 1) as u64 * case_voxels
        + (modalities + channels) as u64 * window_voxels;
    let floats = summary.parameters_total as u64 + activation_floats(&summary, n) + buffers;
    PlanCost {
        plan,
        window,
        passes,
        macs: passes as u64 * macs_per_pass,
        bytes: 4 * floats,
    }
}

/// The plan to run for `choice`: sliding or whole as asked; for auto, the candidate with
/// the fewest MACs among those whose memory fits under `max_memory` bytes (the smallest in
/// memory when none fits). `costs` holds the sliding and whole candidates.
pub fn choose(choice: WindowChoice, costs: [PlanCost; 2], max_memory: u64) -> PlanCost {
    let [sliding, whole] = costs;
    match choice {
        WindowChoice::Sliding => sliding,
        WindowChoice::Whole => whole,
        WindowChoice::Auto => {
            let fitting = costs.iter().filter(|c| c.bytes <= max_memory);
            match fitting.min_by_key(|c| c.macs) {
                Some(c) => *c,
                None => *costs
                    .iter()
                    .min_by_key(|c| c.bytes)
                    .expect("two candidates"),
            }
        }
    }
}

/// Parses a memory size: bytes, or a number with a suffix K, M, G or T (powers of 1024,
/// optionally followed by `B` or `iB`, any case), e.g. `4G`, `512MiB`, `1.5g`.
pub fn parse_memory_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let value: f64 = match number.trim().parse() {
        Ok(v) => v,
        Err(_) => bail!("bad --max-memory '{t}' (expected a size such as 4G, 512M or 1.5G)"),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        bail!("bad --max-memory '{t}': the size must be at least one byte");
    }
    Ok(bytes as u64)
}

/// The default memory cap of the auto plan: half of the physical memory (the rest for the
/// system, the case's volumes and other programs); 8 GiB where it cannot be read.
pub fn default_max_memory() -> u64 {
    match physical_memory() {
        Some(total) if total > 0 => total / 2,
        _ => 8 << 30,
    }
}

/// The physical memory in bytes (pages × page size).
#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration values.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

/// The physical memory in bytes (unknown on this platform).
#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::Tta;
    use crate::model::Preset;

    #[test]
    fn whole_window_pads_to_the_divisor() {
        let cfg = ModelConfig::preset("paper").unwrap();
        assert_eq!(cfg.size_divisor(), 32);
        assert_eq!(whole_window([136, 175, 140], &cfg), [160, 192, 160]);
        assert_eq!(whole_window([128, 1, 0], &cfg), [128, 32, 32]);
    }

    #[test]
    fn auto_picks_whole_under_a_large_cap_and_sliding_under_a_tiny_one() {
        let cfg = ModelConfig::preset("paper").unwrap();
        let sw = SlidingWindow::new(cfg.patch_size, 0.5, Tta::OFF).unwrap();
        let dims = [136, 175, 140];
        let costs = [Plan::Sliding, Plan::Whole].map(|p| plan_cost(p, dims, 4, 3, &cfg, &sw));
        let [sliding, whole] = costs;
        assert_eq!(sliding.passes, 8);
        assert_eq!(whole.passes, 1);
        // 160·192·160 voxels once against 8 windows of 128³.
        let ratio = sliding.macs as f64 / whole.macs as f64;
        assert!((ratio - 8.0 * 128f64.powi(3) / (160.0 * 192.0 * 160.0)).abs() < 0.05);
        assert!(whole.bytes > sliding.bytes);
        assert_eq!(choose(WindowChoice::Auto, costs, 1 << 40).plan, Plan::Whole);
        assert_eq!(
            choose(WindowChoice::Auto, costs, 1 << 20).plan,
            Plan::Sliding
        );
        // Between the two: sliding fits, whole does not.
        let between = (sliding.bytes + whole.bytes) / 2;
        assert_eq!(
            choose(WindowChoice::Auto, costs, between).plan,
            Plan::Sliding
        );
        // An explicit choice ignores the cap.
        assert_eq!(choose(WindowChoice::Whole, costs, 1).plan, Plan::Whole);
        assert_eq!(
            choose(WindowChoice::Sliding, costs, 1 << 40).plan,
            Plan::Sliding
        );
    }

    #[test]
    fn the_memory_estimate_is_near_the_measured_peak() {
        // Measured (issue 21): a 128³ case, 4 modalities, paper preset peaked at 3.4 GB.
        let cfg = ModelConfig::of(crate::model::Arch::A2fseg, Preset::Paper);
        let sw = SlidingWindow::new(cfg.patch_size, 0.5, Tta::OFF).unwrap();
        let c = plan_cost(Plan::Sliding, [128; 3], 4, 3, &cfg, &sw);
        let gb = c.bytes as f64 / 1e9;
        assert!((2.5..4.5).contains(&gb), "{gb} GB");
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_memory_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_memory_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory_size("2048").unwrap(), 2048);
        assert_eq!(parse_memory_size("1kb").unwrap(), 1024);
        for bad in ["", "G", "-1G", "4X", "0", "four", "nan"] {
            let e = parse_memory_size(bad).unwrap_err().to_string();
            assert!(e.contains("--max-memory"), "{bad}: {e}");
        }
        assert!(default_max_memory() > 0);
    }

    #[test]
    fn window_choices_parse_and_print() {
        for c in [
            WindowChoice::Auto,
            WindowChoice::Sliding,
            WindowChoice::Whole,
        ] {
            assert_eq!(c.to_string().parse::<WindowChoice>().unwrap(), c);
        }
        assert!(
            "tiles"
                .parse::<WindowChoice>()
                .unwrap_err()
                .contains("--window")
        );
    }
}
