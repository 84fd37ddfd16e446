//! End-to-end test of `a2fseg demo` on tiny phantoms: every stage runs through the real
//! pipeline (phantoms, split, calibrated plan, training, evaluation of all 15 subsets,
//! figures, report), and a second run reuses the finished stages.

mod common;

use std::process::Command;

use serde_json::Value;

/// The demo at toy size: 5 cases of 32³ and 2 optimiser steps per epoch.
fn demo(out: &std::path::Path) -> std::process::Output {
    Command::new(common::bin())
        .args(["demo", "--out"])
        .arg(out)
        .args(common::TOY_DEMO)
        .output()
        .unwrap()
}

#[test]
fn demo_runs_every_stage_and_reuses_them() {
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    let first = demo(&out);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&first.stderr)
    );
    for stage in ["[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"] {
        assert!(stdout.contains(stage), "no {stage} line in:\n{stdout}");
    }
    assert!(
        stdout.contains("Mean Dice over the 15 evaluated subsets"),
        "{stdout}"
    );

    // summary.json: every subset and the mean, each with the three regions' Dice and HD95.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let obj = summary.as_object().unwrap();
    assert_eq!(obj.len(), 16, "15 subsets and the mean: {:?}", obj.keys());
    for bits in 1u8..=15 {
        let key: String = (0..4)
            .map(|i| if bits >> (3 - i) & 1 == 1 { '1' } else { '0' })
            .collect();
        let row = &obj[&key];
        for region in ["WT", "TC", "ET"] {
            let dice = row[region]["dice"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&dice), "{key} {region} dice {dice}");
            assert!(row[region]["hd95"].as_f64().unwrap() >= 0.0);
        }
    }

    // The report and its figures.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Table 1"), "{md}");
    assert!(md.contains("Table 2"));
    // The post-processing decided at the end of training, as the report states it.
    let split: Value =
        serde_json::from_slice(&std::fs::read(out.join("split/split.json")).unwrap()).unwrap();
    let validation = split["validation"].as_array().unwrap().len();
    assert!(validation >= 1, "{split}");
    let decision: Value = serde_json::from_slice(
        &std::fs::read(out.join("train-adaptive/checkpoints/best/postprocess.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        decision["predictions"].as_u64(),
        Some(15 * validation as u64)
    );
    assert!(md.contains("Post-processing"), "{md}");
    assert!(md.contains("mean validation Dice over"), "{md}");
    // The default evaluation mirrors left-right.
    assert!(
        md.contains("test-time mirroring over x (2 passes per window)"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "the HTML embeds its figures"
    );
    for fig in [
        "dice.png",
        "panel.png",
        "attention.png",
        "curves-adaptive.png",
    ] {
        let img = image::open(out.join("figures").join(fig)).unwrap();
        assert!(
            img.width() > 100 && img.height() > 100,
            "{fig} is too small"
        );
    }
    let log = std::fs::read_to_string(out.join("train-adaptive/log.csv")).unwrap();
    assert!(
        log.lines().count() >= 3,
        "at least two epochs trained:\n{log}"
    );

    // A second run reuses every stage: no retraining, same numbers.
    let before = std::fs::read(out.join("summary.json")).unwrap();
    let modified = std::fs::metadata(out.join("train-adaptive/log.csv"))
        .unwrap()
        .modified()
        .unwrap();
    let second = demo(&out);
    assert!(second.status.success());
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), before);
    assert_eq!(
        std::fs::metadata(out.join("train-adaptive/log.csv"))
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the finished training was redone"
    );
}

/// What `demo --arch ARCH` at toy size wrote: its training configuration and log header, its
/// report.md; asserts that it succeeded and that its summary holds the 15 subsets and the
/// mean (16 rows).
struct ArchDemo {
    _tmp: tempfile::TempDir,
    out: std::path::PathBuf,
    config: String,
    log_header: String,
    md: String,
}

fn demo_arch(arch: &str) -> ArchDemo {
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    let o = Command::new(common::bin())
        .args(["demo", "--arch", arch, "--out"])
        .arg(&out)
        .args(common::TOY_DEMO)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let config = read(&format!("train-{arch}/config.toml"));
    let log_header = read(&format!("train-{arch}/log.csv"))
        .lines()
        .next()
        .unwrap()
        .to_string();
    let summary: Value = serde_json::from_str(&read("summary.json")).unwrap();
    assert_eq!(summary.as_object().unwrap().len(), 16);
    let md = read("report.md");
    ArchDemo {
        _tmp: tmp,
        out,
        config,
        log_header,
        md,
    }
}

#[test]
fn demo_arch_trains_another_method_alone() {
    let d = demo_arch("uhved");
    // One model, U-HVED with its own recipe: its `size` draw, its KL and reconstruction
    // loss terms in the training log.
    assert!(!d.out.join("train-adaptive").exists() && !d.out.join("train-average").exists());
    assert!(d.config.contains("arch = \"uhved\""), "{}", d.config);
    assert!(
        d.config.contains("modality_dropout = \"size\""),
        "{}",
        d.config
    );
    assert!(d.log_header.contains("loss_kl"), "{}", d.log_header);
    assert!(d.md.starts_with("# U-HVED demo"), "{}", d.md);
    assert!(d.md.contains("U-HVED, preset small"), "{}", d.md);
    assert!(!d.md.contains("Only the adaptive-fusion model"), "{}", d.md);
}

/// `demo --arch mfi`: MFI alone with its own recipe (per-sample Bernoulli draws, its
/// per-output loss terms).
#[test]
fn demo_arch_trains_mfi() {
    let d = demo_arch("mfi");
    assert!(d.config.contains("arch = \"mfi\""), "{}", d.config);
    assert!(
        d.config.contains("modality_dropout = \"bernoulli\""),
        "{}",
        d.config
    );
    assert!(
        d.config.contains("subset_draw = \"sample\""),
        "{}",
        d.config
    );
    assert!(d.log_header.contains("loss_fused"), "{}", d.log_header);
    assert!(d.md.starts_with("# MFI demo"), "{}", d.md);
}

#[test]
fn demo_rejects_bad_options() {
    let tmp = common::tempdir();
    let out = Command::new(common::bin())
        .args(["demo", "--cases", "2", "--out"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cases"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    // --arch names a method; with --methods it has no meaning.
    let out = Command::new(common::bin())
        .args(["demo", "--arch", "unet", "--out"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--arch") && err.contains("uhved"), "{err}");
    let out = Command::new(common::bin())
        .args(["demo", "--arch", "uhved", "--methods", "a2fseg", "--out"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--methods"));
}

/// mmFormer through the demo: its own recipe (a uniform subset per sample), its three loss
/// terms, Table 1 over the 15 subsets.
#[test]
fn demo_arch_trains_mmformer() {
    let d = demo_arch("mmformer");
    assert!(d.config.contains("arch = \"mmformer\""), "{}", d.config);
    assert!(
        d.config.contains("modality_dropout = \"uniform\""),
        "{}",
        d.config
    );
    assert!(
        d.config.contains("subset_draw = \"sample\""),
        "{}",
        d.config
    );
    for term in ["loss_fused", "loss_auxiliary", "loss_deep_supervision"] {
        assert!(d.log_header.contains(term), "{}", d.log_header);
    }
    assert!(d.md.starts_with("# mmFormer demo"), "{}", d.md);
}

/// RFNet through the demo: its own recipe (a uniform subset per sample, Adam with AMSGrad),
/// its three loss terms (the fused output, the auxiliary decoder, the region maps), Table 1
/// over the 15 subsets.
#[test]
fn demo_arch_trains_rfnet() {
    let d = demo_arch("rfnet");
    assert!(d.config.contains("arch = \"rfnet\""), "{}", d.config);
    assert!(
        d.config.contains("modality_dropout = \"uniform\""),
        "{}",
        d.config
    );
    assert!(d.config.contains("amsgrad = true"), "{}", d.config);
    for term in ["loss_fused", "loss_auxiliary", "loss_region_maps"] {
        assert!(d.log_header.contains(term), "{}", d.log_header);
    }
    assert!(d.md.starts_with("# RFNet demo"), "{}", d.md);
}
