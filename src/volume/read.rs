//! Reading NIfTI-1 and NIfTI-2 files (`.nii`, `.nii.gz`, `.hdr`/`.img` pairs, `.img.gz`)
//! into f32 grids, with the values nibabel's `get_fdata()` gives.
//!
//! Headers are parsed in [`super::header`] (NIfTI-1 by the `nifti` crate); everything else
//! is done here, because the crate's reader was found wrong on files nibabel reads
//! correctly (and it has no NIfTI-2 support):
//! - it ignores `vox_offset` in `.nii` files (data assumed right after the extensions),
//! - it applies `scl_slope = NaN` as a real slope (nibabel: NaN or 0 means no scaling),
//! - it panics on a `bitpix` that does not match the datatype,
//! - it accepts a gzip stream with a bad CRC or a truncated end,
//! - it refuses `.img` file names for header/image pairs.
//!
//! Gzip is detected from the content (magic bytes), not the name, and is always
//! decompressed to the end so that truncation and CRC errors are reported.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::read::MultiGzDecoder;

use super::header::{V2_SIZE, parse_header};
use super::voxels::{DataType, decode, slope_inter};
use super::{Geometry, Grid};

/// A volume read from disk: its geometry and its voxels, scaled by `scl_slope` /
/// `scl_inter` and converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Grid, spacing, affine and header.
    pub geometry: Geometry,
    /// One grid of `geometry.dims` per volume: 1 for a 3D file, `t` for a 4D file
    /// (in file order).
    pub channels: Vec<Grid<f32>>,
    /// The on-disk voxel type, as numpy names it (`"int16"`, `"float32"`, ...).
    pub datatype: String,
    /// The array shape as nibabel reports it: `dim[1..=dim[0]]` (e.g. `[x, y, z, t]`).
    pub shape: Vec<usize>,
    /// How many voxels were NaN or infinite after scaling (over every channel); what
    /// became of them depends on the [`NonFinite`] policy of the read.
    pub non_finite: usize,
}

/// What reading does with voxels that are NaN or infinite after scaling (resampling tools
/// leave NaN outside the field of view; nibabel reads such files as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// The read fails, naming the file, the count and the first such voxel.
    Refuse,
    /// The values are kept as they are (for `info`, which reports them).
    Keep,
    /// The values become 0, which every stage reads as outside the brain.
    Zero,
}

/// Reads a NIfTI-1 or NIfTI-2 volume. Fails with a one-line message naming the file on
/// anything unreadable: missing or truncated file, corrupt gzip, non-NIfTI data (ANALYZE
/// 7.5 included), an unsupported datatype (RGB, complex, float128), more than 4
/// dimensions, or a NaN or infinite voxel value after scaling.
pub fn read_volume(path: &Path) -> Result<Volume> {
    read_volume_with(path, NonFinite::Refuse)
}

/// [`read_volume`] with a choice of what happens to NaN or infinite voxels; the count of
/// such voxels is [`Volume::non_finite`] either way.
pub fn read_volume_with(path: &Path, non_finite: NonFinite) -> Result<Volume> {
    read_volume_inner(path, non_finite).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads only the header of a NIfTI-1 or NIfTI-2 file and returns its geometry (cheap:
/// voxel data is neither read nor checked).
pub fn read_geometry(path: &Path) -> Result<Geometry> {
    let inner = || -> Result<Geometry> {
        let (header_path, _) = resolve(path)?;
        let bytes = read_prefix(&header_path, V2_SIZE)?;
        Geometry::from_header(parse_header(&bytes)?)
    };
    inner().with_context(|| format!("cannot read {}", path.display()))
}

/// The header file and, for a pair, the separate image file.
fn resolve(path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".gz").unwrap_or(&lower);
    let kind = if base.ends_with(".hdr") {
        "hdr"
    } else if base.ends_with(".img") {
        "img"
    } else {
        return Ok((path.to_path_buf(), None));
    };
    // The stem keeps the user's case; the partner's extension follows the case of theirs.
    let stem_len = base.len() - 4;
    let stem = &name[..stem_len];
    let upper = name[stem_len + 1..stem_len + 4]
        .chars()
        .all(|c| c.is_ascii_uppercase());
    let partner_ext = match (kind, upper) {
        ("hdr", false) => "img",
        ("hdr", true) => "IMG",
        (_, false) => "hdr",
        (_, true) => "HDR",
    };
    let gz = if upper { ".GZ" } else { ".gz" };
    if !path.exists() {
        bail!("no such file");
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let candidates = [
        dir.join(format!("{stem}.{partner_ext}")),
        dir.join(format!("{stem}.{partner_ext}{gz}")),
    ];
    let Some(partner) = candidates.iter().find(|p| p.exists()).cloned() else {
        bail!(
            "the matching {} file is missing (looked for {} and {})",
            if kind == "hdr" { "image" } else { "header" },
            candidates[0].display(),
            candidates[1].display()
        );
    };
    Ok(if kind == "hdr" {
        (path.to_path_buf(), Some(partner))
    } else {
        (partner, Some(path.to_path_buf()))
    })
}

/// Whether `bytes` start with the gzip magic number.
fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The whole (decompressed) content of `path`. Gzip members are decompressed to the end,
/// so a truncated stream or a CRC / length mismatch is an error.
fn read_all(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).with_context(|| format!("cannot open {}", path.display()))?;
    if !is_gzip(&raw) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| {
            anyhow::anyhow!("corrupt or truncated gzip data in {}: {e}", path.display())
        })?;
    Ok(out)
}

/// Up to the first `n` (decompressed) bytes of `path`.
fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut magic)?;
    let reader: Box<dyn Read> = if is_gzip(&magic) {
        Box::new(MultiGzDecoder::new(std::io::Cursor::new(magic).chain(file)))
    } else {
        Box::new(std::io::Cursor::new(magic).chain(file))
    };
    let mut out = Vec::with_capacity(n);
    reader
        .take(n as u64)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("corrupt gzip data in {}: {e}", path.display()))?;
    Ok(out)
}

fn read_volume_inner(path: &Path, policy: NonFinite) -> Result<Volume> {
    let (header_path, image_path) = resolve(path)?;
    let header_bytes = read_all(&header_path)?;
    let header = match (parse_header(&header_bytes), &image_path) {
        (Ok(h), _) => h,
        // For a pair, say which of the two files is wrong.
        (Err(e), Some(_)) => return Err(e.context(format!("in {}", header_path.display()))),
        (Err(e), None) => return Err(e),
    };
    let dt = DataType::from_code(header.datatype)?;
    let geometry = Geometry::from_header(header.clone())?;
    let ndim = header.dim[0] as usize;
    if let Some(i) = (1..=ndim).find(|&i| header.dim[i] <= 0) {
        bail!("invalid dimension dim[{i}] = {}", header.dim[i]);
    }
    let shape = (1..=ndim)
        .map(|i| usize::try_from(header.dim[i]))
        .collect::<Result<Vec<usize>, _>>()?;
    if shape.len() > 4 && shape[4..].iter().any(|&d| d != 1) {
        bail!("{ndim}D images (shape {shape:?}) are not supported, only 3D and 4D");
    }
    let n_channels = shape.get(3).copied().unwrap_or(1);
    let [nx, ny, nz] = geometry.dims;
    // NIfTI-2 dims are 64-bit: a header can claim more voxels than any file holds.
    let per_channel = nx
        .checked_mul(ny)
        .and_then(|n| n.checked_mul(nz))
        .with_context(|| format!("shape {shape:?} is too large"))?;
    let n_values = per_channel
        .checked_mul(n_channels)
        .filter(|n| n.checked_mul(dt.size()).is_some())
        .with_context(|| format!("shape {shape:?} is too large"))?;
    let n_bytes = n_values * dt.size();

    let vox_offset = header.vox_offset;
    if !vox_offset.is_finite() || vox_offset < 0.0 {
        bail!("invalid vox_offset {vox_offset}");
    }
    let (data, data_name) = match &image_path {
        None => {
            // nibabel refuses 0 < vox_offset < 352 (544 for NIfTI-2) in a single file; with
            // 0 it would read the header bytes as voxels, which is never what a file means.
            let min = header.version.single_vox_offset();
            if vox_offset < min as f64 {
                bail!(
                    "vox_offset {vox_offset} is below {min}, the minimum for a single-file {}",
                    header.version.name()
                );
            }
            (header_bytes, &header_path)
        }
        Some(img) => (read_all(img)?, img),
    };
    // nibabel truncates a fractional vox_offset (`int(vox_offset)`).
    let offset = vox_offset as usize;
    let available = data.len().saturating_sub(offset);
    if available < n_bytes {
        bail!(
            "truncated voxel data in {}: shape {shape:?} of {} needs {n_bytes} bytes from offset {offset}, found {available}",
            data_name.display(),
            dt.name()
        );
    }
    let big = header.big_endian;
    let scale = slope_inter(&header)?;
    let mut values = Vec::with_capacity(n_values);
    decode(&data[offset..offset + n_bytes], dt, big, scale, &mut values);
    drop(data);

    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        match policy {
            NonFinite::Refuse => {
                let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
                let (t, r) = (i / per_channel, i % per_channel);
                bail!(
                    "{bad} voxel value(s) are NaN or infinite after scaling (first at x={}, y={}, z={}, volume {t})",
                    r % nx,
                    (r / nx) % ny,
                    r / (nx * ny)
                );
            }
            NonFinite::Keep => {}
            NonFinite::Zero => values
                .iter_mut()
                .filter(|v| !v.is_finite())
                .for_each(|v| *v = 0.0),
        }
    }
    let channels = if n_channels == 1 {
        vec![Grid::from_vec(geometry.dims, values).context("internal size mismatch")?]
    } else {
        values
            .chunks_exact(per_channel)
            .map(|c| Grid::from_vec(geometry.dims, c.to_vec()).context("internal size mismatch"))
            .collect::<Result<Vec<_>>>()?
    };
    Ok(Volume {
        geometry,
        channels,
        datatype: dt.name().to_string(),
        shape,
        non_finite: bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::header::tests::encode_v1 as encode_header;
    use nifti::NiftiHeader;

    /// A minimal single-file NIfTI-1 image: header, 4 zero bytes, then `data`.
    fn nii(h: &NiftiHeader, data: &[u8]) -> Vec<u8> {
        let mut b = encode_header(h);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(data);
        b
    }

    fn header(dims: [u16; 3], datatype: i16) -> NiftiHeader {
        NiftiHeader {
            dim: [3, dims[0], dims[1], dims[2], 1, 1, 1, 1],
            datatype,
            vox_offset: 352.0,
            scl_slope: 1.0,
            magic: *b"n+1\0",
            ..NiftiHeader::default()
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_int16_with_scaling_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([2, 3, 1], 4);
        h.scl_slope = 2.0;
        h.scl_inter = -1.0;
        let data: Vec<u8> = (0i16..6).flat_map(|v| v.to_le_bytes()).collect();
        let p = write(dir.path(), "a.nii", &nii(&h, &data));
        let v = read_volume(&p).unwrap();
        assert_eq!(v.datatype, "int16");
        assert_eq!(v.shape, vec![2, 3, 1]);
        assert_eq!(v.channels[0].data(), &[-1.0, 1.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(v.channels[0].get(1, 2, 0), 9.0);
    }

    #[test]
    fn nan_slope_means_no_scaling() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([2, 1, 1], 2);
        h.scl_slope = f32::NAN;
        h.scl_inter = 5.0;
        let p = write(dir.path(), "a.nii", &nii(&h, &[3, 4]));
        assert_eq!(read_volume(&p).unwrap().channels[0].data(), &[3.0, 4.0]);
    }

    #[test]
    fn odd_bitpix_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([2, 1, 1], 2);
        h.bitpix = 13;
        let p = write(dir.path(), "a.nii", &nii(&h, &[1, 2]));
        assert_eq!(read_volume(&p).unwrap().channels[0].data(), &[1.0, 2.0]);
    }

    #[test]
    fn honours_vox_offset_and_refuses_low_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([2, 1, 1], 2);
        h.vox_offset = 360.0;
        let mut b = nii(&h, &[9; 8]);
        b.extend_from_slice(&[7, 8]);
        let p = write(dir.path(), "a.nii", &b);
        assert_eq!(read_volume(&p).unwrap().channels[0].data(), &[7.0, 8.0]);
        for low in [0.0, 348.0] {
            h.vox_offset = low;
            let p = write(dir.path(), "b.nii", &nii(&h, &[1, 2]));
            let e = format!("{:#}", read_volume(&p).unwrap_err());
            assert!(e.contains("b.nii") && e.contains("vox_offset"), "{e}");
        }
    }

    #[test]
    fn truncated_data_and_nan_voxels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let h = header([2, 2, 1], 16);
        let p = write(dir.path(), "t.nii", &nii(&h, &[0; 12]));
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(e.contains("truncated") && e.contains("t.nii"), "{e}");
        let data: Vec<u8> = [0.0f32, 1.0, f32::NAN, f32::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = write(dir.path(), "n.nii", &nii(&h, &data));
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(
            e.contains("2 voxel value(s) are NaN") && e.contains("n.nii"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_voxels_are_refused_kept_or_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = [1.0f32, f32::NAN, f32::NEG_INFINITY, 2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = write(dir.path(), "n.nii", &nii(&header([2, 2, 1], 16), &data));
        let e = format!("{:#}", read_volume_with(&p, NonFinite::Refuse).unwrap_err());
        assert!(e.contains("n.nii") && e.contains("2 voxel value(s)"), "{e}");
        let kept = read_volume_with(&p, NonFinite::Keep).unwrap();
        assert_eq!(kept.non_finite, 2);
        assert!(kept.channels[0].data()[1].is_nan());
        assert_eq!(kept.channels[0].data()[2], f32::NEG_INFINITY);
        let zeroed = read_volume_with(&p, NonFinite::Zero).unwrap();
        assert_eq!(zeroed.non_finite, 2);
        assert_eq!(zeroed.channels[0].data(), &[1.0, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn huge_nifti2_dims_are_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = crate::volume::Geometry::from_affine([2, 2, 2], identity()).header_bytes();
        // Rewrite it as a NIfTI-2 header with dims of 2^40 along x, y and z.
        let mut h = crate::volume::header::parse_header(&b).unwrap();
        h.version = crate::volume::NiftiVersion::Two;
        h.magic = *b"n+2\0";
        h.vox_offset = 544.0;
        h.datatype = 2;
        h.dim = [3, 1 << 40, 1 << 40, 1 << 40, 1, 1, 1, 1];
        b = h.encode();
        b.extend_from_slice(&[0; 4 + 8]);
        let p = write(dir.path(), "huge.nii", &b);
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(e.contains("huge.nii") && e.contains("too large"), "{e}");
        h.dim = [3, 1 << 20, 1 << 20, 1, 1, 1, 1, 1];
        let mut b = h.encode();
        b.extend_from_slice(&[0; 4 + 8]);
        let p = write(dir.path(), "big.nii", &b);
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(
            e.contains("big.nii") && e.contains("truncated voxel data"),
            "{e}"
        );
    }

    fn identity() -> [[f64; 4]; 4] {
        std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j))))
    }

    #[test]
    fn unsupported_inputs_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "rgb.nii",
            &nii(&header([1, 1, 1], 128), &[0; 3]),
        );
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(e.contains("RGB24"), "{e}");
        let mut n2 = vec![0u8; 600];
        n2[..4].copy_from_slice(&540i32.to_le_bytes());
        let p = write(dir.path(), "two.nii", &n2);
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(e.contains("NIfTI-2") && e.contains("two.nii"), "{e}");
        let p = write(dir.path(), "text.nii", b"hello world");
        let e = format!("{:#}", read_volume(&p).unwrap_err());
        assert!(e.contains("not a NIfTI-1 file"), "{e}");
        let e = format!(
            "{:#}",
            read_volume(&dir.path().join("missing.nii")).unwrap_err()
        );
        assert!(e.contains("missing.nii"), "{e}");
    }

    #[test]
    fn pairs_and_geometry_only_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([2, 1, 1], 2);
        h.magic = *b"ni1\0";
        h.vox_offset = 0.0;
        h.pixdim[1] = 3.0;
        write(dir.path(), "p.hdr", &encode_header(&h));
        write(dir.path(), "p.img", &[5, 6]);
        for name in ["p.hdr", "p.img"] {
            let v = read_volume(&dir.path().join(name)).unwrap();
            assert_eq!(v.channels[0].data(), &[5.0, 6.0]);
            assert_eq!(v.geometry.spacing, [3.0, 1.0, 1.0]);
            let g = read_geometry(&dir.path().join(name)).unwrap();
            assert_eq!(g, v.geometry);
        }
        write(dir.path(), "lonely.hdr", &encode_header(&h));
        let e = format!(
            "{:#}",
            read_volume(&dir.path().join("lonely.hdr")).unwrap_err()
        );
        assert!(
            e.contains("lonely.hdr") && e.contains("image file is missing"),
            "{e}"
        );
        // A .nii.gz: the geometry comes from the decompressed header alone.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &nii(&header([2, 2, 2], 2), &[1; 8])).unwrap();
        let p = write(dir.path(), "c.nii.gz", &gz.finish().unwrap());
        assert_eq!(read_geometry(&p).unwrap().dims, [2, 2, 2]);
        assert_eq!(read_volume(&p).unwrap().channels[0].data(), &[1.0; 8]);
    }

    #[test]
    fn big_endian_4d() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header([1, 1, 2], 512);
        h.dim[0] = 4;
        h.dim[4] = 2;
        // Encode little-endian, then byte-swap every field the reader uses.
        let mut b = encode_header(&h);
        let swap = |b: &mut [u8], at: usize, n: usize| b[at..at + n].reverse();
        swap(&mut b, 0, 4);
        for i in 0..8 {
            swap(&mut b, 40 + 2 * i, 2);
        }
        swap(&mut b, 70, 2); // datatype
        for i in 0..8 {
            swap(&mut b, 76 + 4 * i, 4);
        }
        swap(&mut b, 108, 4); // vox_offset
        swap(&mut b, 112, 4); // scl_slope
        swap(&mut b, 252, 2);
        swap(&mut b, 254, 2);
        for i in 0..18 {
            swap(&mut b, 256 + 4 * i, 4);
        }
        b.extend_from_slice(&[0; 4]);
        for v in [1u16, 2, 300, 4] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let p = write(dir.path(), "be.nii", &b);
        let v = read_volume(&p).unwrap();
        assert_eq!(v.shape, vec![1, 1, 2, 2]);
        assert_eq!(v.channels.len(), 2);
        assert_eq!(v.channels[0].data(), &[1.0, 2.0]);
        assert_eq!(v.channels[1].data(), &[300.0, 4.0]);
    }
}
