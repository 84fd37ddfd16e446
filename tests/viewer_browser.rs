//! The interactive viewer in headless Chromium (Debian's `chromium`, driven by Python's
//! `playwright` with its executable path set; no browser download): the page of a report
//! viewer and the page of `a2fseg view` load from `file://` with no console error and no
//! network request, the volumes have the expected dims, switching the subset changes the
//! overlay, and a screenshot has overlay colours where the tumour is and none far from it.
//! Also `a2fseg view`'s errors (no browser needed).
//!
//! Without Chromium (`A2FSEG_CHROMIUM`, default `/usr/bin/chromium`) or the Python modules
//! `playwright` and `PIL`, the browser tests are skipped with a message, unless
//! `A2FSEG_REQUIRE_BROWSER=1` (as `.ci/run` sets it): then they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use a2fseg::metrics::MetricOptions;
use a2fseg::modality::{Modality, Subset};
use a2fseg::report::viewer::{self, ViewerCase};
use a2fseg::volume::{Geometry, Grid, write_float, write_labels};
use common::{arg, python, run_a2fseg, tempdir};

/// The page's Python driver.
const DRIVER: &str = include_str!("common/viewer_browser.py");

/// Chromium's path, if it and the driver's Python modules are installed; else skips (or
/// fails under `A2FSEG_REQUIRE_BROWSER=1`).
fn browser() -> Option<PathBuf> {
    let chromium = PathBuf::from(
        std::env::var("A2FSEG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()),
    );
    let modules = Command::new(python())
        .args(["-c", "import playwright.sync_api, PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (chromium.exists(), modules) {
        (true, true) => return Some(chromium),
        (false, _) => format!("Chromium ({})", chromium.display()),
        (true, false) => "the Python modules playwright and PIL".to_string(),
    };
    let required = std::env::var("A2FSEG_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{missing} missing and A2FSEG_REQUIRE_BROWSER=1 (see .ci/run for the install)"
    );
    eprintln!("SKIPPED: {missing} not installed");
    None
}

/// Runs the driver on `page` with `spec`; panics with its message on a failed check.
fn drive(chromium: &Path, page: &Path, spec: serde_json::Value) -> serde_json::Value {
    let dir = page.parent().unwrap();
    let spec_path = dir.join("spec.json");
    let script = dir.join("driver.py");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    std::fs::write(&script, DRIVER).unwrap();
    let out = Command::new(python())
        .args([arg(&script), arg(chromium), arg(page), arg(&spec_path)])
        .output()
        .expect("cannot start Python");
    assert!(
        out.status.success(),
        "the browser check failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("the driver prints JSON")
}

const DIMS: [usize; 3] = [64, 56, 40];
/// The tumour: a ball of radius 6 around this voxel (enhancing core of radius 3, edema
/// around it), off the brain's centre so that "far from the tumour" has room.
const TUMOUR: [f64; 3] = [42.0, 20.0, 20.0];

/// A case of `DIMS`: an ellipsoidal brain, the tumour, TumourClass indices.
fn case_grids() -> ([Grid<f32>; 4], Grid<u8>) {
    let mut truth = Grid::<u8>::zeros(DIMS);
    let mut images = std::array::from_fn(|_| Grid::<f32>::zeros(DIMS));
    let contrast = [
        [1.0, 1.2, 0.8],
        [1.0, 2.5, 0.9],
        [1.0, 1.4, 2.0],
        [1.0, 1.3, 2.2],
    ];
    for z in 0..DIMS[2] {
        for y in 0..DIMS[1] {
            for x in 0..DIMS[0] {
                let p = [x as f64, y as f64, z as f64];
                let rb: f64 = (0..3)
                    .map(|a| ((p[a] - DIMS[a] as f64 / 2.0) / (DIMS[a] as f64 * 0.45)).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if rb >= 1.0 {
                    continue;
                }
                let rt = (0..3)
                    .map(|a| (p[a] - TUMOUR[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let class = if rt < 3.0 {
                    3
                } else if rt < 6.0 {
                    2
                } else {
                    0
                };
                truth.set(x, y, z, class);
                for (img, k) in images.iter_mut().zip(&contrast) {
                    let v = match class {
                        3 => k[1],
                        2 => k[2],
                        _ => k[0],
                    };
                    img.set(x, y, z, 100.0 * v + (x % 5) as f32);
                }
            }
        }
    }
    (images, truth)
}

fn geometry() -> Geometry {
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    Geometry::from_affine(DIMS, affine)
}

/// The inclusive voxel box of the tumour in `truth`.
fn tumour_box(truth: &Grid<u8>) -> [[usize; 3]; 2] {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0; 3];
    for z in 0..DIMS[2] {
        for y in 0..DIMS[1] {
            for x in 0..DIMS[0] {
                if truth.get(x, y, z) != 0 {
                    for (a, v) in [x, y, z].into_iter().enumerate() {
                        lo[a] = lo[a].min(v);
                        hi[a] = hi[a].max(v);
                    }
                }
            }
        }
    }
    [lo, hi]
}

#[test]
fn report_viewer_loads_and_switches_subsets_in_chromium() {
    let (images, truth) = case_grids();
    // FLAIR alone sees the whole tumour as edema (no enhancing core); every other subset
    // finds the truth.
    let flair = Subset::from_modalities([Modality::Flair]);
    let predictions: Vec<(Subset, Grid<u8>)> = Subset::all_nonempty()
        .map(|s| {
            let p = if s == flair {
                truth.map(|c| if c == 0 { 0 } else { 2 })
            } else {
                truth.clone()
            };
            (s, p)
        })
        .collect();
    let attention = Modality::ALL
        .iter()
        .map(|&m| {
            (
                m,
                images[m.index()].map(|v| if v > 0.0 { 0.25 } else { 0.0 }),
            )
        })
        .collect();
    let case = ViewerCase {
        id: "synthetic".into(),
        geometry: geometry(),
        images: images.map(Some),
        truth: Some(truth.clone()),
        methods: vec![viewer::model_method(
            "A2FSeg",
            predictions,
            Some((Subset::FULL, attention)),
        )],
        metrics: MetricOptions::default(),
    };
    let dims = viewer::brain_box(&case).dims;
    let page_html = viewer::case_page(&case).unwrap();
    let Some(chromium) = browser() else { return };
    let dir = tempdir();
    let page = dir.path().join("case.html");
    std::fs::write(&page, page_html).unwrap();
    let out = drive(
        &chromium,
        &page,
        serde_json::json!({
            "dims": dims,
            "tumour": tumour_box(&truth),
            "switch": {"subset": 0, "gone": "blue"},
        }),
    );
    // The image and the default prediction (all four modalities) are loaded.
    assert_eq!(out["dims"].as_array().unwrap().len(), 2, "{out}");
    let scores = out["scores_text"].as_str().unwrap();
    assert!(scores.contains("○○○● FLAIR"), "{scores}");
    eprintln!("{out}");
}

#[test]
fn view_command_writes_a_page_that_loads_in_chromium() {
    let (images, truth) = case_grids();
    let dir = tempdir();
    let d = dir.path();
    let g = geometry();
    let mut args: Vec<String> = vec!["view".into()];
    for (m, img) in Modality::ALL.iter().zip(&images) {
        let p = d.join(format!("case_{}.nii.gz", m.key()));
        write_float(&p, &g, img).unwrap();
        args.extend([format!("--{}", m.key()), p.display().to_string()]);
    }
    // BraTS labels: enhancing is 4.
    let brats = truth.map(|c| if c == 3 { 4 } else { c });
    write_labels(&d.join("gt.nii.gz"), &g, &brats).unwrap();
    write_labels(&d.join("pred.nii.gz"), &g, &brats).unwrap();
    let page = d.join("out").join("case.html");
    args.extend(
        [
            "--seg",
            arg(&d.join("pred.nii.gz")),
            "--gt",
            arg(&d.join("gt.nii.gz")),
            "--out",
            arg(&page),
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stderr) = run_a2fseg(&refs);
    assert!(ok, "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("NiiVue 0.69.0"));
    let Some(chromium) = browser() else { return };
    let out = drive(
        &chromium,
        &page,
        serde_json::json!({
            "dims": page_dims(&html),
            "tumour": tumour_box(&truth),
            "switch": null,
        }),
    );
    assert_eq!(out["dims"].as_array().unwrap().len(), 2, "{out}");
}

/// The cropped dims the page says it embeds (its JSON's `dims`).
fn page_dims(html: &str) -> serde_json::Value {
    let start = html.find("\"dims\":").expect("the page has dims") + 7;
    let end = start + html[start..].find(']').unwrap() + 1;
    serde_json::from_str(&html[start..end]).unwrap()
}

#[test]
fn view_command_errors_name_the_file() {
    let (images, _) = case_grids();
    let dir = tempdir();
    let d = dir.path();
    let flair = d.join("flair.nii.gz");
    write_float(&flair, &geometry(), &images[3]).unwrap();
    let out = d.join("case.html");
    let missing = d.join("nope.nii.gz");
    for (args, needle) in [
        (vec!["view", "--out", arg(&out)], "--flair".to_string()),
        (
            vec![
                "view",
                "--flair",
                arg(&flair),
                "--gt",
                arg(&missing),
                "--out",
                arg(&out),
            ],
            missing.display().to_string(),
        ),
        (
            vec![
                "view",
                "--flair",
                arg(&flair),
                "--seg",
                arg(&flair),
                "--out",
                arg(&out),
            ],
            flair.display().to_string(),
        ),
        (
            vec!["view", "--flair", arg(&flair), "--out", arg(&flair)],
            "refusing".to_string(),
        ),
    ] {
        let (ok, stderr) = run_a2fseg(&args);
        assert!(!ok, "{args:?}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&needle),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(!out.exists());
    }
}

/// The viewer of an actual `compare` report (two toy models, A2FSeg and average fusion, one
/// epoch of 2 steps on four 32³ cases, a few seconds): it loads from `file://` with no
/// console error and no network request, its volumes have the brain box's dims of the test
/// case, and the method, subset and attention selectors switch the overlays (the untrained
/// models' predictions are not checked against the tumour).
#[test]
fn compare_report_viewer_switches_methods_and_subsets_in_chromium() {
    let Some(chromium) = browser() else { return };
    let tmp = tempdir();
    let data = tmp.path().join("data");
    common::synthetic_brats(&data, 4, [32, 32, 32]);
    let out = tmp.path().join("cmp");
    let mut args = vec![
        "--quiet",
        "compare",
        "--data",
        arg(&data),
        "--out",
        arg(&out),
    ];
    args.extend(common::TOY_COMPARE);
    let (ok, stderr) = run_a2fseg(&args);
    assert!(ok, "{stderr}");
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let start = html.find("class=\"a2f-data\">").expect("a viewer") + 17;
    let end = start + html[start..].find("</script>").unwrap();
    let case: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
    // The viewed case is the first test case; the volumes are cropped to its brain box.
    let split: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    let id = split["test"][0].as_str().unwrap();
    assert_eq!(case["id"], id);
    let ds = a2fseg::dataset::discover(&data).unwrap();
    let loaded = a2fseg::dataset::load_case(&ds, ds.case(id).unwrap()).unwrap();
    let dims = viewer::brain_box(&ViewerCase {
        id: id.into(),
        geometry: loaded.geometry,
        images: loaded.images,
        truth: loaded.classes,
        methods: Vec::new(),
        metrics: MetricOptions::default(),
    })
    .dims;
    assert_eq!(case["dims"], serde_json::json!(dims));
    let methods = case["methods"].as_array().unwrap();
    let labels: Vec<&str> = methods
        .iter()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["A2FSeg", "Average fusion"]);
    let subset = |m: usize, s: usize| methods[m]["segmentations"][s]["label"].as_str().unwrap();
    // FLAIR is shown; each selection's overlays by name (`method{m}-seg{s}`), with the
    // A2FSeg model's attention map of T1 once.
    let out = drive(
        &chromium,
        &page,
        serde_json::json!({
            "dims": dims,
            "tumour": null,
            "switch": null,
            "selections": [
                {"method": 0, "subset": 14, "attention": 1,
                 "volumes": ["image3.nii", "method0-seg14.nii.gz", "method0-attention0.nii"],
                 "caption": ["A2FSeg", subset(0, 14)]},
                {"method": 0, "subset": 0, "attention": 0,
                 "volumes": ["image3.nii", "method0-seg0.nii.gz"],
                 "caption": ["A2FSeg", subset(0, 0)]},
                {"method": 1, "subset": 5, "attention": 0,
                 "volumes": ["image3.nii", "method1-seg5.nii.gz"],
                 "caption": ["Average fusion", subset(1, 5)]},
            ],
        }),
    );
    assert_eq!(out["selections"].as_array().unwrap().len(), 3, "{out}");
    eprintln!("{out}");
}
