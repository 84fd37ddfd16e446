//! Data augmentation as nnU-Net (v1) does it for 3D BraTS training.
//!
//! Spatial augmentations (rotation, scaling, mirroring) are folded into one 3×3 matrix that
//! maps patch coordinates to case coordinates, so a patch is cut, rotated, scaled and
//! mirrored in a single resampling pass ([`super::sampler::extract_patch`]): images with
//! trilinear interpolation, labels with nearest neighbour, zero outside the case. Intensity
//! augmentations (a bias field, off by default and not nnU-Net's; Gaussian noise, Gaussian
//! blur, brightness, contrast, gamma) then act on each modality's patch separately. Every
//! probability and range is in [`AugmentConfig`].
//!
//! All draws come from the caller's random stream, so an augmentation is a pure function of
//! `(seed, epoch, iteration, item)` (see [`super::rng`]).

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Augmentation probabilities and ranges (defaults: nnU-Net v1's 3D settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability that a patch is rotated (about all three axes).
    pub rotation_p: f64,
    /// Largest rotation angle about each axis, in degrees (uniform in ±this).
    pub rotation_max_degrees: f64,
    /// Probability that a patch is scaled.
    pub scale_p: f64,
    /// Range of the isotropic scale factor; > 1 samples a larger region (zooms out).
    pub scale_range: [f64; 2],
    /// Probability of mirroring along each axis, independently.
    pub mirror_p: f64,
    /// Probability of additive Gaussian noise (per modality).
    pub noise_p: f64,
    /// Range of the noise variance (uniform).
    pub noise_variance: [f64; 2],
    /// Probability that a patch is blurred; each modality then is blurred with
    /// probability `blur_p_per_modality`.
    pub blur_p: f64,
    /// Probability, given a blurred patch, that one modality is blurred.
    pub blur_p_per_modality: f64,
    /// Range of the Gaussian blur σ in voxels (uniform, drawn per modality).
    pub blur_sigma: [f64; 2],
    /// Probability of multiplying intensities by a random factor (per modality).
    pub brightness_p: f64,
    /// Range of the brightness factor.
    pub brightness_range: [f64; 2],
    /// Probability of scaling contrast around the mean (per modality), clipped to the
    /// original value range.
    pub contrast_p: f64,
    /// Range of the contrast factor.
    pub contrast_range: [f64; 2],
    /// Probability of a gamma transform on the inverted image (per modality).
    pub gamma_inverted_p: f64,
    /// Probability of a gamma transform (per modality); mean and spread are retained.
    pub gamma_p: f64,
    /// Range of γ.
    pub gamma_range: [f64; 2],
    /// Probability of a smooth multiplicative bias field (per modality), as MONAI's
    /// `RandBiasField` and TorchIO's `RandomBiasField` draw it; not in nnU-Net, so 0 by
    /// default at every preset.
    pub bias_field_p: f64,
    /// Largest absolute value of each coefficient of the field's log, a polynomial of
    /// degree 2 in the patch's coordinates scaled to [−1, 1] (10 terms, drawn uniformly).
    pub bias_field_coefficient: f64,
    /// Range of the brain's mean over its s.d. on the scan's own scale (drawn uniformly), to
    /// apply a bias of the raw intensities to the z-scored patch: `z ← b·z + (b − 1)·μ/σ`.
    pub bias_field_mean_to_sd: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotation_p: 0.2,
            rotation_max_degrees: 30.0,
            scale_p: 0.2,
            scale_range: [0.7, 1.4],
            mirror_p: 0.5,
            noise_p: 0.1,
            noise_variance: [0.0, 0.1],
            blur_p: 0.2,
            blur_p_per_modality: 0.5,
            blur_sigma: [0.5, 1.0],
            brightness_p: 0.15,
            brightness_range: [0.75, 1.25],
            contrast_p: 0.15,
            contrast_range: [0.75, 1.25],
            gamma_inverted_p: 0.1,
            gamma_p: 0.3,
            gamma_range: [0.7, 1.5],
            bias_field_p: 0.0,
            bias_field_coefficient: 0.15,
            bias_field_mean_to_sd: [1.5, 4.0],
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (every probability 0).
    pub fn none() -> Self {
        AugmentConfig {
            rotation_p: 0.0,
            scale_p: 0.0,
            mirror_p: 0.0,
            noise_p: 0.0,
            blur_p: 0.0,
            blur_p_per_modality: 0.0,
            brightness_p: 0.0,
            contrast_p: 0.0,
            gamma_inverted_p: 0.0,
            gamma_p: 0.0,
            bias_field_p: 0.0,
            ..Default::default()
        }
    }

    /// Checks that probabilities are in [0, 1] and ranges are ordered and positive where
    /// they must be.
    pub fn validate(&self) -> anyhow::Result<()> {
        let probs = [
            ("rotation_p", self.rotation_p),
            ("scale_p", self.scale_p),
            ("mirror_p", self.mirror_p),
            ("noise_p", self.noise_p),
            ("blur_p", self.blur_p),
            ("blur_p_per_modality", self.blur_p_per_modality),
            ("brightness_p", self.brightness_p),
            ("contrast_p", self.contrast_p),
            ("gamma_inverted_p", self.gamma_inverted_p),
            ("gamma_p", self.gamma_p),
            ("bias_field_p", self.bias_field_p),
        ];
        for (name, p) in probs {
            anyhow::ensure!(
                (0.0..=1.0).contains(&p),
                "augmentation.{name} must be a probability in [0, 1], got {p}"
            );
        }
        let ranges = [
            ("scale_range", self.scale_range, true),
            ("noise_variance", self.noise_variance, false),
            ("blur_sigma", self.blur_sigma, false),
            ("brightness_range", self.brightness_range, true),
            ("contrast_range", self.contrast_range, true),
            ("gamma_range", self.gamma_range, true),
            ("bias_field_mean_to_sd", self.bias_field_mean_to_sd, false),
        ];
        for (name, [lo, hi], positive) in ranges {
            anyhow::ensure!(
                lo.is_finite()
                    && hi.is_finite()
                    && lo <= hi
                    && lo >= 0.0
                    && (!positive || lo > 0.0),
                "augmentation.{name} must be [low, high] with 0 {} low <= high, got [{lo}, {hi}]",
                if positive { "<" } else { "<=" }
            );
        }
        anyhow::ensure!(
            self.rotation_max_degrees.is_finite() && self.rotation_max_degrees >= 0.0,
            "augmentation.rotation_max_degrees must be >= 0"
        );
        anyhow::ensure!(
            self.bias_field_coefficient.is_finite() && self.bias_field_coefficient >= 0.0,
            "augmentation.bias_field_coefficient must be >= 0, got {}",
            self.bias_field_coefficient
        );
        Ok(())
    }
}

/// A 3×3 matrix acting on `[x, y, z]` offsets.
pub type Mat3 = [[f64; 3]; 3];

/// The identity matrix.
pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// `a · b`.
pub fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Rotation by `angle` radians about axis `axis` (0 = x, 1 = y, 2 = z).
pub fn rotation(axis: usize, angle: f64) -> Mat3 {
    let (s, c) = angle.sin_cos();
    let (i, j) = match axis {
        0 => (1, 2),
        1 => (2, 0),
        _ => (0, 1),
    };
    let mut m = IDENTITY;
    m[i][i] = c;
    m[i][j] = -s;
    m[j][i] = s;
    m[j][j] = c;
    m
}

/// Draws the spatial transform of one patch: the matrix mapping an offset from the patch
/// centre (in output voxels, `[x, y, z]`) to an offset in the case (in case voxels).
/// It is `R · s · M`: mirroring `M` (diagonal ±1), isotropic scale `s`, rotation `R`.
pub fn sample_spatial<R: Rng + ?Sized>(rng: &mut R, cfg: &AugmentConfig) -> Mat3 {
    // Draw every number unconditionally so that one setting does not shift the others'
    // random values.
    let rotate = rng.random_bool(cfg.rotation_p);
    let max = cfg.rotation_max_degrees.to_radians();
    let angles: [f64; 3] = std::array::from_fn(|_| rng.random_range(-1.0..=1.0) * max);
    let scale_now = rng.random_bool(cfg.scale_p);
    let scale_u: f64 = rng.random();
    let mirrors: [bool; 3] = std::array::from_fn(|_| rng.random_bool(cfg.mirror_p));

    let mut m = IDENTITY;
    for (axis, &flip) in mirrors.iter().enumerate() {
        if flip {
            m[axis][axis] = -1.0;
        }
    }
    if scale_now {
        let [lo, hi] = cfg.scale_range;
        let s = lo + (hi - lo) * scale_u;
        for row in m.iter_mut() {
            for v in row.iter_mut() {
                *v *= s;
            }
        }
    }
    if rotate {
        let r = matmul(
            &rotation(2, angles[2]),
            &matmul(&rotation(1, angles[1]), &rotation(0, angles[0])),
        );
        m = matmul(&r, &m);
    }
    m
}

/// Whether `m` is a pure mirroring (diagonal with entries exactly ±1): then a patch can be
/// copied voxel for voxel, without interpolation.
pub fn is_mirror_only(m: &Mat3) -> bool {
    (0..3).all(|i| {
        (0..3).all(|j| {
            if i == j {
                m[i][j].abs() == 1.0
            } else {
                m[i][j] == 0.0
            }
        })
    })
}

/// One standard normal number (Box–Muller).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Uniform in `[lo, hi]`.
fn uniform<R: Rng + ?Sized>(rng: &mut R, [lo, hi]: [f64; 2]) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// nnU-Net's draw of a multiplicative factor: half of the time below 1, half above
/// (when the range spans 1), so shrinking and growing are equally likely.
fn factor<R: Rng + ?Sized>(rng: &mut R, [lo, hi]: [f64; 2]) -> f64 {
    if rng.random_bool(0.5) && lo < 1.0 {
        uniform(rng, [lo, 1.0f64.min(hi)])
    } else {
        uniform(rng, [lo.max(1.0), hi.max(1.0)])
    }
}

/// Applies the intensity augmentations to one modality's patch `data` of `dims`
/// (`[x, y, z]`, x fastest): the bias field (when enabled), then nnU-Net's in its order:
/// noise, blur, brightness, contrast, inverted gamma, gamma. `blur_patch` says whether this
/// patch was chosen for blurring (a per-patch decision shared by its modalities).
pub fn augment_intensity<R: Rng + ?Sized>(
    rng: &mut R,
    cfg: &AugmentConfig,
    data: &mut [f32],
    dims: [usize; 3],
    blur_patch: bool,
) {
    if data.is_empty() {
        return;
    }
    // Checked first so that a configuration without it draws exactly the stream it drew
    // before the field existed.
    if cfg.bias_field_p > 0.0 && rng.random_bool(cfg.bias_field_p) {
        let coefficients: [f64; 10] = std::array::from_fn(|_| {
            uniform(
                rng,
                [-cfg.bias_field_coefficient, cfg.bias_field_coefficient],
            )
        });
        let mean_to_sd = uniform(rng, cfg.bias_field_mean_to_sd);
        bias_field(data, dims, &coefficients, mean_to_sd);
    }
    if rng.random_bool(cfg.noise_p) {
        let sd = uniform(rng, cfg.noise_variance).sqrt();
        for v in data.iter_mut() {
            *v += (normal(rng) * sd) as f32;
        }
    }
    if blur_patch && rng.random_bool(cfg.blur_p_per_modality) {
        let sigma = uniform(rng, cfg.blur_sigma);
        gaussian_blur(data, dims, sigma);
    }
    if rng.random_bool(cfg.brightness_p) {
        let f = uniform(rng, cfg.brightness_range) as f32;
        data.iter_mut().for_each(|v| *v *= f);
    }
    if rng.random_bool(cfg.contrast_p) {
        let f = factor(rng, cfg.contrast_range);
        let (lo, hi) = min_max(data);
        let mean = mean(data);
        for v in data.iter_mut() {
            *v = (((*v as f64 - mean) * f + mean) as f32).clamp(lo, hi);
        }
    }
    if rng.random_bool(cfg.gamma_inverted_p) {
        let g = factor(rng, cfg.gamma_range);
        data.iter_mut().for_each(|v| *v = -*v);
        gamma(data, g);
        data.iter_mut().for_each(|v| *v = -*v);
    }
    if rng.random_bool(cfg.gamma_p) {
        let g = factor(rng, cfg.gamma_range);
        gamma(data, g);
    }
}

/// Multiplies the raw intensities under the z-scored patch `data` by the smooth field
/// `b = exp(Σ c_k · m_k(x, y, z))` over the 10 monomials `m_k` of degree ≤ 2 of the
/// coordinates scaled to [−1, 1]: `z ← b·z + (b − 1)·mean_to_sd`, the z-score the scan would
/// have had with that bias against the same brain statistics. Voxels at exactly 0 (outside
/// the brain after normalisation) stay 0.
///
/// Why: the bias of a real scan varies over the head (MRI coil sensitivity), and a network
/// sees only its training scans' fields. Written here because the field acts on already
/// z-scored patches, which the libraries' versions (on raw images) do not.
fn bias_field(data: &mut [f32], dims: [usize; 3], c: &[f64; 10], mean_to_sd: f64) {
    let scaled = |i: usize, n: usize| {
        if n > 1 {
            2.0 * i as f64 / (n - 1) as f64 - 1.0
        } else {
            0.0
        }
    };
    let [nx, ny, nz] = dims;
    let fx: Vec<f64> = (0..nx).map(|x| scaled(x, nx)).collect();
    for z in 0..nz {
        let fz = scaled(z, nz);
        for y in 0..ny {
            let fy = scaled(y, ny);
            // The log field along a row: a + b·fx + c4·fx², with the row's terms hoisted.
            let a = c[0] + c[2] * fy + c[3] * fz + c[5] * fy * fy + c[6] * fz * fz + c[9] * fy * fz;
            let b = c[1] + c[7] * fy + c[8] * fz;
            let row = &mut data[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            for (v, &fx) in row.iter_mut().zip(&fx) {
                if *v == 0.0 {
                    continue;
                }
                let gain = (a + fx * (b + c[4] * fx)).exp();
                *v = (gain * *v as f64 + (gain - 1.0) * mean_to_sd) as f32;
            }
        }
    }
}

fn min_max(data: &[f32]) -> (f32, f32) {
    data.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

fn mean(data: &[f32]) -> f64 {
    data.iter().map(|&v| v as f64).sum::<f64>() / data.len() as f64
}

fn std_dev(data: &[f32], mean: f64) -> f64 {
    (data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / data.len() as f64).sqrt()
}

/// Gamma transform on the value range, retaining mean and standard deviation
/// (nnU-Net's `retain_stats`): `x ← ((x − min) / range)^γ · range + min`, then re-standardised.
fn gamma(data: &mut [f32], g: f64) {
    let m0 = mean(data);
    let s0 = std_dev(data, m0);
    let (lo, hi) = min_max(data);
    let range = (hi - lo) as f64;
    for v in data.iter_mut() {
        let t = ((*v - lo) as f64 / (range + 1e-7)).max(0.0);
        *v = (t.powf(g) * range + lo as f64) as f32;
    }
    let m1 = mean(data);
    let s1 = std_dev(data, m1);
    for v in data.iter_mut() {
        *v = (((*v as f64 - m1) / (s1 + 1e-8)) * s0 + m0) as f32;
    }
}

/// Separable Gaussian blur of σ voxels (kernel radius ⌈3σ⌉, edges clamped).
pub fn gaussian_blur(data: &mut [f32], dims: [usize; 3], sigma: f64) {
    if sigma <= 0.0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let strides = [1, dims[0], dims[0] * dims[1]];
    let mut line = Vec::new();
    for axis in 0..3 {
        let n = dims[axis];
        if n < 2 {
            continue;
        }
        let stride = strides[axis];
        let (a, b) = match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        for j in 0..dims[b] {
            for i in 0..dims[a] {
                let base = i * strides[a] + j * strides[b];
                line.clear();
                line.extend((0..n).map(|k| data[base + k * stride]));
                for k in 0..n {
                    let mut acc = 0.0f32;
                    for (t, w) in kernel.iter().enumerate() {
                        let src = (k as isize + t as isize - radius).clamp(0, n as isize - 1);
                        acc += w * line[src as usize];
                    }
                    data[base + k * stride] = acc;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng;

    #[test]
    fn rotations_are_orthonormal_and_compose() {
        let r = matmul(&rotation(0, 0.3), &rotation(2, -0.7));
        let rt: Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| r[j][i]));
        let id = matmul(&r, &rt);
        for (i, row) in id.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-12);
            }
        }
        // A quarter turn about z maps x to y.
        let q = rotation(2, std::f64::consts::FRAC_PI_2);
        assert!((q[1][0] - 1.0).abs() < 1e-12 && q[0][0].abs() < 1e-12);
    }

    #[test]
    fn no_augmentation_is_identity_and_mirror_only_is_detected() {
        let mut r = rng::stream(1, &[0]);
        for _ in 0..20 {
            assert_eq!(sample_spatial(&mut r, &AugmentConfig::none()), IDENTITY);
        }
        let cfg = AugmentConfig {
            mirror_p: 1.0,
            ..AugmentConfig::none()
        };
        let m = sample_spatial(&mut r, &cfg);
        assert!(is_mirror_only(&m));
        assert_eq!(m[0][0], -1.0);
        assert!(!is_mirror_only(&rotation(1, 0.2)));
    }

    #[test]
    fn intensity_augmentation_with_zero_probabilities_changes_nothing() {
        let mut r = rng::stream(2, &[0]);
        let orig: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut d = orig.clone();
        augment_intensity(&mut r, &AugmentConfig::none(), &mut d, [4, 4, 4], true);
        assert_eq!(d, orig);
    }

    #[test]
    fn bias_field_scales_raw_intensities_and_spares_the_background() {
        let dims = [5, 4, 3];
        let orig: Vec<f32> = (0..60)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    (i as f32 * 0.37).sin()
                }
            })
            .collect();
        // A constant field of 1.2 on a scan whose brain mean is 3 s.d.: z ← 1.2 z + 0.6.
        let mut c = [0.0; 10];
        c[0] = 1.2f64.ln();
        let mut d = orig.clone();
        bias_field(&mut d, dims, &c, 3.0);
        for (a, b) in orig.iter().zip(&d) {
            let want = if *a == 0.0 { 0.0 } else { 1.2 * a + 0.6 };
            assert!((b - want).abs() < 1e-5, "{a} → {b}, want {want}");
        }
        // A ramp along x: the field is exp(∓0.2) at the two x faces, 1 in the middle.
        let mut c = [0.0; 10];
        c[1] = 0.2;
        let mut d = vec![1.0f32; 60];
        bias_field(&mut d, dims, &c, 2.0);
        let at = |x: usize| d[(2 * 4 + 1) * 5 + x] as f64;
        let f = |b: f64| b + (b - 1.0) * 2.0;
        assert!((at(0) - f((-0.2f64).exp())).abs() < 1e-5);
        assert!((at(2) - 1.0).abs() < 1e-6);
        assert!((at(4) - f(0.2f64.exp())).abs() < 1e-5);
        // On, through the configuration: every non-zero voxel moves, the zeros do not.
        let cfg = AugmentConfig {
            bias_field_p: 1.0,
            ..AugmentConfig::none()
        };
        let mut d = orig.clone();
        augment_intensity(&mut rng::stream(4, &[0]), &cfg, &mut d, dims, false);
        for (a, b) in orig.iter().zip(&d) {
            assert_eq!(*a == 0.0, *b == 0.0);
        }
        assert_ne!(d, orig);
    }

    #[test]
    fn gamma_retains_mean_and_spread_and_contrast_keeps_range() {
        let orig: Vec<f32> = (0..512)
            .map(|i| ((i * 7919) % 101) as f32 / 25.0 - 2.0)
            .collect();
        let mut d = orig.clone();
        gamma(&mut d, 1.4);
        let (m0, m1) = (mean(&orig), mean(&d));
        assert!((m0 - m1).abs() < 1e-4);
        assert!((std_dev(&orig, m0) - std_dev(&d, m1)).abs() < 1e-4);
        assert_ne!(d, orig);

        let cfg = AugmentConfig {
            contrast_p: 1.0,
            contrast_range: [1.25, 1.25],
            ..AugmentConfig::none()
        };
        let mut c = orig.clone();
        augment_intensity(&mut rng::stream(3, &[0]), &cfg, &mut c, [8, 8, 8], false);
        let (lo, hi) = min_max(&orig);
        assert!(c.iter().all(|&v| v >= lo && v <= hi));
        assert_ne!(c, orig);
    }

    #[test]
    fn blur_preserves_constants_and_spreads_a_spike() {
        let mut flat = vec![2.5f32; 5 * 6 * 7];
        gaussian_blur(&mut flat, [5, 6, 7], 1.0);
        assert!(flat.iter().all(|&v| (v - 2.5).abs() < 1e-5));
        let dims = [9, 9, 9];
        let mut spike = vec![0f32; 729];
        spike[4 + 9 * (4 + 9 * 4)] = 1.0;
        gaussian_blur(&mut spike, dims, 1.0);
        let total: f32 = spike.iter().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!(spike[4 + 9 * (4 + 9 * 4)] < 0.1);
        assert!(spike[5 + 9 * (4 + 9 * 4)] > 0.0);
    }

    #[test]
    fn bad_probabilities_are_rejected() {
        let cfg = AugmentConfig {
            gamma_p: 1.5,
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("gamma_p"));
        assert!(AugmentConfig::default().validate().is_ok());
    }
}
