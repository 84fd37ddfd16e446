//! Deterministic, stateless random fields for the phantom generator.
//!
//! Every random quantity that varies per voxel is a pure function of a seed and a position
//! (hash-based value noise) or of a seed and a voxel index (white noise), so a case renders
//! identically whatever the number of threads or the order in which slices are computed.

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` from a hash.
#[inline]
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Smooth value noise in millimetre space: random values in `[-1, 1]` on a cubic lattice of
/// `step` mm, blended with quintic weights (C² continuous). Values near lattice points
/// are uniform; in between they are smoother and concentrate towards 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueNoise {
    seed: u64,
    step: f64,
}

impl ValueNoise {
    /// A field with lattice spacing `step` (mm) drawn from `seed`.
    pub(crate) fn new(seed: u64, step: f64) -> Self {
        ValueNoise { seed, step }
    }

    #[inline]
    fn lattice(&self, i: i64, j: i64, k: i64) -> f64 {
        let h = mix64(
            self.seed
                ^ mix64(
                    (i as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7)
                        ^ (j as u64)
                            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                            .rotate_left(21)
                        ^ (k as u64)
                            .wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                            .rotate_left(42),
                ),
        );
        2.0 * unit(h) - 1.0
    }

    /// The field at `p` (mm), in `[-1, 1]`.
    pub(crate) fn at(&self, p: [f64; 3]) -> f64 {
        let fx = p[0] / self.step;
        let fy = p[1] / self.step;
        let fz = p[2] / self.step;
        let (ix, iy, iz) = (fx.floor(), fy.floor(), fz.floor());
        let w = |t: f64| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
        let (wx, wy, wz) = (w(fx - ix), w(fy - iy), w(fz - iz));
        let (ix, iy, iz) = (ix as i64, iy as i64, iz as i64);
        let mut acc = 0.0;
        for dz in 0..2 {
            let cz = if dz == 0 { 1.0 - wz } else { wz };
            for dy in 0..2 {
                let cy = if dy == 0 { 1.0 - wy } else { wy };
                let x0 = self.lattice(ix, iy + dy, iz + dz);
                let x1 = self.lattice(ix + 1, iy + dy, iz + dz);
                acc += cz * cy * (x0 + wx * (x1 - x0));
            }
        }
        acc
    }
}

/// Two octaves of value noise (the second at half the step and half the weight),
/// rescaled to about `[-1, 1]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fractal {
    a: ValueNoise,
    b: ValueNoise,
}

impl Fractal {
    /// A two-octave field with base lattice `step` (mm).
    pub(crate) fn new(seed: u64, step: f64) -> Self {
        Fractal {
            a: ValueNoise::new(seed, step),
            b: ValueNoise::new(mix64(seed ^ 0xA5A5), step * 0.5),
        }
    }

    /// The field at `p` (mm).
    pub(crate) fn at(&self, p: [f64; 3]) -> f64 {
        (self.a.at(p) + 0.5 * self.b.at(p)) / 1.5
    }
}

/// A pair of independent standard normal numbers for voxel `index` of stream `seed`
/// (Box–Muller on two hashed uniforms).
#[inline]
pub(crate) fn gaussian_pair(seed: u64, index: u64) -> (f64, f64) {
    let h1 = mix64(seed ^ mix64(index.wrapping_mul(2).wrapping_add(1)));
    let h2 = mix64(h1 ^ 0x5851_F42D_4C95_7F2D);
    let u1 = 1.0 - unit(h1); // (0, 1]: log is finite
    let u2 = unit(h2);
    let r = (-2.0 * u1.ln()).sqrt();
    let t = std::f64::consts::TAU * u2;
    (r * t.cos(), r * t.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_continuous_and_seeded() {
        let n = ValueNoise::new(7, 5.0);
        let m = ValueNoise::new(8, 5.0);
        let mut differs = false;
        for i in 0..500 {
            let p = [i as f64 * 0.37 - 90.0, i as f64 * 0.11, -(i as f64) * 0.23];
            let v = n.at(p);
            assert!((-1.0..=1.0).contains(&v));
            let q = [p[0] + 1e-3, p[1], p[2]];
            assert!((n.at(q) - v).abs() < 0.01, "continuous");
            assert_eq!(v, ValueNoise::new(7, 5.0).at(p));
            differs |= (m.at(p) - v).abs() > 1e-6;
        }
        assert!(differs);
    }

    #[test]
    fn gaussian_pairs_have_unit_variance() {
        let (mut s, mut s2, n) = (0.0, 0.0, 20000);
        for i in 0..n {
            let (a, b) = gaussian_pair(3, i);
            s += a + b;
            s2 += a * a + b * b;
        }
        let mean = s / (2 * n) as f64;
        let var = s2 / (2 * n) as f64 - mean * mean;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
