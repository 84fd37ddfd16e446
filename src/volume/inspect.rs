//! Summaries of a volume: what `a2fseg info` prints.

use std::fmt::Write as _;

use serde::Serialize;

use super::Volume;

/// Shape, type, geometry and value statistics of a volume (statistics over the finite
/// scaled voxels of every channel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeInfo {
    /// `"NIfTI-1"` or `"NIfTI-2"`.
    pub format: &'static str,
    /// The array shape as stored (`[x, y, z]` or `[x, y, z, t]`).
    pub shape: Vec<usize>,
    /// The on-disk voxel type (numpy name).
    pub datatype: String,
    /// Voxel size in mm along x, y, z.
    pub spacing: [f64; 3],
    /// Voxel → world (mm), row-major.
    pub affine: [[f64; 4]; 4],
    /// Smallest scaled voxel value.
    pub min: f64,
    /// Largest scaled voxel value.
    pub max: f64,
    /// Mean of the scaled voxel values.
    pub mean: f64,
    /// Sum of the scaled voxel values (accumulated in f64).
    pub sum: f64,
    /// Voxels that are NaN or infinite (left out of min, max, mean and sum).
    pub non_finite: usize,
}

/// Summarises `volume`; NaN and infinite voxels are counted, not summed.
pub fn volume_info(volume: &Volume) -> VolumeInfo {
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut sum = 0.0f64;
    let mut n = 0usize;
    let mut non_finite = 0usize;
    for c in &volume.channels {
        for &v in c.data() {
            if !v.is_finite() {
                non_finite += 1;
                continue;
            }
            let v = f64::from(v);
            min = min.min(v);
            max = max.max(v);
            sum += v;
            n += 1;
        }
    }
    let (min, max, mean) = if n == 0 {
        (0.0, 0.0, 0.0)
    } else {
        (min, max, sum / n as f64)
    };
    VolumeInfo {
        format: volume.geometry.version().name(),
        shape: volume.shape.clone(),
        datatype: volume.datatype.clone(),
        spacing: volume.geometry.spacing,
        affine: volume.geometry.affine,
        min,
        max,
        mean,
        sum,
        non_finite,
    }
}

impl VolumeInfo {
    /// A human-readable multi-line report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "format:   {}", self.format);
        let shape: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(s, "shape:    {}", shape.join(" x "));
        let _ = writeln!(s, "datatype: {}", self.datatype);
        let _ = writeln!(
            s,
            "spacing:  {} x {} x {} mm",
            // pixdim is float32: print it as such (1.2, not 1.2000000476837158).
            self.spacing[0] as f32,
            self.spacing[1] as f32,
            self.spacing[2] as f32
        );
        let _ = writeln!(s, "affine:");
        for row in &self.affine {
            let _ = writeln!(
                s,
                "  [{:>12.6} {:>12.6} {:>12.6} {:>12.6} ]",
                row[0], row[1], row[2], row[3]
            );
        }
        // Voxel values are float32, so are their extremes.
        let _ = writeln!(s, "min:      {}", self.min as f32);
        let _ = writeln!(s, "max:      {}", self.max as f32);
        let _ = writeln!(s, "mean:     {}", self.mean);
        let _ = writeln!(s, "sum:      {}", self.sum);
        if self.non_finite > 0 {
            let _ = writeln!(
                s,
                "non-finite: {} voxel(s) NaN or infinite (not in min, max, mean, sum)",
                self.non_finite
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Grid};

    #[test]
    fn statistics_cover_every_channel() {
        let g = Geometry::from_affine(
            [2, 1, 1],
            [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        let v = Volume {
            geometry: g,
            channels: vec![
                Grid::from_vec([2, 1, 1], vec![1.0, -2.0]).unwrap(),
                Grid::from_vec([2, 1, 1], vec![4.0, 5.0]).unwrap(),
            ],
            datatype: "float32".into(),
            shape: vec![2, 1, 1, 2],
            non_finite: 0,
        };
        let i = volume_info(&v);
        assert_eq!((i.min, i.max, i.sum, i.mean), (-2.0, 5.0, 8.0, 2.0));
        let text = i.to_text();
        assert!(text.contains("shape:    2 x 1 x 1 x 2"), "{text}");
        assert!(text.contains("format:   NIfTI-1") && !text.contains("non-finite"));
        let json = serde_json::to_value(&i).unwrap();
        for k in [
            "shape", "datatype", "spacing", "affine", "min", "max", "mean", "sum",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn non_finite_voxels_are_counted_not_summed() {
        let grid = Grid::from_vec([4, 1, 1], vec![1.0, f32::NAN, 3.0, f32::INFINITY]).unwrap();
        let v = Volume {
            geometry: Geometry::from_affine(
                [4, 1, 1],
                std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j)))),
            ),
            channels: vec![grid],
            datatype: "float32".into(),
            shape: vec![4, 1, 1],
            non_finite: 2,
        };
        let i = volume_info(&v);
        assert_eq!(
            (i.min, i.max, i.sum, i.mean, i.non_finite),
            (1.0, 3.0, 4.0, 2.0, 2)
        );
        assert!(
            i.to_text().contains("non-finite: 2 voxel(s)"),
            "{}",
            i.to_text()
        );
    }
}
