//! Reading input images as `train`, `predict` and `evaluate` do, and what they tell the user
//! about them once per file: NaN or infinite voxels read as 0 (or refused), and images that
//! do not look skull-stripped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

use crate::volume::{Grid, NonFinite, Volume, read_volume_with};

/// What this process has already warned about, by file and kind of warning: a file is read
/// again for every model `evaluate` runs and whenever training reloads a case, and the user
/// is told once.
static WARNED: Mutex<BTreeSet<(PathBuf, Warning)>> = Mutex::new(BTreeSet::new());

/// The kinds of warnings about an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Warning {
    NonFinite,
    NotSkullStripped,
}

/// Prints `warning: PATH: message` unless this process already warned about `path` so.
fn warn_once(path: &Path, kind: Warning, message: &str) {
    let first = WARNED
        .lock()
        .map(|mut seen| seen.insert((path.to_path_buf(), kind)))
        .unwrap_or(true);
    if first {
        eprintln!("warning: {}: {message}", path.display());
    }
}

/// Whether this process has warned about NaN or infinite voxels in `path`.
#[cfg(test)]
pub(crate) fn was_warned(path: &Path) -> bool {
    WARNED
        .lock()
        .is_ok_and(|seen| seen.contains(&(path.to_path_buf(), Warning::NonFinite)))
}

/// What input readers do with NaN and infinite voxels: refuse them (`--strict-finite`) or
/// read them as 0.
pub(crate) fn input_policy(strict_finite: bool) -> NonFinite {
    if strict_finite {
        NonFinite::Refuse
    } else {
        NonFinite::Zero
    }
}

/// Reads `path` with `policy`, warning (once per file) about voxels set to 0.
pub(crate) fn read_warning(path: &Path, policy: NonFinite) -> Result<Volume> {
    let v = read_volume_with(path, policy)?;
    if policy == NonFinite::Zero && v.non_finite > 0 {
        warn_once(
            path,
            Warning::NonFinite,
            &format!(
                "{} NaN or infinite voxel(s) read as 0 (outside the brain); --strict-finite \
                 refuses such files",
                v.non_finite
            ),
        );
    }
    Ok(v)
}

/// Reads an input image as `train`, `predict` and `evaluate` do: NaN and infinite voxels
/// refused with an error naming the file and the count if `strict_finite`, else read as 0
/// (outside the brain) with a warning once per file.
pub fn read_input_volume(path: &Path, strict_finite: bool) -> Result<Volume> {
    read_warning(path, input_policy(strict_finite))
}

/// Below this fraction of exactly-zero voxels on its faces, an image does not look
/// skull-stripped. BraTS-style preprocessing leaves the background exactly 0 and the brain
/// clear of the volume's border; a scan with its skull and the air around it has noise, not
/// zeros, there.
pub const MIN_ZERO_BORDER_FRACTION: f64 = 0.5;

/// Why `image` does not look skull-stripped (most voxels on the volume's six faces are not
/// 0), or `None` when it does. An image of fewer than 3 voxels along an axis is not judged.
pub fn skull_stripping_note(image: &Grid<f32>) -> Option<String> {
    let [nx, ny, nz] = image.dims();
    if nx < 3 || ny < 3 || nz < 3 {
        return None;
    }
    let (mut border, mut zero) = (0usize, 0usize);
    for z in 0..nz {
        for y in 0..ny {
            let inner_row = (1..nz - 1).contains(&z) && (1..ny - 1).contains(&y);
            // Inside rows touch the border at x = 0 and x = nx - 1 only.
            let xs: Vec<usize> = if inner_row {
                vec![0, nx - 1]
            } else {
                (0..nx).collect()
            };
            for x in xs {
                border += 1;
                zero += usize::from(image.get(x, y, z) == 0.0);
            }
        }
    }
    let fraction = zero as f64 / border as f64;
    (fraction < MIN_ZERO_BORDER_FRACTION).then(|| {
        format!(
            "does not look skull-stripped: {:.0}% of the voxels on the volume's border are \
             non-zero (the model expects BraTS-style preprocessing: co-registered, \
             skull-stripped, background exactly 0)",
            100.0 * (1.0 - fraction)
        )
    })
}

/// Warns (once per file) if the image `image` read from `path` does not look skull-stripped.
pub fn warn_if_not_skull_stripped(path: &Path, image: &Grid<f32>) {
    if let Some(note) = skull_stripping_note(image) {
        warn_once(path, Warning::NotSkullStripped, &note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skull_stripped_images_have_a_zero_border() {
        let dims = [6, 5, 4];
        let mut stripped = Grid::<f32>::zeros(dims);
        for z in 1..3 {
            for y in 1..4 {
                for x in 1..5 {
                    stripped.set(x, y, z, 100.0);
                }
            }
        }
        assert_eq!(skull_stripping_note(&stripped), None);
        // A brain touching one face is still fine.
        for y in 0..5 {
            for x in 0..6 {
                stripped.set(x, y, 0, 50.0);
            }
        }
        assert_eq!(skull_stripping_note(&stripped), None);
        // Noise everywhere: the scan of a whole head in air.
        let raw = Grid::from_vec(dims, (0..120).map(|i| 1.0 + (i % 7) as f32).collect()).unwrap();
        let note = skull_stripping_note(&raw).unwrap();
        assert!(
            note.contains("100% of the voxels on the volume's border"),
            "{note}"
        );
        assert_eq!(skull_stripping_note(&Grid::filled([2, 9, 9], 5.0)), None);
    }

    #[test]
    fn warnings_are_given_once_per_file_and_kind() {
        let p = Path::new("/nowhere/once.nii");
        warn_once(p, Warning::NonFinite, "x");
        assert!(was_warned(p));
        let seen = || {
            WARNED
                .lock()
                .unwrap()
                .iter()
                .filter(|(q, _)| q == p)
                .count()
        };
        warn_once(p, Warning::NonFinite, "x");
        assert_eq!(seen(), 1);
        warn_once(p, Warning::NotSkullStripped, "y");
        assert_eq!(seen(), 2);
    }
}
