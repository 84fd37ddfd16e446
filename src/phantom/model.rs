//! The continuous model of one phantom case: anatomy, tumour and acquisition parameters
//! drawn from a seeded generator, and the evaluation of every quantity at a point in
//! millimetres. Rendering on a grid (see `render`) only samples this model.
//!
//! Frames: scanner millimetres `q` (grid centre at 0, axes along the voxel axes), and the
//! brain frame `b = R (q - c)` (brain centre at 0, x left–right, y posterior–anterior,
//! z inferior–superior). Anatomy and tumour live in the brain frame.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::contrast::{Tissue, TumourTissue, TumourZ};
use super::noise::{Fractal, ValueNoise, mix64};

/// Tumour grade: high-grade tumours have an enhancing rim (usually around necrosis);
/// low-grade tumours have a non-enhancing core and no ET at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Glioblastoma-like: enhancing rim, necrosis, large edema.
    High,
    /// Lower-grade glioma-like: no enhancement.
    Low,
}

/// Logistic step: 0 far below 0, 1 far above, width `w`.
#[inline]
pub(crate) fn soft(x: f64, w: f64) -> f64 {
    1.0 / (1.0 + (-x / w).exp())
}

#[inline]
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

fn seed(rng: &mut ChaCha8Rng) -> u64 {
    rng.random::<u64>()
}

/// A random unit vector (uniform on the sphere).
fn direction(rng: &mut ChaCha8Rng) -> [f64; 3] {
    let z = uniform(rng, -1.0, 1.0);
    let t = uniform(rng, 0.0, std::f64::consts::TAU);
    let r = (1.0 - z * z).sqrt();
    [r * t.cos(), r * t.sin(), z]
}

/// Normalised ellipsoid radius of `p` (1 on the surface) and a membership that is 1 inside,
/// with a logistic edge of width `pv` mm.
fn ellipsoid(p: [f64; 3], axes: [f64; 3], pv: f64) -> f64 {
    let e = norm([p[0] / axes[0], p[1] / axes[1], p[2] / axes[2]]);
    let m = axes[0].min(axes[1]).min(axes[2]);
    soft((1.0 - e) * m, pv)
}

/// Healthy-tissue fractions at a point (they sum to 1 inside the brain).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tissues {
    pub wm: f64,
    pub gm: f64,
    pub dgm: f64,
    pub csf: f64,
    /// Choroid plexus fraction (inside the ventricles).
    pub choroid: f64,
}

/// Brain shape and healthy anatomy.
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    centre: [f64; 3],
    rot: [[f64; 3]; 3],
    axes: [f64; 3],
    surface: Fractal,
    surface_amp: f64,
    csf_rim: f64,
    gm_thick: f64,
    gm_noise: ValueNoise,
    sulci: Fractal,
    sulcus_csf: f64,
    sulcus_gm: f64,
    sulcus_depth: f64,
    fissure_half: f64,
    fissure_depth: f64,
    fissure_wiggle: ValueNoise,
    vent_scale: f64,
    vent_shift: [f64; 3],
    deep_scale: f64,
    choroid: [[f64; 3]; 2],
}

/// Semi-axes (mm, x y z) of the brain's ellipsoid before the per-case scaling.
const SEMI_AXES: [f64; 3] = [68.0, 85.0, 62.0];

/// The base of the brain is flatter than its vertex: below the centre, the z semi-axis is
/// this share of the one above.
const BASE_FLATTENING: f64 = 0.86;

/// Share of the per-case size variation (±11 % about the mean) kept when the brain is drawn
/// to a given box: ±4 %, so that the brain stays inside BraTS's 155 mm along z.
const BOX_SPREAD: f64 = 0.4;

impl Anatomy {
    /// Draws a brain at its own size, or, with `brain_box` (mm, x y z), scaled per axis to
    /// about that box and centred on it (each case keeps its own relative size within
    /// [`BOX_SPREAD`] and its own orientation and folding).
    fn draw(rng: &mut ChaCha8Rng, brain_box: Option<[f64; 3]>) -> Self {
        let scale = uniform(rng, 0.92, 1.05);
        let mut axes = [
            SEMI_AXES[0] * scale * uniform(rng, 0.96, 1.04),
            SEMI_AXES[1] * scale * uniform(rng, 0.96, 1.04),
            SEMI_AXES[2] * scale * uniform(rng, 0.96, 1.04),
        ];
        let mut centre = [
            uniform(rng, -3.0, 3.0),
            uniform(rng, -4.0, 4.0),
            uniform(rng, -3.0, 5.0),
        ];
        if let Some(target) = brain_box {
            // The ellipsoid's box spans 2a along x and y, (1 + flattening) a along z.
            let span = [2.0, 2.0, 1.0 + BASE_FLATTENING];
            axes = std::array::from_fn(|i| {
                let relative = axes[i] / SEMI_AXES[i];
                target[i] * (1.0 + BOX_SPREAD * (relative - 1.0)) / span[i]
            });
            // The box's centre lies (1 - flattening) / 2 · a above the ellipsoid's.
            centre = [
                0.5 * centre[0],
                0.5 * centre[1],
                -0.5 * (1.0 - BASE_FLATTENING) * axes[2],
            ];
        }
        let (yaw, pitch, roll) = (
            uniform(rng, -0.12, 0.12),
            uniform(rng, -0.09, 0.09),
            uniform(rng, -0.06, 0.06),
        );
        let rot = rotation(yaw, pitch, roll);
        let vent_scale = uniform(rng, 0.75, 1.45);
        let vent_shift = [
            uniform(rng, -1.5, 1.5),
            uniform(rng, -3.0, 3.0),
            uniform(rng, -2.0, 2.0),
        ];
        let choroid = [-1.0, 1.0].map(|side: f64| {
            [
                side * (7.0 * vent_scale + uniform(rng, 0.0, 3.0)),
                -16.0 + uniform(rng, -3.0, 3.0),
                9.0 + uniform(rng, -2.0, 2.0),
            ]
        });
        Anatomy {
            centre,
            rot,
            axes,
            surface: Fractal::new(seed(rng), 30.0),
            surface_amp: uniform(rng, 0.02, 0.045),
            csf_rim: uniform(rng, 1.2, 2.6),
            gm_thick: uniform(rng, 3.2, 4.6),
            gm_noise: ValueNoise::new(seed(rng), 9.0),
            sulci: Fractal::new(seed(rng), uniform(rng, 13.0, 17.0)),
            sulcus_csf: uniform(rng, 0.05, 0.09),
            sulcus_gm: uniform(rng, 0.22, 0.3),
            sulcus_depth: uniform(rng, 10.0, 17.0),
            fissure_half: uniform(rng, 0.8, 1.8),
            fissure_depth: uniform(rng, 28.0, 38.0),
            fissure_wiggle: ValueNoise::new(seed(rng), 15.0),
            vent_scale,
            vent_shift,
            deep_scale: uniform(rng, 0.9, 1.1),
            choroid,
        }
    }

    /// Scanner millimetres to the brain frame.
    pub(crate) fn scanner_to_brain(&self, q: [f64; 3]) -> [f64; 3] {
        let d = sub(q, self.centre);
        let r = &self.rot;
        [
            r[0][0] * d[0] + r[0][1] * d[1] + r[0][2] * d[2],
            r[1][0] * d[0] + r[1][1] * d[1] + r[1][2] * d[2],
            r[2][0] * d[0] + r[2][1] * d[1] + r[2][2] * d[2],
        ]
    }

    /// Brain frame to scanner millimetres (inverse of [`Anatomy::scanner_to_brain`]).
    pub(crate) fn brain_to_scanner(&self, b: [f64; 3]) -> [f64; 3] {
        let r = &self.rot;
        let mut q = self.centre;
        for (i, qi) in q.iter_mut().enumerate() {
            *qi += r[0][i] * b[0] + r[1][i] * b[1] + r[2][i] * b[2];
        }
        q
    }

    /// Depth below the brain surface in mm (negative outside the brain).
    pub(crate) fn depth(&self, b: [f64; 3]) -> f64 {
        // The base of the brain is flatter than its vertex.
        let az = if b[2] < 0.0 {
            self.axes[2] * BASE_FLATTENING
        } else {
            self.axes[2]
        };
        let rho = norm([b[0] / self.axes[0], b[1] / self.axes[1], b[2] / az]);
        let rho_p = rho * (1.0 + self.surface_amp * self.surface.at(b));
        let r_dir = if rho > 1e-6 { norm(b) / rho } else { az };
        (1.0 - rho_p) * r_dir
    }

    /// Healthy tissue fractions at brain-frame point `a` (already displaced by the tumour's
    /// mass effect) of depth `depth`, with partial-volume edge width `pv` mm.
    pub(crate) fn tissues(&self, a: [f64; 3], depth: f64, pv: f64) -> Tissues {
        // CSF: outer rim, sulci, interhemispheric fissure, ventricles.
        let rim = soft(self.csf_rim - depth, pv);
        let s = self.sulci.at(a).abs();
        let sulcal_depth = soft(self.sulcus_depth - depth, 1.5);
        let sulcus = soft(self.sulcus_csf - s, 0.02) * sulcal_depth;
        let fx = a[0] - 1.5 * self.fissure_wiggle.at(a);
        let fissure =
            soft(self.fissure_half - fx.abs(), pv) * soft(self.fissure_depth - depth, 2.0);
        let mut vent: f64 = 0.0;
        let vs = self.vent_scale;
        for side in [-1.0, 1.0] {
            let mut p = sub(a, [side * 6.5 * vs, -2.0, 12.0]);
            p = sub(p, self.vent_shift);
            p[2] += 0.010 * p[1] * p[1];
            p[0] -= side * 0.004 * p[1] * p[1];
            vent = vent.max(ellipsoid(p, [4.0 * vs, 26.0, 6.5 * vs], pv));
        }
        let third = sub(sub(a, [0.0, -4.0, -2.0]), self.vent_shift);
        vent = vent.max(ellipsoid(third, [1.3 * vs, 11.0, 8.0], pv));
        let csf = rim.max(sulcus).max(fissure).max(vent);
        let mut choroid: f64 = 0.0;
        for c in &self.choroid {
            choroid = choroid.max(ellipsoid(sub(a, *c), [2.5, 4.0, 2.5], pv));
        }
        let choroid = choroid * vent;

        // Grey matter: cortex (thickness varies), the banks of the sulci, deep nuclei.
        let gm_depth = self.csf_rim + self.gm_thick * (1.0 + 0.35 * self.gm_noise.at(a));
        let cortex = soft(gm_depth - depth, pv);
        let banks = soft(self.sulcus_gm - s, 0.03) * soft(self.sulcus_depth + 2.0 - depth, 1.5);
        let gm_raw = cortex.max(banks);
        let ds = self.deep_scale;
        let mut deep: f64 = 0.0;
        for side in [-1.0, 1.0] {
            deep = deep.max(ellipsoid(
                sub(a, [side * 19.0 * ds, 4.0, 2.0]),
                [6.0, 12.0, 8.0],
                pv,
            ));
            deep = deep.max(ellipsoid(
                sub(a, [side * 9.0 * ds, -14.0, 4.0]),
                [7.0, 9.0, 7.0],
                pv,
            ));
        }
        let gm = (1.0 - csf) * gm_raw;
        let dgm = (1.0 - csf - gm) * deep;
        let wm = (1.0 - csf - gm - dgm).max(0.0);
        Tissues {
            wm,
            gm,
            dgm,
            csf: csf - choroid,
            choroid,
        }
    }
}

/// Rotation matrix from yaw (about z), pitch (about x) and roll (about y), radians.
fn rotation(yaw: f64, pitch: f64, roll: f64) -> [[f64; 3]; 3] {
    let (sy, cy) = yaw.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sr, cr) = roll.sin_cos();
    let rz = [[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let ry = [[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]];
    matmul(matmul(rz, rx), ry)
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// A sphere of a lobulated union.
#[derive(Debug, Clone, Copy)]
struct Blob {
    centre: [f64; 3],
    radius: f64,
}

/// A lobulated shape: a union of spheres whose radius is perturbed by smooth noise (and,
/// optionally, finer detail noise for irregular, finger-like borders), optionally stretched
/// along one direction. Its level function is < 1 inside, 1 on the boundary, and grows like
/// distance / radius.
#[derive(Debug, Clone)]
struct Lobulated {
    blobs: Vec<Blob>,
    noise: Fractal,
    amp: f64,
    /// Finer noise and its amplitude.
    detail: Option<(Fractal, f64)>,
    /// Unit direction and factor (≥ 1) of the elongation.
    stretch: Option<([f64; 3], f64)>,
}

impl Lobulated {
    fn draw(
        rng: &mut ChaCha8Rng,
        centre: [f64; 3],
        radius: f64,
        extra: usize,
        spread: f64,
        amp: f64,
    ) -> Self {
        let mut blobs = vec![Blob { centre, radius }];
        for _ in 0..extra {
            let d = direction(rng);
            let off = radius * uniform(rng, 0.2, spread);
            blobs.push(Blob {
                centre: [
                    centre[0] + d[0] * off,
                    centre[1] + d[1] * off,
                    centre[2] + d[2] * off,
                ],
                radius: radius * uniform(rng, 0.45, 0.8),
            });
        }
        Lobulated {
            blobs,
            noise: Fractal::new(seed(rng), (radius * 0.6).max(4.0)),
            amp,
            detail: None,
            stretch: None,
        }
    }

    fn level(&self, p: [f64; 3]) -> f64 {
        let mut k = 1.0 + self.amp * self.noise.at(p);
        if let Some((f, a)) = &self.detail {
            k += a * f.at(p);
        }
        let q = match self.stretch {
            Some((u, s)) => {
                let c = self.blobs[0].centre;
                let d = sub(p, c);
                let along = (d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) * (1.0 - 1.0 / s);
                [
                    p[0] - along * u[0],
                    p[1] - along * u[1],
                    p[2] - along * u[2],
                ]
            }
            None => p,
        };
        self.blobs
            .iter()
            .map(|b| norm(sub(q, b.centre)) / (b.radius * k))
            .fold(f64::INFINITY, f64::min)
    }

    /// The farthest reach of the shape from `c` (mm), bounding every point with level < 1.
    fn reach(&self, c: [f64; 3]) -> f64 {
        let detail = self.detail.as_ref().map_or(0.0, |d| d.1);
        let stretch = self.stretch.map_or(1.0, |s| s.1);
        let c0 = self.blobs[0].centre;
        norm(sub(c0, c))
            + self
                .blobs
                .iter()
                .map(|b| (norm(sub(b.centre, c0)) + b.radius * (1.0 + self.amp + detail)) * stretch)
                .fold(0.0, f64::max)
    }
}

/// One focus of the tumour: edema ⊃ core ⊃ necrosis, each lobulated; in a high-grade
/// tumour the enhancing rim is the core minus the necrosis minus non-enhancing gaps.
#[derive(Debug, Clone)]
pub(crate) struct Focus {
    pub centre: [f64; 3],
    pub edema_radius: f64,
    pub core_radius: f64,
    /// 0 when the focus has no necrosis.
    pub necrosis_radius: f64,
    edema: Lobulated,
    core: Lobulated,
    necrosis: Option<Lobulated>,
    gap_noise: ValueNoise,
    gap_threshold: f64,
    reach: f64,
}

impl Focus {
    /// Draws a focus of `grade` at `centre` with edema radius `edema_radius` (mm).
    fn draw(rng: &mut ChaCha8Rng, grade: Grade, centre: [f64; 3], edema_radius: f64) -> Self {
        let core_radius = edema_radius
            * match grade {
                // Version 4: 0.5–0.9 (was 0.45–0.85), so that the core's share of the whole
                // tumour (about 23 % in real cases' mean volumes) and the enhancing tumour's
                // volume come out like real ones (version 3: 18 % and 0.82 % of the brain
                // against 1.06 %).
                Grade::High => uniform(rng, 0.5, 0.9),
                Grade::Low => uniform(rng, 0.5, 0.85),
            };
        let necrosis_radius = match grade {
            Grade::High => {
                // The enhancing rim: mostly thin, sometimes thick (3.5–16 mm).
                let rim = uniform(rng, 3.5f64.ln(), 16f64.ln())
                    .exp()
                    .min(core_radius * 0.7);
                let r = core_radius - rim;
                if r < 2.5 || rng.random::<f64>() < 0.12 {
                    0.0
                } else {
                    r
                }
            }
            Grade::Low => {
                if rng.random::<f64>() < 0.35 {
                    core_radius * uniform(rng, 0.3, 0.5)
                } else {
                    0.0
                }
            }
        };
        let (extra, amp) = (rng.random_range(0..4), uniform(rng, 0.2, 0.4));
        let mut edema = Lobulated::draw(rng, centre, edema_radius, extra, 0.7, amp);
        // Edema follows white-matter tracts: finger-like borders, elongated along a tract.
        edema.detail = Some((
            Fractal::new(seed(rng), uniform(rng, 5.0, 9.0)),
            uniform(rng, 0.1, 0.25),
        ));
        edema.stretch = Some((direction(rng), uniform(rng, 1.0, 1.7)));
        let (extra, amp) = (rng.random_range(0..3), uniform(rng, 0.1, 0.25));
        let core = Lobulated::draw(rng, centre, core_radius, extra, 0.35, amp);
        let necrosis = (necrosis_radius > 0.0).then(|| {
            let d = direction(rng);
            let off = uniform(rng, 0.0, 0.3) * (core_radius - necrosis_radius);
            let c = [
                centre[0] + d[0] * off,
                centre[1] + d[1] * off,
                centre[2] + d[2] * off,
            ];
            let (extra, amp) = (rng.random_range(0..3), uniform(rng, 0.12, 0.3));
            Lobulated::draw(rng, c, necrosis_radius, extra, 0.35, amp)
        });
        // Non-enhancing gaps: none in half of the rims, up to half of the rim in the others.
        let gap_fraction: f64 = if rng.random::<f64>() < 0.5 {
            uniform(rng, 0.0, 0.5)
        } else {
            0.0
        };
        let reach = edema.reach(centre).max(core.reach(centre)) + 1.0;
        Focus {
            centre,
            edema_radius,
            core_radius,
            necrosis_radius,
            edema,
            core,
            necrosis,
            gap_noise: ValueNoise::new(seed(rng), (core_radius * 0.5).max(4.0)),
            // Value noise is roughly triangular on [-1, 1]: map the wanted share to a level.
            gap_threshold: 0.8 - 1.6 * gap_fraction,
            reach,
        }
    }
}

/// Lattice step (mm) of the core's texture (version 5): blotches of a few millimetres, as
/// necrotic pockets, cysts and dense tumour mix in a glioblastoma's core.
///
/// Why the core has a texture of its own: in glioma the vasogenic edema is a smooth,
/// homogeneous T2/FLAIR signal while the tumour core is heterogeneous, and the paper's
/// network loses only about ten points of core Dice without T1c (TC 75.5–78.6 without,
/// 86.9–88.0 with). On version 4's phantoms, whose core and edema shared one faint texture,
/// the core's extent without T1c had no cue but a typical size (TC 55–61 without T1c,
/// 75–81 with). The region means are unchanged (the texture averages to 1 over a region), so
/// `dataset stats` reads the same; each label's spread within a case grows (on T2 and FLAIR
/// about 1.5× and 1.2× the edema's in the unit test's cases, where version 4 had 1.1× and
/// 0.8×).
const CORE_TEXTURE_STEP_MM: f64 = 3.0;
/// Range of the core texture's amplitude per case (a fraction of the core's intensity;
/// the texture field itself is about ±1 with most values within ±0.4).
const CORE_HETEROGENEITY: (f64, f64) = (0.25, 0.5);
/// Salt of the core texture's seed (derived from the tumour texture's).
const CORE_TEXTURE_SALT: u64 = 0xC0DE_7E27;

/// The tumour: one focus, or (sometimes) a main focus and a satellite; mass effect around
/// the main one; textures shared by the foci.
#[derive(Debug, Clone)]
pub(crate) struct Tumour {
    pub grade: Grade,
    /// The main focus first.
    pub foci: Vec<Focus>,
    texture: Fractal,
    pub heterogeneity: f64,
    /// The core's own texture (version 5), on top of `texture`: the tumour core (necrosis,
    /// non-enhancing and enhancing tumour) is heterogeneous, the edema around it smooth.
    core_texture: Fractal,
    /// Amplitude of `core_texture` (a fraction of the core's intensity).
    core_heterogeneity: f64,
    pub edema_strength: f64,
    mass: f64,
    mass_sigma: f64,
}

impl Tumour {
    fn draw(rng: &mut ChaCha8Rng, anatomy: &Anatomy) -> Self {
        // About one case in ten has no enhancing tumour, as in BraTS's training sets.
        let grade = if rng.random::<f64>() < 0.1 {
            Grade::Low
        } else {
            Grade::High
        };
        let d = direction(rng);
        let rho = uniform(rng, 0.15, 0.55);
        let mut centre = [
            d[0] * anatomy.axes[0] * rho,
            d[1] * anatomy.axes[1] * rho,
            d[2] * anatomy.axes[2] * rho * 0.8 + 6.0,
        ];
        if centre[0].abs() < 14.0 {
            let side = if centre[0] < 0.0 { -1.0 } else { 1.0 };
            centre[0] = side * uniform(rng, 14.0, 26.0);
        }
        let edema_radius = (uniform(rng, 15f64.ln(), 38f64.ln())).exp();
        let main = Focus::draw(rng, grade, centre, edema_radius);
        let core_radius = main.core_radius;
        let mut foci = vec![main];
        // Multifocal in about one high-grade case in eight: a smaller satellite nearby.
        if grade == Grade::High && rng.random::<f64>() < 0.12 {
            let d = direction(rng);
            let dist = edema_radius * uniform(rng, 0.9, 1.5);
            let mut c = [
                centre[0] + d[0] * dist,
                centre[1] + d[1] * dist,
                centre[2] + d[2] * dist,
            ];
            // Keep it inside the brain: pull it halfway back when it falls too far out.
            let rho = norm([
                c[0] / anatomy.axes[0],
                c[1] / anatomy.axes[1],
                c[2] / anatomy.axes[2],
            ]);
            if rho > 0.6 {
                c = [0, 1, 2].map(|i| 0.5 * (c[i] + centre[i]));
            }
            let r = edema_radius * uniform(rng, 0.35, 0.6);
            foci.push(Focus::draw(rng, grade, c, r));
        }
        let texture_seed = seed(rng);
        // Derived from the texture's seed, so the random stream, and with it every other part
        // of the case, is what version 4 drew.
        let mut core_rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(mix64(
            texture_seed ^ CORE_TEXTURE_SALT,
        ));
        Tumour {
            grade,
            foci,
            texture: Fractal::new(texture_seed, 5.0),
            heterogeneity: uniform(rng, 0.05, 0.15),
            core_texture: Fractal::new(seed(&mut core_rng), CORE_TEXTURE_STEP_MM),
            core_heterogeneity: uniform(&mut core_rng, CORE_HETEROGENEITY.0, CORE_HETEROGENEITY.1),
            edema_strength: uniform(rng, 0.8, 1.0),
            mass: uniform(rng, 0.15, 0.45),
            mass_sigma: core_radius * 1.4,
        }
    }

    /// The main focus.
    pub(crate) fn main(&self) -> &Focus {
        &self.foci[0]
    }

    /// Undoes the mass effect of the main focus: the healthy anatomy seen at `b` came from
    /// this point, nearer to the tumour centre (the map is monotonic for `mass` < 1).
    pub(crate) fn displace(&self, b: [f64; 3]) -> [f64; 3] {
        let c = self.main().centre;
        let d = sub(b, c);
        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        let f = 1.0 - self.mass * (-r2 / (2.0 * self.mass_sigma * self.mass_sigma)).exp();
        [c[0] + d[0] * f, c[1] + d[1] * f, c[2] + d[2] * f]
    }
}

/// Acquisition: per-modality gain, bias field, blur and noise, and the case's contrasts.
#[derive(Debug, Clone)]
pub(crate) struct Acquisition {
    pub gain: [f64; 4],
    pub noise: [f64; 4],
    bias: [Fractal; 4],
    bias_amp: [f64; 4],
    bias_grad: [[f64; 3]; 4],
    pub noise_seed: [u64; 4],
    /// Gaussian blur s.d. (mm) along x, y, z per modality: the resolution the sequence was
    /// acquired at (often thick slices along one axis) before BraTS resampled it to 1 mm.
    pub blur_mm: [[f64; 3]; 4],
    contrast_jitter: [[f64; 4]; 6],
    tumour_z: TumourZ,
    /// Intensities of the tumour tissues, set by [`CaseModel::calibrate`].
    tumour_contrast: [[f64; 4]; 4],
}

impl Acquisition {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let gain = [
            uniform(rng, 350.0, 900.0),
            uniform(rng, 350.0, 1000.0),
            uniform(rng, 500.0, 1500.0),
            uniform(rng, 400.0, 1100.0),
        ];
        let noise = [(); 4].map(|_| uniform(rng, 0.02, 0.07));
        let bias = [(); 4].map(|_| Fractal::new(seed(rng), 70.0));
        let bias_amp = [(); 4].map(|_| uniform(rng, 0.05, 0.25));
        let bias_grad = [(); 4].map(|_| [(); 3].map(|_| uniform(rng, -0.0015, 0.0015)));
        let noise_seed = [(); 4].map(|_| seed(rng));
        let blur_mm = [(); 4].map(|_| {
            let mut s = [(); 3].map(|_| uniform(rng, 0.0, 0.6));
            if rng.random::<f64>() < 0.5 {
                let axis = rng.random_range(0..3);
                s[axis] = uniform(rng, 0.8, 2.2);
            }
            s
        });
        let contrast_jitter = [(); 6].map(|_| [(); 4].map(|_| uniform(rng, 0.92, 1.08)));
        let tumour_z = TumourZ::draw(rng);
        Acquisition {
            gain,
            noise,
            bias,
            bias_amp,
            bias_grad,
            noise_seed,
            blur_mm,
            contrast_jitter,
            tumour_z,
            tumour_contrast: [[0.0; 4]; 4],
        }
    }

    /// The multiplicative bias of modality `m` at scanner point `q` (about 0.7–1.4).
    pub(crate) fn bias(&self, m: usize, q: [f64; 3]) -> f64 {
        let g = self.bias_grad[m];
        (self.bias_amp[m] * self.bias[m].at(q) + g[0] * q[0] + g[1] * q[1] + g[2] * q[2]).exp()
    }

    /// Contrast of healthy tissue `t` in this case (the table with the case's factors).
    pub(crate) fn contrast(&self, t: Tissue) -> [f64; 4] {
        let c = t.contrast();
        let j = self.contrast_jitter[t as usize];
        [c[0] * j[0], c[1] * j[1], c[2] * j[2], c[3] * j[3]]
    }
}

/// A point's intensity as a linear combination: `healthy · weight` plus the tumour tissues'
/// contrasts times their coefficients (same for every modality). Rendering applies it to the
/// case's tumour contrasts; calibration solves for those contrasts from many points.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mix {
    /// Healthy intensities T1, T1c, T2, FLAIR.
    pub healthy: [f64; 4],
    /// Weight of `healthy`.
    pub healthy_weight: f64,
    /// Coefficient of each [`TumourTissue`].
    pub tumour: [f64; 4],
}

impl Mix {
    /// Blends towards the tumour tissue combination `target` with weight `w`.
    fn blend(&mut self, w: f64, target: [f64; 4]) {
        self.healthy_weight *= 1.0 - w;
        for (c, t) in self.tumour.iter_mut().zip(target) {
            *c = *c * (1.0 - w) + w * t;
        }
    }

    /// The intensities for tumour contrasts `tumour` (rows in [`TumourTissue`] order).
    pub(crate) fn apply(&self, tumour: &[[f64; 4]; 4]) -> [f64; 4] {
        std::array::from_fn(|m| {
            self.healthy_weight * self.healthy[m]
                + (0..4).map(|t| self.tumour[t] * tumour[t][m]).sum::<f64>()
        })
    }
}

/// Everything random about one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseModel {
    pub anatomy: Anatomy,
    pub tumour: Tumour,
    pub acquisition: Acquisition,
    lesions: Vec<Blob>,
    tissue_texture: Fractal,
    calibration_seed: u64,
}

/// What the model says about one point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// `TumourClass` index.
    pub class: u8,
    /// Dominant healthy tissue: 0 outside, 1 CSF, 2 GM (cortical or deep), 3 WM.
    pub tissue: u8,
    /// Noise-free intensities before gain and bias, as a combination of tissues.
    pub mix: Mix,
    pub inside: bool,
}

/// Points sampled in the brain to calibrate a case's tumour contrasts.
const CALIBRATION_POINTS: usize = 12_000;

impl CaseModel {
    /// Draws a case from `rng`, its brain at its own size or drawn to `brain_box` (mm).
    /// Its tumour contrasts are set by [`CaseModel::calibrate`].
    pub(crate) fn draw(rng: &mut ChaCha8Rng, brain_box: Option<[f64; 3]>) -> Self {
        let anatomy = Anatomy::draw(rng, brain_box);
        let tumour = Tumour::draw(rng, &anatomy);
        let acquisition = Acquisition::draw(rng);
        let n_lesions = rng.random_range(0..7);
        let mut lesions = Vec::new();
        for _ in 0..n_lesions {
            let d = direction(rng);
            let rho = uniform(rng, 0.2, 0.6);
            let c = [
                d[0] * anatomy.axes[0] * rho,
                d[1] * anatomy.axes[1] * rho,
                d[2] * anatomy.axes[2] * rho,
            ];
            lesions.push(Blob {
                centre: c,
                radius: uniform(rng, 1.5, 4.5),
            });
        }
        CaseModel {
            anatomy,
            tumour,
            acquisition,
            lesions,
            tissue_texture: Fractal::new(seed(rng), 6.0),
            calibration_seed: seed(rng),
        }
    }

    /// The noise-free intensities at a point (before gain and bias).
    pub(crate) fn intensities(&self, s: &Sample) -> [f64; 4] {
        s.mix.apply(&self.acquisition.tumour_contrast)
    }

    /// Sets the tumour tissues' intensities so that, over this case's brain, each has the
    /// z-score drawn for it ([`TumourZ`]): `c = μ + σ z` per modality, where μ and σ are the
    /// brain's mean and s.d. with the tumour in it (a fixed point, reached in a few rounds),
    /// estimated from points sampled uniformly in the brain with partial-volume width `pv`.
    pub(crate) fn calibrate(&mut self, pv: f64) {
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(self.calibration_seed);
        let ax = self.anatomy.axes;
        let mut mixes = Vec::with_capacity(CALIBRATION_POINTS);
        let mut tries = 0;
        while mixes.len() < CALIBRATION_POINTS && tries < 20 * CALIBRATION_POINTS {
            tries += 1;
            let b = [0, 1, 2].map(|i| uniform(&mut rng, -1.1, 1.1) * ax[i]);
            let s = self.sample(self.anatomy.brain_to_scanner(b), pv);
            if s.inside {
                mixes.push(s.mix);
            }
        }
        let z = self.acquisition.tumour_z;
        let n = mixes.len().max(1) as f64;
        // Start from the healthy brain's statistics (tumour contrasts at its mean).
        let mut contrast = [[0.0; 4]; 4];
        for round in 0..6 {
            let mut sum = [0.0; 4];
            let mut sum2 = [0.0; 4];
            for mix in &mixes {
                let v = if round == 0 {
                    mix.healthy
                } else {
                    mix.apply(&contrast)
                };
                for m in 0..4 {
                    sum[m] += v[m];
                    sum2[m] += v[m] * v[m];
                }
            }
            for m in 0..4 {
                let mean = sum[m] / n;
                let sd = (sum2[m] / n - mean * mean).max(1e-12).sqrt();
                for (t, row) in contrast.iter_mut().enumerate() {
                    // Intensities stay positive whatever the draw.
                    row[m] = (mean + sd * z.0[t][m]).max(0.05 * mean);
                }
            }
        }
        self.acquisition.tumour_contrast = contrast;
    }

    /// Evaluates the model at scanner point `q` (mm) with partial-volume width `pv` (mm).
    pub(crate) fn sample(&self, q: [f64; 3], pv: f64) -> Sample {
        let b = self.anatomy.scanner_to_brain(q);
        let depth = self.anatomy.depth(b);
        if depth <= 0.0 {
            return Sample {
                class: 0,
                tissue: 0,
                mix: Mix::default(),
                inside: false,
            };
        }
        let t = &self.tumour;
        let a = t.displace(b);
        let tis = self.anatomy.tissues(a, depth, pv);
        let acq = &self.acquisition;
        let tex = 1.0 + 0.04 * self.tissue_texture.at(b);
        let mut healthy = [0.0; 4];
        let parts = [
            (tis.wm, Tissue::WhiteMatter),
            (tis.gm, Tissue::GreyMatter),
            (tis.dgm, Tissue::DeepGreyMatter),
            (tis.csf, Tissue::Csf),
            (tis.choroid, Tissue::ChoroidPlexus),
        ];
        for (f, tissue) in parts {
            let c = acq.contrast(tissue);
            for m in 0..4 {
                healthy[m] += f * c[m] * tex;
            }
        }
        let mut lesion: f64 = 0.0;
        for l in &self.lesions {
            lesion = lesion.max(soft(l.radius - norm(sub(a, l.centre)), pv));
        }
        let lesion = lesion * (tis.wm + tis.dgm);
        if lesion > 0.0 {
            let c = acq.contrast(Tissue::WhiteMatterLesion);
            for m in 0..4 {
                healthy[m] += lesion * (c[m] * tex - healthy[m]);
            }
        }
        let tissue = if tis.csf + tis.choroid >= tis.wm.max(tis.gm + tis.dgm) {
            1
        } else if tis.gm + tis.dgm > tis.wm {
            2
        } else {
            3
        };

        let mut mix = Mix {
            healthy,
            healthy_weight: 1.0,
            tumour: [0.0; 4],
        };
        let mut class = 0u8;
        let fluid = tis.csf + tis.choroid;
        // Edema spreads along white matter, less into cortex, not into CSF.
        let thr = tis.wm + tis.dgm + 0.72 * tis.gm + 0.3 * fluid;
        // A core label wins over edema and background; edema over background.
        let rank = |c: u8| [0, 3, 1, 2][c as usize];
        // The tumour's texture, evaluated only where a focus reaches (most voxels are far).
        let mut het = None;
        for f in &t.foci {
            if norm(sub(b, f.centre)) >= f.reach {
                continue;
            }
            let (het, core_het) = *het.get_or_insert_with(|| {
                (
                    1.0 + t.heterogeneity * t.texture.at(b),
                    1.0 + t.core_heterogeneity * t.core_texture.at(b),
                )
            });
            let s_ed = f.edema.level(b);
            let s_core = f.core.level(b);
            let s_nec = f.necrosis.as_ref().map_or(f64::INFINITY, |n| n.level(b));
            let gap = soft(f.gap_noise.at(b) - f.gap_threshold, 0.03);
            let here = if s_core < 1.0 {
                if t.grade == Grade::High && s_nec >= 1.0 && gap < 0.5 {
                    3
                } else {
                    1
                }
            } else if s_ed < thr && fluid < 0.5 {
                2
            } else {
                0
            };
            if rank(here) > rank(class) {
                class = here;
            }
            // Edema contrast fades towards its edge: at the labelled boundary it is still
            // about two thirds of its full strength, and it never reaches into fluid.
            let w_ed = t.edema_strength * soft(thr - s_ed + 0.05, 0.07) * (1.0 - fluid).max(0.0);
            mix.blend(w_ed, [het, 0.0, 0.0, 0.0]);
            let w_core = soft(1.0 - s_core, pv / f.core_radius);
            if w_core > 1e-4 {
                let w_nec = if f.necrosis_radius > 0.0 {
                    soft(1.0 - s_nec, pv / f.necrosis_radius)
                } else {
                    0.0
                };
                // The rim: enhancing (high grade) except in its gaps; low grade: none.
                let et = match t.grade {
                    Grade::High => 1.0 - gap,
                    Grade::Low => 0.0,
                };
                let rim = [0.0, 0.0, 1.0 - et, et];
                let core: [f64; 4] = std::array::from_fn(|i| {
                    let nec = if i == TumourTissue::Necrosis as usize {
                        1.0
                    } else {
                        0.0
                    };
                    (rim[i] + w_nec * (nec - rim[i])) * het * core_het
                });
                mix.blend(w_core, core);
            }
        }
        Sample {
            class,
            tissue,
            mix,
            inside: true,
        }
    }
}
