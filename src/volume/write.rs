//! Writing label maps (uint8) and float maps (float32) as single-file NIfTI, with the
//! geometry of a reference image: the same NIfTI version (NIfTI-2 stays NIfTI-2), dims,
//! pixdim, qform and sform (codes and values bit for bit), units and description; no
//! scaling (`scl_slope` 1, `scl_inter` 0).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::header::NiftiVersion;
use super::{Geometry, Grid};
use crate::fsutil::atomic_write;

/// Writes a label map as uint8 NIfTI (`.nii`, or gzip-compressed `.nii.gz`) with the
/// geometry `geometry` (and its NIfTI version); `labels` must have `geometry.dims`. The file appears atomically.
pub fn write_labels(path: &Path, geometry: &Geometry, labels: &Grid<u8>) -> Result<()> {
    write_nifti(path, geometry, labels.dims(), 2, 8, labels.data())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a float map as float32 NIfTI (`.nii` or `.nii.gz`) with the geometry
/// `geometry` (and its NIfTI version); `values` must have `geometry.dims`. The file appears atomically.
pub fn write_float(path: &Path, geometry: &Geometry, values: &Grid<f32>) -> Result<()> {
    write_nifti(path, geometry, values.dims(), 16, 32, values.data())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Voxel types that can be written, little-endian.
trait LeBytes: Copy {
    fn extend_le(self, out: &mut Vec<u8>);
}

impl LeBytes for u8 {
    fn extend_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

impl LeBytes for f32 {
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Whether `path` names a gzip-compressed NIfTI file; an error for names that are
/// neither `.nii` nor `.nii.gz`.
fn output_is_gz(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".nii.gz") {
        Ok(true)
    } else if name.ends_with(".nii") {
        Ok(false)
    } else {
        bail!("the output file name must end in .nii or .nii.gz")
    }
}

fn write_nifti<T: LeBytes>(
    path: &Path,
    geometry: &Geometry,
    dims: [usize; 3],
    datatype: i16,
    bitpix: i16,
    data: &[T],
) -> Result<()> {
    let gz = output_is_gz(path)?;
    let head = single_file_header(geometry, dims, datatype, bitpix, Uint8Scaling::IDENTITY)?;
    atomic_write(path, |w| {
        if gz {
            let mut enc = GzEncoder::new(&mut *w, Compression::new(6));
            write_body(&mut enc, &head, data)?;
            enc.finish()?;
        } else {
            write_body(w, &head, data)?;
        }
        Ok(())
    })
}

/// How the stored voxels of [`encode_u8_gz`] read back: `value = slope × stored + inter`
/// (NIfTI `scl_slope`, `scl_inter`), and the display window a viewer opens the image with
/// (`cal_min`, `cal_max`; none: the viewer chooses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uint8Scaling {
    /// `scl_slope`.
    pub slope: f64,
    /// `scl_inter`.
    pub inter: f64,
    /// `(cal_min, cal_max)` in read-back values.
    pub window: Option<(f64, f64)>,
}

impl Uint8Scaling {
    /// Stored values are the values (labels); no display window.
    pub const IDENTITY: Uint8Scaling = Uint8Scaling {
        slope: 1.0,
        inter: 0.0,
        window: None,
    };
}

/// A uint8 volume with `geometry` (and its NIfTI version) as the bytes of a gzip-compressed
/// single-file NIfTI, in memory: for pages that embed volumes rather than link files.
pub fn encode_u8_gz(
    geometry: &Geometry,
    voxels: &Grid<u8>,
    scaling: Uint8Scaling,
) -> Result<Vec<u8>> {
    let head = single_file_header(geometry, voxels.dims(), 2, 8, scaling)?;
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(9));
    write_body(&mut enc, &head, voxels.data())?;
    Ok(enc.finish()?)
}

/// The encoded header (and zero extension flag) of a single-file NIfTI of `dims` voxels of
/// `datatype`, starting from `geometry`'s header.
fn single_file_header(
    geometry: &Geometry,
    dims: [usize; 3],
    datatype: i16,
    bitpix: i16,
    scaling: Uint8Scaling,
) -> Result<Vec<u8>> {
    if dims != geometry.dims {
        bail!(
            "the grid has dims {dims:?} but the reference geometry has {:?}",
            geometry.dims
        );
    }
    let mut h = geometry.header().clone();
    if h.version == NiftiVersion::One
        && let Some(d) = dims.iter().find(|&&d| d == 0 || d > i16::MAX as usize)
    {
        bail!("dimension {d} cannot be stored in NIfTI-1 (1 to 32767)");
    }
    h.dim = [
        3,
        dims[0] as i64,
        dims[1] as i64,
        dims[2] as i64,
        1,
        1,
        1,
        1,
    ];
    h.datatype = datatype;
    h.bitpix = bitpix;
    h.vox_offset = h.version.single_vox_offset() as f64;
    h.scl_slope = scaling.slope;
    h.scl_inter = scaling.inter;
    (h.cal_min, h.cal_max) = scaling.window.unwrap_or((0.0, 0.0));
    h.analyze.glmax = 0;
    h.analyze.glmin = 0;
    h.intent_code = 0;
    h.intent_p = [0.0; 3];
    h.intent_name = [0; 16];
    h.magic = match h.version {
        NiftiVersion::One => *b"n+1\0",
        NiftiVersion::Two => *b"n+2\0",
    };
    let mut head = h.encode();
    // No extensions: the 4-byte extension flag is zero.
    head.extend_from_slice(&[0; 4]);
    Ok(head)
}

/// Header then voxels, converted to little-endian bytes in chunks.
fn write_body<W: Write, T: LeBytes>(w: &mut W, head: &[u8], data: &[T]) -> Result<()> {
    w.write_all(head)?;
    let mut buf = Vec::with_capacity(1 << 18);
    for chunk in data.chunks(1 << 16) {
        buf.clear();
        for &v in chunk {
            v.extend_le(&mut buf);
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::read_volume;

    fn geometry() -> Geometry {
        Geometry::from_affine(
            [3, 2, 2],
            [
                [-1.5, 0.0, 0.0, 10.0],
                [0.0, 1.0, 0.0, -20.0],
                [0.0, 0.0, 2.0, 5.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        )
    }

    #[test]
    fn labels_and_floats_round_trip_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let g = geometry();
        let labels = Grid::from_vec([3, 2, 2], (0u8..12).collect()).unwrap();
        let floats = labels.map(|v| f32::from(v) * 0.25 - 1.0);
        for name in ["l.nii", "l.nii.gz"] {
            let p = dir.path().join(name);
            write_labels(&p, &g, &labels).unwrap();
            let v = read_volume(&p).unwrap();
            assert_eq!(v.datatype, "uint8");
            assert_eq!(v.geometry, g);
            assert_eq!(v.channels[0], labels.map(f32::from));
        }
        for name in ["f.nii", "f.NII.GZ"] {
            let p = dir.path().join(name);
            write_float(&p, &g, &floats).unwrap();
            let v = read_volume(&p).unwrap();
            assert_eq!(v.datatype, "float32");
            assert_eq!(v.geometry.affine, g.affine);
            assert_eq!(v.channels[0], floats);
        }
        let gz = std::fs::read(dir.path().join("l.nii.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn uint8_bytes_read_back_scaled_with_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let g = geometry();
        let stored = Grid::from_vec([3, 2, 2], (0u8..12).collect()).unwrap();
        let scaling = Uint8Scaling {
            slope: 0.5,
            inter: -2.0,
            window: Some((-1.0, 3.0)),
        };
        let bytes = encode_u8_gz(&g, &stored, scaling).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        let p = dir.path().join("q.nii.gz");
        std::fs::write(&p, &bytes).unwrap();
        let v = read_volume(&p).unwrap();
        assert_eq!(v.datatype, "uint8");
        assert_eq!(v.geometry, g);
        assert_eq!(v.channels[0], stored.map(|s| f32::from(s) * 0.5 - 2.0));
        let h = v.geometry.header();
        assert_eq!((h.cal_min, h.cal_max), (-1.0, 3.0));
        assert!(encode_u8_gz(&g, &Grid::zeros([2, 2, 2]), scaling).is_err());
    }

    #[test]
    fn refuses_wrong_dims_and_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let g = geometry();
        let bad = Grid::<u8>::zeros([2, 2, 2]);
        let p = dir.path().join("x.nii");
        let e = format!("{:#}", write_labels(&p, &g, &bad).unwrap_err());
        assert!(e.contains("x.nii") && e.contains("dims"), "{e}");
        assert!(!p.exists());
        let p = dir.path().join("x.img");
        assert!(write_labels(&p, &g, &Grid::zeros([3, 2, 2])).is_err());
    }
}
