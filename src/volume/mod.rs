//! Medical volumes: NIfTI-1 and NIfTI-2 reading and writing, voxel grids and their
//! geometry.
//!
//! Voxels are kept in NIfTI order (x fastest, then y, then z), so a buffer of dims
//! `[nx, ny, nz]` is directly a C-order tensor of shape `[nz, ny, nx]` (D, H, W): no
//! transposition happens between the file and the network.
//!
//! - [`read_volume`] reads NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`, `.hdr`/`.img` pairs,
//!   3D or 4D, any integer or float datatype, either byte order) into f32 grids with the
//!   values and the affine nibabel gives;
//! - [`write_labels`] / [`write_float`] write uint8 / float32 maps with the geometry (and
//!   the NIfTI version) of a reference image;
//! - [`Geometry`] holds dims, spacing, affine and the header kept for writing;
//! - [`volume_info`] summarises a volume (the `a2fseg info` command).

mod geometry;
mod header;
mod inspect;
mod read;
mod voxels;
mod write;

pub use geometry::{Geometry, SAME_GRID_TOLERANCE_MM};
pub use header::NiftiVersion;
pub use inspect::{VolumeInfo, volume_info};
pub use read::{NonFinite, Volume, read_geometry, read_volume, read_volume_with};
pub use write::{Uint8Scaling, encode_u8_gz, write_float, write_labels};

/// A dense 3D grid of voxels, x fastest (NIfTI order).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<T> {
    dims: [usize; 3],
    data: Vec<T>,
}

impl<T: Copy + Default> Grid<T> {
    /// A grid of `dims` filled with `T::default()`.
    pub fn zeros(dims: [usize; 3]) -> Self {
        Self::filled(dims, T::default())
    }
}

impl<T: Copy> Grid<T> {
    /// A grid of `dims` filled with `value`.
    pub fn filled(dims: [usize; 3], value: T) -> Self {
        Grid {
            dims,
            data: vec![value; dims[0] * dims[1] * dims[2]],
        }
    }

    /// Value at voxel `(x, y, z)`.
    #[inline]
    pub fn get(&self, x: usize, y: usize, z: usize) -> T {
        self.data[self.index(x, y, z)]
    }

    /// Sets voxel `(x, y, z)`.
    #[inline]
    pub fn set(&mut self, x: usize, y: usize, z: usize, v: T) {
        let i = self.index(x, y, z);
        self.data[i] = v;
    }

    /// A new grid with `f` applied to every voxel.
    pub fn map<U, F: Fn(T) -> U>(&self, f: F) -> Grid<U> {
        Grid {
            dims: self.dims,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
}

impl<T> Grid<T> {
    /// Wraps `data` (x fastest) as a grid of `dims`; `None` if the length does not match.
    pub fn from_vec(dims: [usize; 3], data: Vec<T>) -> Option<Self> {
        (data.len() == dims[0] * dims[1] * dims[2]).then_some(Grid { dims, data })
    }

    /// `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the grid has no voxel.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Linear index of voxel `(x, y, z)`.
    #[inline]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        debug_assert!(x < self.dims[0] && y < self.dims[1] && z < self.dims[2]);
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    /// The voxels, x fastest.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The voxels, x fastest, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Takes the voxel buffer.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
}
