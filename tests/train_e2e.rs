//! End-to-end training on tiny phantoms through the library: the loss goes down, runs are
//! reproducible, and a stopped-and-resumed run equals an uninterrupted one bit for bit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use a2fseg::train::augment::AugmentConfig;
use a2fseg::train::log::{LogRow, read_csv};
use a2fseg::train::{ModalityDropout, TrainConfig, TrainOptions, train};

/// A tiny network and short epochs: seconds per run.
const TINY: &str = r#"
preset = "small"
epochs = 3
iterations_per_epoch = 2
patch_size = [16, 16, 16]
validate_every = 1
workers = 2
seed = 7

[model]
poolings = 2
base_features = 4
max_features = 8
"#;

/// Writes `n` tiny synthetic BraTS 2020 cases of `dims` into `dir`: a bright ellipsoidal
/// "brain" with a tumour (edema shell, necrotic core, enhancing rim) whose contrast differs
/// per modality, so a network can learn it from any modality.
fn synthetic_brats(dir: &Path, n: usize, dims: [usize; 3]) {
    use a2fseg::volume::{Geometry, Grid, write_float, write_labels};
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let geometry = Geometry::from_affine(dims, affine);
    for case in 0..n {
        let id = format!("BraTS20_Training_{:03}", case + 1);
        let case_dir = dir.join(&id);
        std::fs::create_dir_all(&case_dir).unwrap();
        let c = [
            dims[0] as f64 / 2.0 + (case % 3) as f64 - 1.0,
            dims[1] as f64 / 2.0 - (case % 2) as f64,
            dims[2] as f64 / 2.0,
        ];
        let r_tumour = 3.0 + (case % 2) as f64;
        let mut labels = Grid::<u8>::zeros(dims);
        let mut brain = Grid::<f32>::zeros(dims);
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    let p = [x as f64, y as f64, z as f64];
                    let rb: f64 = (0..3)
                        .map(|a| ((p[a] - dims[a] as f64 / 2.0) / (dims[a] as f64 * 0.45)).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if rb < 1.0 {
                        brain.set(x, y, z, 1.0);
                    }
                    let rt = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>().sqrt();
                    let label = if rt < r_tumour * 0.4 {
                        1
                    } else if rt < r_tumour * 0.7 {
                        4
                    } else if rt < r_tumour * 1.3 {
                        2
                    } else {
                        0
                    };
                    if rb < 1.0 {
                        labels.set(x, y, z, label);
                    }
                }
            }
        }
        // Per modality: intensity of background brain, NCR, ET, edema.
        let contrast = [
            ("t1", [1.0, 0.6, 1.2, 0.8]),
            ("t1ce", [1.0, 0.5, 2.5, 0.9]),
            ("t2", [1.0, 1.8, 1.4, 2.0]),
            ("flair", [1.0, 1.5, 1.3, 2.2]),
        ];
        for (suffix, k) in contrast {
            let mut img = Grid::<f32>::zeros(dims);
            for (i, v) in img.data_mut().iter_mut().enumerate() {
                if brain.data()[i] > 0.0 {
                    let base = match labels.data()[i] {
                        1 => k[1],
                        4 => k[2],
                        2 => k[3],
                        _ => k[0],
                    };
                    *v = (100.0 * base + ((i * 37 + case * 11) % 13) as f64) as f32;
                }
            }
            write_float(
                &case_dir.join(format!("{id}_{suffix}.nii.gz")),
                &geometry,
                &img,
            )
            .unwrap();
        }
        write_labels(
            &case_dir.join(format!("{id}_seg.nii.gz")),
            &geometry,
            &labels,
        )
        .unwrap();
    }
}

fn phantoms(dir: &Path, n: usize) {
    synthetic_brats(dir, n, [24, 24, 24]);
}

fn tiny() -> TrainConfig {
    TrainConfig::resolve(None, Some(TINY), "test config").unwrap()
}

fn quiet(data: &Path, out: &Path, cfg: TrainConfig) -> TrainOptions {
    TrainOptions {
        quiet: true,
        cache: Some(data.with_extension("cache")),
        ..TrainOptions::new(data, out, cfg)
    }
}

/// Every tensor of `run`'s latest weights, by name (the file's byte layout may vary).
fn weights(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(run.join("checkpoints/latest/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// Rows without the wall-clock column.
fn numbers(rows: &[LogRow]) -> Vec<LogRow> {
    rows.iter()
        .cloned()
        .map(|mut r| {
            r.seconds = 0.0;
            r
        })
        .collect()
}

#[test]
fn loss_goes_down_and_the_run_dir_is_complete() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    phantoms(&data, 4);
    let mut cfg = tiny();
    cfg.epochs = 6;
    cfg.iterations_per_epoch = 3;
    cfg.modality_dropout = ModalityDropout::Full;
    cfg.validate_every = 3;
    cfg.foreground_fraction = 1.0;
    cfg.augmentation = AugmentConfig::none();
    let out = tmp.path().join("run");
    let outcome = train(&quiet(&data, &out, cfg)).unwrap();
    assert_eq!(outcome.epochs_completed, 6);
    assert!(!outcome.interrupted);
    let rows = read_csv(&out.join("log.csv")).unwrap();
    assert_eq!(rows.len(), 6);
    let first = rows[0].loss_total;
    let last = rows[5].loss_total;
    assert!(last < first, "loss did not decrease: {first} -> {last}");
    assert!(rows[0].val_dice_wt.is_none() && rows[2].val_dice_wt.is_some());
    for name in ["config.toml", "split.json", "progress.png"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for ck in ["latest", "best"] {
        let dir = out.join("checkpoints").join(ck);
        for f in [
            "config.json",
            "model.safetensors",
            "optimizer.bpk",
            "state.json",
            "train.toml",
        ] {
            assert!(dir.join(f).is_file(), "{ck}/{f} missing");
        }
        // A checkpoint is a model folder.
        a2fseg::model::load_model(&dir, &burn::tensor::Device::flex()).unwrap();
    }
    // The resolved configuration is written and reads back to the same settings.
    let saved = TrainConfig::load(&out.join("config.toml"), None).unwrap();
    assert_eq!(saved.epochs, 6);
    assert_eq!(saved.model.base_features, 4);
}

#[test]
fn same_seed_same_numbers_and_resume_equals_uninterrupted() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    phantoms(&data, 4);
    let cfg = tiny();

    let a = tmp.path().join("a");
    train(&quiet(&data, &a, cfg.clone())).unwrap();
    let b = tmp.path().join("b");
    train(&quiet(&data, &b, cfg.clone())).unwrap();
    let rows_a = read_csv(&a.join("log.csv")).unwrap();
    assert_eq!(rows_a.len(), 3);
    assert_eq!(
        numbers(&rows_a),
        numbers(&read_csv(&b.join("log.csv")).unwrap())
    );
    assert!(weights(&a) == weights(&b), "same seed, different weights");

    // Stopped mid-epoch (after 3 of 2+2+2 steps), then resumed.
    let c = tmp.path().join("c");
    let stopped = train(&TrainOptions {
        stop_after_steps: Some(3),
        ..quiet(&data, &c, cfg.clone())
    })
    .unwrap();
    assert!(stopped.interrupted);
    assert_eq!((stopped.epochs_completed, stopped.steps), (1, 3));
    // Resuming a finished-or-not run without --resume is refused.
    assert!(train(&quiet(&data, &c, cfg.clone())).is_err());
    let resumed = train(&TrainOptions {
        resume: true,
        ..quiet(&data, &c, cfg.clone())
    })
    .unwrap();
    assert_eq!((resumed.epochs_completed, resumed.steps), (3, 6));
    assert!(
        weights(&a) == weights(&c),
        "resumed weights differ from uninterrupted ones"
    );
    assert_eq!(
        numbers(&rows_a),
        numbers(&read_csv(&c.join("log.csv")).unwrap())
    );

    // Stopped at an epoch boundary (2 + 1 epochs).
    let d = tmp.path().join("d");
    let stopped = train(&TrainOptions {
        stop_after_steps: Some(4),
        ..quiet(&data, &d, cfg.clone())
    })
    .unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stopped.epochs_completed, 2);
    train(&TrainOptions {
        resume: true,
        ..quiet(&data, &d, cfg)
    })
    .unwrap();
    assert!(weights(&a) == weights(&d), "2 + 1 epochs differ from 3");
}
