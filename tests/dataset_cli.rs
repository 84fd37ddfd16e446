//! End-to-end tests of `a2fseg dataset check`, `dataset split` and `dataset stats` on tiny
//! fake datasets of every layout (and on phantoms), written with a minimal NIfTI-1 writer below (independent of
//! the crate's own writer, so a writer bug cannot hide a reader bug).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;

/// A NIfTI-1 single-file image: float32 or uint8 voxels, 3D or 4D, sform = diagonal
/// spacing 1 with `offset` as translation.
struct Nii {
    dims: Vec<usize>,
    uint8: bool,
    offset: f32,
    values: Vec<f32>,
}

impl Nii {
    fn float(dims: &[usize], values: Vec<f32>) -> Nii {
        assert_eq!(values.len(), dims.iter().product::<usize>());
        Nii {
            dims: dims.to_vec(),
            uint8: false,
            offset: 0.0,
            values,
        }
    }

    fn labels(dims: &[usize], values: Vec<u8>) -> Nii {
        Nii {
            uint8: true,
            ..Nii::float(dims, values.into_iter().map(f32::from).collect())
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        let put_i16 =
            |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put_f32 =
            |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        put_i16(&mut h, 40, self.dims.len() as i16);
        for (i, &d) in self.dims.iter().enumerate() {
            put_i16(&mut h, 42 + 2 * i, d as i16);
        }
        for i in self.dims.len()..7 {
            put_i16(&mut h, 42 + 2 * i, 1);
        }
        let (datatype, bitpix) = if self.uint8 { (2, 8) } else { (16, 32) };
        put_i16(&mut h, 70, datatype);
        put_i16(&mut h, 72, bitpix);
        for i in 0..8 {
            put_f32(&mut h, 76 + 4 * i, 1.0);
        }
        put_f32(&mut h, 108, 352.0);
        put_f32(&mut h, 112, 1.0);
        h[123] = 10;
        put_i16(&mut h, 252, 0);
        put_i16(&mut h, 254, 1);
        for row in 0..3 {
            for col in 0..4 {
                let v = if col == row {
                    1.0
                } else if col == 3 {
                    self.offset
                } else {
                    0.0
                };
                put_f32(&mut h, 280 + 16 * row + 4 * col, v);
            }
        }
        h[344..348].copy_from_slice(b"n+1\0");
        for &v in &self.values {
            if self.uint8 {
                h.push(v as u8);
            } else {
                h.extend_from_slice(&v.to_le_bytes());
            }
        }
        h
    }

    fn write(&self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = self.bytes();
        if path.to_string_lossy().ends_with(".gz") {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(&bytes).unwrap();
            std::fs::write(path, e.finish().unwrap()).unwrap();
        } else {
            std::fs::write(path, bytes).unwrap();
        }
    }
}

const DIMS: [usize; 3] = [6, 5, 4];

/// A brain-like image: zero border, positive inside, varying with `seed`.
fn image(seed: f32) -> Vec<f32> {
    let mut v = Vec::new();
    for z in 0..DIMS[2] {
        for y in 0..DIMS[1] {
            for x in 0..DIMS[0] {
                let inside = (1..5).contains(&x) && (1..4).contains(&y) && (1..3).contains(&z);
                v.push(if inside {
                    10.0 + seed + (x + 2 * y + 3 * z) as f32
                } else {
                    0.0
                });
            }
        }
    }
    v
}

/// A seg using `labels` (background, NCR, ED, ET) on a few voxels.
fn seg(labels: [u8; 4]) -> Vec<u8> {
    let mut v = vec![labels[0]; DIMS.iter().product()];
    v[DIMS[0] + 1 + DIMS[0] * DIMS[1]] = labels[1];
    v[DIMS[0] + 2 + DIMS[0] * DIMS[1]] = labels[2];
    v[DIMS[0] + 3 + DIMS[0] * DIMS[1]] = labels[3];
    v
}

fn brats2020(root: &Path, ids: &[&str], ext: &str) {
    for id in ids {
        for (i, m) in ["t1", "t1ce", "t2", "flair"].iter().enumerate() {
            Nii::float(&DIMS, image(i as f32)).write(&root.join(format!("{id}/{id}_{m}{ext}")));
        }
        Nii::labels(&DIMS, seg([0, 1, 2, 4])).write(&root.join(format!("{id}/{id}_seg{ext}")));
    }
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_json(dir: &Path) -> (bool, serde_json::Value, String) {
    let (ok, stdout, stderr) = run(&["dataset", "check", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (ok, v, stderr)
}

#[test]
fn check_good_brats2020_with_case_355_and_missing_files() {
    let tmp = common::tempdir();
    let root = tmp.path();
    brats2020(
        root,
        &["BraTS20_Training_001", "BraTS20_Training_002"],
        ".nii.gz",
    );
    // Case 355: plain .nii files and the odd seg name.
    let id = "BraTS20_Training_355";
    for m in ["t1", "t1ce", "t2", "flair"] {
        Nii::float(&DIMS, image(1.0)).write(&root.join(format!("{id}/{id}_{m}.nii")));
    }
    Nii::labels(&DIMS, seg([0, 1, 2, 4]))
        .write(&root.join(format!("{id}/W39_1998.09.19_Segm.nii")));
    // An inference-only case with two modalities.
    let id = "BraTS20_Validation_001";
    Nii::float(&DIMS, image(0.0)).write(&root.join(format!("{id}/{id}_t1ce.nii.gz")));
    Nii::float(&DIMS, image(0.0)).write(&root.join(format!("{id}/{id}_flair.nii.gz")));

    let (ok, v, stderr) = check_json(root);
    assert!(ok, "{v} {stderr}");
    assert_eq!(v["layout"], "brats2020");
    assert_eq!(v["convention"], "brats");
    assert_eq!(v["ok"], true);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[2]["id"], "BraTS20_Training_355");
    assert_eq!(cases[2]["seg"], true);
    assert_eq!(cases[3]["subset"], "0101");
    assert_eq!(cases[3]["seg"], false);
    assert_eq!(cases[0]["shape"], serde_json::json!([6, 5, 4]));

    let (ok, text, _) = run(&["dataset", "check", root.to_str().unwrap()]);
    assert!(ok);
    assert!(text.contains("layout: brats2020"), "{text}");
    assert!(text.contains("no problems found"), "{text}");
}

#[test]
fn check_reports_every_problem_and_fails() {
    let tmp = common::tempdir();
    let root = tmp.path();
    brats2020(
        root,
        &[
            "BraTS20_Training_001",
            "BraTS20_Training_002",
            "BraTS20_Training_003",
            "BraTS20_Training_004",
        ],
        ".nii.gz",
    );
    // 001: T2 of another shape.
    let id = "BraTS20_Training_001";
    Nii::float(&[6, 5, 3], vec![1.0; 90]).write(&root.join(format!("{id}/{id}_t2.nii.gz")));
    // 002: FLAIR shifted (different affine), BraTS 2023 ET label 3 in a BraTS 2020 seg.
    let id = "BraTS20_Training_002";
    let mut shifted = Nii::float(&DIMS, image(3.0));
    shifted.offset = 5.0;
    shifted.write(&root.join(format!("{id}/{id}_flair.nii.gz")));
    Nii::labels(&DIMS, seg([0, 1, 2, 3])).write(&root.join(format!("{id}/{id}_seg.nii.gz")));
    // 003: truncated gzip.
    let id = "BraTS20_Training_003";
    let p = root.join(format!("{id}/{id}_t1.nii.gz"));
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    // 004: NaN voxel.
    let id = "BraTS20_Training_004";
    let mut v = image(0.0);
    v[40] = f32::NAN;
    Nii::float(&DIMS, v).write(&root.join(format!("{id}/{id}_t1ce.nii.gz")));

    let (ok, v, stderr) = check_json(root);
    assert!(!ok, "problems must fail the command");
    assert!(stderr.contains("problem"), "{stderr}");
    assert_eq!(v["ok"], false);
    let problems: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let has = |case: &str, words: &[&str]| {
        problems
            .iter()
            .any(|p| p.starts_with(case) && words.iter().all(|w| p.contains(w)))
    };
    assert!(
        has("BraTS20_Training_001", &["_t2.nii.gz", "shape"]),
        "{problems:#?}"
    );
    assert!(
        has("BraTS20_Training_002", &["_flair.nii.gz", "affine"]),
        "{problems:#?}"
    );
    assert!(
        has("BraTS20_Training_002", &["_seg.nii.gz", "3"]),
        "{problems:#?}"
    );
    assert!(
        has("BraTS20_Training_003", &["_t1.nii.gz"]),
        "{problems:#?}"
    );
    assert!(
        has("BraTS20_Training_004", &["_t1ce.nii.gz"]),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");

    // Text mode: one line per problem, never a panic.
    let (ok, text, stderr) = run(&["dataset", "check", root.to_str().unwrap()]);
    assert!(!ok);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(text.contains("problems (5):"), "{text}");
    for p in &problems {
        assert!(text.lines().any(|l| l == p), "missing line {p} in {text}");
    }
}

#[test]
fn check_brats2021_and_2023_conventions() {
    let tmp = common::tempdir();
    let r21 = tmp.path().join("2021");
    brats2020(&r21, &["BraTS2021_00000", "BraTS2021_00002"], ".nii.gz");
    let (ok, v, e) = check_json(&r21);
    assert!(ok, "{v} {e}");
    assert_eq!(v["layout"], "brats2021");

    let r23 = tmp.path().join("2023");
    for id in [
        "BraTS-GLI-00000-000",
        "BraTS-MEN-00001-000",
        "BraTS-MET-00002-000",
        "BraTS-PED-00003-000",
        "BraTS-SSA-00004-000",
    ] {
        for (i, m) in ["t1n", "t1c", "t2w", "t2f"].iter().enumerate() {
            Nii::float(&DIMS, image(i as f32)).write(&r23.join(format!("{id}/{id}-{m}.nii.gz")));
        }
        Nii::labels(&DIMS, seg([0, 1, 2, 3])).write(&r23.join(format!("{id}/{id}-seg.nii.gz")));
    }
    let (ok, v, e) = check_json(&r23);
    assert!(ok, "{v} {e}");
    assert_eq!(v["layout"], "brats2023");
    assert_eq!(v["convention"], "brats2023");
    assert_eq!(v["cases"].as_array().unwrap().len(), 5);
    assert_eq!(v["cases"][0]["subset"], "1111");

    // Label 4 is outside the 2023 convention.
    let id = "BraTS-GLI-00000-000";
    Nii::labels(&DIMS, seg([0, 1, 2, 4])).write(&r23.join(format!("{id}/{id}-seg.nii.gz")));
    let (ok, v, _) = check_json(&r23);
    assert!(!ok);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn check_msd_4d_images() {
    let tmp = common::tempdir();
    let root = tmp.path().join("Task01_BrainTumour");
    let n: usize = DIMS.iter().product();
    for (id, train) in [
        ("BRATS_001", true),
        ("BRATS_002", true),
        ("BRATS_485", false),
    ] {
        let mut v = Vec::new();
        for c in 0..4 {
            v.extend(image(c as f32));
        }
        let dims4 = [DIMS[0], DIMS[1], DIMS[2], 4];
        let folder = if train { "imagesTr" } else { "imagesTs" };
        Nii::float(&dims4, v).write(&root.join(format!("{folder}/{id}.nii.gz")));
        if train {
            Nii::labels(&DIMS, seg([0, 2, 1, 3]))
                .write(&root.join(format!("labelsTr/{id}.nii.gz")));
        }
    }
    std::fs::write(
        root.join("imagesTr/._BRATS_001.nii.gz"),
        b"\0\x05\x16\x07junk",
    )
    .unwrap();
    std::fs::write(root.join("labelsTr/._BRATS_001.nii.gz"), b"junk").unwrap();
    let (ok, v, e) = check_json(&root);
    assert!(ok, "{v} {e}");
    assert_eq!(v["layout"], "msd");
    assert_eq!(v["cases"].as_array().unwrap().len(), 3);
    assert_eq!(v["cases"][2]["seg"], false);
    assert_eq!(v["cases"][2]["subset"], "1111");

    // A 3D image where a 4D one is expected is a problem, named.
    Nii::float(&DIMS, vec![1.0; n]).write(&root.join("imagesTr/BRATS_002.nii.gz"));
    let (ok, v, _) = check_json(&root);
    assert!(!ok);
    let p = v["problems"].to_string();
    assert!(p.contains("BRATS_002.nii.gz"), "{p}");
}

#[test]
fn check_missing_or_empty_folder_is_a_clean_error() {
    let tmp = common::tempdir();
    let (ok, _, stderr) = run(&["dataset", "check", tmp.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.starts_with("error: no cases found"), "{stderr}");
    let (ok, _, stderr) = run(&["dataset", "check", "/nonexistent/data"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/data"), "{stderr}");
}

#[test]
fn split_is_reproducible_and_respects_ratios() {
    let tmp = common::tempdir();
    let root = tmp.path().join("data");
    let ids: Vec<String> = (1..=20)
        .map(|i| format!("BraTS20_Training_{i:03}"))
        .collect();
    // Names only matter for split: empty files suffice.
    for id in &ids {
        for m in ["t1", "flair", "seg"] {
            let p = root.join(format!("{id}/{id}_{m}.nii.gz"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
    }
    // An inference-only case is left out of the split.
    let p = root.join("BraTS20_Validation_001/BraTS20_Validation_001_t1.nii.gz");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"").unwrap();

    let out = |name: &str| tmp.path().join(name);
    let split = |name: &str, extra: &[&str]| {
        let mut args = vec!["dataset", "split", root.to_str().unwrap(), "--out"];
        let o = out(name);
        let o = o.to_str().unwrap().to_string();
        args.push(&o);
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "{stdout} {stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out(name)).unwrap()).unwrap();
        v
    };
    let a = split("a.json", &["--seed", "3"]);
    let b = split("b.json", &["--seed", "3"]);
    assert_eq!(
        std::fs::read(out("a.json")).unwrap(),
        std::fs::read(out("b.json")).unwrap()
    );
    assert_eq!(a, b);
    let len = |v: &serde_json::Value, k: &str| v[k].as_array().unwrap().len();
    assert_eq!(
        (len(&a, "train"), len(&a, "validation"), len(&a, "test")),
        (14, 2, 4)
    );
    let c = split("c.json", &["--seed", "4"]);
    assert_ne!(a, c);
    let d = split("d.json", &["--ratios", "50,25,25"]);
    assert_eq!(
        (len(&d, "train"), len(&d, "validation"), len(&d, "test")),
        (10, 5, 5)
    );
    let mut all: Vec<String> = ["train", "validation", "test"]
        .iter()
        .flat_map(|k| {
            d[k].as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        })
        .collect();
    all.sort();
    assert_eq!(all, ids);

    let (ok, _, stderr) = run(&[
        "dataset",
        "split",
        root.to_str().unwrap(),
        "--out",
        "x.json",
        "--ratios",
        "1,2",
    ]);
    assert!(!ok);
    assert!(stderr.contains("ratios"), "{stderr}");
}

#[test]
fn check_notes_wild_folders_and_reads_any_label_type() {
    let tmp = common::tempdir();
    let root = tmp.path().join("MICCAI_BraTS_2019_Data_Training");
    let hgg = root.join("HGG");
    brats2020(&hgg, &["BraTS19_2013_10_1"], ".nii.gz");
    let id = "BraTS19_TCIA10_103_1";
    let lgg = root.join("LGG").join(id);
    for (i, m) in ["t1", "t1ce", "flair"].iter().enumerate() {
        Nii::float(&DIMS, image(i as f32)).write(&lgg.join(format!("{id}_{m}.nii.gz")));
    }
    // A float segmentation holding whole labels, a brain mask and a JSON sidecar beside it.
    let labels: Vec<f32> = seg([0, 1, 2, 4]).into_iter().map(f32::from).collect();
    Nii::float(&DIMS, labels).write(&lgg.join(format!("{id}_seg.nii.gz")));
    Nii::labels(&DIMS, vec![1; DIMS.iter().product()]).write(&lgg.join("brain_mask.nii.gz"));
    std::fs::write(lgg.join(format!("{id}_flair.json")), "{}").unwrap();
    // A T2 that was not skull-stripped: no zero background.
    let raw: Vec<f32> = (0..DIMS.iter().product::<usize>())
        .map(|i| 5.0 + (i % 3) as f32)
        .collect();
    Nii::float(&DIMS, raw).write(&lgg.join(format!("{id}_t2.nii.gz")));

    let (ok, v, stderr) = check_json(&root);
    assert!(ok, "{v} {stderr}");
    assert_eq!(v["layout"], "brats2019");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[1]["id"], id);
    assert_eq!(cases[1]["subset"], "1111");
    assert_eq!(cases[1]["convention"], "brats");
    let warnings: Vec<&str> = cases[1]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings.iter().any(|w| w.contains("brain_mask.nii.gz")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("_flair.json")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("_t2.nii.gz") && w.contains("skull-stripped")),
        "{warnings:#?}"
    );

    // A label that is not a whole number is a problem naming the file.
    let mut labels: Vec<f32> = seg([0, 1, 2, 4]).into_iter().map(f32::from).collect();
    labels[3] = 2.5;
    Nii::float(&DIMS, labels).write(&lgg.join(format!("{id}_seg.nii.gz")));
    let (ok, v, _) = check_json(&root);
    assert!(!ok);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    let p = problems[0].as_str().unwrap();
    assert!(
        p.contains("_seg.nii.gz") && p.contains("non-integral") && p.contains("2.5"),
        "{p}"
    );
}

fn stats_json(dir: &Path) -> serde_json::Value {
    let (ok, stdout, stderr) = run(&["dataset", "stats", dir.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn stats_read_each_convention_the_same_way() {
    // The same images and tumour voxels as BraTS 2020 (ET = 4) and as MSD (ET = 3, edema 1,
    // NCR 2, channels FLAIR, T1, T1c, T2): the same table, only the label names differ.
    let tmp = common::tempdir();
    let brats = tmp.path().join("brats");
    brats2020(
        &brats,
        &["BraTS20_Training_001", "BraTS20_Training_002"],
        ".nii",
    );
    let msd = tmp.path().join("Task01_BrainTumour");
    for id in ["BRATS_001", "BRATS_002"] {
        let v: Vec<f32> = (0..4).flat_map(|c| image(c as f32)).collect();
        Nii::float(&[DIMS[0], DIMS[1], DIMS[2], 4], v)
            .write(&msd.join(format!("imagesTr/{id}.nii.gz")));
        Nii::labels(&DIMS, seg([0, 2, 1, 3])).write(&msd.join(format!("labelsTr/{id}.nii.gz")));
    }
    let (a, b) = (stats_json(&brats), stats_json(&msd));
    assert_eq!(a["labels"], serde_json::json!([1, 2, 4]));
    assert_eq!(b["labels"], serde_json::json!([2, 1, 3]));
    for key in [
        "cases",
        "z",
        "volume_percent",
        "brain_box_min",
        "brain_box_max",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(a["cases"], 2);
    // 24 brain voxels (4×3×2), one of each tumour class.
    let pct = 100.0 / 24.0;
    for r in ["ncr", "edema", "et"] {
        let v = &a["volume_percent"][r];
        assert!((v["mean"].as_f64().unwrap() - pct).abs() < 1e-9, "{v}");
        assert_eq!(v["sd"].as_f64().unwrap(), 0.0);
    }
    assert_eq!(a["brain_box_min"], serde_json::json!([4, 3, 2]));
    // The image is 10 + seed + x + 2y + 3z inside: the ET voxel (x 3, y 1, z 1) is the
    // brightest of the three tumour voxels, in every modality.
    for row in a["z"].as_array().unwrap() {
        let z = |k: &str| row[k]["mean"].as_f64().unwrap();
        assert!(z("et") > z("edema") && z("edema") > z("ncr"), "{row}");
    }
    let (ok, text, _) = run(&["dataset", "stats", msd.to_str().unwrap()]);
    assert!(ok);
    for want in [
        "NCR (label 2)",
        "edema (1)",
        "ET (3)",
        "FLAIR",
        "brain box: 4 × 3 × 2",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // No segmentation anywhere, or no dataset: one-line errors naming the folder.
    let unlabelled = tmp.path().join("unlabelled");
    Nii::float(&DIMS, image(0.0)).write(&unlabelled.join("c1/c1_t1.nii"));
    for dir in [unlabelled.as_path(), Path::new("/nonexistent/data")] {
        let (ok, _, stderr) = run(&["dataset", "stats", dir.to_str().unwrap()]);
        assert!(!ok);
        assert!(stderr.starts_with("error:"), "{stderr}");
        assert!(stderr.contains(dir.to_str().unwrap()), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn stats_of_phantoms_match_their_manifest() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("phantoms");
    let (ok, _, stderr) = run(&[
        "phantom",
        "--out",
        dir.to_str().unwrap(),
        "--cases",
        "3",
        "--shape",
        "32,36,30",
        "--seed",
        "4",
    ]);
    assert!(ok, "{stderr}");
    let v = stats_json(&dir);
    assert_eq!(v["cases"], 3);
    assert_eq!(v["labels"], serde_json::json!([1, 2, 4]));
    let manifest = a2fseg::phantom::read_manifest(&dir).unwrap().unwrap();
    let per_case = v["per_case"].as_array().unwrap();
    assert_eq!(per_case.len(), 3);
    for (c, m) in per_case.iter().zip(&manifest.cases) {
        assert_eq!(c["id"], m.id.as_str());
        // Every tumour voxel is inside the brain: volume × brain = the manifest's counts.
        let brain = c["brain_voxels"].as_f64().unwrap();
        let counts = [m.voxels.ncr, m.voxels.ed, m.voxels.et];
        for (k, &n) in counts.iter().enumerate() {
            let got = c["volume_percent"][k].as_f64().unwrap() * brain / 100.0;
            assert!(
                (got - n as f64).abs() < 1e-6,
                "{} class {k}: {got} vs {n}",
                m.id
            );
        }
        let b = c["brain_box"].as_array().unwrap();
        for (a, &d) in [32u64, 36, 30].iter().enumerate() {
            assert!(b[a].as_u64().unwrap() < d, "{c}");
        }
    }
    // Phantom contrasts: edema bright on FLAIR, ET bright on T1c, healthy brain near 0.
    let z = |m: usize, k: &str| v["z"][m][k]["mean"].as_f64().unwrap();
    assert!(z(3, "edema") > z(3, "healthy") + 0.5);
    assert!(z(1, "et") > z(1, "healthy") + 0.5);
    for m in 0..4 {
        assert!(z(m, "healthy").abs() < 0.5, "modality {m}");
    }
    let (ok, text, _) = run(&["dataset", "stats", dir.to_str().unwrap()]);
    assert!(ok);
    assert!(text.contains("cases: 3"), "{text}");
    assert!(text.contains("ET (4)"), "{text}");
}
