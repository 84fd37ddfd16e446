//! NIfTI reading and writing compared with nibabel, the reference reader of the field.
//!
//! A Python script makes edge-case files with nibabel (every datatype in both byte orders,
//! scaling, extensions, unusual `vox_offset`, qform-only / sform-only / neither, 4D,
//! `.hdr`/`.img` pairs, gzip variants, broken files, and the same for NIfTI-2) and records
//! what nibabel reads from each; nibabel's own test data files are added. Every file must
//! then read the same here: same shape, spacing, affine and voxel values, or an error where
//! this reader refuses the file on purpose (NaN voxels, unsupported datatypes, corrupt
//! gzip). Files written here are read back by nibabel with the reference's NIfTI version
//! and qform/sform intact.

mod common;

use std::path::{Path, PathBuf};

use a2fseg::volume::{Geometry, Grid, read_volume, write_float, write_labels};
use serde_json::Value;

/// Makes the edge cases in `argv[1]` and prints one JSON manifest: a list of
/// `{file, expect: "ok"|"error", why, shape, spacing, affine, values (raw float64 file)}`.
const GENERATE: &str = r#"
import gzip, json, os, struct, sys, zlib, glob
import numpy as np
import nibabel as nib

out = sys.argv[1]
cases = []
SUPPORTED = {'uint8','int8','int16','uint16','int32','uint32','int64','uint64','float32','float64'}

def record(name, why, expect=None):
    path = os.path.join(out, name)
    entry = {'file': path, 'why': why}
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj)
        dtype = img.get_data_dtype()
        f = img.get_fdata(dtype=np.float64)
        shape = list(f.shape)
        reason = None
        if not isinstance(img, nib.Nifti1Pair):
            reason = 'not NIfTI-1 or NIfTI-2'
        elif dtype.name not in SUPPORTED:
            reason = 'unsupported datatype ' + dtype.name
        elif not np.all(np.isfinite(f)):
            reason = 'non-finite voxels'
        elif len(shape) > 4 and any(d != 1 for d in shape[4:]):
            reason = 'more than 4 dimensions'
        if reason is not None:
            entry.update(expect='error', nibabel='reads it', reason=reason)
        else:
            vals = os.path.join(out, name + '.f64')
            f.ravel(order='F').astype('<f8').tofile(vals)
            zooms = list(img.header.get_zooms()[:3]) + [1.0] * (3 - min(3, len(shape)))
            sl, it = img.header.get_slope_inter()
            entry.update(expect='ok', scaled=bool(sl is not None and (sl != 1 or it != 0)), shape=shape, spacing=[float(z) for z in zooms],
                         affine=img.affine.tolist(), values=vals,
                         datatype=dtype.name)
    except Exception as e:
        entry.update(expect='error', nibabel='fails: ' + str(e).splitlines()[0])
    if expect is not None and entry['expect'] != expect:
        raise SystemExit(f'{name}: expected {expect} from nibabel, got {entry}')
    cases.append(entry)

rng = np.random.default_rng(7)
aff = np.array([[-1.2, 0.1, 0, 90], [0.05, 1.1, 0, -120], [0, 0, 2.5, -70], [0, 0, 0, 1]])

def save(img, name, endian=None):
    if endian is not None:
        img = img.__class__(np.asarray(img.dataobj), img.affine,
                            img.header.as_byteswapped(endian) if img.header.endianness != endian else img.header)
    nib.save(img, os.path.join(out, name))

# Every datatype, both byte orders, values up to the type's extremes.
for dt in ['uint8','int8','int16','uint16','int32','uint32','int64','uint64','float32','float64']:
    for endian in '<>':
        shape = (3, 4, 5)
        if dt.startswith('float'):
            a = rng.normal(0, 1000, shape).astype(dt)
            a.flat[0] = np.finfo(dt).max / 2 if dt == 'float32' else 1e30
            a.flat[1] = -1e-30
        else:
            info = np.iinfo(dt)
            a = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
            a.flat[0] = info.min
            a.flat[1] = info.max
        hdr = nib.Nifti1Header(endianness=endian)
        img = nib.Nifti1Image(a, aff, hdr)
        img.header.set_data_dtype(dt)
        img.set_qform(aff, 1)
        name = f'dt_{dt}_{"le" if endian == "<" else "be"}.nii'
        nib.save(img, os.path.join(out, name))
        record(name, f'{dt} {endian}', 'ok')

def with_header(a, name, edit, dtype=None, cls=nib.Nifti1Image, expect=None):
    img = cls(a, aff)
    if dtype is not None:
        img.header.set_data_dtype(dtype)
    edit(img)
    nib.save(img, os.path.join(out, name))
    record(name, name, expect)

a16 = rng.integers(-300, 300, (4, 3, 2)).astype(np.int16)
def slope(s, i):
    def f(img):
        img.header['scl_slope'] = s
        img.header['scl_inter'] = i
    return f

# Scaling: nibabel only scales on load, so write the raw header fields directly.
def raw_scaled(name, a, s, i, expect='ok'):
    img = nib.Nifti1Image(a, aff)
    img.header.set_data_dtype(a.dtype)
    fn = os.path.join(out, name)
    nib.save(img, fn)
    b = bytearray(open(fn, 'rb').read())
    struct.pack_into('<ff', b, 112, s, i)
    open(fn, 'wb').write(bytes(b))
    record(name, f'slope {s} inter {i}', expect)

raw_scaled('scale_i16.nii', a16, 0.5, 10.0)
raw_scaled('scale_u8_neg.nii', rng.integers(0, 255, (3, 3, 3)).astype(np.uint8), -1.5, 3.25)
raw_scaled('scale_f32.nii', rng.normal(0, 1, (3, 3, 3)).astype(np.float32), 2.0, -1.0)
raw_scaled('scale_nan_slope.nii', a16, float('nan'), 7.0)
raw_scaled('scale_zero_slope.nii', a16, 0.0, 7.0)
raw_scaled('scale_i32_big.nii', rng.integers(-2**31, 2**31 - 1, (3, 3, 3)).astype(np.int32), 1e-3, 0.5)
raw_scaled('scale_inf_inter.nii', a16, 2.0, float('inf'), 'error')

# Extensions push the data further.
img = nib.Nifti1Image(a16, aff)
img.header.extensions.append(nib.nifti1.Nifti1Extension('comment', b'hello extension' * 5))
img.header.extensions.append(nib.nifti1.Nifti1Extension('afni', b'<xml/>' * 3))
nib.save(img, os.path.join(out, 'extensions.nii'))
record('extensions.nii', 'two extensions', 'ok')
nib.save(img, os.path.join(out, 'extensions.nii.gz'))
record('extensions.nii.gz', 'two extensions, gzip', 'ok')

# Unusual vox_offset: large, not a multiple of 16, fractional, too small.
def offset_file(name, off, pad):
    img = nib.Nifti1Image(a16, aff)
    fn = os.path.join(out, name)
    nib.save(img, fn)
    b = bytearray(open(fn, 'rb').read())
    data = bytes(b[352:])
    struct.pack_into('<f', b, 108, off)
    b = b[:352] + bytes(pad) + data
    open(fn, 'wb').write(bytes(b))
    record(name, f'vox_offset {off}')

offset_file('offset_1024.nii', 1024.0, 1024 - 352)
offset_file('offset_353.nii', 353.0, 1)
offset_file('offset_400_5.nii', 400.5, 48)
offset_file('offset_348.nii', 348.0, 0)

# Affine sources: qform only, sform only (with shear), neither, both (sform wins),
# negative and zero pixdims, qfac -1.
rot = np.array([[0.8, -0.6, 0, 10], [0.6, 0.8, 0, -20], [0, 0, -3, 30], [0, 0, 0, 1]])
def qonly(img):
    img.set_sform(None, 0); img.set_qform(rot, 1)
def sonly(img):
    shear = aff.copy(); shear[0, 1] = 0.4
    img.set_qform(None, 0); img.set_sform(shear, 4)
def neither(img):
    img.set_qform(None, 0); img.set_sform(None, 0); img.header.set_zooms((2.0, 3.0, 4.0))
def both(img):
    img.set_qform(rot, 1); img.set_sform(aff, 2)
with_header(a16, 'qform_only.nii', qonly, expect='ok')
with_header(a16, 'sform_only.nii', sonly, expect='ok')
with_header(a16, 'no_xform.nii', neither, expect='ok')
with_header(a16, 'both_xforms.nii.gz', both, expect='ok')

def raw_edit(name, src, edits):
    b = bytearray(open(os.path.join(out, src), 'rb').read())
    for fmt, off, vals in edits:
        struct.pack_into(fmt, b, off, *vals)
    open(os.path.join(out, name), 'wb').write(bytes(b))
    record(name, f'{src} edited {edits}')
raw_edit('neg_pixdim.nii', 'qform_only.nii', [('<ff', 80, (-2.0, 0.0))])
raw_edit('bad_qfac.nii', 'qform_only.nii', [('<f', 76, (0.0,))])
raw_edit('bad_quaternion.nii', 'qform_only.nii', [('<fff', 256, (0.9, 0.9, 0.9))])
raw_edit('odd_bitpix.nii', 'qform_only.nii', [('<h', 72, (13,))])

# 4D and 2D.
a4 = rng.normal(100, 20, (3, 4, 2, 5)).astype(np.float32)
nib.save(nib.Nifti1Image(a4, aff), os.path.join(out, 'four_d.nii.gz'))
record('four_d.nii.gz', '4D', 'ok')
nib.save(nib.Nifti1Image(a16[:, :, 0].copy(), aff), os.path.join(out, 'two_d.nii'))
record('two_d.nii', '2D', 'ok')
nib.save(nib.Nifti1Image(a4.reshape(3, 4, 2, 1, 5), aff), os.path.join(out, 'five_d.nii'))
record('five_d.nii', '5D', 'error')

# Header/image pairs, plain and gzip, big-endian.
pair = nib.Nifti1Pair(a16, rot)
pair.set_qform(rot, 1)
nib.save(pair, os.path.join(out, 'pair.img'))
record('pair.hdr', 'pair via .hdr', 'ok')
record('pair.img', 'pair via .img', 'ok')
nib.save(pair, os.path.join(out, 'pairgz.img.gz'))
record('pairgz.hdr.gz', 'gzip pair via .hdr.gz', 'ok')
record('pairgz.img.gz', 'gzip pair via .img.gz', 'ok')
bepair = nib.Nifti1Pair(a16.astype('>i2'), aff, nib.nifti1.Nifti1PairHeader(endianness='>'))
nib.save(bepair, os.path.join(out, 'bepair.hdr'))
record('bepair.hdr', 'big-endian pair', 'ok')

# Gzip variants.
src = open(os.path.join(out, 'dt_float32_le.nii'), 'rb').read()
def gz(name, blob, expect=None):
    open(os.path.join(out, name), 'wb').write(blob)
    record(name, name, expect)
gz('gz_level9.nii.gz', gzip.compress(src, 9), 'ok')
gz('gz_level0.nii.gz', gzip.compress(src, 0), 'ok')
gz('gz_multimember.nii.gz', gzip.compress(src[:500]) + gzip.compress(src[500:]), 'ok')
good = gzip.compress(src, 6)
gz('gz_truncated_end.nii.gz', good[:-6])
gz('gz_truncated_mid.nii.gz', good[: len(good) // 2])
bad_crc = bytearray(good); bad_crc[-8] ^= 0xFF
gz('gz_bad_crc.nii.gz', bytes(bad_crc))
bad_len = bytearray(good); bad_len[-1] ^= 0x01
gz('gz_bad_length.nii.gz', bytes(bad_len))
bad_body = bytearray(good); bad_body[len(good) // 2] ^= 0xFF
gz('gz_bad_body.nii.gz', bytes(bad_body))
open(os.path.join(out, 'gz_uncompressed_named_gz.nii.gz'), 'wb').write(src)
# nibabel refuses plain data under a .gz name; this reader detects gzip from the content.
lenient = dict(next(c for c in cases if c['file'].endswith('/dt_float32_le.nii')))
lenient.update(file=os.path.join(out, 'gz_uncompressed_named_gz.nii.gz'), why='plain data named .gz')
cases.append(lenient)

# Broken or foreign files.
open(os.path.join(out, 'truncated.nii'), 'wb').write(src[:-10])
record('truncated.nii', 'truncated data', 'error')
open(os.path.join(out, 'short_header.nii'), 'wb').write(src[:200])
record('short_header.nii', 'truncated header', 'error')
open(os.path.join(out, 'text.nii'), 'wb').write(b'this is not an image\n' * 30)
record('text.nii', 'text file', 'error')
nanv = rng.normal(0, 1, (2, 2, 2)).astype(np.float32); nanv[1, 0, 1] = np.nan
nib.save(nib.Nifti1Image(nanv, aff), os.path.join(out, 'nan.nii'))
record('nan.nii', 'NaN voxel', 'error')
infv = nanv.copy(); infv[1, 0, 1] = np.inf
nib.save(nib.Nifti1Image(infv, aff), os.path.join(out, 'inf.nii'))
record('inf.nii', 'Inf voxel', 'error')
nib.save(nib.Nifti1Image(rng.normal(0, 1, (2, 2, 2)).astype(np.complex64), aff), os.path.join(out, 'complex.nii'))
record('complex.nii', 'complex64', 'error')
rgb = np.zeros((2, 2, 2), dtype=[('R', 'u1'), ('G', 'u1'), ('B', 'u1')])
nib.save(nib.Nifti1Image(rgb, aff), os.path.join(out, 'rgb.nii'))
record('rgb.nii', 'RGB24', 'error')
nib.save(nib.Nifti2Image(a16, aff), os.path.join(out, 'nifti2.nii'))
record('nifti2.nii', 'NIfTI-2', 'ok')

# NIfTI-2: float64 geometry, 64-bit dims, the same variants as NIfTI-1.
fine = np.array([[-0.9, 0.1, 0, 90.123456789], [0.05, 1.1, 0, -120.000000001], [0, 0, 2.5, -70], [0, 0, 0, 1]])
def n2(name, a, edit=None, cls=nib.Nifti2Image, expect='ok', endian=None):
    hdr = (nib.nifti2.Nifti2PairHeader if cls is nib.Nifti2Pair else nib.Nifti2Header)(endianness=endian)
    img = cls(a, fine, hdr)
    img.header.set_data_dtype(a.dtype)
    if edit is not None:
        edit(img)
    nib.save(img, os.path.join(out, name))
for dt in ['uint8', 'int16', 'uint16', 'int32', 'float32', 'float64', 'int64']:
    for endian in '<>':
        name = f'n2_{dt}_{"le" if endian == "<" else "be"}.nii'
        a = (rng.normal(0, 1000, (3, 4, 5)) if dt.startswith('float') else rng.integers(0, 120, (3, 4, 5))).astype(dt)
        n2(name, a, endian=endian)
        record(name, f'NIfTI-2 {dt} {endian}', 'ok')
n2('n2.nii.gz', a16)
record('n2.nii.gz', 'NIfTI-2 gzip', 'ok')
n2('n2_qform_only.nii', a16, qonly)
record('n2_qform_only.nii', 'NIfTI-2 qform only', 'ok')
n2('n2_sform_only.nii', a16, sonly)
record('n2_sform_only.nii', 'NIfTI-2 sform only', 'ok')
n2('n2_no_xform.nii', a16, neither)
record('n2_no_xform.nii', 'NIfTI-2 neither', 'ok')
def n2_ext(img):
    img.header.extensions.append(nib.nifti1.Nifti1Extension('comment', b'nifti2 extension' * 3))
n2('n2_extension.nii.gz', a16, n2_ext)
record('n2_extension.nii.gz', 'NIfTI-2 extension', 'ok')
n2('n2_four_d.nii', a4)
record('n2_four_d.nii', 'NIfTI-2 4D', 'ok')
n2('n2_long.nii.gz', rng.integers(0, 5, (40000, 2, 1)).astype(np.uint8))
record('n2_long.nii.gz', 'NIfTI-2 dim over 32767', 'ok')
n2('n2_pair.img', a16, cls=nib.Nifti2Pair)
record('n2_pair.hdr', 'NIfTI-2 pair', 'ok')
n2('n2_pairgz.img.gz', a16, cls=nib.Nifti2Pair, endian='>')
record('n2_pairgz.img.gz', 'NIfTI-2 big-endian gzip pair', 'ok')
fn = os.path.join(out, 'n2_scaled.nii')
n2('n2_scaled.nii', a16)
b = bytearray(open(fn, 'rb').read())
struct.pack_into('<dd', b, 176, 0.1, -3.3)
open(fn, 'wb').write(bytes(b))
record('n2_scaled.nii', 'NIfTI-2 scaled', 'ok')
n2('n2_nan.nii', nanv)
record('n2_nan.nii', 'NIfTI-2 NaN voxel', 'error')
open(os.path.join(out, 'n2_truncated.nii'), 'wb').write(open(os.path.join(out, 'n2_int16_le.nii'), 'rb').read()[:-3])
record('n2_truncated.nii', 'NIfTI-2 truncated', 'error')
nib.save(nib.AnalyzeImage(a16, aff), os.path.join(out, 'analyze.img'))
record('analyze.hdr', 'ANALYZE 7.5', 'error')

# nibabel's own test data.
data_dir = os.path.join(os.path.dirname(nib.__file__), 'tests', 'data')
for p in sorted(glob.glob(os.path.join(data_dir, '*.nii')) + glob.glob(os.path.join(data_dir, '*.nii.gz'))
                + glob.glob(os.path.join(data_dir, '*.hdr'))):
    name = os.path.basename(p)
    os.symlink(p, os.path.join(out, 'nibabel_' + name))
    img_partner = p[:-4] + '.img'
    if name.endswith('.hdr') and os.path.exists(img_partner):
        os.symlink(img_partner, os.path.join(out, 'nibabel_' + os.path.basename(img_partner)))
    record('nibabel_' + name, 'nibabel test data ' + name)

print(json.dumps(cases))
"#;

fn read_f64(path: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn as_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => as_f64s(x),
            _ => vec![x.as_f64().unwrap()],
        })
        .collect()
}

#[test]
fn reads_what_nibabel_reads() {
    if !common::python_has(&["nibabel", "numpy"]) {
        return;
    }
    let dir = common::tempdir();
    let out = common::run_python(GENERATE, &[dir.path().to_str().unwrap()]);
    let cases: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(cases.len() > 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in &cases {
        let file = case["file"].as_str().unwrap();
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        let ours = read_volume(Path::new(file));
        if case["expect"] == "error" {
            match ours {
                Ok(_) => failures.push(format!("{name}: read, but expected an error ({case})")),
                Err(e) => {
                    let msg = format!("{e:#}");
                    if msg.contains('\n') || !msg.contains(&*name) {
                        failures.push(format!("{name}: error does not name the file: {msg}"));
                    }
                }
            }
            continue;
        }
        let v = match ours {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        compared += 1;
        let shape: Vec<usize> = as_f64s(&case["shape"])
            .iter()
            .map(|&d| d as usize)
            .collect();
        if v.shape != shape {
            failures.push(format!("{name}: shape {:?} vs nibabel {shape:?}", v.shape));
        }
        if v.datatype != case["datatype"].as_str().unwrap() {
            failures.push(format!(
                "{name}: datatype {} vs {}",
                v.datatype, case["datatype"]
            ));
        }
        let spacing = as_f64s(&case["spacing"]);
        for (a, b) in v.geometry.spacing.iter().zip(&spacing) {
            if (a - b).abs() > 1e-6 * b.abs().max(1.0) {
                failures.push(format!(
                    "{name}: spacing {:?} vs {spacing:?}",
                    v.geometry.spacing
                ));
                break;
            }
        }
        let affine = as_f64s(&case["affine"]);
        let ours_aff: Vec<f64> = v.geometry.affine.iter().flatten().copied().collect();
        if ours_aff
            .iter()
            .zip(&affine)
            .any(|(a, b)| (a - b).abs() > 1e-5 * b.abs().max(1.0))
        {
            failures.push(format!("{name}: affine {ours_aff:?} vs nibabel {affine:?}"));
        }
        let want = read_f64(case["values"].as_str().unwrap());
        let got: Vec<f32> = v
            .channels
            .iter()
            .flat_map(|c| c.data().iter().copied())
            .collect();
        if got.len() != want.len() {
            failures.push(format!("{name}: {} values vs {}", got.len(), want.len()));
            continue;
        }
        let scaled = case["scaled"].as_bool().unwrap();
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // Unscaled values must be nibabel's rounded to f32 exactly; scaled ones may
            // differ by float32 rounding (nibabel may scale in float32).
            let tol = if scaled {
                2.0f64.powi(-21) * w.abs().max(1e-30)
            } else {
                0.0
            };
            if (f64::from(g) - f64::from(w as f32)).abs() > tol {
                failures.push(format!("{name}: value {i} is {g} vs nibabel {w}"));
                break;
            }
        }
    }
    assert!(compared > 40, "only {compared} files compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Reads each written file with nibabel and reports every difference from the reference.
const CHECK_WRITTEN: &str = r#"
import json, sys
import numpy as np
import nibabel as nib

pairs = json.loads(sys.argv[1])
problems = []
for ref_path, out_path, kind, vals_path in pairs:
    ref = nib.load(ref_path)
    out = nib.load(out_path)
    rh, oh = ref.header, out.header
    tag = f'{out_path} (ref {ref_path})'
    want_cls = nib.Nifti2Image if isinstance(ref, (nib.Nifti2Image, nib.Nifti2Pair)) else nib.Nifti1Image
    if type(out) is not want_cls:
        problems.append(f'{tag}: {type(out).__name__}, not a single-file {want_cls.__name__}')
    if out.shape != ref.shape[:3] + (1,) * (3 - len(ref.shape[:3])):
        problems.append(f'{tag}: shape {out.shape} vs {ref.shape}')
    want_dtype = 'uint8' if kind == 'labels' else 'float32'
    if out.get_data_dtype().name != want_dtype:
        problems.append(f'{tag}: dtype {out.get_data_dtype()}')
    for key in ['qform_code', 'sform_code', 'srow_x', 'srow_y', 'srow_z', 'quatern_b', 'quatern_c',
                'quatern_d', 'qoffset_x', 'qoffset_y', 'qoffset_z', 'xyzt_units']:
        if not np.array_equal(rh[key], oh[key]):
            problems.append(f'{tag}: {key} {oh[key]} vs {rh[key]}')
    if not np.array_equal(rh['pixdim'][:4], oh['pixdim'][:4]):
        problems.append(f'{tag}: pixdim {oh["pixdim"]} vs {rh["pixdim"]}')
    if not np.array_equal(ref.affine, out.affine):
        problems.append(f'{tag}: affine {out.affine.tolist()} vs {ref.affine.tolist()}')
    # nibabel moves the file's scaling to the data proxy on load.
    if (float(out.dataobj.slope), float(out.dataobj.inter)) != (1.0, 0.0):
        problems.append(f'{tag}: slope/inter {out.dataobj.slope}, {out.dataobj.inter}')
    want = np.fromfile(vals_path, dtype='<f4')
    got = np.asarray(out.dataobj).ravel(order='F').astype(np.float32)
    if not np.array_equal(got, want):
        problems.append(f'{tag}: values differ')
print(json.dumps(problems))
"#;

#[test]
fn nibabel_reads_what_we_write() {
    if !common::python_has(&["nibabel", "numpy"]) {
        return;
    }
    let dir = common::tempdir();
    let out = common::run_python(GENERATE, &[dir.path().to_str().unwrap()]);
    let cases: Vec<Value> = serde_json::from_str(&out).unwrap();
    let refs = [
        "qform_only.nii",
        "sform_only.nii",
        "no_xform.nii",
        "both_xforms.nii.gz",
        "four_d.nii.gz",
        "pair.hdr",
        "bepair.hdr",
        "dt_int16_be.nii",
        "neg_pixdim.nii",
        "nibabel_anatomical.nii",
        "nibabel_example4d.nii.gz",
        "nibabel_standard.nii.gz",
        "nifti2.nii",
        "n2_int16_be.nii",
        "n2_qform_only.nii",
        "n2_sform_only.nii",
        "n2_four_d.nii",
        "n2_pair.hdr",
        "n2_pairgz.img.gz",
        "nibabel_example_nifti2.nii.gz",
    ];
    let mut pairs = Vec::new();
    for (k, r) in refs.iter().enumerate() {
        let case = cases
            .iter()
            .find(|c| c["file"].as_str().unwrap().ends_with(&format!("/{r}")))
            .unwrap_or_else(|| panic!("no case {r}"));
        assert_eq!(case["expect"], "ok", "{r}");
        let ref_path = PathBuf::from(case["file"].as_str().unwrap());
        let v = read_volume(&ref_path).unwrap();
        let g: &Geometry = &v.geometry;
        let n = g.dims.iter().product::<usize>();
        let labels = Grid::from_vec(g.dims, (0..n).map(|i| (i * 7 % 5) as u8).collect()).unwrap();
        let floats = v.channels[0].map(|x| x * 0.5 - 3.25);
        for (kind, ext) in [
            ("labels", "nii.gz"),
            ("floats", "nii"),
            ("labels", "nii"),
            ("floats", "nii.gz"),
        ] {
            let out_path = dir.path().join(format!("out_{k}_{kind}.{ext}"));
            let vals_path = dir.path().join(format!("out_{k}_{kind}_{ext}.f32"));
            let vals: Vec<f32> = if kind == "labels" {
                write_labels(&out_path, g, &labels).unwrap();
                labels.data().iter().map(|&x| f32::from(x)).collect()
            } else {
                write_float(&out_path, g, &floats).unwrap();
                floats.data().to_vec()
            };
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&vals_path, bytes).unwrap();
            // Our own reader agrees too.
            let back = read_volume(&out_path).unwrap();
            assert_eq!(back.geometry, *g, "{}", out_path.display());
            pairs.push((ref_path.clone(), out_path, kind, vals_path));
        }
    }
    let arg = serde_json::to_string(&pairs).unwrap();
    let problems: Vec<String> =
        serde_json::from_str(&common::run_python(CHECK_WRITTEN, &[&arg])).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
