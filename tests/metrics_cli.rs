//! End-to-end tests of `a2fseg metrics PRED GT`.

mod common;

use std::path::Path;
use std::process::Command;

use a2fseg::labels::{LabelConvention, Region};
use a2fseg::metrics::{MetricOptions, evaluate_case};
use a2fseg::volume::{Geometry, Grid, read_volume, write_labels};

const DIMS: [usize; 3] = [20, 16, 10];
const SPACING: [f64; 3] = [0.9, 1.1, 2.0];

fn affine(spacing: [f64; 3]) -> [[f64; 4]; 4] {
    [
        [spacing[0], 0.0, 0.0, -10.0],
        [0.0, spacing[1], 0.0, 5.0],
        [0.0, 0.0, spacing[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// A class map (TumourClass indices) with nested boxes: edema, NCR, ET, shifted by `shift`.
fn classes(shift: usize) -> Grid<u8> {
    let mut g = Grid::zeros(DIMS);
    for z in 0..DIMS[2] {
        for y in 0..DIMS[1] {
            for x in 0..DIMS[0] {
                let inside = |lo: usize, hi: usize, lz: usize, hz: usize| {
                    (lo + shift..hi + shift).contains(&x)
                        && (lo..hi).contains(&y)
                        && (lz..hz).contains(&z)
                };
                let c = if inside(6, 10, 3, 6) {
                    3
                } else if inside(5, 11, 2, 7) {
                    1
                } else if inside(2, 14, 0, 9) {
                    2
                } else {
                    0
                };
                g.set(x, y, z, c);
            }
        }
    }
    g
}

/// Writes a class map in `convention`'s labels.
fn write(path: &Path, classes: &Grid<u8>, convention: LabelConvention, spacing: [f64; 3]) {
    let geometry = Geometry::from_affine(classes.dims(), affine(spacing));
    let labels = classes.map(|c| {
        convention.from_class(a2fseg::labels::TumourClass::from_index(c as usize).unwrap())
    });
    write_labels(path, &geometry, &labels).unwrap();
}

fn metrics_cmd(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("metrics")
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = metrics_cmd(args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn json_reports_every_region_as_the_library_computes_it() {
    let dir = common::tempdir();
    let (p, g) = (dir.path().join("pred.nii.gz"), dir.path().join("gt.nii"));
    let (pc, gc) = (classes(1), classes(0));
    write(&p, &pc, LabelConvention::Brats, SPACING);
    write(&g, &gc, LabelConvention::Brats, SPACING);
    let v = json(&[p.to_str().unwrap(), g.to_str().unwrap(), "--json"]);
    // The header stores the spacing as float32: score with what the file holds.
    let spacing = read_volume(&g).unwrap().geometry.spacing;
    assert!((spacing[2] - SPACING[2]).abs() < 1e-6);
    let m = evaluate_case(&pc, &gc, spacing, &MetricOptions::default());
    for r in Region::ALL {
        let got = &v[r.name()];
        let want = m.region(r);
        for (k, w) in [
            ("dice", want.dice),
            ("hd95", want.hd95),
            ("sensitivity", want.sensitivity),
            ("specificity", want.specificity),
            ("pred_volume_ml", want.pred_volume_ml),
            ("gt_volume_ml", want.gt_volume_ml),
        ] {
            let x = got[k].as_f64().unwrap_or_else(|| panic!("{r} {k} missing"));
            assert!(
                (x - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{r} {k}: {x} vs {w}"
            );
        }
        assert_eq!(got["gt_voxels"], want.gt_voxels);
        assert!(
            want.dice > 0.0 && want.dice < 1.0,
            "{r}: a shift must cost something"
        );
    }
    assert!(v.get("ET_postprocessed").is_none());
    assert_eq!(v["conventions"]["labels"], "brats");
    assert_eq!(v["conventions"]["labels_guessed"], true);
}

#[test]
fn table_states_regions_and_conventions() {
    let dir = common::tempdir();
    let (p, g) = (dir.path().join("p.nii.gz"), dir.path().join("g.nii.gz"));
    write(&p, &classes(0), LabelConvention::Brats2023, SPACING);
    write(&g, &classes(2), LabelConvention::Brats2023, SPACING);
    let out = metrics_cmd(&[p.to_str().unwrap(), g.to_str().unwrap(), "--et-postprocess"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "WT",
        "TC",
        "ET",
        "ET (pp 500)",
        "Dice",
        "HD95",
        "brats2023",
        "guessed",
        "both empty",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn et_postprocessing_is_reported_beside_plain_et() {
    let dir = common::tempdir();
    let (p, g) = (dir.path().join("p.nii.gz"), dir.path().join("g.nii.gz"));
    // Reference without ET; prediction with a small ET (4 × 4 × 3 = 48 voxels).
    let gc = classes(0).map(|c| if c == 3 { 1 } else { c });
    write(&p, &classes(0), LabelConvention::Brats, SPACING);
    write(&g, &gc, LabelConvention::Brats, SPACING);
    let (ps, gs) = (p.to_str().unwrap(), g.to_str().unwrap());
    let v = json(&[ps, gs, "--json", "--et-postprocess"]);
    assert_eq!(v["ET"]["dice"], 0.0);
    assert_eq!(v["ET"]["hd95"], 373.13);
    assert_eq!(v["ET_postprocessed"]["dice"], 1.0);
    assert_eq!(v["ET_postprocessed"]["hd95"], 0.0);
    assert_eq!(v["TC"]["dice"], 1.0);
    // Below the threshold of 48 voxels the ET stays; the penalty is configurable.
    let v = json(&[
        ps,
        gs,
        "--json",
        "--et-postprocess=48",
        "--hd95-penalty",
        "100",
    ]);
    assert_eq!(v["ET_postprocessed"]["dice"], 0.0);
    assert_eq!(v["ET_postprocessed"]["hd95"], 100.0);
    assert_eq!(v["conventions"]["et_postprocess_min_voxels"], 48);
}

#[test]
fn different_grids_are_a_one_line_error_naming_both_files() {
    let dir = common::tempdir();
    let (p, g, h) = (
        dir.path().join("pred.nii.gz"),
        dir.path().join("gt.nii.gz"),
        dir.path().join("other.nii.gz"),
    );
    write(&p, &classes(0), LabelConvention::Brats, SPACING);
    write(
        &g,
        &Grid::zeros([20, 16, 11]),
        LabelConvention::Brats,
        SPACING,
    );
    write(&h, &classes(0), LabelConvention::Brats, [1.0, 1.0, 1.0]);
    for other in [&g, &h] {
        let out = metrics_cmd(&[p.to_str().unwrap(), other.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("pred.nii.gz")
                && err.contains(other.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
}

#[test]
fn conventions_can_be_given_and_bad_labels_are_errors() {
    let dir = common::tempdir();
    let (p, g) = (dir.path().join("p.nii.gz"), dir.path().join("g.nii.gz"));
    // MSD labels (1 edema, 2 NCR, 3 ET): guessed as BraTS 2023 unless asked for.
    write(&p, &classes(1), LabelConvention::Msd, SPACING);
    write(&g, &classes(0), LabelConvention::Msd, SPACING);
    let (ps, gs) = (p.to_str().unwrap(), g.to_str().unwrap());
    let msd = json(&[ps, gs, "--json", "--convention", "msd"]);
    let m = evaluate_case(&classes(1), &classes(0), SPACING, &MetricOptions::default());
    assert!((msd["TC"]["dice"].as_f64().unwrap() - m.regions[1].dice).abs() < 1e-12);
    assert_eq!(msd["conventions"]["labels_guessed"], false);
    let guessed = json(&[ps, gs, "--json"]);
    assert_eq!(guessed["conventions"]["labels"], "brats2023");
    // A 3 read as BraTS 2018–2021 is not a label.
    let out = metrics_cmd(&[ps, gs, "--convention", "brats"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("p.nii.gz") && err.contains("label 3"), "{err}");
    // Missing file.
    let missing = dir.path().join("missing.nii.gz");
    let out = metrics_cmd(&[missing.to_str().unwrap(), gs]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.nii.gz"));
}

#[test]
fn reads_label_files_written_by_nibabel() {
    if !common::python_has(&["numpy", "nibabel", "medpy"]) {
        return;
    }
    let dir = common::tempdir();
    let script = r#"
import sys
import numpy as np, nibabel as nib
from medpy.metric import binary as mb
out = sys.argv[1]
rng = np.random.default_rng(3)
x, y, z = np.meshgrid(np.arange(24), np.arange(20), np.arange(12), indexing="ij")
def blob(cx, cy, cz, r):
    return ((x - cx) ** 2 + (y - cy) ** 2 + ((z - cz) * 2) ** 2) < r * r
gt = np.zeros((24, 20, 12), np.int16)
gt[blob(12, 10, 6, 8)] = 2
gt[blob(12, 10, 6, 5)] = 1
gt[blob(12, 10, 6, 3)] = 4
pred = np.zeros_like(gt)
pred[blob(0, 10, 6, 9)] = 2          # touches the border at x = 0
pred[blob(13, 9, 6, 5)] = 1
pred[blob(13, 9, 6, 2)] = 4
aff = np.diag([1.2, 0.8, 2.5, 1.0])
nib.save(nib.Nifti1Image(pred, aff), out + "/pred.nii.gz")
nib.save(nib.Nifti1Image(gt, aff), out + "/gt.nii.gz")
for name, labels in [("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))]:
    p, g = np.isin(pred, labels), np.isin(gt, labels)
    print(name, mb.dc(p, g), mb.hd95(p, g, voxelspacing=(1.2, 0.8, 2.5)))
"#;
    let reference = common::run_python(script, &[dir.path().to_str().unwrap()]);
    let (p, g) = (dir.path().join("pred.nii.gz"), dir.path().join("gt.nii.gz"));
    let v = json(&[p.to_str().unwrap(), g.to_str().unwrap(), "--json"]);
    for line in reference.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dc, hd): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let ours = &v[f[0]];
        let (od, oh) = (
            ours["dice"].as_f64().unwrap(),
            ours["hd95"].as_f64().unwrap(),
        );
        assert!(
            (od - dc).abs() <= 1e-6 * dc,
            "{}: dice {od} vs medpy {dc}",
            f[0]
        );
        assert!(
            (oh - hd).abs() <= 1e-6 * hd,
            "{}: hd95 {oh} vs medpy {hd}",
            f[0]
        );
    }
}
