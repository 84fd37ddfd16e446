//! End-to-end tests of `a2fseg phantom`: files in the BraTS 2020 layout that read back as
//! generated, the manifest, safe handling of existing folders, and one-line errors.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use a2fseg::dataset::{Layout, discover, load_case};
use a2fseg::labels::LabelConvention;
use a2fseg::phantom::{PhantomGeometry, generate_case, generate_case_with, read_manifest};
use a2fseg::volume::read_volume;

fn phantom(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("phantom")
        .args(args)
        .output()
        .expect("cannot run a2fseg")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn writes_two_tiny_cases_that_read_back() {
    let dir = common::tempdir();
    let out = dir.path().join("phantoms");
    let o = phantom(&[
        "--out",
        out.to_str().unwrap(),
        "--cases",
        "2",
        "--shape",
        "32,32,32",
        "--seed",
        "7",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_manifest(&out).unwrap().expect("phantom.json");
    assert!(m.matches(2, [32, 32, 32], 7));
    // The default geometry is BraTS's 240×240×155 mm: 7.5 mm voxels on 32³.
    assert_eq!(m.spacing, [7.5; 3]);
    // Only the dataset is left: no temporary folder beside it.
    let beside: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(beside.len(), 1);
    for (i, case) in m.cases.iter().enumerate() {
        let id = format!("BraTS20_Training_{:03}", i + 1);
        assert_eq!(case.id, id);
        let expected = generate_case(7, i, [32, 32, 32]);
        let folder = out.join(&id);
        for (k, suffix) in ["t1", "t1ce", "t2", "flair"].iter().enumerate() {
            let v = read_volume(&folder.join(format!("{id}_{suffix}.nii.gz"))).unwrap();
            assert_eq!(v.geometry.dims, [32, 32, 32]);
            assert_eq!(v.geometry.spacing, [7.5; 3]);
            assert_eq!(v.geometry.affine[0][0], -7.5);
            assert_eq!(v.channels[0], expected.images[k], "{id} {suffix}");
        }
        let seg = read_volume(&folder.join(format!("{id}_seg.nii.gz"))).unwrap();
        let labels: Vec<u8> = seg.channels[0].data().iter().map(|&v| v as u8).collect();
        let want: Vec<u8> = expected
            .classes
            .data()
            .iter()
            .map(|&c| [0, 1, 2, 4][c as usize])
            .collect();
        assert_eq!(labels, want, "{id} seg in BraTS labels");
        let et = want.iter().filter(|&&l| l == 4).count();
        assert_eq!(case.voxels.et, et);
    }

    // The dataset module sees a complete BraTS 2020 set, and `dataset check` finds no problem.
    let ds = discover(&out).unwrap();
    assert_eq!(ds.layout, Layout::Brats2020);
    assert_eq!(ds.convention, LabelConvention::Brats);
    assert_eq!(ds.cases.len(), 2);
    for (i, cf) in ds.cases.iter().enumerate() {
        assert_eq!(cf.available().name(), "1111");
        assert!(cf.has_seg());
        let loaded = load_case(&ds, cf).unwrap();
        assert_eq!(
            loaded.classes.as_ref(),
            Some(&generate_case(7, i, [32, 32, 32]).classes)
        );
    }
    let o = Command::new(common::bin())
        .args(["dataset", "check", out.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], serde_json::Value::Bool(true), "{report}");
}

#[test]
fn replaces_a_phantom_set_but_refuses_other_folders() {
    let dir = common::tempdir();
    let out = dir.path().join("p");
    let args = |seed: &str| -> Vec<String> {
        [
            "--out",
            out.to_str().unwrap(),
            "--cases",
            "1",
            "--shape",
            "16,16,16",
            "--seed",
            seed,
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        phantom(&refs)
    };
    assert!(run(args("1")).status.success());
    let o = run(args("2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_manifest(&out).unwrap().unwrap().seed, 2);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "old set removed"
    );

    let other = dir.path().join("mine");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), "keep me").unwrap();
    let o = phantom(&[
        "--out",
        other.to_str().unwrap(),
        "--cases",
        "1",
        "--shape",
        "16,16,16",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("refusing to overwrite") && e.trim().lines().count() == 1,
        "{e}"
    );
    assert_eq!(
        fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(!Path::new(&other.join("phantom.json")).exists());
}

#[test]
fn bad_options_fail_on_one_line_naming_the_option() {
    let dir = common::tempdir();
    let out = dir.path().join("p");
    let out = out.to_str().unwrap();
    for (args, name) in [
        (vec!["--out", out, "--cases", "0"], "--cases"),
        (
            vec!["--out", out, "--cases", "1", "--shape", "32,32"],
            "--shape",
        ),
        (
            vec!["--out", out, "--cases", "1", "--shape", "2,32,32"],
            "--shape",
        ),
    ] {
        let o = phantom(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains(name) && e.trim().lines().count() == 1,
            "{args:?}: {e}"
        );
    }
    assert!(!Path::new(out).exists(), "nothing written on bad input");
}

#[test]
fn geometries_are_recorded_and_read_back() {
    let dir = common::tempdir();
    let out = dir.path().join("brats");
    let o = phantom(&[
        "--out",
        out.to_str().unwrap(),
        "--cases",
        "1",
        "--shape",
        "48,48,31",
        "--geometry",
        "brats",
        "--seed",
        "3",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_manifest(&out).unwrap().expect("phantom.json");
    // BraTS's 240×240×155 mm on 48×48×31 voxels: 5 mm.
    assert_eq!(m.geometry, PhantomGeometry::Brats);
    assert_eq!(m.spacing, [5.0; 3]);
    assert!(m.matches_with(1, [48, 48, 31], 3, PhantomGeometry::Brats));
    assert!(m.matches(1, [48, 48, 31], 3), "the default geometry");
    assert!(!m.matches_with(1, [48, 48, 31], 3, PhantomGeometry::Fit));
    let id = "BraTS20_Training_001";
    let expected = generate_case_with(3, 0, [48, 48, 31], PhantomGeometry::Brats);
    let v = read_volume(&out.join(format!("{id}/{id}_flair.nii.gz"))).unwrap();
    assert_eq!(v.geometry.spacing, [5.0; 3]);
    assert_eq!(v.channels[0], expected.images[3]);

    // The fit geometry (generator version 1's default): the brain fills the grid.
    let fit = dir.path().join("fit");
    let o = phantom(&[
        "--out",
        fit.to_str().unwrap(),
        "--cases",
        "1",
        "--shape",
        "32,32,32",
        "--geometry",
        "fit",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_manifest(&fit).unwrap().expect("phantom.json");
    assert_eq!(m.geometry, PhantomGeometry::Fit);
    assert_eq!(m.spacing, [6.0; 3]);
    assert!(
        !m.matches(1, [32, 32, 32], 2020),
        "not the default geometry"
    );

    let o = phantom(&[
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--cases",
        "1",
        "--geometry",
        "mni",
    ]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    let e = stderr(&o);
    assert!(e.contains("--geometry") && e.contains("mni"), "{e}");
}
