//! Inputs as users have them, end to end: NIfTI-2 images in and NIfTI-2 predictions out;
//! NaN/Inf voxels counted by `info`, read as 0 with one warning per file by `predict`,
//! `evaluate` and `train`, refused with `--strict-finite`; `evaluate` on a case that lacks
//! a modality.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use a2fseg::infer::evaluate::read_case_rows;
use a2fseg::modality::Modality;
use a2fseg::volume::{NiftiVersion, read_volume, write_float};

/// An affine whose entries need float64 (float32 would round them).
const AFFINE: [[f64; 4]; 3] = [
    [-0.9, 0.0, 0.0, 90.123456789],
    [0.0, 1.1, 0.0, -120.000000001],
    [0.0, 0.0, 2.5, -70.0],
];

/// A single-file NIfTI-2 float32 image written byte by byte here (independent of the
/// crate's writer): sform = `AFFINE` (code 1), no qform.
fn write_nifti2(path: &Path, dims: [usize; 3], values: &[f32]) {
    let mut h = vec![0u8; 544];
    let put = |h: &mut Vec<u8>, at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
    put(&mut h, 0, &540i32.to_le_bytes());
    put(&mut h, 4, b"n+2\0\r\n\x1a\n");
    put(&mut h, 12, &16i16.to_le_bytes());
    put(&mut h, 14, &32i16.to_le_bytes());
    let dim = [
        3,
        dims[0] as i64,
        dims[1] as i64,
        dims[2] as i64,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dim.iter().enumerate() {
        put(&mut h, 16 + 8 * i, &d.to_le_bytes());
    }
    let pixdim = [1.0, 0.9, 1.1, 2.5, 1.0, 1.0, 1.0, 1.0];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 104 + 8 * i, &f64::to_le_bytes(*p));
    }
    put(&mut h, 168, &544i64.to_le_bytes());
    put(&mut h, 176, &1.0f64.to_le_bytes());
    put(&mut h, 348, &1i32.to_le_bytes());
    for (r, row) in AFFINE.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 400 + 32 * r + 8 * c, &v.to_le_bytes());
        }
    }
    put(&mut h, 500, &10i32.to_le_bytes());
    for v in values {
        h.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, h).unwrap();
}

/// A 16³ head: zero outside a ball, brighter inside, a bright blob as "tumour".
fn head(dims: [usize; 3]) -> Vec<f32> {
    let mut v = Vec::new();
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let d = [x, y, z]
                    .iter()
                    .zip(dims)
                    .map(|(&p, n)| (p as f32 - n as f32 / 2.0).powi(2))
                    .sum::<f32>()
                    .sqrt();
                v.push(if d < 3.0 {
                    300.0
                } else if d < 6.5 {
                    100.0 + (x + y) as f32
                } else {
                    0.0
                });
            }
        }
    }
    v
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The lines of `stderr` that start with `prefix` and mention `needle`.
fn lines_with<'a>(stderr: &'a str, prefix: &str, needle: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(needle))
        .collect()
}

fn assert_one_line_error(code: i32, stderr: &str, words: &[&str]) {
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for w in words {
        assert!(stderr.contains(w), "{w:?} missing from {stderr}");
    }
}

#[test]
fn info_reads_nifti2_and_counts_non_finite_voxels() {
    let dir = common::tempdir();
    let dims = [4, 3, 2];
    let mut values: Vec<f32> = (0..24).map(|v| v as f32).collect();
    values[5] = f32::NAN;
    values[6] = f32::NEG_INFINITY;
    let p = dir.path().join("resampled.nii");
    write_nifti2(&p, dims, &values);
    let (code, stdout, stderr) = run(&["info", "--json", s(&p)]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["format"], "NIfTI-2");
    assert_eq!(v["non_finite"], 2);
    assert_eq!(v["shape"], serde_json::json!([4, 3, 2]));
    // float64 geometry survives: float32 would give 90.12345886230469.
    assert_eq!(v["affine"][0][3], 90.123456789);
    assert_eq!(v["affine"][1][3], -120.000000001);
    assert_eq!(
        (v["min"].as_f64(), v["max"].as_f64()),
        (Some(0.0), Some(23.0))
    );
    assert_eq!(v["sum"], (0..24).sum::<i32>() as f64 - 11.0);

    let (code, text, _) = run(&["info", s(&p)]);
    assert_eq!(code, 0);
    assert!(text.contains("format:   NIfTI-2"), "{text}");
    assert!(text.contains("non-finite: 2 voxel(s)"), "{text}");

    // A NIfTI-2 header that is cut short is a one-line error naming the file.
    let bytes = std::fs::read(&p).unwrap();
    let cut = dir.path().join("cut.nii");
    std::fs::write(&cut, &bytes[..300]).unwrap();
    let (code, _, stderr) = run(&["info", s(&cut)]);
    assert_one_line_error(code, &stderr, &["cut.nii", "truncated NIfTI-2 header"]);
}

#[test]
fn predict_writes_nifti2_for_nifti2_input_and_repairs_or_refuses_nan() {
    let dir = common::tempdir();
    let run_dir = common::tiny_run(dir.path(), "model", a2fseg::model::Fusion::Adaptive);
    let dims = [16, 16, 16];
    let mut flair = head(dims);
    // Resampling leaves NaN outside the field of view.
    for v in flair.iter_mut().take(40) {
        *v = f32::NAN;
    }
    let input = dir.path().join("case_flair.nii");
    write_nifti2(&input, dims, &flair);
    let predict = |modality: &str, input: &Path, out: &Path, extra: Option<&str>| {
        let mut args = vec![
            "predict",
            "--quiet",
            "--model",
            s(&run_dir),
            modality,
            s(input),
        ];
        args.extend(["--output", s(out)]);
        args.extend(extra);
        run(&args)
    };
    let out = dir.path().join("pred.nii.gz");
    let (code, _, stderr) = predict("--flair", &input, &out, None);
    assert_eq!(code, 0, "{stderr}");
    let warned = lines_with(&stderr, "warning: ", "case_flair.nii");
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].contains("40 NaN or infinite voxel(s) read as 0"),
        "{stderr}"
    );

    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(&raw[..4], &540i32.to_le_bytes());
    assert_eq!(&raw[4..8], b"n+2\0");
    let pred = read_volume(&out).unwrap();
    let src = a2fseg::volume::read_volume_with(&input, a2fseg::volume::NonFinite::Zero).unwrap();
    assert_eq!(pred.geometry.version(), NiftiVersion::Two);
    assert_eq!(pred.geometry, src.geometry);
    assert_eq!(pred.geometry.affine[0][3], 90.123456789);

    // --strict-finite: refused before anything is written.
    let strict_out = dir.path().join("strict.nii.gz");
    let (code, _, stderr) = predict("--flair", &input, &strict_out, Some("--strict-finite"));
    assert_one_line_error(code, &stderr, &["case_flair.nii", "40 voxel value(s)"]);
    assert!(!strict_out.exists());

    // A scan that was not skull-stripped (noise everywhere, no zero background) is
    // segmented, with a warning naming it.
    let raw = dir.path().join("raw_t1c.nii");
    let noise: Vec<f32> = (0..16 * 16 * 16).map(|i| 20.0 + (i % 11) as f32).collect();
    write_nifti2(&raw, dims, &noise);
    let (code, _, stderr) = predict("--t1c", &raw, &dir.path().join("raw_pred.nii"), None);
    assert_eq!(code, 0, "{stderr}");
    let warned = lines_with(&stderr, "warning: ", "raw_t1c.nii");
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0]
            .contains("does not look skull-stripped: 100% of the voxels on the volume's border"),
        "{stderr}"
    );
    assert!(
        lines_with(&stderr, "warning: ", "skull").len() == 1,
        "{stderr}"
    );
}

/// Two synthetic cases: 001 with NaN in the corner of its FLAIR and, beside its images, a
/// brain mask and a JSON sidecar (ignored); 002 without a T2.
fn messy_dataset(root: &Path) -> PathBuf {
    common::synthetic_brats(root, 2, [16, 16, 16]);
    let case = root.join("BraTS20_Training_001");
    std::fs::copy(
        case.join("BraTS20_Training_001_seg.nii.gz"),
        case.join("BraTS20_Training_001_brainmask.nii.gz"),
    )
    .unwrap();
    std::fs::write(case.join("BraTS20_Training_001_t1.json"), "{}").unwrap();
    let flair = root.join("BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz");
    let v = read_volume(&flair).unwrap();
    let mut g = v.channels[0].clone();
    g.set(0, 0, 0, f32::NAN);
    g.set(1, 0, 0, f32::INFINITY);
    g.set(2, 0, 0, f32::NAN);
    write_float(&flair, &v.geometry, &g).unwrap();
    std::fs::remove_file(root.join("BraTS20_Training_002/BraTS20_Training_002_t2.nii.gz")).unwrap();
    flair
}

#[test]
fn evaluate_scores_the_subsets_a_case_has_and_warns_once_per_file() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    let flair = messy_dataset(&data);
    let a = common::tiny_run(dir.path(), "a", a2fseg::model::Fusion::Adaptive);
    let b = common::tiny_run(dir.path(), "b", a2fseg::model::Fusion::Average);
    let eval = dir.path().join("eval");
    let (code, _, stderr) = run(&[
        "evaluate",
        "--quiet",
        "--model",
        s(&a),
        "--model",
        s(&b),
        "--data",
        s(&data),
        "--out",
        s(&eval),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Read for two models, warned once.
    let warned = lines_with(&stderr, "warning: ", "_flair.nii.gz");
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(warned[0].contains("3 NaN or infinite voxel(s)"), "{stderr}");
    let notes = lines_with(&stderr, "note: ", "BraTS20_Training_002");
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains("has no T2: scored 7 subset(s), skipped 8"),
        "{stderr}"
    );
    assert_ignored_files_noted_once(&stderr);
    let rows = read_case_rows(&eval.join("cases.csv")).unwrap();
    let count = |case: &str| rows.iter().filter(|r| r.case.ends_with(case)).count();
    assert_eq!(count("001"), 2 * 15);
    assert_eq!(count("002"), 2 * 7);
    assert!(
        rows.iter()
            .filter(|r| r.case.ends_with("002"))
            .all(|r| !r.subset.contains(Modality::T2))
    );

    let (code, _, stderr) = run(&[
        "evaluate",
        "--quiet",
        "--model",
        s(&a),
        "--data",
        s(&data),
        "--out",
        s(&dir.path().join("strict")),
        "--strict-finite",
    ]);
    let name = flair.file_name().unwrap().to_str().unwrap();
    assert_one_line_error(code, &stderr, &[name, "3 voxel value(s)"]);
}

const TINY: &str = r#"
preset = "small"
epochs = 1
iterations_per_epoch = 1
patch_size = [16, 16, 16]
validate_every = 0
workers = 1

[model]
poolings = 2
base_features = 4
max_features = 8
"#;

#[test]
fn train_reads_nan_as_zero_with_a_warning_or_refuses_when_strict() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    let flair = messy_dataset(&data);
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let split = dir.path().join("split.json");
    std::fs::write(
        &split,
        r#"{"train": ["BraTS20_Training_001", "BraTS20_Training_002"], "validation": [], "test": []}"#,
    )
    .unwrap();
    let name = flair.file_name().unwrap().to_str().unwrap();
    let base = |out: &Path| {
        vec![
            "train".to_string(),
            "--quiet".into(),
            "--data".into(),
            s(&data).into(),
            "--out".into(),
            s(out).into(),
            "--config".into(),
            s(&cfg).into(),
            "--split".into(),
            s(&split).into(),
        ]
    };
    let strict = dir.path().join("strict");
    let mut args = base(&strict);
    args.push("--strict-finite".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run(&args);
    assert_one_line_error(code, &stderr, &[name, "3 voxel value(s)"]);

    let args = base(&dir.path().join("run"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let warned = lines_with(&stderr, "warning: ", name);
    assert_eq!(warned.len(), 1, "{stderr}");
    assert_ignored_files_noted_once(&stderr);
}

/// The two files of case 001 that discovery ignores are each noted once on stderr.
fn assert_ignored_files_noted_once(stderr: &str) {
    let notes = lines_with(stderr, "note: case BraTS20_Training_001: ", "ignored ");
    assert_eq!(notes.len(), 2, "{stderr}");
    assert!(
        notes[0].contains("BraTS20_Training_001_brainmask.nii.gz (not a known modality"),
        "{stderr}"
    );
    assert!(
        notes[1].ends_with("1 file(s) that are not NIfTI images: BraTS20_Training_001_t1.json"),
        "{stderr}"
    );
}
