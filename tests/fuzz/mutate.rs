//! Deterministic mutations of file contents for the reader fuzzing suite: bit flips, byte
//! insertion and deletion, NIfTI header fields overwritten with extreme values, truncation,
//! splices from other seeds and, for text, tokens of the JSON and TOML grammars.

use std::io::{Read, Write};

/// SplitMix64: a small, fast, seedable generator, so every run mutates the same inputs and
/// a failure names the seed that reproduces it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Where the numeric fields of a NIfTI header are, and how wide they are.
#[derive(Clone, Copy)]
pub enum Layout {
    /// NIfTI-1: 16-bit dims, float32 geometry.
    V1,
    /// NIfTI-2: 64-bit dims, float64 geometry.
    V2,
}

/// A field of a header: byte offset and kind.
#[derive(Clone, Copy)]
enum Field {
    Int(usize, usize),
    Float(usize, usize),
}

impl Layout {
    fn fields(self) -> Vec<Field> {
        use Field::{Float, Int};
        let mut f = Vec::new();
        match self {
            Layout::V1 => {
                f.push(Int(0, 4)); // sizeof_hdr
                f.extend((0..8).map(|i| Int(40 + 2 * i, 2))); // dim
                f.extend([Int(70, 2), Int(72, 2), Int(74, 2)]); // datatype, bitpix, slice_start
                f.extend((0..8).map(|i| Float(76 + 4 * i, 4))); // pixdim
                f.extend([Float(108, 4), Float(112, 4), Float(116, 4)]); // vox_offset, scl
                f.extend([Int(252, 2), Int(254, 2)]); // qform_code, sform_code
                f.extend((0..18).map(|i| Float(256 + 4 * i, 4))); // quatern, qoffset, srow
                f.extend([Int(348, 4), Int(352, 4), Int(356, 4)]); // extension flag, esize, ecode
            }
            Layout::V2 => {
                f.push(Int(0, 4));
                f.extend([Int(12, 2), Int(14, 2)]); // datatype, bitpix
                f.extend((0..8).map(|i| Int(16 + 8 * i, 8))); // dim
                f.extend((0..8).map(|i| Float(104 + 8 * i, 8))); // pixdim
                f.extend([Int(168, 8), Float(176, 8), Float(184, 8)]); // vox_offset, scl
                f.extend([Int(344, 4), Int(348, 4)]); // qform_code, sform_code
                f.extend((0..18).map(|i| Float(352 + 8 * i, 8))); // quatern, qoffset, srow
                f.extend([Int(540, 4), Int(544, 4), Int(548, 4)]);
            }
        }
        f
    }
}

const EXTREME_INTS: [i64; 14] = [
    0,
    -1,
    1,
    2,
    3,
    4,
    7,
    i16::MAX as i64,
    i16::MIN as i64,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 40,
    i64::MAX,
    i64::MIN,
];

const EXTREME_FLOATS: [f64; 12] = [
    0.0,
    -0.0,
    -1.0,
    1e-45,
    1e38,
    -1e38,
    f64::MAX,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    352.5,
    4.0e9,
];

/// Overwrites one numeric field of a NIfTI header in `bytes` (byte order `big`) with an
/// extreme value of its kind.
pub fn overwrite_field(rng: &mut Rng, bytes: &mut [u8], layout: Layout, big: bool) {
    let fields = layout.fields();
    let (at, width, value): (usize, usize, [u8; 8]) = match *rng.pick(&fields) {
        Field::Int(at, w) => (at, w, rng.pick(&EXTREME_INTS).to_le_bytes()),
        Field::Float(at, 4) => {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&(*rng.pick(&EXTREME_FLOATS) as f32).to_le_bytes());
            (at, 4, b)
        }
        Field::Float(at, w) => (at, w, rng.pick(&EXTREME_FLOATS).to_le_bytes()),
    };
    if at + width > bytes.len() {
        return;
    }
    let mut v = value[..width].to_vec();
    if big {
        v.reverse();
    }
    bytes[at..at + width].copy_from_slice(&v);
}

/// One random byte-level change: flip bits (mostly in the first `hot` bytes, where the
/// header is), insert or delete bytes, truncate, or splice in a piece of `other`.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, hot: usize, other: &[u8]) {
    let len = bytes.len();
    let pos = |rng: &mut Rng, len: usize| {
        if len == 0 {
            0
        } else if rng.chance(70) {
            rng.below(len.min(hot.max(1)))
        } else {
            rng.below(len)
        }
    };
    match rng.below(6) {
        0 | 1 => {
            for _ in 0..1 + rng.below(4) {
                if !bytes.is_empty() {
                    let i = pos(rng, bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let i = pos(rng, len);
            let n = 1 + rng.below(16);
            let fill = (rng.next_u64() & 0xff) as u8;
            bytes.splice(i..i, std::iter::repeat_n(fill, n));
        }
        3 => {
            if len > 0 {
                let i = pos(rng, len);
                let n = (1 + rng.below(16)).min(len - i);
                bytes.drain(i..i + n);
            }
        }
        4 => {
            let keep = if rng.chance(50) {
                rng.below(len + 1)
            } else {
                len.saturating_sub(1 + rng.below(8))
            };
            bytes.truncate(keep);
        }
        _ => {
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = (1 + rng.below(64)).min(other.len() - from);
                let i = pos(rng, len);
                let end = (i + n).min(bytes.len());
                bytes.splice(i..end, other[from..from + n].iter().copied());
            }
        }
    }
}

/// Tokens of JSON and TOML, and values at the edges of what the configuration types hold.
const TOKENS: [&str; 30] = [
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "=",
    "\n",
    "[model]",
    "[[x]]",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-1e999",
    "NaN",
    "nan",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "\"\\u0000\"",
    "\"../../etc\"",
    "\"/abs\"",
    "0.5",
    "[[[[[[[[",
    "]]]]]]]]",
    "\u{feff}",
    "\u{0}",
];

/// One random change of a text file: a grammar token inserted or replacing a stretch, a
/// number replaced by an extreme one, or any byte-level change.
pub fn mutate_text(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    let len = bytes.len();
    match rng.below(4) {
        0 => {
            let i = rng.below(len + 1);
            bytes.splice(i..i, rng.pick(&TOKENS).bytes());
        }
        1 => {
            let i = rng.below(len + 1);
            let end = (i + rng.below(8)).min(len);
            bytes.splice(i..end, rng.pick(&TOKENS).bytes());
        }
        2 => {
            let digits: Vec<usize> = (0..len).filter(|&i| bytes[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let i = *rng.pick(&digits);
                let mut end = i;
                while end < len && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                    end += 1;
                }
                let value = rng.pick(&EXTREME_INTS).to_string();
                bytes.splice(i..end, value.bytes());
            }
        }
        _ => mutate_bytes(rng, bytes, len, other),
    }
}

/// `bytes` as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// How many bytes the gzip members of `bytes` decompress to before the stream ends or
/// breaks (`bytes.len()` if it is not gzip): what the file can hold.
pub fn content_len(bytes: &[u8]) -> usize {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return bytes.len();
    }
    let mut dec = flate2::read::MultiGzDecoder::new(bytes);
    let mut buf = [0u8; 8192];
    let mut n = 0;
    while let Ok(k) = dec.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k;
    }
    n.max(bytes.len())
}

/// Wraps a mutated content as a gzip stream, sometimes with its own damage: a flipped bit
/// or a cut in the compressed bytes, a second member, or trailing garbage.
pub fn regzip(rng: &mut Rng, content: &[u8]) -> Vec<u8> {
    let mut gz = gzip(content);
    match rng.below(6) {
        0 => {
            let i = rng.below(gz.len());
            gz[i] ^= 1 << rng.below(8);
        }
        1 => {
            let keep = rng.below(gz.len());
            gz.truncate(keep);
        }
        2 => {
            let tail = gzip(&content[..content.len() / 2]);
            gz.extend_from_slice(&tail);
        }
        3 => gz.extend_from_slice(&[0u8, 1, 2, 3][..1 + rng.below(4)]),
        _ => {}
    }
    gz
}
