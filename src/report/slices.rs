//! The Fig.-2-style panel: one axial slice of a test case, each modality in grey, and the
//! predicted segmentation for growing modality subsets overlaid on FLAIR next to the
//! ground truth, in the paper's colours (edema red, enhancing blue, necrosis and
//! non-enhancing core green).
//!
//! Orientation: a slice is the plane `z = const` of a grid with dims `[nx, ny, nz]`; x runs
//! left to right and y runs bottom to top in the picture (image row `ny - 1 - y`), so a
//! RAS-oriented BraTS volume appears as in the usual radiology viewers with anterior up.

use anyhow::{Result, bail};
use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;

use super::fonts;
use crate::labels::TumourClass;
use crate::modality::{Modality, Subset};
use crate::volume::Grid;

/// Colour of a tumour class in overlays, or `None` for background (paper's Fig. 2 colours).
pub fn class_colour(class: u8) -> Option<[u8; 3]> {
    match TumourClass::from_index(class as usize)? {
        TumourClass::Background => None,
        TumourClass::Necrosis => Some([0, 200, 0]),
        TumourClass::Edema => Some([230, 20, 20]),
        TumourClass::Enhancing => Some([30, 90, 255]),
    }
}

/// The tumour classes in legend order, with their legend names (figures and viewer).
pub const LEGEND: [(TumourClass, &str); 3] = [
    (TumourClass::Edema, "edema (ED)"),
    (TumourClass::Enhancing, "enhancing (ET)"),
    (TumourClass::Necrosis, "necrosis / non-enhancing (NCR)"),
];

/// The axial slice (index along z) holding the most tumour voxels of `classes`
/// (`TumourClass` indices); the lowest such z on ties, the middle slice if there is none.
pub fn tumour_slice(classes: &Grid<u8>) -> usize {
    let [nx, ny, nz] = classes.dims();
    let plane = nx * ny;
    let counts = (0..nz).map(|z| {
        classes.data()[z * plane..(z + 1) * plane]
            .iter()
            .filter(|&&c| c != 0)
            .count()
    });
    let mut best = (nz / 2, 0);
    for (z, n) in counts.enumerate() {
        if n > best.1 {
            best = (z, n);
        }
    }
    best.0
}

/// Grey-level window of an image: the 0.5th and 99.5th percentiles of its non-zero voxels
/// (zero is outside the brain after preprocessing and in BraTS files), `(0, 1)` if all zero.
pub fn intensity_window(image: &Grid<f32>) -> (f32, f32) {
    let mut v: Vec<f32> = image
        .data()
        .iter()
        .copied()
        .filter(|x| *x != 0.0 && x.is_finite())
        .collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_unstable_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.005), at(0.995));
    if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
}

/// Slice `z` of `image` in grey, one pixel per voxel (`nx` wide, `ny` high, y up), with
/// `window` mapped to black..white.
pub fn grey_slice(image: &Grid<f32>, z: usize, window: (f32, f32)) -> RgbImage {
    let [nx, ny, _] = image.dims();
    let (lo, hi) = window;
    RgbImage::from_fn(nx as u32, ny as u32, |px, py| {
        let v = image.get(px as usize, ny - 1 - py as usize, z);
        let g = if v.is_finite() {
            (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
        } else {
            0
        };
        Rgb([g, g, g])
    })
}

/// `base` (a slice from [`grey_slice`]) with the classes of slice `z` of `classes` painted
/// opaquely in [`class_colour`]; background voxels keep the grey value.
pub fn overlay(base: &RgbImage, classes: &Grid<u8>, z: usize) -> RgbImage {
    let [_, ny, _] = classes.dims();
    let mut out = base.clone();
    for (px, py, p) in out.enumerate_pixels_mut() {
        if let Some(c) = class_colour(classes.get(px as usize, ny - 1 - py as usize, z)) {
            *p = Rgb(c);
        }
    }
    out
}

/// One test case for the panel: its images (any may be missing), ground truth and
/// predictions, all on the same grid `[nx, ny, nz]` with `TumourClass` indices.
#[derive(Debug, Clone, Copy)]
pub struct PanelCase<'a> {
    /// Case id, shown in the title.
    pub id: &'a str,
    /// Images in canonical order T1, T1c, T2, FLAIR.
    pub images: [Option<&'a Grid<f32>>; 4],
    /// Ground-truth classes.
    pub truth: &'a Grid<u8>,
    /// Predictions, shown left to right in this order (e.g. FLAIR; FLAIR+T1c; all four).
    pub predictions: &'a [(Subset, Grid<u8>)],
}

/// One row of predictions in a several-method panel: the method's name and its predictions
/// (left to right), on the case's grid.
#[derive(Debug, Clone, Copy)]
pub struct PredictionRow<'a> {
    /// Shown before each tile's caption.
    pub label: &'a str,
    /// Predictions in display order.
    pub predictions: &'a [(Subset, Grid<u8>)],
}

/// Where things are in a panel: tiles of `tile` pixels (upscaled slices), each under a
/// title strip; a row of modalities, then `prediction_rows` rows of predictions, each
/// ending with the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelLayout {
    /// Slice dims `[nx, ny]`.
    pub slice: [usize; 2],
    /// Integer upscaling factor (nearest neighbour).
    pub scale: u32,
    /// Number of tile columns.
    pub columns: u32,
    /// Height of the case title at the top.
    pub header: u32,
    /// Height of each tile's caption strip.
    pub caption: u32,
    /// Gap between tiles and at the borders.
    pub gap: u32,
    /// Height of the colour legend at the bottom.
    pub legend: u32,
    /// Rows of predictions below the modalities (1 in the single-model panel).
    pub prediction_rows: u32,
}

impl PanelLayout {
    /// The layout for slices of `[nx, ny]` and `n_predictions` prediction tiles: tiles are
    /// scaled up to at least ~192 pixels on their longer side.
    pub fn new(slice: [usize; 2], n_predictions: usize) -> PanelLayout {
        let longest = slice[0].max(slice[1]).max(1) as u32;
        PanelLayout {
            slice,
            scale: 192u32.div_ceil(longest).clamp(1, 8),
            columns: (n_predictions as u32 + 1).max(4),
            header: 30,
            caption: 22,
            gap: 6,
            legend: 28,
            prediction_rows: 1,
        }
    }

    /// The layout for `rows` rows of at most `n_predictions` prediction tiles each.
    pub fn with_rows(slice: [usize; 2], n_predictions: usize, rows: usize) -> PanelLayout {
        PanelLayout {
            prediction_rows: rows.max(1) as u32,
            ..PanelLayout::new(slice, n_predictions)
        }
    }

    /// Tile width and height in pixels.
    pub fn tile(&self) -> (u32, u32) {
        (
            self.slice[0] as u32 * self.scale,
            self.slice[1] as u32 * self.scale,
        )
    }

    /// Size of the whole panel in pixels.
    pub fn size(&self) -> (u32, u32) {
        let (tw, th) = self.tile();
        let w = self.gap + self.columns * (tw + self.gap);
        let h =
            self.header + (1 + self.prediction_rows) * (self.caption + th + self.gap) + self.legend;
        (w, h)
    }

    /// Top-left pixel of the tile at `row` (0 modalities, 1… overlays), `col`.
    pub fn tile_origin(&self, row: u32, col: u32) -> (u32, u32) {
        let (tw, th) = self.tile();
        let x = self.gap + col * (tw + self.gap);
        let y = self.header + row * (self.caption + th + self.gap) + self.caption;
        (x, y)
    }

    /// The panel pixel at the centre of voxel `(x, y)` of the slice in tile `(row, col)`.
    pub fn voxel_pixel(&self, row: u32, col: u32, x: usize, y: usize) -> (u32, u32) {
        let (ox, oy) = self.tile_origin(row, col);
        let py = (self.slice[1] - 1 - y) as u32;
        (
            ox + x as u32 * self.scale + self.scale / 2,
            oy + py * self.scale + self.scale / 2,
        )
    }
}

/// Renders the panel for `case` at axial slice `z` (default: [`tumour_slice`] of the ground
/// truth). Row 1: T1, T1c, T2, FLAIR. Row 2: each prediction over FLAIR (over the first
/// available image if FLAIR is missing), then the ground truth.
pub fn slice_panel(case: &PanelCase<'_>, z: Option<usize>) -> Result<(RgbImage, PanelLayout)> {
    let row = PredictionRow {
        label: "",
        predictions: case.predictions,
    };
    draw_panel(case, &[row], z)
}

/// The panel of several methods: the modalities of `case` (its `predictions` are not
/// shown), then one row per method of `rows` with its predictions and the ground truth, at
/// axial slice `z` (default: [`tumour_slice`] of the ground truth).
pub fn methods_panel(
    case: &PanelCase<'_>,
    rows: &[PredictionRow<'_>],
    z: Option<usize>,
) -> Result<(RgbImage, PanelLayout)> {
    draw_panel(case, rows, z)
}

/// Draws the modalities of `case` and the prediction `rows` (see [`slice_panel`]).
fn draw_panel(
    case: &PanelCase<'_>,
    rows: &[PredictionRow<'_>],
    z: Option<usize>,
) -> Result<(RgbImage, PanelLayout)> {
    let dims = case.truth.dims();
    for (i, img) in case.images.iter().enumerate() {
        if let Some(img) = img
            && img.dims() != dims
        {
            bail!(
                "case {}: {} has dims {:?}, the ground truth {:?}",
                case.id,
                Modality::ALL[i],
                img.dims(),
                dims
            );
        }
    }
    for (s, p) in rows.iter().flat_map(|r| r.predictions) {
        if p.dims() != dims {
            bail!(
                "case {}: prediction for {} has dims {:?}, the ground truth {:?}",
                case.id,
                s.describe(),
                p.dims(),
                dims
            );
        }
    }
    let z = z.unwrap_or_else(|| tumour_slice(case.truth));
    if z >= dims[2] {
        bail!("slice {z} is outside the volume ({} slices)", dims[2]);
    }
    let widest = rows.iter().map(|r| r.predictions.len()).max().unwrap_or(0);
    let layout = PanelLayout::with_rows([dims[0], dims[1]], widest, rows.len());
    let (w, h) = layout.size();
    let (tw, th) = layout.tile();
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));

    let greys: Vec<Option<RgbImage>> = case
        .images
        .iter()
        .map(|img| img.map(|g| grey_slice(g, z, intensity_window(g))))
        .collect();
    let blank = RgbImage::from_pixel(dims[0] as u32, dims[1] as u32, Rgb([0, 0, 0]));
    let base = greys[Modality::Flair.index()]
        .clone()
        .or_else(|| greys.iter().flatten().next().cloned())
        .unwrap_or_else(|| blank.clone());
    let base_name = if greys[Modality::Flair.index()].is_some() {
        "FLAIR"
    } else {
        "image"
    };

    let mut captions: Vec<(u32, u32, String)> = Vec::new();
    let mut place = |canvas: &mut RgbImage, row: u32, col: u32, tile: &RgbImage, text: String| {
        let big = imageops::resize(tile, tw, th, imageops::FilterType::Nearest);
        let (ox, oy) = layout.tile_origin(row, col);
        imageops::replace(canvas, &big, ox as i64, oy as i64);
        captions.push((ox, oy - layout.caption, text));
    };
    for m in Modality::ALL {
        let (tile, text) = match &greys[m.index()] {
            Some(g) => (g.clone(), m.label().to_string()),
            None => (blank.clone(), format!("{} (missing)", m.label())),
        };
        place(&mut canvas, 0, m.index() as u32, &tile, text);
    }
    let truth = overlay(&base, case.truth, z);
    for (r, row) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        for (col, (subset, pred)) in row.predictions.iter().enumerate() {
            // One row: the subset in words. Several: the method's short name (its label up
            // to a parenthesis), so that captions fit their tile.
            let text = if row.label.is_empty() || rows.len() == 1 {
                format!("{} {}", subset.marks(), subset.describe())
            } else {
                let short = row.label.split(" (").next().unwrap_or(row.label);
                format!("{short} {}", subset.marks())
            };
            place(&mut canvas, r, col as u32, &overlay(&base, pred, z), text);
        }
        let gt_col = row.predictions.len() as u32;
        place(&mut canvas, r, gt_col, &truth, "Ground truth".to_string());
    }

    let title = format!(
        "Case {} — axial slice z = {} — predictions over {}",
        case.id, z, base_name
    );
    draw_texts(&mut canvas, &layout, &title, &captions)?;
    Ok((canvas, layout))
}

/// Draws the title, captions and legend with plotters on the panel's pixels.
fn draw_texts(
    canvas: &mut RgbImage,
    layout: &PanelLayout,
    title: &str,
    captions: &[(u32, u32, String)],
) -> Result<()> {
    fonts::register();
    let (w, h) = canvas.dimensions();
    let root = BitMapBackend::with_buffer(canvas.as_mut(), (w, h)).into_drawing_area();
    let font = |size: f64| (fonts::FAMILY, size).into_font().color(&BLACK);
    let caption_size = if layout.tile().0 < 150 { 11.0 } else { 14.0 };
    root.draw_text(title, &font(16.0), (layout.gap as i32, 7))
        .map_err(|e| anyhow::anyhow!("cannot draw text: {e}"))?;
    for (x, y, text) in captions {
        root.draw_text(text, &font(caption_size), (*x as i32, *y as i32 + 4))
            .map_err(|e| anyhow::anyhow!("cannot draw text: {e}"))?;
    }
    let y = (h - layout.legend + 6) as i32;
    let mut x = layout.gap as i32;
    for (class, name) in LEGEND {
        let [r, g, b] = class_colour(class.index() as u8).expect("tumour class has a colour");
        root.draw(&Rectangle::new(
            [(x, y), (x + 14, y + 14)],
            RGBColor(r, g, b).filled(),
        ))
        .map_err(|e| anyhow::anyhow!("cannot draw legend: {e}"))?;
        root.draw_text(name, &font(13.0), (x + 20, y))
            .map_err(|e| anyhow::anyhow!("cannot draw text: {e}"))?;
        x += 40 + 8 * name.len() as i32;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("cannot draw panel: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20×16×6 case: images are ramps, one tumour blob on slice 3 with all three classes.
    fn fake() -> ([Grid<f32>; 4], Grid<u8>) {
        let dims = [20, 16, 6];
        let images = std::array::from_fn(|m| {
            let mut g = Grid::<f32>::zeros(dims);
            for z in 0..6 {
                for y in 0..16 {
                    for x in 0..20 {
                        g.set(x, y, z, (x + y + m) as f32 + 1.0);
                    }
                }
            }
            g
        });
        let mut truth = Grid::<u8>::zeros(dims);
        for x in 5..12 {
            for y in 4..10 {
                truth.set(x, y, 3, 2);
            }
        }
        truth.set(7, 6, 3, 3);
        truth.set(8, 6, 3, 1);
        truth.set(1, 1, 1, 2);
        (images, truth)
    }

    #[test]
    fn slice_with_most_tumour() {
        let (_, truth) = fake();
        assert_eq!(tumour_slice(&truth), 3);
        assert_eq!(tumour_slice(&Grid::<u8>::zeros([4, 4, 7])), 3);
    }

    #[test]
    fn window_ignores_zero() {
        let g = Grid::from_vec([4, 1, 1], vec![0.0f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(intensity_window(&g), (2.0, 4.0));
        assert_eq!(intensity_window(&Grid::<f32>::zeros([2, 2, 2])), (0.0, 1.0));
    }

    #[test]
    fn panel_has_expected_size_and_colours() {
        let (images, truth) = fake();
        let mut pred = truth.clone();
        pred.set(7, 6, 3, 2); // ET missed, called edema
        let preds = vec![(Subset::FULL, pred)];
        let case = PanelCase {
            id: "phantom_001",
            images: [Some(&images[0]), Some(&images[1]), None, Some(&images[3])],
            truth: &truth,
            predictions: &preds,
        };
        let (img, layout) = slice_panel(&case, None).unwrap();
        assert_eq!(img.dimensions(), layout.size());
        assert_eq!(layout.columns, 4);
        assert!(layout.scale >= 8);
        let px = |row, col, x, y| {
            let (a, b) = layout.voxel_pixel(row, col, x, y);
            img.get_pixel(a, b).0
        };
        // Prediction tile (row 1, col 0) and ground truth tile (row 1, col 1).
        assert_eq!(px(1, 0, 7, 6), class_colour(2).unwrap());
        assert_eq!(px(1, 1, 7, 6), class_colour(3).unwrap());
        assert_eq!(px(1, 1, 8, 6), class_colour(1).unwrap());
        assert_eq!(px(1, 1, 5, 4), [230, 20, 20]);
        // Outside the tumour: grey FLAIR.
        let [r, g, b] = px(1, 1, 15, 12);
        assert!(r == g && g == b && r > 0);
        // The missing T2 tile is black, the ramp of T1 is brighter to the upper right.
        assert_eq!(px(0, 2, 10, 8), [0, 0, 0]);
        assert!(px(0, 0, 18, 14)[0] > px(0, 0, 1, 1)[0]);

        let png = super::super::charts::png_bytes(&img).unwrap();
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!((back.width(), back.height()), layout.size());
    }

    #[test]
    fn methods_panel_has_a_row_per_method() {
        let (images, truth) = fake();
        let mut missed = truth.clone();
        missed.set(7, 6, 3, 2);
        let a = vec![(Subset::FULL, truth.clone())];
        let b = vec![(Subset::FULL, missed)];
        let case = PanelCase {
            id: "phantom_001",
            images: [Some(&images[0]), Some(&images[1]), None, Some(&images[3])],
            truth: &truth,
            predictions: &[],
        };
        let rows = [
            PredictionRow {
                label: "A2FSeg",
                predictions: &a,
            },
            PredictionRow {
                label: "HeMIS",
                predictions: &b,
            },
        ];
        let (img, layout) = methods_panel(&case, &rows, None).unwrap();
        assert_eq!(layout.prediction_rows, 2);
        assert_eq!(img.dimensions(), layout.size());
        let single = PanelLayout::new([20, 16], 1).size();
        assert_eq!(layout.size().0, single.0);
        assert_eq!(
            layout.size().1 - single.1,
            layout.caption + layout.tile().1 + layout.gap
        );
        let px = |row, col, x, y| {
            let (a, b) = layout.voxel_pixel(row, col, x, y);
            img.get_pixel(a, b).0
        };
        // Row 1 (A2FSeg) has the ET voxel, row 2 (HeMIS) calls it edema; both end with
        // the ground truth.
        assert_eq!(px(1, 0, 7, 6), class_colour(3).unwrap());
        assert_eq!(px(2, 0, 7, 6), class_colour(2).unwrap());
        assert_eq!(px(2, 1, 7, 6), class_colour(3).unwrap());
        let wrong = vec![(Subset::FULL, Grid::<u8>::zeros([3, 3, 3]))];
        let bad = [PredictionRow {
            label: "x",
            predictions: &wrong,
        }];
        assert!(methods_panel(&case, &bad, None).is_err());
    }

    #[test]
    fn mismatched_prediction_is_an_error() {
        let (images, truth) = fake();
        let preds = vec![(Subset::FULL, Grid::<u8>::zeros([3, 3, 3]))];
        let case = PanelCase {
            id: "x",
            images: [None, None, None, Some(&images[3])],
            truth: &truth,
            predictions: &preds,
        };
        assert!(slice_panel(&case, None).is_err());
        let ok = PanelCase {
            predictions: &[],
            ..case
        };
        assert!(slice_panel(&ok, Some(99)).is_err());
        assert!(slice_panel(&ok, Some(2)).is_ok());
    }
}
