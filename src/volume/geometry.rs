//! The geometry of a volume: grid dims, voxel spacing, the voxel-to-world affine chosen as
//! nibabel chooses it, and the NIfTI-1 or NIfTI-2 header it came from (kept so that files
//! written with this geometry are of the same version and carry the same qform/sform codes
//! and matrices bit for bit).

use anyhow::{Result, bail};
use nifti::{Endianness, NiftiHeader};

use super::header::{Header, NiftiVersion, parse_header};

/// Largest distance (mm) between corresponding corner voxel centres of two grids that
/// [`Geometry::same_grid`] still calls the same grid. The qform is stored as float32
/// quaternions, so the same grid written through qform and through sform differs by
/// about 1e-5 mm; real misregistrations are much larger.
pub const SAME_GRID_TOLERANCE_MM: f64 = 1e-3;

/// NIfTI `xyzt_units` for millimetres and seconds.
const UNITS_MM_SEC: u8 = 2 | 8;

/// Where a volume's voxels sit in the world.
///
/// `affine` maps voxel indices `(x, y, z, 1)` to world millimetres (row-major 4×4).
/// It is the sform when `sform_code != 0`, else the qform when `qform_code != 0`, else
/// the ANALYZE-style fallback from `pixdim` centred on the grid (nibabel's
/// `get_best_affine`).
///
/// Two geometries are equal (`==`) when dims, spacing, affine and the qform/sform codes
/// are; other header fields (datatype, description, ...) do not count.
#[derive(Debug, Clone)]
pub struct Geometry {
    /// `[nx, ny, nz]` (a 2D file has `nz = 1`).
    pub dims: [usize; 3],
    /// Voxel size in mm along x, y, z (`pixdim[1..4]`, fixed as nibabel fixes them:
    /// negative → absolute value, zero → 1).
    pub spacing: [f64; 3],
    /// Voxel → world (mm), row-major.
    pub affine: [[f64; 4]; 4],
    /// The header this geometry was read from (or a fresh NIfTI-1 one), with nibabel's
    /// load-time fixes applied. Writers start from it.
    header: Header,
}

impl Geometry {
    /// A geometry with a fresh NIfTI-1 header for `dims` and `affine`: sform = `affine`
    /// (code 1, scanner), qform = its rotation/zoom/translation part (code 1), spacing =
    /// the affine's column norms, units mm.
    ///
    /// The stored affine is `affine` rounded to float32, as a reader of the written file
    /// will see it.
    pub fn from_affine(dims: [usize; 3], affine: [[f64; 4]; 4]) -> Geometry {
        let mut h = NiftiHeader {
            dim: [
                3,
                clamp_dim(dims[0]),
                clamp_dim(dims[1]),
                clamp_dim(dims[2]),
                1,
                1,
                1,
                1,
            ],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            xyzt_units: UNITS_MM_SEC,
            magic: *b"n+1\0",
            endianness: Endianness::Little,
            datatype: 16,
            bitpix: 32,
            ..NiftiHeader::default()
        };
        let mut descrip = b"a2fseg".to_vec();
        descrip.resize(80, 0);
        h.descrip = descrip;
        let mut h = Header::from(h);
        set_sform(&mut h, &affine, 1);
        set_qform(&mut h, &affine, 1);
        if let Ok(g) = Geometry::from_header(h.clone()) {
            return g;
        }
        // Only a degenerate affine (a zero column) or zero dims get here: keep the sform,
        // which readers use first, and drop the qform.
        h.qform_code = 0;
        if let Ok(g) = Geometry::from_header(h.clone()) {
            return g;
        }
        Geometry {
            dims,
            spacing: column_norms(&affine).map(|s| if s > 0.0 { s } else { 1.0 }),
            affine: round_f32(&affine),
            header: h,
        }
    }

    /// Builds the geometry of a parsed header. Applies nibabel's load-time header fixes
    /// (`pixdim[1..4]` negative → absolute value, zero → 1; `pixdim[0]` not ±1 → 1) and
    /// chooses the affine as nibabel does. Fails on an invalid quaternion or dims.
    pub(crate) fn from_header(h: impl Into<Header>) -> Result<Geometry> {
        let mut h = h.into();
        fix_header(&mut h);
        let ndim = h.dim[0];
        if !(1..=7).contains(&ndim) {
            bail!("invalid number of dimensions dim[0] = {ndim} (must be 1 to 7)");
        }
        let ndim = ndim as usize;
        let mut dims = [1usize; 3];
        for (i, d) in dims.iter_mut().enumerate().take(ndim.min(3)) {
            let v = h.dim[i + 1];
            if v <= 0 {
                bail!("invalid dimension dim[{}] = {v} (must be positive)", i + 1);
            }
            *d = usize::try_from(v)?;
        }
        let mut spacing = [1.0f64; 3];
        for (i, s) in spacing.iter_mut().enumerate().take(ndim.min(3)) {
            *s = h.pixdim[i + 1];
        }
        let affine = if h.sform_code != 0 {
            sform_affine(&h)
        } else if h.qform_code != 0 {
            qform_affine(&h)?
        } else {
            base_affine(&h, ndim)
        };
        if affine.iter().flatten().any(|v| !v.is_finite()) {
            bail!("the affine has non-finite entries");
        }
        Ok(Geometry {
            dims,
            spacing,
            affine,
            header: h,
        })
    }

    /// Whether `other` is the same voxel grid: equal dims and every corner voxel centre
    /// within [`SAME_GRID_TOLERANCE_MM`] in world space.
    pub fn same_grid(&self, other: &Geometry) -> bool {
        self.dims == other.dims && self.max_corner_distance(other) <= SAME_GRID_TOLERANCE_MM
    }

    /// Largest world distance (mm) between corresponding corner voxel centres of `self`
    /// and `other`, using `self.dims` (for messages about near-miss grids).
    pub fn max_corner_distance(&self, other: &Geometry) -> f64 {
        let mut worst = 0.0f64;
        for corner in 0..8 {
            let p = [0, 1, 2].map(|a| {
                if corner & (1 << a) != 0 {
                    (self.dims[a].max(1) - 1) as f64
                } else {
                    0.0
                }
            });
            let a = apply(&self.affine, p);
            let b = apply(&other.affine, p);
            let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
            worst = if d.is_nan() {
                f64::INFINITY
            } else {
                worst.max(d)
            };
        }
        worst
    }

    /// The qform code of the header (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
    pub fn qform_code(&self) -> i16 {
        self.header.qform_code as i16
    }

    /// The sform code of the header.
    pub fn sform_code(&self) -> i16 {
        self.header.sform_code as i16
    }

    /// The NIfTI version of the file this geometry was read from; files written with this
    /// geometry have the same version.
    pub fn version(&self) -> NiftiVersion {
        self.header.version
    }

    /// The kept header, for writers.
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The kept header as the little-endian bytes of its version (348 bytes for NIfTI-1,
    /// 540 for NIfTI-2): a way to store a geometry (e.g. in a cache) and get it back with
    /// [`Geometry::from_header_bytes`].
    pub fn header_bytes(&self) -> Vec<u8> {
        self.header.encode()
    }

    /// The geometry of a NIfTI-1 or NIfTI-2 header (either byte order).
    pub fn from_header_bytes(bytes: &[u8]) -> Result<Geometry> {
        Geometry::from_header(parse_header(bytes)?)
    }
}

impl PartialEq for Geometry {
    fn eq(&self, other: &Geometry) -> bool {
        self.dims == other.dims
            && self.spacing == other.spacing
            && self.affine == other.affine
            && self.qform_code() == other.qform_code()
            && self.sform_code() == other.sform_code()
    }
}

/// nibabel's `check_fix` on load: spatial pixdims non-negative and non-zero, qfac ±1.
fn fix_header(h: &mut Header) {
    for p in &mut h.pixdim[1..4] {
        if *p == 0.0 {
            *p = 1.0;
        } else if *p < 0.0 {
            *p = p.abs();
        }
    }
    if h.pixdim[0] != 1.0 && h.pixdim[0] != -1.0 {
        h.pixdim[0] = 1.0;
    }
}

fn clamp_dim(d: usize) -> u16 {
    d.min(i16::MAX as usize) as u16
}

/// `v` as the header of `version` stores it (float32 in NIfTI-1, float64 in NIfTI-2).
fn stored(version: NiftiVersion, v: f64) -> f64 {
    match version {
        NiftiVersion::One => f64::from(v as f32),
        NiftiVersion::Two => v,
    }
}

fn apply(a: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
}

fn column_norms(a: &[[f64; 4]; 4]) -> [f64; 3] {
    [0, 1, 2].map(|c| (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt())
}

fn round_f32(a: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    a.map(|row| row.map(|v| f64::from(v as f32)))
}

/// The sform rows, as nibabel's `get_sform`.
fn sform_affine(h: &Header) -> [[f64; 4]; 4] {
    [h.srow[0], h.srow[1], h.srow[2], [0.0, 0.0, 0.0, 1.0]]
}

/// The qform affine, as nibabel's `get_qform`: quaternion (b, c, d) completed with a
/// non-negative `a` (zero when `1 - b² - c² - d²` is within 3 epsilons of the header's
/// float type of zero: float32 for NIfTI-1, float64 for NIfTI-2), times
/// `diag(pixdim[1], pixdim[2], qfac * pixdim[3])`, plus the offsets.
fn qform_affine(h: &Header) -> Result<[[f64; 4]; 4]> {
    let [b, c, d] = h.quatern;
    let w2 = 1.0 - (b * b + c * c + d * d);
    let threshold = match h.version {
        NiftiVersion::One => 3.0 * f64::from(f32::EPSILON),
        NiftiVersion::Two => 3.0 * f64::EPSILON,
    };
    let a = if w2.abs() < threshold {
        0.0
    } else if w2 < 0.0 {
        bail!("the qform quaternion (b, c, d) = ({b}, {c}, {d}) is not a unit quaternion");
    } else {
        w2.sqrt()
    };
    let r = quat_to_matrix([a, b, c, d]);
    let qfac = h.pixdim[0];
    let zooms = [h.pixdim[1], h.pixdim[2], h.pixdim[3] * qfac];
    let offsets = h.qoffset;
    let mut out = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = r[i][j] * zooms[j];
        }
        out[i][3] = offsets[i];
    }
    out[3][3] = 1.0;
    Ok(out)
}

/// Rotation matrix of the quaternion `[w, x, y, z]` (nibabel's `quat2mat`).
fn quat_to_matrix(q: [f64; 4]) -> [[f64; 3]; 3] {
    let [w, x, y, z] = q;
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// nibabel's `get_base_affine`: `diag(-px, py, pz)` centred on the grid.
fn base_affine(h: &Header, ndim: usize) -> [[f64; 4]; 4] {
    let mut shape = [1.0f64; 3];
    let mut zooms = [1.0f64; 3];
    for i in 0..ndim.min(3) {
        shape[i] = h.dim[i + 1] as f64;
        zooms[i] = h.pixdim[i + 1];
    }
    zooms[0] = -zooms[0];
    let mut out = [[0.0; 4]; 4];
    for i in 0..3 {
        out[i][i] = zooms[i];
        out[i][3] = -(shape[i] - 1.0) / 2.0 * zooms[i];
    }
    out[3][3] = 1.0;
    out
}

/// Stores `affine` as the sform with `code` (rounded to the header's float type).
fn set_sform(h: &mut Header, affine: &[[f64; 4]; 4], code: i32) {
    h.sform_code = code;
    let version = h.version;
    for (row, a) in h.srow.iter_mut().zip(affine) {
        *row = a.map(|v| stored(version, v));
    }
}

/// Stores the rotation, zooms and translation of `affine` as the qform with `code`:
/// zooms are the column norms, qfac = -1 for a left-handed affine, and the rotation is
/// the closest orthogonal matrix (polar decomposition), so shears are dropped as the
/// NIfTI standard requires.
fn set_qform(h: &mut Header, affine: &[[f64; 4]; 4], code: i32) {
    let zooms = column_norms(affine);
    let mut r = [[0.0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = if zooms[j] > 0.0 {
                affine[i][j] / zooms[j]
            } else if i == j {
                1.0
            } else {
                0.0
            };
        }
    }
    let qfac = if det3(&r) < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let r = closest_rotation(r);
    let [_, b, c, d] = matrix_to_quat(&r);
    let version = h.version;
    h.qform_code = code;
    h.pixdim[0] = qfac;
    for (p, z) in h.pixdim[1..4].iter_mut().zip(zooms) {
        *p = if z > 0.0 { stored(version, z) } else { 1.0 };
    }
    h.quatern = [b, c, d].map(|v| stored(version, v));
    h.qoffset = [0, 1, 2].map(|r| stored(version, affine[r][3]));
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inverse_transpose3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    // Cofactor matrix divided by the determinant is the inverse transpose.
    let c =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 2, 1, 2) / det,
            -c(1, 2, 0, 2) / det,
            c(1, 2, 0, 1) / det,
        ],
        [
            -c(0, 2, 1, 2) / det,
            c(0, 2, 0, 2) / det,
            -c(0, 2, 0, 1) / det,
        ],
        [
            c(0, 1, 1, 2) / det,
            -c(0, 1, 0, 2) / det,
            c(0, 1, 0, 1) / det,
        ],
    ])
}

/// The orthogonal factor of the polar decomposition of `m` (Newton iteration
/// `R ← (R + R⁻ᵀ) / 2`), i.e. the rotation closest to `m`. Identity for a singular `m`.
fn closest_rotation(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = m;
    for _ in 0..100 {
        let Some(it) = inverse_transpose3(&r) else {
            return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        };
        let mut next = [[0.0; 3]; 3];
        let mut change = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (r[i][j] + it[i][j]);
                change = change.max((next[i][j] - r[i][j]).abs());
            }
        }
        r = next;
        if change < 1e-15 {
            break;
        }
    }
    r
}

/// Unit quaternion `[a, b, c, d]` with `a >= 0` of a rotation matrix (Shepperd's method,
/// as in nifti1_io's `nifti_mat44_to_quatern`).
fn matrix_to_quat(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let mut q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        ]
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        [
            (r[2][1] - r[1][2]) / s,
            0.25 * s,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        ]
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        [
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            0.25 * s,
            (r[1][2] + r[2][1]) / s,
        ]
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        [
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            0.25 * s,
        ]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    for v in &mut q {
        *v /= n;
    }
    if q[0] < 0.0 {
        q = q.map(|v| -v);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) -> bool {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn from_affine_sets_sform_qform_and_spacing() {
        let aff = [
            [-1.0, 0.0, 0.0, 90.0],
            [0.0, 1.2, 0.0, -126.0],
            [0.0, 0.0, 2.5, -72.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_affine([4, 5, 6], aff);
        assert_eq!(g.dims, [4, 5, 6]);
        assert!((g.spacing[1] - 1.2).abs() < 1e-6);
        assert!(close(&g.affine, &aff, 1e-5));
        assert_eq!((g.qform_code(), g.sform_code()), (1, 1));
        let q = qform_affine(g.header()).unwrap();
        assert!(close(&q, &aff, 1e-5), "{q:?}");
    }

    #[test]
    fn qform_of_rotated_affine_matches_sform() {
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        let aff = [
            [c * 2.0, -s * 1.5, 0.0, 10.0],
            [s * 2.0, c * 1.5, 0.0, -4.0],
            [0.0, 0.0, -3.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_affine([3, 3, 3], aff);
        assert_eq!(g.header().pixdim[0], -1.0);
        let q = qform_affine(g.header()).unwrap();
        assert!(close(&q, &aff, 1e-5), "{q:?}");
    }

    #[test]
    fn base_affine_is_centred_and_x_flipped() {
        let h = NiftiHeader {
            dim: [3, 3, 5, 7, 1, 1, 1, 1],
            pixdim: [1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            qform_code: 0,
            sform_code: 0,
            ..NiftiHeader::default()
        };
        let g = Geometry::from_header(h).unwrap();
        let want = [
            [-3.0, 0.0, 0.0, 3.0],
            [0.0, 2.0, 0.0, -4.0],
            [0.0, 0.0, 1.0, -3.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(g.affine, want);
    }

    #[test]
    fn same_grid_tolerates_float32_noise_only() {
        let aff = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let a = Geometry::from_affine([10, 10, 10], aff);
        let mut moved = aff;
        moved[0][3] = 1e-6;
        assert!(a.same_grid(&Geometry::from_affine([10, 10, 10], moved)));
        moved[0][3] = 0.5;
        assert!(!a.same_grid(&Geometry::from_affine([10, 10, 10], moved)));
        assert!(!a.same_grid(&Geometry::from_affine([10, 10, 11], aff)));
    }

    #[test]
    fn header_fixes_follow_nibabel() {
        let h = NiftiHeader {
            dim: [3, 2, 2, 2, 1, 1, 1, 1],
            pixdim: [0.0, -2.0, 0.0, 3.0, 1.0, 1.0, 1.0, 1.0],
            ..NiftiHeader::default()
        };
        let g = Geometry::from_header(h).unwrap();
        assert_eq!(g.spacing, [2.0, 1.0, 3.0]);
        assert_eq!(g.header().pixdim[0], 1.0);
    }

    #[test]
    fn invalid_quaternion_is_an_error() {
        let h = NiftiHeader {
            dim: [3, 2, 2, 2, 1, 1, 1, 1],
            sform_code: 0,
            qform_code: 1,
            quatern_b: 0.9,
            quatern_c: 0.9,
            ..NiftiHeader::default()
        };
        assert!(Geometry::from_header(h).is_err());
    }

    #[test]
    fn degenerate_affine_keeps_the_sform() {
        let mut aff = [[0.0; 4]; 4];
        aff[0][3] = 5.0;
        aff[3][3] = 1.0;
        let g = Geometry::from_affine([2, 2, 2], aff);
        assert_eq!(g.affine, aff);
        assert_eq!(g.sform_code(), 1);
        assert_eq!(g.header().srow[0], [0.0, 0.0, 0.0, 5.0]);
    }

    #[test]
    fn header_bytes_round_trip() {
        let aff = [
            [0.9, 0.1, 0.0, 1.0],
            [0.0, 1.0, 0.0, 2.0],
            [0.0, 0.0, 1.1, 3.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_affine([7, 8, 9], aff);
        let bytes = g.header_bytes();
        assert_eq!(bytes.len(), 348);
        let back = Geometry::from_header_bytes(&bytes).unwrap();
        assert_eq!(back, g);
    }
}
