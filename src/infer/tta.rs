//! Test-time augmentation by mirroring (`--tta off|8|xy|…`).
//!
//! The network is run on the patch and on its mirror images over every combination of the
//! chosen axes; each output is mirrored back and the outputs are averaged. `--tta 8`
//! mirrors over x, y and z (8 passes), as the A2FSeg authors' code (nnU-Net) does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which axes test-time mirroring uses; `[x, y, z]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tta {
    /// Mirror over x, y, z respectively.
    pub axes: [bool; 3],
}

impl Tta {
    /// No mirroring: one pass per window.
    pub const OFF: Tta = Tta { axes: [false; 3] };
    /// Mirroring over all three axes: eight passes per window.
    pub const ALL: Tta = Tta { axes: [true; 3] };

    /// Whether mirroring is off.
    pub fn is_off(self) -> bool {
        self.axes == [false; 3]
    }

    /// How reports name it: "no test-time mirroring", or the axes and the passes per window
    /// ("test-time mirroring over x, y, z (8 passes per window)").
    pub fn describe(self) -> String {
        if self.is_off() {
            return "no test-time mirroring".to_string();
        }
        let axes: Vec<&str> = ["x", "y", "z"]
            .into_iter()
            .zip(self.axes)
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        format!(
            "test-time mirroring over {} ({} passes per window)",
            axes.join(", "),
            self.flips().len()
        )
    }

    /// Every mirroring to run, identity first: each entry says which axes to flip. The
    /// number of entries is `2^(number of chosen axes)`.
    pub fn flips(self) -> Vec<[bool; 3]> {
        let mut out = vec![[false; 3]];
        for a in 0..3 {
            if self.axes[a] {
                let extra: Vec<[bool; 3]> = out
                    .iter()
                    .map(|f| {
                        let mut f = *f;
                        f[a] = true;
                        f
                    })
                    .collect();
                out.extend(extra);
            }
        }
        out
    }
}

impl fmt::Display for Tta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return f.write_str("off");
        }
        if *self == Tta::ALL {
            return f.write_str("8");
        }
        for (a, name) in ["x", "y", "z"].iter().enumerate() {
            if self.axes[a] {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl FromStr for Tta {
    type Err = String;

    /// `off` (or `none`, `0`, `1`), `8` (or `all`, `xyz`), or any combination of the letters
    /// `x`, `y`, `z` such as `xy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "off" | "none" | "0" | "1" | "no" => return Ok(Tta::OFF),
            "8" | "all" | "on" => return Ok(Tta::ALL),
            _ => {}
        }
        let mut axes = [false; 3];
        for c in s.chars() {
            let a = match c {
                'x' => 0,
                'y' => 1,
                'z' => 2,
                _ => {
                    return Err(format!(
                        "invalid --tta '{s}' (expected off, 8, or axes such as xy)"
                    ));
                }
            };
            axes[a] = true;
        }
        if s.is_empty() {
            return Err("empty --tta (expected off, 8, or axes such as xy)".to_string());
        }
        Ok(Tta { axes })
    }
}

impl Serialize for Tta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Tta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Mirrors `channels` buffers of `dims = [nx, ny, nz]` voxels each (x fastest, channel
/// after channel) over the axes set in `flip`, in place. Mirroring is its own inverse.
pub fn flip_in_place(data: &mut [f32], dims: [usize; 3], flip: [bool; 3]) {
    let [nx, ny, nz] = dims;
    let n = nx * ny * nz;
    if n == 0 || flip == [false; 3] {
        return;
    }
    debug_assert_eq!(data.len() % n, 0);
    for ch in data.chunks_mut(n) {
        if flip[0] {
            for row in ch.chunks_mut(nx) {
                row.reverse();
            }
        }
        if flip[1] {
            for slab in ch.chunks_mut(nx * ny) {
                for y in 0..ny / 2 {
                    let (a, b) = slab.split_at_mut((ny - 1 - y) * nx);
                    a[y * nx..(y + 1) * nx].swap_with_slice(&mut b[..nx]);
                }
            }
        }
        if flip[2] {
            let slab = nx * ny;
            for z in 0..nz / 2 {
                let (a, b) = ch.split_at_mut((nz - 1 - z) * slab);
                a[z * slab..(z + 1) * slab].swap_with_slice(&mut b[..slab]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("off".parse::<Tta>().unwrap(), Tta::OFF);
        assert_eq!("8".parse::<Tta>().unwrap(), Tta::ALL);
        assert_eq!("zx".parse::<Tta>().unwrap().axes, [true, false, true]);
        assert_eq!("zx".parse::<Tta>().unwrap().to_string(), "xz");
        assert!("xq".parse::<Tta>().is_err());
        assert!("".parse::<Tta>().is_err());
        assert_eq!(Tta::ALL.flips().len(), 8);
        assert_eq!(
            "y".parse::<Tta>().unwrap().flips(),
            vec![[false; 3], [false, true, false]]
        );
        assert_eq!(Tta::OFF.flips(), vec![[false; 3]]);
        assert_eq!(Tta::OFF.describe(), "no test-time mirroring");
        assert_eq!(
            "xz".parse::<Tta>().unwrap().describe(),
            "test-time mirroring over x, z (4 passes per window)"
        );
    }

    #[test]
    fn flip_moves_voxels_to_their_mirror_and_is_an_involution() {
        let dims = [3, 4, 5];
        let n = 60;
        let orig: Vec<f32> = (0..2 * n).map(|v| v as f32).collect();
        for flip in Tta::ALL.flips() {
            let mut d = orig.clone();
            flip_in_place(&mut d, dims, flip);
            for c in 0..2 {
                for z in 0..5 {
                    for y in 0..4 {
                        for x in 0..3 {
                            let (sx, sy, sz) = (
                                if flip[0] { 2 - x } else { x },
                                if flip[1] { 3 - y } else { y },
                                if flip[2] { 4 - z } else { z },
                            );
                            assert_eq!(
                                d[c * n + x + 3 * (y + 4 * z)],
                                orig[c * n + sx + 3 * (sy + 4 * sz)]
                            );
                        }
                    }
                }
            }
            flip_in_place(&mut d, dims, flip);
            assert_eq!(d, orig);
        }
    }
}
