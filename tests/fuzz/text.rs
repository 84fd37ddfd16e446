//! The text readers of the fuzzing suite: split files, training configurations
//! (`config.toml`, and the `train.toml` a checkpoint holds) and model configurations
//! (`config.json`), each seeded by the project's own writer plus hand-written variants.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use a2fseg::dataset::Split;
use a2fseg::infer::model_preprocess_settings;
use a2fseg::model::{ModelConfig, Preset};
use a2fseg::train::config::TrainConfig;

use super::mutate::{Rng, mutate_text};
use super::{budget, fail, take_largest};

/// Text readers may build a few structures per byte of input (maps, strings, error text).
fn text_budget(len: usize) -> usize {
    budget(32 * len)
}

/// How a reader's errors must read.
#[derive(Clone, Copy)]
enum Lines {
    /// The whole message on one line.
    One,
    /// The first line names the file (the `toml` crate's messages show the offending line
    /// under it; the CLI joins them on one line).
    First,
}

/// Runs `n` mutants of `seeds`, written to `path`, through `read` (which reads the file at
/// the given path and returns its error, if any), checking no panic, the allocation budget
/// and the message.
fn fuzz_text(
    path: &Path,
    seeds: &[String],
    n: usize,
    seed: u64,
    lines: Lines,
    read: impl Fn(&Path) -> Option<anyhow::Error>,
) {
    let file_name = path.file_name().unwrap().to_string_lossy();
    for s in seeds {
        fs::write(path, s).unwrap();
        if let Some(e) = read(path) {
            panic!("seed does not read: {e:#}\n{s}");
        }
    }
    let mut rng = Rng::new(seed);
    let mut refused = 0;
    for _ in 0..n {
        let mut bytes = rng.pick(seeds).clone().into_bytes();
        let donor = rng.pick(seeds).as_bytes();
        for _ in 0..1 + rng.below(3) {
            mutate_text(&mut rng, &mut bytes, donor);
        }
        fs::write(path, &bytes).unwrap();
        let files: Vec<(PathBuf, Vec<u8>)> = vec![(path.to_path_buf(), bytes.clone())];
        take_largest();
        let outcome = catch_unwind(AssertUnwindSafe(|| read(path)));
        let largest = take_largest();
        let Ok(error) = outcome else {
            fail(&files, format!("a reader of {file_name} panicked"));
        };
        if largest > text_budget(bytes.len()) {
            fail(
                &files,
                format!(
                    "reading {file_name} ({} bytes) allocated {largest} bytes",
                    bytes.len()
                ),
            );
        }
        let Some(e) = error else { continue };
        refused += 1;
        let msg = format!("{e:#}");
        let first = msg.lines().next().unwrap_or_default();
        let one_line = match lines {
            Lines::One => !msg.contains('\n'),
            Lines::First => true,
        };
        if !one_line || !first.contains(&path.display().to_string()) {
            fail(
                &files,
                format!("error is not one line naming {file_name}: {msg}"),
            );
        }
    }
    assert!(
        refused > n / 10 && refused < n,
        "{refused} of {n} mutants refused"
    );
}

#[test]
fn fuzz_split_files() {
    let ids: Vec<String> = (1..=12)
        .map(|i| format!("BraTS20_Training_{i:03}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("split.json");
    Split::random(&ids, 7, [70, 10, 20])
        .unwrap()
        .save(&written)
        .unwrap();
    let seeds = vec![
        fs::read_to_string(&written).unwrap(),
        r#"{"train": ["a", "b"], "val": ["c"], "test": []}"#.to_string(),
        r#"{"train": ["BraTS19_2013_0_1"]}"#.to_string(),
    ];
    fuzz_text(
        &dir.path().join("fuzzed.json"),
        &seeds,
        15_000,
        11,
        Lines::One,
        |p| Split::load(p).err(),
    );
}

#[test]
fn fuzz_training_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("config.toml");
    TrainConfig::preset(Preset::Small).save(&written).unwrap();
    let seeds = vec![
        fs::read_to_string(&written).unwrap(),
        "preset = \"small\"\nepochs = 1\niterations_per_epoch = 1\npatch_size = [8, 8, 8]\n\
         validate_every = 0\nworkers = 1\n[model]\npoolings = 1\nbase_features = 4\n"
            .to_string(),
        "[model]\narch = \"a2fseg\"\n[preprocess]\n".to_string(),
    ];
    // As `train --config` reads it: resolved against its preset. (The values are validated
    // afterwards, by `TrainConfig::validate`, whose errors name the setting, not the file.)
    fuzz_text(
        &dir.path().join("fuzzed.toml"),
        &seeds,
        8_000,
        12,
        Lines::First,
        |p| TrainConfig::load(p, None, None).err(),
    );
    // As `predict` reads a checkpoint's `train.toml`: its preprocessing table.
    let run = tempfile::tempdir().unwrap();
    fuzz_text(
        &run.path().join("train.toml"),
        &seeds,
        7_000,
        13,
        Lines::First,
        |p| model_preprocess_settings(p.parent().unwrap()).err(),
    );
}

#[test]
fn fuzz_model_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("config.json");
    ModelConfig::new().save_json(&written).unwrap();
    let seeds = vec![
        fs::read_to_string(&written).unwrap(),
        ModelConfig::of(a2fseg::model::Arch::A2fseg, Preset::Small).to_json(),
    ];
    fuzz_text(
        &dir.path().join("fuzzed.json"),
        &seeds,
        15_000,
        14,
        Lines::One,
        |p| ModelConfig::load_json(p).err(),
    );
}
