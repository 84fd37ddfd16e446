//! NIfTI-1 and NIfTI-2 headers: parsing either byte order, and writing them back.
//!
//! Both versions hold the same fields; NIfTI-2 stores them wider (64-bit dims and offsets,
//! float64 spacing and transforms) in a 540-byte header instead of 348 bytes. [`Header`]
//! keeps every field at NIfTI-2's width plus the version it came from, so the geometry code
//! is written once and a file is written back in the version it was read in.
//!
//! NIfTI-1 headers are parsed by the `nifti` crate (0.18), after the checks it does not make
//! (header size, byte order agreeing with the size field). The crate has no NIfTI-2 support
//! at all, and its NIfTI-1 writer is private to its ndarray volume writer (which decides the
//! data layout itself), so NIfTI-2 parsing and both writers are done here, field by field in
//! the order of the standards.

use anyhow::{Result, bail};
use nifti::{Endianness, NiftiHeader};

/// Size of a NIfTI-1 header.
pub(crate) const V1_SIZE: usize = 348;
/// Size of a NIfTI-2 header.
pub(crate) const V2_SIZE: usize = 540;

/// The NIfTI version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NiftiVersion {
    /// NIfTI-1: 348-byte header, 16-bit dims, float32 geometry.
    #[serde(rename = "nifti1")]
    One,
    /// NIfTI-2: 540-byte header, 64-bit dims, float64 geometry.
    #[serde(rename = "nifti2")]
    Two,
}

impl NiftiVersion {
    /// Header size in bytes.
    pub fn header_size(self) -> usize {
        match self {
            NiftiVersion::One => V1_SIZE,
            NiftiVersion::Two => V2_SIZE,
        }
    }

    /// The smallest `vox_offset` of a single file: header plus the 4-byte extension flag.
    pub fn single_vox_offset(self) -> usize {
        self.header_size() + 4
    }

    /// "NIfTI-1" or "NIfTI-2".
    pub fn name(self) -> &'static str {
        match self {
            NiftiVersion::One => "NIfTI-1",
            NiftiVersion::Two => "NIfTI-2",
        }
    }
}

/// A NIfTI-1 or NIfTI-2 header, every field at NIfTI-2's width. Fields that only NIfTI-1
/// has (ANALYZE leftovers) are kept so a NIfTI-1 header is written back bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub version: NiftiVersion,
    /// Byte order of the file it was read from (files are always written little-endian).
    pub big_endian: bool,
    /// `n+1`/`ni1` or `n+2`/`ni2`, NUL-terminated.
    pub magic: [u8; 4],
    pub dim: [i64; 8],
    pub intent_p: [f64; 3],
    pub intent_code: i32,
    pub datatype: i16,
    pub bitpix: i16,
    pub slice_start: i64,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub slice_end: i64,
    pub slice_code: i32,
    pub xyzt_units: i32,
    pub cal_max: f64,
    pub cal_min: f64,
    pub slice_duration: f64,
    pub toffset: f64,
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub qform_code: i32,
    pub sform_code: i32,
    /// quatern_b, quatern_c, quatern_d.
    pub quatern: [f64; 3],
    /// qoffset_x, qoffset_y, qoffset_z.
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub intent_name: [u8; 16],
    pub dim_info: u8,
    /// NIfTI-1 only: `data_type`, `db_name`, `extents`, `session_error`, `regular`,
    /// `glmax`, `glmin`.
    pub analyze: Analyze,
}

/// The ANALYZE 7.5 fields that NIfTI-1 still carries and NIfTI-2 dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Analyze {
    pub data_type: [u8; 10],
    pub db_name: [u8; 18],
    pub extents: i32,
    pub session_error: i16,
    pub regular: u8,
    pub glmax: i32,
    pub glmin: i32,
}

impl Default for Header {
    /// An empty little-endian NIfTI-1 header (the `nifti` crate's defaults).
    fn default() -> Header {
        Header::from(NiftiHeader::default())
    }
}

impl From<NiftiHeader> for Header {
    fn from(h: NiftiHeader) -> Header {
        let mut descrip = [0u8; 80];
        let n = h.descrip.len().min(80);
        descrip[..n].copy_from_slice(&h.descrip[..n]);
        Header {
            version: NiftiVersion::One,
            big_endian: h.endianness == Endianness::Big,
            magic: h.magic,
            // The crate stores NIfTI-1's signed 16-bit dims as u16.
            dim: h.dim.map(|d| i64::from(d as i16)),
            intent_p: [h.intent_p1, h.intent_p2, h.intent_p3].map(f64::from),
            intent_code: i32::from(h.intent_code),
            datatype: h.datatype,
            bitpix: h.bitpix,
            slice_start: i64::from(h.slice_start),
            pixdim: h.pixdim.map(f64::from),
            vox_offset: f64::from(h.vox_offset),
            scl_slope: f64::from(h.scl_slope),
            scl_inter: f64::from(h.scl_inter),
            slice_end: i64::from(h.slice_end),
            slice_code: i32::from(h.slice_code),
            xyzt_units: i32::from(h.xyzt_units),
            cal_max: f64::from(h.cal_max),
            cal_min: f64::from(h.cal_min),
            slice_duration: f64::from(h.slice_duration),
            toffset: f64::from(h.toffset),
            descrip,
            aux_file: h.aux_file,
            qform_code: i32::from(h.qform_code),
            sform_code: i32::from(h.sform_code),
            quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
            qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
            srow: [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from)),
            intent_name: h.intent_name,
            dim_info: h.dim_info,
            analyze: Analyze {
                data_type: h.data_type,
                db_name: h.db_name,
                extents: h.extents,
                session_error: h.session_error,
                regular: h.regular,
                glmax: h.glmax,
                glmin: h.glmin,
            },
        }
    }
}

/// The version announced by the header size field (first 4 bytes, either byte order).
fn sniff_version(bytes: &[u8]) -> Result<NiftiVersion> {
    if bytes.len() < 4 {
        bail!("not a NIfTI file: only {} bytes", bytes.len());
    }
    let first = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let (le, be) = (i32::from_le_bytes(first), i32::from_be_bytes(first));
    if le == V2_SIZE as i32 || be == V2_SIZE as i32 {
        Ok(NiftiVersion::Two)
    } else if le == V1_SIZE as i32 || be == V1_SIZE as i32 {
        Ok(NiftiVersion::One)
    } else {
        bail!("not a NIfTI-1 file (nor NIfTI-2: the header size field is neither 348 nor 540)")
    }
}

/// Parses a NIfTI-1 or NIfTI-2 header (either byte order) from the start of `bytes`.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header> {
    match sniff_version(bytes)? {
        NiftiVersion::One => parse_v1(bytes),
        NiftiVersion::Two => parse_v2(bytes),
    }
}

/// NIfTI-1 through the `nifti` crate.
fn parse_v1(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < V1_SIZE {
        bail!(
            "truncated NIfTI-1 header ({} of {V1_SIZE} bytes)",
            bytes.len()
        );
    }
    let h = NiftiHeader::from_reader(&bytes[..V1_SIZE]).map_err(|e| match e {
        nifti::NiftiError::InvalidFormat => anyhow::anyhow!(
            "not a NIfTI-1 file (no 'n+1' or 'ni1' magic; ANALYZE 7.5 is not supported)"
        ),
        other => anyhow::anyhow!("invalid NIfTI-1 header: {other}"),
    })?;
    // The crate picks the byte order from dim[0] alone; a header whose size field and
    // dim[0] disagree is corrupt.
    if h.sizeof_hdr != V1_SIZE as i32 {
        bail!(
            "invalid NIfTI-1 header: dim[0] = {} is not a number of dimensions",
            h.dim[0] as i16
        );
    }
    Ok(Header::from(h))
}

/// Reads fixed-width fields of one byte order from a header block.
struct Fields<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[at..at + N]);
        if self.big {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.take(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.take(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.take(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.take(at))
    }
    fn f64s<const N: usize>(&self, at: usize) -> [f64; N] {
        std::array::from_fn(|i| self.f64(at + 8 * i))
    }
    fn raw<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[at..at + N]);
        a
    }
}

/// NIfTI-2, at the byte offsets of the standard's `nifti_2_header`.
fn parse_v2(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < V2_SIZE {
        bail!(
            "truncated NIfTI-2 header ({} of {V2_SIZE} bytes)",
            bytes.len()
        );
    }
    let big = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) != V2_SIZE as i32;
    let f = Fields { bytes, big };
    let magic: [u8; 4] = f.raw(4);
    if &magic != b"n+2\0" && &magic != b"ni2\0" {
        bail!("not a valid NIfTI-2 file (no 'n+2' or 'ni2' magic)");
    }
    let dim: [i64; 8] = std::array::from_fn(|i| f.i64(16 + 8 * i));
    if !(1..=7).contains(&dim[0]) {
        bail!(
            "invalid NIfTI-2 header: dim[0] = {} is not a number of dimensions",
            dim[0]
        );
    }
    Ok(Header {
        version: NiftiVersion::Two,
        big_endian: big,
        magic,
        dim,
        intent_p: f.f64s(80),
        intent_code: f.i32(504),
        datatype: f.i16(12),
        bitpix: f.i16(14),
        slice_start: f.i64(224),
        pixdim: f.f64s(104),
        // A 64-bit integer here; f64 holds every offset a file of under 8 PB can have.
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        slice_end: f.i64(232),
        slice_code: f.i32(496),
        xyzt_units: f.i32(500),
        cal_max: f.f64(192),
        cal_min: f.f64(200),
        slice_duration: f.f64(208),
        toffset: f.f64(216),
        descrip: f.raw(240),
        aux_file: f.raw(320),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: f.f64s(352),
        qoffset: f.f64s(376),
        srow: [f.f64s(400), f.f64s(432), f.f64s(464)],
        intent_name: f.raw(508),
        dim_info: bytes[524],
        analyze: Analyze::default(),
    })
}

impl Header {
    /// The header as little-endian bytes of its version (348 or 540).
    pub fn encode(&self) -> Vec<u8> {
        match self.version {
            NiftiVersion::One => self.encode_v1(),
            NiftiVersion::Two => self.encode_v2(),
        }
    }

    /// The 348 bytes of a little-endian NIfTI-1 header. Fields are narrowed to NIfTI-1's
    /// widths; a header read from a NIfTI-1 file comes back bit for bit.
    fn encode_v1(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(V1_SIZE);
        let i16s = |b: &mut Vec<u8>, v: i64| b.extend_from_slice(&(v as i16).to_le_bytes());
        let f32s = |b: &mut Vec<u8>, v: f64| b.extend_from_slice(&(v as f32).to_le_bytes());
        let a = &self.analyze;
        b.extend_from_slice(&(V1_SIZE as i32).to_le_bytes());
        b.extend_from_slice(&a.data_type);
        b.extend_from_slice(&a.db_name);
        b.extend_from_slice(&a.extents.to_le_bytes());
        b.extend_from_slice(&a.session_error.to_le_bytes());
        b.push(a.regular);
        b.push(self.dim_info);
        for d in self.dim {
            i16s(&mut b, d);
        }
        for p in self.intent_p {
            f32s(&mut b, p);
        }
        i16s(&mut b, i64::from(self.intent_code));
        i16s(&mut b, i64::from(self.datatype));
        i16s(&mut b, i64::from(self.bitpix));
        i16s(&mut b, self.slice_start);
        for p in self.pixdim {
            f32s(&mut b, p);
        }
        f32s(&mut b, self.vox_offset);
        f32s(&mut b, self.scl_slope);
        f32s(&mut b, self.scl_inter);
        i16s(&mut b, self.slice_end);
        b.push(self.slice_code as u8);
        b.push(self.xyzt_units as u8);
        f32s(&mut b, self.cal_max);
        f32s(&mut b, self.cal_min);
        f32s(&mut b, self.slice_duration);
        f32s(&mut b, self.toffset);
        b.extend_from_slice(&a.glmax.to_le_bytes());
        b.extend_from_slice(&a.glmin.to_le_bytes());
        b.extend_from_slice(&self.descrip);
        b.extend_from_slice(&self.aux_file);
        i16s(&mut b, i64::from(self.qform_code));
        i16s(&mut b, i64::from(self.sform_code));
        for v in self.quatern.iter().chain(&self.qoffset) {
            f32s(&mut b, *v);
        }
        for v in self.srow.iter().flatten() {
            f32s(&mut b, *v);
        }
        b.extend_from_slice(&self.intent_name);
        b.extend_from_slice(&self.magic);
        debug_assert_eq!(b.len(), V1_SIZE);
        b
    }

    /// The 540 bytes of a little-endian NIfTI-2 header.
    fn encode_v2(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(V2_SIZE);
        let f64s = |b: &mut Vec<u8>, v: f64| b.extend_from_slice(&v.to_le_bytes());
        let i64s = |b: &mut Vec<u8>, v: i64| b.extend_from_slice(&v.to_le_bytes());
        b.extend_from_slice(&(V2_SIZE as i32).to_le_bytes());
        b.extend_from_slice(&self.magic);
        // eol_check: detects files damaged by newline conversion.
        b.extend_from_slice(&[13, 10, 26, 10]);
        b.extend_from_slice(&self.datatype.to_le_bytes());
        b.extend_from_slice(&self.bitpix.to_le_bytes());
        for d in self.dim {
            i64s(&mut b, d);
        }
        for p in self.intent_p {
            f64s(&mut b, p);
        }
        for p in self.pixdim {
            f64s(&mut b, p);
        }
        i64s(&mut b, self.vox_offset as i64);
        for v in [
            self.scl_slope,
            self.scl_inter,
            self.cal_max,
            self.cal_min,
            self.slice_duration,
            self.toffset,
        ] {
            f64s(&mut b, v);
        }
        i64s(&mut b, self.slice_start);
        i64s(&mut b, self.slice_end);
        b.extend_from_slice(&self.descrip);
        b.extend_from_slice(&self.aux_file);
        b.extend_from_slice(&self.qform_code.to_le_bytes());
        b.extend_from_slice(&self.sform_code.to_le_bytes());
        for v in self.quatern.iter().chain(&self.qoffset) {
            f64s(&mut b, *v);
        }
        for v in self.srow.iter().flatten() {
            f64s(&mut b, *v);
        }
        for v in [self.slice_code, self.xyzt_units, self.intent_code] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.intent_name);
        b.push(self.dim_info);
        b.extend_from_slice(&[0; 15]);
        debug_assert_eq!(b.len(), V2_SIZE);
        b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `h` (a NIfTI-1 header of the `nifti` crate) as the 348 bytes of its file header.
    pub(crate) fn encode_v1(h: &NiftiHeader) -> Vec<u8> {
        Header::from(h.clone()).encode()
    }

    fn v2_sample() -> Header {
        let mut h = Header {
            version: NiftiVersion::Two,
            magic: *b"n+2\0",
            dim: [4, 70000, 2, 3, 5, 1, 1, 1],
            datatype: 512,
            bitpix: 16,
            pixdim: [-1.0, 0.1 + 0.2, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0],
            vox_offset: 544.0,
            scl_slope: 1.0 / 3.0,
            scl_inter: -7.25,
            qform_code: 1,
            sform_code: 2,
            quatern: [0.1, 0.2, 0.3],
            qoffset: [1.5, -2.5, 1e9 + 0.125],
            srow: [
                [0.3, 0.0, 0.0, 1.0 / 7.0],
                [0.0, 2.0, 0.0, 5.0],
                [0.0, 0.0, 3.0, -6.0],
            ],
            slice_start: 1 << 40,
            intent_code: 1 << 20,
            ..Header::default()
        };
        h.descrip[..4].copy_from_slice(b"test");
        h.analyze = Analyze::default();
        h
    }

    #[test]
    fn nifti2_round_trips_at_full_width_in_both_byte_orders() {
        let h = v2_sample();
        let bytes = h.encode();
        assert_eq!(bytes.len(), V2_SIZE);
        assert_eq!(&bytes[4..12], b"n+2\0\r\n\x1a\n");
        assert_eq!(parse_header(&bytes).unwrap(), h);
        // The same header big-endian: swap every multi-byte field.
        let mut be = bytes.clone();
        let mut swap = |at: usize, n: usize, count: usize| {
            for k in 0..count {
                be[at + k * n..at + (k + 1) * n].reverse();
            }
        };
        swap(0, 4, 1);
        swap(12, 2, 2);
        swap(16, 8, 8 + 3 + 8 + 1 + 6 + 2);
        swap(344, 4, 2);
        swap(352, 8, 6 + 12);
        swap(496, 4, 3);
        let back = parse_header(&be).unwrap();
        assert!(back.big_endian);
        assert_eq!(
            Header {
                big_endian: false,
                ..back
            },
            h
        );
    }

    #[test]
    fn nifti1_round_trips_bit_for_bit() {
        let h = NiftiHeader {
            dim: [3, 4, 5, 6, 1, 1, 1, 1],
            datatype: 4,
            bitpix: 16,
            pixdim: [-1.0, 1.2, 1.3, 1.4, 0.0, 0.0, 0.0, 0.0],
            vox_offset: 352.0,
            srow_x: [0.1, 0.2, 0.3, 0.4],
            quatern_c: 0.7,
            glmax: 9,
            magic: *b"n+1\0",
            ..NiftiHeader::default()
        };
        let bytes = encode_v1(&h);
        assert_eq!(bytes.len(), V1_SIZE);
        let back = parse_header(&bytes).unwrap();
        assert_eq!(back.version, NiftiVersion::One);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.srow[0][1], f64::from(0.2f32));
    }

    #[test]
    fn bad_headers_are_named_errors() {
        let mut bytes = v2_sample().encode();
        bytes[4..8].copy_from_slice(b"abcd");
        let e = parse_header(&bytes).unwrap_err().to_string();
        assert!(e.contains("NIfTI-2") && e.contains("magic"), "{e}");
        let e = parse_header(&v2_sample().encode()[..300])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated NIfTI-2 header"), "{e}");
        let mut bytes = v2_sample().encode();
        bytes[16..24].copy_from_slice(&9i64.to_le_bytes());
        let e = parse_header(&bytes).unwrap_err().to_string();
        assert!(e.contains("dim[0] = 9"), "{e}");
        let e = parse_header(b"hello world").unwrap_err().to_string();
        assert!(e.contains("not a NIfTI-1 file"), "{e}");
    }
}
