//! Resampling (`a2fseg::preprocess::resample`) against scipy.ndimage.zoom: linear, cubic
//! and nearest-neighbour, upsampling and downsampling, anisotropic cases, axes of one voxel.

mod common;

use std::fs;

use a2fseg::preprocess::resample::{
    resample_image, resample_labels, resample_linear, resampled_dims,
};
use a2fseg::volume::Grid;

use common::Rng;

/// scipy's zoom of the raw little-endian f32 file argv[1] (C order z, y, x of shape
/// argv[2..5]) to the shape argv[5..8] with spline order argv[8], mode 'nearest', along the
/// axes (z, y, x) flagged in argv[9] (others keep their length), written to argv[10].
const SCRIPT: &str = r#"
import sys
import numpy as np
from scipy import ndimage
shape = tuple(int(v) for v in sys.argv[2:5])
target = [int(v) for v in sys.argv[5:8]]
order = int(sys.argv[8])
axes = [c == '1' for c in sys.argv[9]]
a = np.fromfile(sys.argv[1], dtype='<f4').reshape(shape)
zoom = [t / s if on and s > 1 else 1.0 for t, s, on in zip(target, shape, axes)]
out = ndimage.zoom(a.astype(np.float64), zoom, order=order, mode='nearest')
assert list(out.shape) == [t if on and s > 1 else s for t, s, on in zip(target, shape, axes)], out.shape
out.astype('<f4').tofile(sys.argv[10])
"#;

/// scipy's zoom of `g` to `dims` (x, y, z) with `order` along the `axes` (x, y, z) flagged.
fn scipy_zoom(g: &Grid<f32>, dims: [usize; 3], order: usize, axes: [bool; 3]) -> Vec<f32> {
    let dir = common::tempdir();
    let input = dir.path().join("in.f32");
    let output = dir.path().join("out.f32");
    let bytes: Vec<u8> = g.data().iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(&input, bytes).unwrap();
    let [x, y, z] = g.dims();
    let flags: String = [axes[2], axes[1], axes[0]]
        .iter()
        .map(|&b| if b { '1' } else { '0' })
        .collect();
    let args: Vec<String> = [
        input.display().to_string(),
        z.to_string(),
        y.to_string(),
        x.to_string(),
        dims[2].to_string(),
        dims[1].to_string(),
        dims[0].to_string(),
        order.to_string(),
        flags,
        output.display().to_string(),
    ]
    .into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_python(SCRIPT, &args);
    fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A smooth positive field with some noise (no zero voxel, so the image resampler's
/// background rule does not apply).
fn field(dims: [usize; 3], rng: &mut Rng) -> Grid<f32> {
    let n = dims.iter().product();
    let data = (0..n)
        .map(|i| {
            let x = (i % dims[0]) as f64;
            let y = ((i / dims[0]) % dims[1]) as f64;
            let z = (i / (dims[0] * dims[1])) as f64;
            (50.0 + 20.0 * (0.4 * x).sin() * (0.3 * y + 0.2 * z).cos() + rng.uniform(0.0, 4.0))
                as f32
        })
        .collect();
    Grid::from_vec(dims, data).unwrap()
}

fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: sizes");
    let worst = common::max_diff(ours, theirs);
    assert!(worst < 1e-3, "{what}: max difference {worst}");
}

#[test]
fn resampling_matches_scipy_zoom() {
    if !common::python_has(&["numpy", "scipy"]) {
        return;
    }
    let mut rng = Rng(7);
    for (dims, to) in [
        ([9, 8, 7], [13, 5, 11]),
        ([12, 10, 4], [12, 10, 9]),
        ([6, 1, 5], [10, 1, 3]),
    ] {
        let g = field(dims, &mut rng);
        assert_close(
            resample_linear(&g, to).data(),
            &scipy_zoom(&g, to, 1, [true; 3]),
            &format!("linear {dims:?} -> {to:?}"),
        );
        // Isotropic spacings: cubic splines on every axis.
        let from = [1.0; 3];
        let spacing = std::array::from_fn(|a| dims[a] as f64 / to[a] as f64);
        assert_close(
            resample_image(&g, to, from, spacing).data(),
            &scipy_zoom(&g, to, 3, [true; 3]),
            &format!("cubic {dims:?} -> {to:?}"),
        );
    }
    // 1 × 1 × 5 mm slices to 1 mm: in-plane cubic (here unchanged), across slices nearest.
    let g = field([10, 9, 6], &mut rng);
    let to = resampled_dims([10, 9, 6], [1.0, 1.0, 5.0], [1.0; 3]);
    assert_eq!(to, [10, 9, 30]);
    let ours = resample_image(&g, to, [1.0, 1.0, 5.0], [1.0; 3]);
    assert_close(
        ours.data(),
        &scipy_zoom(&g, to, 0, [false, false, true]),
        "anisotropic",
    );
    // 0.5 × 0.5 × 5 mm to 1 mm: in-plane cubic, then across slices nearest.
    let to = resampled_dims([10, 9, 6], [0.5, 0.5, 5.0], [1.0; 3]);
    let ours = resample_image(&g, to, [0.5, 0.5, 5.0], [1.0; 3]);
    let planes = scipy_zoom(&g, to, 3, [true, true, false]);
    let planes = Grid::from_vec([to[0], to[1], 6], planes).unwrap();
    assert_close(
        ours.data(),
        &scipy_zoom(&planes, to, 0, [false, false, true]),
        "anisotropic in-plane and across",
    );
    // Labels: nearest-neighbour.
    let labels = Grid::from_vec(
        [7, 5, 4],
        (0..140).map(|i| ((i * 7 + i / 9) % 4) as u8).collect(),
    )
    .unwrap();
    let as_f32 = Grid::from_vec(
        [7, 5, 4],
        labels.data().iter().map(|&v| f32::from(v)).collect(),
    )
    .unwrap();
    let ours: Vec<f32> = resample_labels(&labels, [12, 3, 9])
        .data()
        .iter()
        .map(|&v| f32::from(v))
        .collect();
    assert_close(
        &ours,
        &scipy_zoom(&as_f32, [12, 3, 9], 0, [true; 3]),
        "labels",
    );
}
