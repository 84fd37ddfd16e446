//! The public preprocessing path as `train`/`predict` use it: discover → cache → paste a
//! prediction back into the original grid and convention.

use a2fseg::dataset::{discover, load_case};
use a2fseg::labels::LabelConvention;
use a2fseg::modality::Modality;
use a2fseg::preprocess::{Cache, PreprocessSettings};
use a2fseg::volume::{Geometry, Grid, read_volume, write_float, write_labels};

mod common;

const DIMS: [usize; 3] = [8, 7, 6];

#[test]
fn cached_case_pastes_back_into_the_original_grid() {
    let tmp = common::tempdir();
    let root = tmp.path().join("data");
    let id = "BraTS-GLI-00001-000";
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = if i == 3 { 1.0 } else { -1.5 };
    }
    affine[0][3] = 30.0;
    let geometry = Geometry::from_affine(DIMS, affine);
    // The head occupies x 2..6, y 1..5, z 1..4 in T1n, one more voxel in z in T2-FLAIR.
    let mut t1 = Grid::<f32>::zeros(DIMS);
    let mut flair = Grid::<f32>::zeros(DIMS);
    let mut seg = Grid::<u8>::zeros(DIMS);
    for z in 1..5 {
        for y in 1..5 {
            for x in 2..6 {
                if z < 4 {
                    t1.set(x, y, z, 100.0 + (x * y * z) as f32);
                }
                flair.set(x, y, z, 50.0 + (x + y + z) as f32);
            }
        }
    }
    seg.set(3, 2, 2, 1);
    seg.set(4, 2, 2, 2);
    seg.set(4, 3, 4, 3);
    write_float(&root.join(format!("{id}/{id}-t1n.nii.gz")), &geometry, &t1).unwrap();
    write_float(
        &root.join(format!("{id}/{id}-t2f.nii.gz")),
        &geometry,
        &flair,
    )
    .unwrap();
    write_labels(&root.join(format!("{id}/{id}-seg.nii.gz")), &geometry, &seg).unwrap();

    let ds = discover(&root).unwrap();
    assert_eq!(ds.convention, LabelConvention::Brats2023);
    let case = &ds.cases[0];
    assert_eq!(case.available().name(), "1001");
    let cache = Cache::open(&tmp.path().join("cache")).unwrap();
    let pre = cache
        .get_or_compute(&ds, case, &PreprocessSettings::default())
        .unwrap();
    assert_eq!(pre.crop.start, [2, 1, 1]);
    assert_eq!(pre.crop.dims, [4, 4, 4]);
    assert!(pre.image(Modality::T1c).is_none());
    assert_eq!(pre.geometry, load_case(&ds, case).unwrap().geometry);

    // The second run reads the entry back, identical.
    let again = cache
        .get_or_compute(&ds, case, &PreprocessSettings::default())
        .unwrap();
    assert_eq!(again, pre);

    // A "prediction" equal to the cropped classes, pasted back and written in the
    // dataset's own convention with the original geometry, reproduces the seg file.
    let pred = pre.paste_back(pre.classes.as_ref().unwrap(), 0);
    let labels = pre.convention.labels_from_classes(&pred);
    let out = tmp.path().join("pred.nii.gz");
    write_labels(&out, &pre.geometry, &labels).unwrap();
    let back = read_volume(&out).unwrap();
    assert_eq!(back.geometry.affine, geometry.affine);
    assert_eq!(back.channels[0], seg.map(f32::from));
}
