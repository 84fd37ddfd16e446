//! `a2fseg export onnx`: every exported subset graph, run in onnxruntime, must match
//! a2fseg's own forward pass (encode + decode) to 1e-4, for every fusion; bad input gives
//! one-line errors, and the files are written through a temporary file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use a2fseg::model::{A2fseg, Arch, Fusion, ModelConfig, Network, Preset, Targets, probabilities};
use a2fseg::{Modality, Subset};
use burn::tensor::{Distribution, Tensor};
use common::reference::{Named, saved_random_model, to_vec, write_tensors};

/// Runs each graph given as `BITS=PATH` (after the io file `sys.argv[1]`) in onnxruntime on
/// the inputs `input.{m}`, after `onnx.checker`'s full check, and prints the largest
/// difference from `logits.BITS` / `probabilities.BITS`, the number of outputs compared and
/// the largest |logit|.
const SCRIPT: &str = r#"
import sys
import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

io = load_file(sys.argv[1])
mods = ["t1", "t1c", "t2", "flair"]
worst, checked, scale = 0.0, 0, 0.0
for spec in sys.argv[2:]:
    bits, path = spec.split("=", 1)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17, model.opset_import
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == [m for m, b in zip(mods, bits) if b == "1"], (path, names)
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    for i in sess.get_inputs():
        assert i.shape == ["N", 1, "D", "H", "W"], (path, i.shape)
    got = sess.run(None, {m: io["input." + m] for m in names})
    for name, ours in zip(["logits", "probabilities"], got):
        ref = io[f"{name}.{bits}"]
        assert ours.shape == ref.shape, (path, name, ours.shape, ref.shape)
        worst = max(worst, float(np.abs(ours - ref).max()))
        checked += 1
    scale = max(scale, float(np.abs(io["logits." + bits]).max()))
print(worst, checked, scale)
"#;

/// The small preset (3 poolings, features 8-16-32-64) with `fusion`, on 16³ patches.
fn small(fusion: Fusion) -> ModelConfig {
    ModelConfig::of(Arch::A2fseg, Preset::Small)
        .with_fusion(fusion)
        .with_patch_size([16, 16, 16])
}

fn export(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(["--quiet", "export", "onnx"])
        .args(args)
        .output()
        .unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a one-line `error: …` on stderr with exit code 1; returns it.
fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Exports the seeded random model of `cfg` for `subsets` (all 15 with `--all-subsets` into
/// a folder when `all`, else one `--subset` file each), computes a2fseg's logits and
/// probabilities for each subset on one random input `[2, 1, 8, 16, 24]` (D ≠ H ≠ W; not the
/// patch size, so the graph's sizes are dynamic), and compares in onnxruntime.
fn check_case(cfg: ModelConfig, seed: u64, subsets: &[Subset], all: bool) {
    let (model, dir, device) = saved_random_model::<A2fseg>(&cfg, seed);
    let folder = dir.path().to_str().unwrap();
    let files: Vec<(Subset, PathBuf)> = if all {
        let out = dir.path().join("onnx");
        let o = export(&[
            "--model",
            folder,
            "--all-subsets",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_ok(&o);
        subsets
            .iter()
            .map(|s| (*s, out.join(format!("subset-{}.onnx", s.name()))))
            .collect()
    } else {
        subsets
            .iter()
            .map(|s| {
                let path = dir.path().join(format!("graph_{}.onnx", s.name()));
                let o = export(&[
                    "--model",
                    folder,
                    "--subset",
                    &s.name(),
                    "--out",
                    path.to_str().unwrap(),
                ]);
                assert_ok(&o);
                (*s, path)
            })
            .collect()
    };

    let mut io = Named::new();
    let mut encodings = Vec::new();
    for m in Modality::ALL {
        let x = Tensor::<5>::random([2, 1, 8, 16, 24], Distribution::Normal(0.0, 1.0), &device);
        io.insert(format!("input.{}", m.key()), to_vec(x.clone()));
        encodings.push((m, model.encode(m, x).unwrap()));
    }
    for s in subsets {
        let available: Vec<_> = encodings
            .iter()
            .filter(|(m, _)| s.contains(*m))
            .cloned()
            .collect();
        let logits = model.decode(&available).unwrap().logits;
        let probs = probabilities(&cfg, logits.clone());
        io.insert(format!("logits.{}", s.name()), to_vec(logits));
        io.insert(format!("probabilities.{}", s.name()), to_vec(probs));
    }
    let io_path = dir.path().join("io.safetensors");
    write_tensors(&io_path, &io);
    let specs: Vec<String> = files
        .iter()
        .map(|(s, p)| format!("{}={}", s.name(), p.display()))
        .collect();
    let mut args = vec![io_path.to_str().unwrap()];
    args.extend(specs.iter().map(String::as_str));
    let printed = common::run_python(SCRIPT, &args);
    let mut fields = printed.split_whitespace();
    let worst: f64 = fields.next().unwrap().parse().unwrap();
    let checked: usize = fields.next().unwrap().parse().unwrap();
    let scale: f64 = fields.next().unwrap().parse().unwrap();
    eprintln!(
        "fusion {}, targets {}: {checked} outputs of {} graphs, largest difference from \
         onnxruntime {worst:e} (largest |logit| {scale:.2})",
        cfg.fusion,
        cfg.targets,
        files.len()
    );
    assert_eq!(checked, 2 * subsets.len());
    assert!(worst < 1e-4, "largest difference from onnxruntime: {worst}");
    // Logits of order 1: a tolerance of 1e-4 is a real check, not a tiny output's.
    assert!(scale > 0.1, "largest |logit| {scale}");
}

fn subsets(names: &[&str]) -> Vec<Subset> {
    names.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn onnxruntime_matches_every_subset_of_adaptive_fusion() {
    if !common::python_has(&["numpy", "safetensors", "onnx", "onnxruntime"]) {
        return;
    }
    let all: Vec<Subset> = Subset::all_nonempty().collect();
    check_case(small(Fusion::Adaptive), 11, &all, true);
}

#[test]
fn onnxruntime_matches_average_and_hemis_fusion() {
    if !common::python_has(&["numpy", "safetensors", "onnx", "onnxruntime"]) {
        return;
    }
    let some = subsets(&["1000", "0101", "1011", "1111"]);
    check_case(small(Fusion::Average), 12, &some, false);
    check_case(small(Fusion::Hemis), 13, &some, false);
}

#[test]
fn onnxruntime_matches_channel_attention_and_classes() {
    if !common::python_has(&["numpy", "safetensors", "onnx", "onnxruntime"]) {
        return;
    }
    // One attention weight per channel, a 1×1×1 attention kernel, softmax over 4 classes.
    let cfg = small(Fusion::Adaptive)
        .with_attention_channels(8)
        .with_attention_kernel(1)
        .with_targets(Targets::Classes)
        .with_deep_supervision(false);
    check_case(cfg, 14, &subsets(&["0010", "0111"]), false);
}

/// A saved random small model; returns its folder.
fn saved_model(fusion: Fusion) -> tempfile::TempDir {
    saved_random_model::<A2fseg>(&small(fusion), 5).1
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn default_subset_and_name_pattern() {
    let dir = saved_model(Fusion::Hemis);
    let folder = dir.path().to_str().unwrap();
    // Without --subset the graph takes all four modalities; stdout names the file.
    let one = dir.path().join("all.onnx");
    let o = Command::new(common::bin())
        .args(["export", "onnx", "--model", folder, "--out"])
        .arg(&one)
        .output()
        .unwrap();
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("1111") && stdout.contains("all.onnx"),
        "{stdout}"
    );
    let bytes = std::fs::read(&one).unwrap();
    for m in ["t1", "t1c", "t2", "flair"] {
        let name = format!("msfe.{m}.encoder.0.convs.0.conv.weight");
        assert!(
            bytes.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name}"
        );
    }
    // `{subset}` in --out names the 15 files.
    let pattern = dir.path().join("out/a2f_{subset}.onnx");
    assert_ok(&export(&[
        "--model",
        folder,
        "--all-subsets",
        "--out",
        pattern.to_str().unwrap(),
    ]));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let expected: Vec<String> = Subset::all_nonempty()
        .map(|s| format!("a2f_{}.onnx", s.name()))
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn bad_model_subset_and_arch_are_one_line_errors() {
    let dir = saved_model(Fusion::Adaptive);
    let folder = dir.path().to_str().unwrap();
    let out = dir.path().join("x.onnx");
    let out_s = out.to_str().unwrap();

    let missing = dir.path().join("no_such_run");
    let err = one_line_error(&export(&[
        "--model",
        missing.to_str().unwrap(),
        "--out",
        out_s,
    ]));
    assert!(
        err.contains("no_such_run") && err.contains("does not exist"),
        "{err}"
    );

    let empty = common::tempdir();
    let err = one_line_error(&export(&[
        "--model",
        empty.path().to_str().unwrap(),
        "--out",
        out_s,
    ]));
    assert!(err.contains("neither a model folder"), "{err}");

    let err = one_line_error(&export(&[
        "--model", folder, "--subset", "t1,t5", "--out", out_s,
    ]));
    assert!(
        err.contains("--subset t1,t5") && err.contains("unknown modality 't5'"),
        "{err}"
    );
    let err = one_line_error(&export(&[
        "--model", folder, "--subset", "0000", "--out", out_s,
    ]));
    assert!(
        err.contains("0000") && err.contains("names no modality"),
        "{err}"
    );

    // Every other method: refused before any weights are read, naming the method.
    for arch in Arch::ALL.into_iter().filter(|a| *a != Arch::A2fseg) {
        let other = common::tempdir();
        ModelConfig::of(arch, Preset::Small)
            .save_json(&other.path().join("config.json"))
            .unwrap();
        let err = one_line_error(&export(&[
            "--model",
            other.path().to_str().unwrap(),
            "--out",
            out_s,
        ]));
        assert!(
            err.contains("export onnx supports a2fseg only")
                && err.contains(&format!("is a {} model", arch.name())),
            "{err}"
        );
        assert!(!out.exists());
    }

    // The model's own files are never an output.
    let weights = dir.path().join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let err = one_line_error(&export(&[
        "--model",
        folder,
        "--out",
        weights.to_str().unwrap(),
    ]));
    assert!(err.contains("refusing to write"), "{err}");
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    assert!(!out.exists());
}

#[test]
fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
    let dir = saved_model(Fusion::Average);
    let folder = dir.path().to_str().unwrap();
    let out = dir.path().join("graphs");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("m.onnx");
    std::fs::write(&target, b"previous").unwrap();
    let o = Command::new(common::bin())
        .args([
            "export", "onnx", "--model", folder, "--subset", "0110", "--out",
        ])
        .arg(&target)
        .env(a2fseg::fsutil::FAIL_WRITES_AFTER, "0")
        .output()
        .unwrap();
    let err = one_line_error(&o);
    assert!(err.contains("m.onnx"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));

    // Without the injected failure the file is replaced, again with nothing left behind.
    assert_ok(&export(&[
        "--model",
        folder,
        "--subset",
        "0110",
        "--out",
        target.to_str().unwrap(),
    ]));
    assert_ne!(std::fs::read(&target).unwrap(), b"previous");
    assert!(temp_files(&out).is_empty());
}
