//! `a2fseg info` end to end: text and JSON output, and one-line errors naming the file.

mod common;

use std::path::Path;
use std::process::Command;

use a2fseg::volume::{Geometry, Grid, write_float, write_labels};
use serde_json::Value;

fn sample(dir: &Path) -> std::path::PathBuf {
    let g = Geometry::from_affine(
        [3, 2, 2],
        [
            [-2.0, 0.0, 0.0, 10.0],
            [0.0, 1.5, 0.0, -20.0],
            [0.0, 0.0, 3.0, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    );
    let grid = Grid::from_vec([3, 2, 2], (0..12).map(|v| v as f32 - 2.5).collect()).unwrap();
    let p = dir.join("img.nii.gz");
    write_float(&p, &g, &grid).unwrap();
    p
}

#[test]
fn info_json_has_every_key_and_the_right_values() {
    let dir = common::tempdir();
    let p = sample(dir.path());
    let out = Command::new(common::bin())
        .args(["info", "--json"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["shape"], serde_json::json!([3, 2, 2]));
    assert_eq!(v["datatype"], "float32");
    assert_eq!(v["spacing"], serde_json::json!([2.0, 1.5, 3.0]));
    assert_eq!(v["affine"][0], serde_json::json!([-2.0, 0.0, 0.0, 10.0]));
    assert_eq!(v["affine"][3], serde_json::json!([0.0, 0.0, 0.0, 1.0]));
    assert_eq!(v["min"], -2.5);
    assert_eq!(v["max"], 8.5);
    assert_eq!(v["sum"], 36.0);
    assert_eq!(v["mean"], 3.0);
}

#[test]
fn info_text_lists_shape_datatype_spacing_affine_and_statistics() {
    let dir = common::tempdir();
    let g = Geometry::from_affine(
        [2, 2, 1],
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    );
    let p = dir.path().join("seg.nii");
    write_labels(
        &p,
        &g,
        &Grid::from_vec([2, 2, 1], vec![0, 1, 2, 4]).unwrap(),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .arg("info")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "shape:    2 x 2 x 1",
        "datatype: uint8",
        "spacing:  1 x 1 x 1 mm",
        "affine:",
        "min:      0",
        "max:      4",
        "mean:     1.75",
        "sum:      7",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn info_errors_are_one_line_naming_the_file_with_exit_1() {
    let dir = common::tempdir();
    let good = sample(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.nii.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let text = dir.path().join("notes.nii");
    std::fs::write(&text, "not an image").unwrap();
    let missing = dir.path().join("missing.nii.gz");
    for (p, needle) in [
        (&truncated, "gzip"),
        (&text, "not a NIfTI-1 file"),
        (&missing, "missing.nii.gz"),
    ] {
        let out = Command::new(common::bin())
            .arg("info")
            .arg(p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", p.display());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(err.contains(&*name) && err.contains(needle), "{err}");
    }
}
