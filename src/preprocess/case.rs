//! Preprocessing one loaded case.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::crop::{CropBox, zscore_nonzero};
use crate::dataset::LoadedCase;
use crate::labels::LabelConvention;
use crate::modality::{Modality, Subset};
use crate::volume::{Geometry, Grid};

/// How cases are preprocessed. Part of the cache key: changing any field recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessSettings {
    /// Crop to the bounding box of the non-zero voxels (union over modalities).
    pub crop: bool,
    /// Voxels added around that box on each side (clipped to the grid).
    pub margin: usize,
    /// Z-score each modality over its non-zero voxels (zero stays zero).
    pub normalize: bool,
}

impl Default for PreprocessSettings {
    fn default() -> Self {
        PreprocessSettings {
            crop: true,
            margin: 0,
            normalize: true,
        }
    }
}

/// A case ready for the network, with what is needed to map predictions back.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessedCase {
    /// Case id.
    pub id: String,
    /// Cropped (and normalised) images in canonical order, dims `crop.dims`.
    pub images: [Option<Grid<f32>>; 4],
    /// Cropped TumourClass indices, if the case has a segmentation.
    pub classes: Option<Grid<u8>>,
    /// Where the cropped grids sit in the original grid.
    pub crop: CropBox,
    /// The original (uncropped) geometry, for writing predictions.
    pub geometry: Geometry,
    /// The dataset's label convention, for writing predictions.
    pub convention: LabelConvention,
}

impl PreprocessedCase {
    /// The modalities present.
    pub fn available(&self) -> Subset {
        Subset::from_modalities(
            Modality::ALL
                .into_iter()
                .filter(|m| self.images[m.index()].is_some()),
        )
    }

    /// The ground-truth class map, or an error naming the case (`role`: "validation", "test",
    /// …) when it has no segmentation.
    pub fn truth(&self, role: &str) -> anyhow::Result<&Grid<u8>> {
        self.classes
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{role} case {} has no segmentation", self.id))
    }

    /// The image of `m`, if present.
    pub fn image(&self, m: Modality) -> Option<&Grid<f32>> {
        self.images[m.index()].as_ref()
    }

    /// A grid over the cropped region (a prediction) pasted back into the original grid,
    /// `fill` outside the crop box.
    pub fn paste_back<T: Copy>(&self, cropped: &Grid<T>, fill: T) -> Grid<T> {
        self.crop.uncrop(cropped, self.geometry.dims, fill)
    }
}

/// Crops and normalises a loaded case (see [`PreprocessSettings`]). Errors if the case has
/// no image, or NaN/Inf voxels.
pub fn preprocess_case(
    case: &LoadedCase,
    settings: &PreprocessSettings,
) -> Result<PreprocessedCase> {
    let dims = case.geometry.dims;
    let present: Vec<&Grid<f32>> = case.images.iter().flatten().collect();
    if present.is_empty() {
        bail!("case {} has no image to preprocess", case.id);
    }
    for (m, g) in Modality::ALL.iter().zip(&case.images) {
        if let Some(g) = g {
            if g.dims() != dims {
                bail!(
                    "case {}: {} image has dims {:?}, the case's grid is {dims:?}",
                    case.id,
                    m.label(),
                    g.dims()
                );
            }
            if g.data().iter().any(|v| !v.is_finite()) {
                bail!(
                    "case {}: {} image has NaN or infinite voxels",
                    case.id,
                    m.label()
                );
            }
        }
    }
    let crop = if settings.crop {
        CropBox::nonzero(dims, &present, settings.margin)
    } else {
        CropBox::full(dims)
    };
    let images = case.images.each_ref().map(|g| {
        g.as_ref().map(|g| {
            let c = crop.crop(g);
            if settings.normalize {
                zscore_nonzero(&c)
            } else {
                c
            }
        })
    });
    let classes = match &case.classes {
        Some(c) if c.dims() != dims => bail!(
            "case {}: segmentation has dims {:?}, the case's grid is {dims:?}",
            case.id,
            c.dims()
        ),
        Some(c) => Some(crop.crop(c)),
        None => None,
    };
    Ok(PreprocessedCase {
        id: case.id.clone(),
        images,
        classes,
        crop,
        geometry: case.geometry.clone(),
        convention: case.convention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::load::tests::{DIMS, geometry, image};

    fn loaded() -> LoadedCase {
        let mut classes = Grid::<u8>::zeros(DIMS);
        classes.set(2, 2, 1, 3);
        LoadedCase {
            id: "c".into(),
            geometry: geometry(0.0),
            images: [Some(image(0.0)), None, None, Some(image(5.0))],
            classes: Some(classes),
            convention: LabelConvention::Brats,
        }
    }

    #[test]
    fn crops_normalises_and_pastes_back() {
        let case = loaded();
        let p = preprocess_case(&case, &PreprocessSettings::default()).unwrap();
        assert_eq!(
            p.crop,
            CropBox {
                start: [1, 1, 1],
                dims: [3, 2, 2]
            }
        );
        assert_eq!(p.available().name(), "1001");
        let t1 = p.image(Modality::T1).unwrap();
        let (mean, std, n) = crate::preprocess::nonzero_stats(t1);
        assert_eq!(n, 12);
        assert!(
            mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-5,
            "{mean} {std}"
        );
        let classes = p.classes.as_ref().unwrap();
        assert_eq!(classes.get(1, 1, 0), 3);
        assert_eq!(p.paste_back(classes, 0), case.classes.unwrap());

        let raw = PreprocessSettings {
            crop: false,
            normalize: false,
            margin: 0,
        };
        let q = preprocess_case(&loaded(), &raw).unwrap();
        assert_eq!(q.images, loaded().images);
    }

    #[test]
    fn rejects_non_finite_and_empty_cases() {
        let mut case = loaded();
        case.images[0].as_mut().unwrap().set(0, 0, 0, f32::INFINITY);
        assert!(preprocess_case(&case, &PreprocessSettings::default()).is_err());
        case.images = [None, None, None, None];
        assert!(preprocess_case(&case, &PreprocessSettings::default()).is_err());
    }
}
