//! NIfTI voxel types, and their decoding (either byte order, with `scl_slope` /
//! `scl_inter` applied as nibabel applies them) into f32.

use anyhow::{Result, bail};

use super::header::Header;

/// The voxel types this reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DataType {
    /// The type of NIfTI datatype `code`, or an error naming unsupported types.
    pub(crate) fn from_code(code: i16) -> Result<DataType> {
        Ok(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            1 => bail!("datatype 1 (binary) is not supported"),
            32 => bail!("datatype 32 (complex64) is not supported"),
            128 => bail!("datatype 128 (RGB24) is not supported"),
            1536 => bail!("datatype 1536 (float128) is not supported"),
            1792 => bail!("datatype 1792 (complex128) is not supported"),
            2048 => bail!("datatype 2048 (RGBA32) is not supported"),
            2304 => bail!("datatype 2304 (complex256) is not supported"),
            c => bail!("unknown NIfTI datatype code {c}"),
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }
}

/// `scl_slope` / `scl_inter` as nibabel's `get_slope_inter`: a zero or non-finite slope
/// means no scaling (`None`); a valid slope with a non-finite intercept is an error.
pub(crate) fn slope_inter(h: &Header) -> Result<Option<(f64, f64)>> {
    let slope = h.scl_slope;
    let inter = h.scl_inter;
    if slope == 0.0 || !slope.is_finite() {
        return Ok(None);
    }
    if !inter.is_finite() {
        bail!("scl_slope is {slope} but scl_inter is {inter}");
    }
    if slope == 1.0 && inter == 0.0 {
        return Ok(None);
    }
    Ok(Some((slope, inter)))
}

/// Decodes `bytes` of type `dt` into scaled f32 values appended to `out`.
pub(crate) fn decode(
    bytes: &[u8],
    dt: DataType,
    big: bool,
    scale: Option<(f64, f64)>,
    out: &mut Vec<f32>,
) {
    macro_rules! run {
        ($t:ty, $n:expr) => {{
            let it = bytes.chunks_exact($n).map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                if big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            });
            match scale {
                None => out.extend(it.map(|v| v as f32)),
                Some((s, i)) => out.extend(it.map(|v| (v as f64 * s + i) as f32)),
            }
        }};
    }
    match dt {
        DataType::U8 => run!(u8, 1),
        DataType::I8 => run!(i8, 1),
        DataType::I16 => run!(i16, 2),
        DataType::U16 => run!(u16, 2),
        DataType::I32 => run!(i32, 4),
        DataType::U32 => run!(u32, 4),
        DataType::I64 => run!(i64, 8),
        DataType::U64 => run!(u64, 8),
        DataType::F32 => run!(f32, 4),
        DataType::F64 => run!(f64, 8),
    }
}
