//! `dataset stats` against numpy + nibabel: the same numbers computed from the files by an
//! independent Python implementation of the documented definitions (z-score over each
//! modality's non-zero voxels, class means inside that brain, volumes as a share of the
//! union brain, bounding box, sample s.d. across cases).

mod common;

use serde_json::Value;

/// Reads every case of a BraTS 2020-layout folder (`sys.argv[1]`) with nibabel and prints
/// the per-case numbers and their summary as JSON.
const SCRIPT: &str = r#"
import json, os, sys
import numpy as np
import nibabel as nib

root = sys.argv[1]
ids = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
per_case = []
for cid in ids:
    def load(suffix):
        return np.asarray(nib.load(f"{root}/{cid}/{cid}_{suffix}.nii.gz").dataobj)
    images = [load(s).astype(np.float64) for s in ("t1", "t1ce", "t2", "flair")]
    seg = load("seg").astype(np.int64)
    classes = np.select([seg == 1, seg == 2, seg == 4], [1, 2, 3], 0)
    brain = np.zeros(seg.shape, bool)
    for im in images:
        brain |= im != 0
    mean_z = []
    for im in images:
        inside = im != 0
        v = im[inside]
        z = (im - v.mean()) / v.std()
        row = []
        for k in range(4):
            sel = inside & (classes == k)
            row.append(float(z[sel].mean()) if sel.any() else None)
        mean_z.append(row)
    n_brain = int(brain.sum())
    volume = [100.0 * int((brain & (classes == k)).sum()) / n_brain for k in (1, 2, 3)]
    idx = np.argwhere(brain)
    box = (idx.max(axis=0) - idx.min(axis=0) + 1).tolist()
    per_case.append(dict(id=cid, brain_voxels=n_brain, brain_box=box, mean_z=mean_z,
                         volume_percent=volume))

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return dict(mean=float(np.mean(values)), sd=sd, cases=len(values))

z = []
for m, key in enumerate(("t1", "t1c", "t2", "flair")):
    row = dict(modality=key)
    for k, name in enumerate(("healthy", "ncr", "edema", "et")):
        row[name] = summary([c["mean_z"][m][k] for c in per_case])
    z.append(row)
volume = {name: summary([c["volume_percent"][r] for c in per_case])
          for r, name in enumerate(("ncr", "edema", "et"))}
boxes = np.array([c["brain_box"] for c in per_case])
print(json.dumps(dict(cases=len(per_case), z=z, volume_percent=volume,
                      brain_box_min=boxes.min(axis=0).tolist(),
                      brain_box_max=boxes.max(axis=0).tolist(), per_case=per_case)))
"#;

/// Asserts that two JSON values agree: numbers within `tol` (absolute), everything else
/// exactly; `at` names the place in a failure.
fn assert_close(ours: &Value, theirs: &Value, tol: f64, at: &str) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{at}: {a} vs numpy {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: lengths");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, tol, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, y) in b {
                let x = a.get(k).unwrap_or_else(|| panic!("{at}.{k} missing"));
                assert_close(x, y, tol, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(ours, theirs, "{at}"),
    }
}

#[test]
fn dataset_stats_match_numpy_and_nibabel() {
    if !common::python_has(&["numpy", "nibabel"]) {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("phantoms");
    a2fseg::phantom::write_dataset(&dir, 5, [36, 40, 32], 21, true).unwrap();
    let dir_arg = dir.to_str().unwrap();
    let out = common::a2fseg_ok(&["dataset", "stats", dir_arg, "--json", "--quiet"]);
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: Value = serde_json::from_str(&common::run_python(SCRIPT, &[dir_arg])).unwrap();
    // Every key numpy computed (all but the label names) agrees; f32 z-scores against
    // numpy's float64 differ in the 7th digit.
    assert_close(&ours, &theirs, 1e-5, "stats");
    assert_eq!(ours["cases"], 5);
    eprintln!(
        "dataset stats agree with numpy on {} cases",
        theirs["per_case"].as_array().unwrap().len()
    );
}
