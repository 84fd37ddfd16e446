//! Charts drawn with plotters into in-memory RGB images: mean Dice per modality subset and
//! region, the Fig.-3 attention summary, and training curves. [`png_bytes`] encodes any of
//! them (and the slice panel) as PNG.

use std::io::Cursor;

use anyhow::{Context, Result, anyhow};
use image::{ImageFormat, RgbImage};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::attention::Attention;
use super::fonts;
use super::inputs::TrainLog;
use super::scores::ScoreTable;
use crate::labels::Region;
use crate::modality::{Modality, Subset};

/// Colours of WT, TC and ET bars.
const REGION_COLOURS: [RGBColor; 3] = [
    RGBColor(230, 20, 20),
    RGBColor(0, 170, 0),
    RGBColor(30, 90, 255),
];

/// Colours of T1, T1c, T2 and FLAIR bars.
const MODALITY_COLOURS: [RGBColor; 4] = [
    RGBColor(120, 120, 120),
    RGBColor(30, 90, 255),
    RGBColor(240, 150, 0),
    RGBColor(200, 30, 60),
];

/// Line colours for training curves.
const LINE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Encodes an image as PNG.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .context("cannot encode PNG")?;
    Ok(out.into_inner())
}

/// Renders with plotters into a fresh white `width × height` image.
fn render<F>(width: u32, height: u32, draw: F) -> Result<RgbImage>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    fonts::register();
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("cannot draw: {e}"))?;
    }
    RgbImage::from_raw(width, height, buf).context("image buffer has the wrong size")
}

/// A grouped bar chart's x axis runs over `0..groups` with one unit per group.
type BarChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The legend of a grouped bar chart (a colour box per series, upper right) and the name of
/// each group centred under it in `size`-point text.
fn legend_and_group_labels<'a, 'n>(
    root: &DrawingArea<BitMapBackend<'a>, Shift>,
    chart: &mut BarChart<'a, 'a>,
    legend: impl Iterator<Item = (&'n str, RGBColor)>,
    groups: &[&str],
    size: u32,
) -> Result<()> {
    for (name, colour) in legend {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((fonts::FAMILY, 13))
        .draw()
        .map_err(err)?;
    let font = (fonts::FAMILY, size).into_font().color(&BLACK);
    for (g, name) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        let (w, _) = root.estimate_text_size(name, &font).map_err(err)?;
        root.draw_text(name, &font, (px - w as i32 / 2, py + 8))
            .map_err(err)?;
    }
    Ok(())
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("cannot draw chart: {e}")
}

/// Grouped bars of mean Dice: one group per evaluated subset in the paper's order (labelled
/// with ○/● marks in the order T1, T1c, T2, FLAIR) plus the mean, one bar per region.
/// Size 1100 × 460.
pub fn dice_bar_chart(summary: &ScoreTable, title: &str) -> Result<RgbImage> {
    let groups: Vec<(String, Vec<f64>)> = summary
        .subsets
        .iter()
        .map(|(s, r)| (s.marks(), r.regions.map(|x| x.dice).to_vec()))
        .chain(std::iter::once((
            "mean".to_string(),
            summary.mean.regions.map(|x| x.dice).to_vec(),
        )))
        .collect();
    let series: Vec<(&str, RGBColor)> = Region::ALL
        .iter()
        .map(|r| r.name())
        .zip(REGION_COLOURS)
        .collect();
    subset_bars(&groups, &series, title)
}

/// Grouped bars of one region's mean Dice for several methods: one group per subset (the
/// union of the methods' subsets, paper order, ○/● marks) plus the mean, one bar per
/// method (a subset a method did not evaluate has no bar). Size 1100 × 460.
pub fn methods_bar_chart(
    methods: &[(String, &ScoreTable)],
    region: Region,
    title: &str,
) -> Result<RgbImage> {
    let subsets: std::collections::BTreeSet<Subset> = methods
        .iter()
        .flat_map(|(_, t)| t.subsets.keys().copied())
        .collect();
    let i = region.index();
    let groups: Vec<(String, Vec<f64>)> = subsets
        .iter()
        .map(|s| {
            let dice = methods
                .iter()
                .map(|(_, t)| t.subsets.get(s).map_or(f64::NAN, |r| r.regions[i].dice))
                .collect();
            (s.marks(), dice)
        })
        .chain(std::iter::once((
            "mean".to_string(),
            methods
                .iter()
                .map(|(_, t)| t.mean.regions[i].dice)
                .collect(),
        )))
        .collect();
    let series: Vec<(&str, RGBColor)> = methods
        .iter()
        .enumerate()
        .map(|(k, (label, _))| (label.as_str(), LINE_COLOURS[k % LINE_COLOURS.len()]))
        .collect();
    subset_bars(&groups, &series, title)
}

/// The Dice bar chart of [`dice_bar_chart`] and [`methods_bar_chart`]: `groups` of
/// `(label, one value per series)`, bars coloured and named by `series`; a value that is not
/// finite draws no bar.
fn subset_bars(
    groups: &[(String, Vec<f64>)],
    series: &[(&str, RGBColor)],
    title: &str,
) -> Result<RgbImage> {
    let slot = 0.75 / series.len().max(1) as f64;
    render(1100, 460, |root| {
        root.fill(&WHITE).map_err(err)?;
        let n = groups.len() as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (fonts::FAMILY, 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..n, 0.0..1.25)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("Dice")
            .y_labels(13)
            .label_style((fonts::FAMILY, 13))
            .draw()
            .map_err(err)?;
        for (g, (_, values)) in groups.iter().enumerate() {
            for (k, d) in values.iter().enumerate() {
                if !d.is_finite() {
                    continue;
                }
                let x0 = g as f64 + 0.12 + k as f64 * slot;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + slot - 0.01, d.clamp(0.0, 1.05))],
                        series[k % series.len()].1.filled(),
                    )))
                    .map_err(err)?;
            }
        }
        let labels: Vec<&str> = groups.iter().map(|(l, _)| l.as_str()).collect();
        legend_and_group_labels(root, &mut chart, series.iter().copied(), &labels, 13)?;
        let label_font = (fonts::FAMILY, 13).into_font().color(&BLACK);
        let note = "marks: T1 T1c T2 FLAIR (● available, ○ missing)";
        let (px, py) = chart.backend_coord(&(0.0, 0.0));
        root.draw_text(note, &label_font, (px, py + 28))
            .map_err(err)?;
        Ok(())
    })
}

/// Fig. 3: grouped bars of the mean attention weight of each modality, one group per
/// tumour region in file order, with the values written above the bars. Size 760 × 420.
pub fn attention_chart(attention: &Attention) -> Result<RgbImage> {
    let regions = &attention.regions;
    let top = regions
        .iter()
        .flat_map(|(_, w)| w.iter().flatten().copied())
        .fold(0.0f64, f64::max)
        .max(0.25)
        * 1.2;
    render(760, 420, |root| {
        root.fill(&WHITE).map_err(err)?;
        let n = regions.len().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Mean attention weight per modality and region",
                (fonts::FAMILY, 19),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..n, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("weight")
            .label_style((fonts::FAMILY, 13))
            .draw()
            .map_err(err)?;
        let value_font = (fonts::FAMILY, 11).into_font().color(&BLACK);
        for (g, (_, weights)) in regions.iter().enumerate() {
            for (m, w) in weights.iter().enumerate() {
                let Some(w) = *w else { continue };
                let x0 = g as f64 + 0.1 + m as f64 * 0.2;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + 0.19, w.clamp(0.0, top))],
                        MODALITY_COLOURS[m].filled(),
                    )))
                    .map_err(err)?;
                let (px, py) = chart.backend_coord(&(x0, w.clamp(0.0, top)));
                root.draw_text(&format!("{w:.2}"), &value_font, (px, py - 14))
                    .map_err(err)?;
            }
        }
        let legend = Modality::ALL
            .iter()
            .map(|m| m.label())
            .zip(MODALITY_COLOURS);
        let labels: Vec<&str> = regions.iter().map(|(n, _)| n.as_str()).collect();
        legend_and_group_labels(root, &mut chart, legend, &labels, 14)
    })
}

/// Training curves from a run's log: losses per epoch (left) and validation Dice per epoch
/// (right). Columns are found by name (`*loss*`, `*dice*`). Size 1100 × 420.
pub fn training_curves(log: &TrainLog, title: &str) -> Result<RgbImage> {
    training_curves_sized(log, title, (1100, 420))
}

/// The training-curve figure (the one drawing of it: reports and `train`'s `progress.png`)
/// at `(width, height)` pixels, each panel half the width.
pub fn training_curves_sized(log: &TrainLog, title: &str, size: (u32, u32)) -> Result<RgbImage> {
    let epochs = log.epochs();
    let losses = log.loss_columns();
    let dices = log.dice_columns();
    let (width, height) = size;
    render(width, height, |root| {
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (fonts::FAMILY, 20)).map_err(err)?;
        let (left, right) = root.split_horizontally(width / 2);
        curve_panel(&left, &epochs, &losses, "loss", None)?;
        curve_panel(&right, &epochs, &dices, "validation Dice", Some((0.0, 1.0)))?;
        Ok(())
    })
}

/// One line chart of `series` against `epochs`; `y_range` fixed or from the data.
fn curve_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    epochs: &[f64],
    series: &[(String, Vec<f64>)],
    y_desc: &str,
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    let finite = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    let xs = finite(epochs);
    let (x0, x1) = match (
        xs.iter().copied().reduce(f64::min),
        xs.iter().copied().reduce(f64::max),
    ) {
        (Some(a), Some(b)) if b > a => (a, b),
        (Some(a), _) => (a - 0.5, a + 0.5),
        _ => (0.0, 1.0),
    };
    let (y0, y1) = y_range.unwrap_or_else(|| {
        let ys: Vec<f64> = series.iter().flat_map(|(_, v)| finite(v)).collect();
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi > lo {
            (lo.min(0.0), hi * 1.05)
        } else if lo.is_finite() {
            (lo.min(0.0), lo.abs().max(1.0) * 1.05)
        } else {
            (0.0, 1.0)
        }
    });
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((fonts::FAMILY, 13))
        .draw()
        .map_err(err)?;
    if series.is_empty() {
        let font = (fonts::FAMILY, 14).into_font().color(&BLACK);
        let (px, py) = chart.backend_coord(&(x0, (y0 + y1) / 2.0));
        area.draw_text(&format!("no {y_desc} column in log"), &font, (px + 10, py))
            .map_err(err)?;
        return Ok(());
    }
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
        let points: Vec<(f64, f64)> = epochs
            .iter()
            .zip(values)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (*x, *y))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        if points.len() <= 40 {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(if y_range.is_some() {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((fonts::FAMILY, 12))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::Subset;
    use crate::report::scores::{RegionScore, SubsetScores};

    fn summary() -> ScoreTable {
        ScoreTable::from_rows(Subset::all_nonempty().map(|s| {
            let regions = std::array::from_fn(|i| {
                RegionScore::new(0.5 + 0.03 * s.len() as f64 + 0.01 * i as f64, Some(4.0))
            });
            let row = SubsetScores {
                regions,
                ..Default::default()
            };
            (s, row)
        }))
    }

    fn decodes_to(img: &RgbImage, w: u32, h: u32) {
        assert_eq!(img.dimensions(), (w, h));
        let png = png_bytes(img).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (w, h));
        assert_eq!(&back, img);
    }

    /// Count of pixels exactly of `colour`.
    fn count(img: &RgbImage, c: RGBColor) -> usize {
        img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
    }

    #[test]
    fn dice_chart_draws_bars_of_each_region() {
        let img = dice_bar_chart(&summary(), "Mean Dice").unwrap();
        decodes_to(&img, 1100, 460);
        for c in REGION_COLOURS {
            assert!(count(&img, c) > 500, "{c:?}");
        }
        // Taller bars for better scores: more red pixels with a higher WT Dice.
        let mut better = summary();
        for r in better.subsets.values_mut() {
            r.regions[0].dice = 0.99;
        }
        better.mean.regions[0].dice = 0.99;
        let img2 = dice_bar_chart(&better, "Mean Dice").unwrap();
        assert!(count(&img2, REGION_COLOURS[0]) > count(&img, REGION_COLOURS[0]));
    }

    #[test]
    fn methods_chart_draws_a_bar_per_method() {
        let a = summary();
        let mut b = summary();
        for r in b.subsets.values_mut() {
            r.regions[1].dice = 0.95;
        }
        b.mean.regions[1].dice = 0.95;
        let methods = [("A2FSeg".to_string(), &a), ("HeMIS".to_string(), &b)];
        let img = methods_bar_chart(&methods, Region::Tc, "TC").unwrap();
        decodes_to(&img, 1100, 460);
        let (first, second) = (count(&img, LINE_COLOURS[0]), count(&img, LINE_COLOURS[1]));
        assert!(first > 500 && second > first, "{first} {second}");
        assert_eq!(count(&img, LINE_COLOURS[2]), 0);
    }

    #[test]
    fn attention_chart_has_a_bar_per_modality() {
        let a = Attention::from_json(
            r#"{"ET": [0.2, 0.4, 0.2, 0.2], "ED": [0.1, 0.1, 0.3, 0.5], "NCR/NET": [0.25, 0.25, 0.25, 0.25]}"#,
        )
        .unwrap();
        let img = attention_chart(&a).unwrap();
        decodes_to(&img, 760, 420);
        for c in MODALITY_COLOURS {
            assert!(count(&img, c) > 200, "{c:?}");
        }
    }

    #[test]
    fn curves_draw_with_and_without_dice() {
        let log =
            TrainLog::from_csv("epoch,loss,val_dice_wt\n1,2.0,\n2,1.5,0.4\n3,1.0,0.6\n").unwrap();
        let img = training_curves(&log, "Training").unwrap();
        decodes_to(&img, 1100, 420);
        assert!(count(&img, LINE_COLOURS[0]) > 100);
        let empty = TrainLog::from_csv("epoch,lr\n1,0.01\n").unwrap();
        decodes_to(&training_curves(&empty, "Training").unwrap(), 1100, 420);
    }
}
