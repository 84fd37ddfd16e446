//! End-to-end tests of `a2fseg predict` and `a2fseg evaluate` with a tiny randomly
//! initialised model and tiny synthetic cases.

mod common;

use std::path::Path;
use std::process::Command;

use a2fseg::labels::{LabelConvention, TumourClass};
use a2fseg::metrics::{MetricOptions, evaluate_case};
use a2fseg::model::Fusion;
use a2fseg::volume::{Geometry, Grid, read_volume, write_float, write_labels};
use burn::prelude::Device;

fn identity() -> [[f64; 4]; 4] {
    let mut a = [[0.0; 4]; 4];
    for (i, row) in a.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    a
}

/// Oblique (rotated about z, anisotropic) and flipped (negative x and z) affines.
fn oblique() -> [[f64; 4]; 4] {
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    [
        [1.2 * c, -0.9 * s, 0.0, -10.5],
        [1.2 * s, 0.9 * c, 0.0, 20.25],
        [0.0, 0.0, 2.5, -3.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn flipped() -> [[f64; 4]; 4] {
    [
        [-1.0, 0.0, 0.0, 30.0],
        [0.0, 1.0, 0.0, -5.0],
        [0.0, 0.0, -2.0, 12.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// A head-like blob with a tumour: images per modality and BraTS labels (0/1/2/4).
fn synthetic(dims: [usize; 3], seed: usize) -> ([Grid<f32>; 4], Grid<u8>) {
    let c = dims.map(|d| d as f64 / 2.0);
    let mut labels = Grid::zeros(dims);
    let mut imgs: [Grid<f32>; 4] = std::array::from_fn(|_| Grid::zeros(dims));
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let d = ((x as f64 - c[0]) / c[0]).powi(2)
                    + ((y as f64 - c[1]) / c[1]).powi(2)
                    + ((z as f64 - c[2]) / c[2]).powi(2);
                if d > 0.8 {
                    continue;
                }
                let t = ((x as f64 - c[0] * 0.8).powi(2) + (y as f64 - c[1]).powi(2)).sqrt();
                let label = if t < 1.5 {
                    4
                } else if t < 2.5 {
                    1
                } else if t < 4.0 {
                    2
                } else {
                    0
                };
                labels.set(x, y, z, label);
                for (m, g) in imgs.iter_mut().enumerate() {
                    let v = 100.0
                        + 20.0 * m as f32
                        + 30.0 * label as f32
                        + ((x * 7 + y * 3 + z * 5 + seed + m) % 11) as f32;
                    g.set(x, y, z, v);
                }
            }
        }
    }
    (imgs, labels)
}

const KEYS: [&str; 4] = ["t1", "t1ce", "t2", "flair"];

/// Writes a BraTS 2020-style case folder.
fn write_case(
    root: &Path,
    id: &str,
    dims: [usize; 3],
    affine: [[f64; 4]; 4],
    seed: usize,
) -> Geometry {
    let g = Geometry::from_affine(dims, affine);
    let (imgs, labels) = synthetic(dims, seed);
    let dir = root.join(id);
    for (k, img) in KEYS.iter().zip(&imgs) {
        write_float(&dir.join(format!("{id}_{k}.nii.gz")), &g, img).unwrap();
    }
    write_labels(&dir.join(format!("{id}_seg.nii.gz")), &g, &labels).unwrap();
    g
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn predict_from_files_keeps_the_input_geometry_and_convention() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    for (name, affine) in [("oblique", oblique()), ("flipped", flipped())] {
        let data = tmp.path().join(name);
        let id = "BraTS20_Training_001";
        let g = write_case(&data, id, [13, 11, 9], affine, 1);
        let case = data.join(id);
        let out = tmp.path().join(format!("{name}_seg.nii.gz"));
        let t1c = case.join(format!("{id}_t1ce.nii.gz"));
        let flair = case.join(format!("{id}_flair.nii.gz"));
        let (ok, _, err) = run(&[
            "-q",
            "predict",
            "--model",
            s(&run_dir),
            "--t1c",
            s(&t1c),
            "--flair",
            s(&flair),
            "--output",
            s(&out),
            "--save-probabilities",
            "--save-attention",
            "--tta",
            "x",
        ]);
        assert!(ok, "{err}");
        let v = read_volume(&out).unwrap();
        assert_eq!(v.geometry.dims, g.dims);
        assert_eq!(v.geometry.affine, g.affine, "{name}");
        assert!(v.geometry.same_grid(&g));
        assert_eq!(v.geometry.qform_code(), g.qform_code());
        assert_eq!(v.geometry.sform_code(), g.sform_code());
        let valid = LabelConvention::Brats.valid_labels();
        assert!(
            v.channels[0]
                .data()
                .iter()
                .all(|&l| valid.contains(&(l as u8)) && l.fract() == 0.0)
        );
        for extra in [
            "prob_wt",
            "prob_tc",
            "prob_et",
            "attention_t1c",
            "attention_flair",
        ] {
            let p = tmp.path().join(format!("{name}_seg_{extra}.nii.gz"));
            let e = read_volume(&p).unwrap();
            assert_eq!(e.geometry.affine, g.affine, "{extra}");
        }
    }
}

#[test]
fn predict_and_evaluate_agree_and_evaluate_resumes() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    for i in 1..=2 {
        write_case(
            &data,
            &format!("BraTS20_Training_00{i}"),
            [12, 10, 9],
            identity(),
            i,
        );
    }
    let preds = tmp.path().join("preds");
    let (ok, _, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--input",
        s(&data),
        "--subset",
        "0101",
        "--output",
        s(&preds),
        "--convention",
        "brats2023",
    ]);
    assert!(ok, "{err}");
    // A single case folder works as --input too, and gives the same labels.
    let one = tmp.path().join("one");
    let (ok, _, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--input",
        s(&data.join("BraTS20_Training_001")),
        "--subset",
        "0101",
        "--output",
        s(&one),
        "--convention",
        "brats2023",
    ]);
    assert!(ok, "{err}");
    let a = read_volume(&one.join("BraTS20_Training_001.nii.gz")).unwrap();
    let b = read_volume(&preds.join("BraTS20_Training_001.nii.gz")).unwrap();
    assert_eq!(a.channels[0], b.channels[0]);
    let eval = tmp.path().join("eval");
    let args = [
        "-q",
        "evaluate",
        "--model",
        s(&run_dir),
        "--data",
        s(&data),
        "--subsets",
        "0101,1111",
        "--out",
        s(&eval),
        "--et-postprocess",
    ];
    let (ok, stdout, err) = run(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("mean Dice"), "{stdout}");
    let rows = a2fseg::infer::evaluate::read_case_rows(&eval.join("cases.csv")).unwrap();
    assert_eq!(rows.len(), 4);
    for i in 1..=2 {
        let id = format!("BraTS20_Training_00{i}");
        let pred = read_volume(&preds.join(format!("{id}.nii.gz"))).unwrap();
        let gt = read_volume(&data.join(&id).join(format!("{id}_seg.nii.gz"))).unwrap();
        let to_classes = |g: &Grid<f32>, c: LabelConvention| {
            g.map(|v| c.to_class(v as u8).map(TumourClass::index).unwrap() as u8)
        };
        let p = to_classes(&pred.channels[0], LabelConvention::Brats2023);
        let t = to_classes(&gt.channels[0], LabelConvention::Brats);
        let m = evaluate_case(&p, &t, gt.geometry.spacing, &MetricOptions::default());
        let row = rows
            .iter()
            .find(|r| r.case == id && r.subset.name() == "0101")
            .unwrap();
        assert!((row.wt_dice - m.regions[0].dice).abs() < 1e-9, "{id}");
        assert!((row.et_hd95 - m.regions[2].hd95).abs() < 1e-9, "{id}");
        assert!(row.et_pp_dice.is_some());
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("summary.json")).unwrap()).unwrap();
    for key in ["0101", "1111", "mean"] {
        for r in ["WT", "TC", "ET"] {
            assert!(summary[key][r]["dice"].is_number(), "{key} {r}");
            assert!(summary[key][r]["hd95"].is_number(), "{key} {r}");
        }
    }
    let attention: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("attention.json")).unwrap())
            .unwrap();
    assert!(attention["1111"]["ET"]["t1"].is_number(), "{attention}");
    let md = std::fs::read_to_string(eval.join("summary.md")).unwrap();
    assert!(md.contains("| ○ | ● | ○ | ● |") && md.contains("Fig. 3"));

    // Simulate a kill after the first case: keep only its rows; the rerun scores one case.
    let csv = std::fs::read_to_string(eval.join("cases.csv")).unwrap();
    let kept: Vec<&str> = csv.lines().filter(|l| !l.contains("_002")).collect();
    std::fs::write(eval.join("cases.csv"), kept.join("\n") + "\n").unwrap();
    let out = Command::new(common::bin())
        .args(args.iter().filter(|a| **a != "-q"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("scored 1 case(s), 1 already scored"), "{err}");
    let again = a2fseg::infer::evaluate::read_case_rows(&eval.join("cases.csv")).unwrap();
    assert_eq!(again.len(), 4);
    for r in &rows {
        let a = again
            .iter()
            .find(|x| x.case == r.case && x.subset == r.subset)
            .unwrap();
        assert!((a.wt_dice - r.wt_dice).abs() < 1e-9);
    }
    // Other settings in the same folder are refused.
    let (ok, _, err) = run(&[
        "-q",
        "evaluate",
        "--model",
        s(&run_dir),
        "--data",
        s(&data),
        "--out",
        s(&eval),
    ]);
    assert!(!ok && err.contains("other settings"), "{err}");
}

#[test]
fn several_models_give_a_comparison() {
    let tmp = common::tempdir();
    let a = common::tiny_run(tmp.path(), "adaptive", Fusion::Adaptive);
    let b = common::tiny_run(tmp.path(), "average", Fusion::Average);
    let data = tmp.path().join("data");
    write_case(&data, "BraTS20_Training_001", [9, 8, 8], identity(), 3);
    let eval = tmp.path().join("eval");
    let (ok, _, err) = run(&[
        "-q",
        "evaluate",
        "--model",
        s(&a),
        "--model",
        s(&b),
        "--data",
        s(&data),
        "--subsets",
        "0011,1111",
        "--out",
        s(&eval),
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("summary.json")).unwrap()).unwrap();
    assert!(summary["adaptive"]["1111"]["WT"]["dice"].is_number());
    assert!(summary["average"]["mean"]["ET"]["hd95"].is_number());
    assert!(eval.join("average/summary.json").is_file());
    let md = std::fs::read_to_string(eval.join("summary.md")).unwrap();
    assert!(
        md.contains("## Table 2") && md.contains("| average | average fusion |"),
        "{md}"
    );
    // The per-model folders are what the demo's report reads: the average-fusion model has
    // no attention (an empty attention.json), the adaptive one has.
    let read = |key: &str| {
        a2fseg::report::ModelFiles::from_dirs(key, key, &eval.join(key), None)
            .load()
            .unwrap()
    };
    assert!(read("average").attention.is_none());
    assert!(read("adaptive").attention.is_some());
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    write_case(&data, "a", [8, 8, 8], identity(), 1);
    write_case(&data, "b", [9, 8, 8], identity(), 1);
    let t1 = data.join("a/a_t1.nii.gz");
    let t2_other = data.join("b/b_t2.nii.gz");
    let out = tmp.path().join("o.nii.gz");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--t1".into(),
                s(&t1).into(),
                "--t2".into(),
                s(&t2_other).into(),
            ],
            "different grids",
        ),
        (
            vec!["--t1".into(), s(&tmp.path().join("missing.nii.gz")).into()],
            "missing.nii.gz",
        ),
        (vec![], "--input"),
        (
            vec![
                "--t1".into(),
                s(&t1).into(),
                "--subset".into(),
                "0100".into(),
            ],
            "keeps none",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["predict", "--model", s(&run_dir), "--output", s(&out)];
        args.extend(extra.iter().map(String::as_str));
        let (ok, _, err) = run(&args);
        assert!(!ok, "{args:?}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (ok, _, err) = run(&[
        "predict",
        "--model",
        s(&tmp.path().join("nomodel")),
        "--t1",
        s(&t1),
        "--output",
        s(&out),
    ]);
    assert!(!ok && err.contains("nomodel"), "{err}");
    let (ok, _, err) = run(&[
        "evaluate",
        "--model",
        s(&run_dir),
        "--data",
        s(&data),
        "--subsets",
        "0000",
    ]);
    assert!(!ok && err.contains("empty"), "{err}");
}

/// `predict` preprocesses as the model was trained: the `[preprocess]` table of the
/// checkpoint's `train.toml` (here: no z-scoring), not the defaults.
#[test]
fn predict_uses_the_models_preprocessing_settings() {
    use a2fseg::infer::{Predictor, Tta};
    use a2fseg::preprocess::{PreprocessSettings, preprocess_case};
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let model_dir = run_dir.join("checkpoints/best");
    std::fs::write(
        model_dir.join("train.toml"),
        "epochs = 3\n[preprocess]\nnormalize = false\nmargin = 1\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let id = "BraTS20_Training_001";
    write_case(&data, id, [12, 10, 9], identity(), 1);
    let preds = tmp.path().join("preds");
    let (ok, _, err) = run(&[
        "-q",
        "predict",
        "--model",
        s(&run_dir),
        "--input",
        s(&data),
        "--output",
        s(&preds),
        "--save-probabilities",
    ]);
    assert!(ok, "{err}");
    let cli = read_volume(&preds.join(format!("{id}_prob_wt.nii.gz"))).unwrap();

    let p = Predictor::load(&run_dir, Device::flex(), 0.5, Tta::OFF).unwrap();
    let trained = PreprocessSettings {
        crop: true,
        margin: 1,
        normalize: false,
    };
    assert_eq!(p.preprocess, trained);
    let ds = a2fseg::dataset::discover(&data).unwrap();
    let loaded = a2fseg::dataset::load_case(&ds, &ds.cases[0]).unwrap();
    let wt = |settings: &PreprocessSettings| {
        let pre = preprocess_case(&loaded, settings).unwrap();
        let pred = p.predict_case(&pre, pre.available()).unwrap();
        pred.probabilities_full().remove(0)
    };
    let max_diff = |a: &Grid<f32>, b: &Grid<f32>| {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(max_diff(&cli.channels[0], &wt(&trained)) < 1e-5);
    // The defaults would have given other probabilities.
    assert!(max_diff(&cli.channels[0], &wt(&PreprocessSettings::default())) > 1e-4);
}

/// `evaluate --cache DIR` fills and reuses the cache and scores exactly as without it.
#[test]
fn evaluate_with_a_cache_scores_the_same() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    for i in 1..=2 {
        write_case(
            &data,
            &format!("BraTS20_Training_00{i}"),
            [12, 10, 9],
            identity(),
            i,
        );
    }
    let cache = tmp.path().join("cache");
    let evaluate = |out: &str, cache: Option<&Path>| {
        let out = tmp.path().join(out);
        let mut args = vec![
            "-q",
            "evaluate",
            "--model",
            s(&run_dir),
            "--data",
            s(&data),
            "--subsets",
            "0101,1111",
            "--out",
            s(&out),
        ];
        if let Some(c) = cache {
            args.extend(["--cache", s(c)]);
        }
        let (ok, _, err) = run(&args);
        assert!(ok, "{err}");
        a2fseg::infer::evaluate::read_case_rows(&out.join("cases.csv")).unwrap()
    };
    let plain = evaluate("plain", None);
    assert!(!cache.exists());
    let filled = evaluate("filled", Some(&cache));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    let reused = evaluate("reused", Some(&cache));
    assert_eq!(plain.len(), 4);
    assert_eq!(plain, filled);
    assert_eq!(plain, reused);
}

#[test]
fn predictions_are_post_processed_unless_asked_not_to() {
    use a2fseg::infer::postprocess::{self, Decision, Postprocess};
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    let id = "BraTS20_Training_001";
    // The synthetic head, cut in two by an empty slab at x = 6..8 (so that the masked
    // prediction has more than one component).
    let dims = [14, 12, 10];
    let (mut imgs, labels) = synthetic(dims, 3);
    let geometry = Geometry::from_affine(dims, identity());
    for g in imgs.iter_mut() {
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 6..8 {
                    g.set(x, y, z, 0.0);
                }
            }
        }
    }
    for (k, img) in KEYS.iter().zip(&imgs) {
        write_float(
            &data.join(id).join(format!("{id}_{k}.nii.gz")),
            &geometry,
            img,
        )
        .unwrap();
    }
    write_labels(
        &data.join(id).join(format!("{id}_seg.nii.gz")),
        &geometry,
        &labels,
    )
    .unwrap();
    let predict = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "-q",
            "predict",
            "--model",
            s(&run_dir),
            "--input",
            s(&data),
            "--output",
            s(out),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = run(&args);
        assert!(ok, "{err}");
        let v = read_volume(&out.join(format!("{id}.nii.gz"))).unwrap();
        v.channels[0].map(|x| x as u8)
    };
    let raw = predict(&tmp.path().join("raw"), &["--no-postprocess"]);
    let masked = predict(&tmp.path().join("masked"), &[]);
    let outside: Vec<bool> = (0..raw.len())
        .map(|v| imgs.iter().all(|g| g.data()[v] == 0.0))
        .collect();
    // The random model marks tumour outside the head; the default output never does, and
    // agrees with the raw output everywhere else.
    assert!((0..raw.len()).any(|v| outside[v] && raw.data()[v] != 0));
    for (v, (&out, (&m, &r))) in outside
        .iter()
        .zip(masked.data().iter().zip(raw.data()))
        .enumerate()
    {
        assert_eq!(m, if out { 0 } else { r }, "voxel {v}");
    }
    // With a saved decision to keep the largest component, one component remains.
    Decision {
        rules: Postprocess {
            brain_mask: true,
            largest_component: true,
            largest_component_subsets: Default::default(),
            et_min_mm3: None,
        },
        cases: 1,
        predictions: 15,
        dice_without: [0.5; 3],
        dice_with: [0.6; 3],
        dice_chosen: None,
        by_subset: Vec::new(),
        et_dice_thresholded: None,
    }
    .save(&run_dir.join("checkpoints/best"))
    .unwrap();
    let largest = predict(&tmp.path().join("largest"), &[]);
    let mut once = masked.clone();
    assert!(postprocess::keep_largest_component(&mut once) > 0);
    assert_eq!(largest, once);
    let mut again = largest.clone();
    assert_eq!(postprocess::keep_largest_component(&mut again), 0);
    assert!(largest.data().iter().any(|&c| c != 0));
}

/// `evaluate` shows its viewed cases with the predictions that scored them: none is
/// predicted again in a fresh run; after an interruption, a viewed case scored before it
/// is predicted again (and only that one), and the report still has every viewer.
#[test]
fn evaluate_views_the_predictions_it_scored() {
    let tmp = common::tempdir();
    let run_dir = common::tiny_run(tmp.path(), "run", Fusion::Adaptive);
    let data = tmp.path().join("data");
    for i in 1..=3 {
        let id = format!("BraTS20_Training_00{i}");
        write_case(&data, &id, [12, 10, 9], identity(), i);
    }
    let eval = tmp.path().join("eval");
    let evaluate = || {
        a2fseg::infer::evaluate::evaluate(&a2fseg::infer::evaluate::EvaluateOptions {
            view_cases: 2,
            quiet: true,
            ..a2fseg::infer::evaluate::EvaluateOptions::new(
                run_dir.clone(),
                data.clone(),
                None,
                eval.clone(),
            )
        })
        .unwrap()
    };
    let viewers = || {
        let html = std::fs::read_to_string(eval.join("report.html")).unwrap();
        (1..=3)
            .filter(|i| html.contains(&format!("data-case=\"BraTS20_Training_00{i}\"")))
            .collect::<Vec<_>>()
    };
    let first = evaluate();
    assert_eq!((first.scored, first.repredicted_for_viewer), (3, 0));
    assert_eq!(viewers(), [1, 2]);
    // Simulate a kill before the second case was written: the rerun scores cases 2 and 3
    // (keeping case 2's predictions) and predicts case 1 again for its viewer.
    let csv = std::fs::read_to_string(eval.join("cases.csv")).unwrap();
    let kept: Vec<&str> = csv
        .lines()
        .filter(|l| !l.contains("_002") && !l.contains("_003"))
        .collect();
    std::fs::write(eval.join("cases.csv"), kept.join("\n") + "\n").unwrap();
    let resumed = evaluate();
    assert_eq!(
        (
            resumed.scored,
            resumed.resumed,
            resumed.repredicted_for_viewer
        ),
        (2, 1, 1)
    );
    assert_eq!(viewers(), [1, 2]);
}
