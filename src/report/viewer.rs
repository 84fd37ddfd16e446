//! The interactive viewer of a case: NiiVue (vendored in `assets/niivue/`, pinned to
//! [`NIIVUE_VERSION`]) in an offline HTML page, showing the four modalities (switchable),
//! the ground truth and each method's prediction of each modality subset as label overlays
//! in the Fig.-2 colours ([`super::slices::class_colour`]), the adaptive fusion's attention
//! maps as heat overlays, multiplanar slices and a 3D render, and the case's Dice/HD95 of
//! the selected prediction.
//!
//! Everything is embedded: volumes are cropped to the brain box (the non-zero voxels of the
//! images and every label map, grown by [`BOX_MARGIN`]) and stored as uint8 gzip NIfTI
//! ([`super::viewer_volumes`]: images linearly quantised to 127 grey steps with their scale
//! in the header and attention weights in steps of 1/255, both predictively coded; labels as
//! they are), base64-encoded in a JSON block per case. The page's script (`viewer.js`, inline) decodes
//! a volume the first time it is shown. [`case_page`] is a whole page (`a2fseg view`);
//! [`viewer_section`] and [`viewer_scripts`] put viewers into a report page.

use std::fmt::Write;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::slices::{LEGEND, class_colour};
use super::tables::escape;
use super::viewer_volumes::{
    Coding, IMAGE_STEPS, crop_geometry, embed, nonzero_box, quantise_attention, quantise_image,
};
use crate::infer::Prediction;
use crate::labels::Region;
use crate::metrics::{self, MetricOptions};
use crate::modality::{Modality, Subset};
use crate::preprocess::CropBox;
use crate::volume::{Geometry, Grid, Uint8Scaling};

/// The pinned `@niivue/niivue` release whose bundle the pages embed.
pub const NIIVUE_VERSION: &str = "0.69.0";

/// NiiVue's browser bundle (`dist/niivue.umd.js`, defines the global `niivue`).
const NIIVUE_JS: &str = include_str!("../../assets/niivue/niivue.umd.js");

/// NiiVue's licence (BSD-2-Clause), reproduced in every page that embeds the bundle.
const NIIVUE_LICENSE: &str = include_str!("../../assets/niivue/LICENSE");

/// NiiVue's bundle as the page embeds it: its one PNG data URI (a font atlas, in a JS string
/// literal) is written with the comma escaped (`\x2C`, the same string in JavaScript), so
/// that a report's `data:image/png;base64,` URIs are its own figures only.
fn niivue_script() -> String {
    NIIVUE_JS.replace("\"data:image/png;base64,", "\"data:image/png;base64\\x2C")
}

/// The page's own script: builds one NiiVue instance per viewer section.
const VIEWER_JS: &str = include_str!("viewer.js");

/// Voxels of margin around the brain box (so that no label touches the cropped border).
pub const BOX_MARGIN: usize = 2;

/// A label map to overlay: TumourClass indices on the case's grid.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Name in the subset selector, e.g. `"○○○● FLAIR"` or a file name.
    pub label: String,
    /// The classes, dims of the case's grid.
    pub classes: Grid<u8>,
}

impl Segmentation {
    /// The prediction from `subset`, labelled with the paper's ○/● marks and the modalities.
    pub fn of_subset(subset: Subset, classes: Grid<u8>) -> Segmentation {
        Segmentation {
            label: format!("{} {}", subset.marks(), subset.describe()),
            classes,
        }
    }
}

/// A heat overlay: one modality's attention weight Ŵ_m in [0, 1] per voxel.
#[derive(Debug, Clone)]
pub struct AttentionMap {
    /// Name in the attention selector, e.g. `"T1c"`.
    pub label: String,
    /// The weights on the case's grid.
    pub weights: Grid<f32>,
    /// Number of modalities fused: weights above `1 / fused` (an equal share) are coloured.
    pub fused: usize,
}

/// One method's predictions of the case.
#[derive(Debug, Clone)]
pub struct ViewerMethod {
    /// Name in the method selector (empty when there is one method).
    pub label: String,
    /// Predictions in selector order (the paper's subset order for a model).
    pub segmentations: Vec<Segmentation>,
    /// Attention maps (e.g. of the full subset), if the method fuses with attention.
    pub attention: Vec<AttentionMap>,
    /// What the attention maps are, shown under the viewer (e.g. which subset).
    pub attention_note: String,
}

/// Everything one viewer shows.
#[derive(Debug, Clone)]
pub struct ViewerCase {
    /// Case id (title).
    pub id: String,
    /// The case's grid (dims, spacing, affine); every grid below has its dims.
    pub geometry: Geometry,
    /// Images in canonical order T1, T1c, T2, FLAIR (any may be missing, not all).
    pub images: [Option<Grid<f32>>; 4],
    /// Ground-truth classes, if known.
    pub truth: Option<Grid<u8>>,
    /// Methods with their predictions (may be empty: images and truth only).
    pub methods: Vec<ViewerMethod>,
    /// How the Dice and HD95 beside the viewer are computed (against `truth`).
    pub metrics: MetricOptions,
}

impl ViewerCase {
    /// Every label map of the case: the truth, then each method's predictions.
    fn label_maps(&self) -> impl Iterator<Item = &Grid<u8>> {
        self.truth.iter().chain(
            self.methods
                .iter()
                .flat_map(|m| m.segmentations.iter().map(|s| &s.classes)),
        )
    }

    /// Fails, naming the volume, when a grid's dims differ from the case's or no image is
    /// given.
    fn check(&self) -> Result<()> {
        let dims = self.geometry.dims;
        let bad = |what: &str, d: [usize; 3]| -> Result<()> {
            if d != dims {
                bail!("case {}: {what} has dims {d:?}, the case {dims:?}", self.id);
            }
            Ok(())
        };
        if self.images.iter().all(Option::is_none) {
            bail!("case {}: no image to show", self.id);
        }
        for (m, img) in Modality::ALL.iter().zip(&self.images) {
            if let Some(img) = img {
                bad(m.label(), img.dims())?;
            }
        }
        if let Some(t) = &self.truth {
            bad("the ground truth", t.dims())?;
        }
        for m in &self.methods {
            for s in &m.segmentations {
                bad(&s.label, s.classes.dims())?;
            }
            for a in &m.attention {
                bad(&format!("attention map {}", a.label), a.weights.dims())?;
            }
        }
        Ok(())
    }
}

/// The brain box of `case`: the box of the non-zero voxels of its images and label maps,
/// grown by [`BOX_MARGIN`] and clipped to the grid.
pub fn brain_box(case: &ViewerCase) -> CropBox {
    let dims = case.geometry.dims;
    let images: Vec<&Grid<f32>> = case.images.iter().flatten().collect();
    let mut lo = dims;
    let mut hi = [0usize; 3];
    let mut extend = |b: CropBox| {
        for a in 0..3 {
            lo[a] = lo[a].min(b.start[a]);
            hi[a] = hi[a].max(b.start[a] + b.dims[a]);
        }
    };
    for image in images {
        if let Some(b) = nonzero_box(image) {
            extend(b);
        }
    }
    for labels in case.label_maps() {
        if let Some(b) = nonzero_box(labels) {
            extend(b);
        }
    }
    if lo.iter().zip(&hi).any(|(l, h)| l >= h) {
        return CropBox::full(dims);
    }
    let start: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(BOX_MARGIN));
    let end: [usize; 3] = std::array::from_fn(|a| (hi[a] + BOX_MARGIN).min(dims[a]));
    CropBox {
        start,
        dims: std::array::from_fn(|a| end[a] - start[a]),
    }
}

/// The Dice (%) and HD95 (mm) of WT, TC, ET of `pred` against `truth`, as JSON.
fn scores_json(
    pred: &Grid<u8>,
    truth: &Grid<u8>,
    spacing: [f64; 3],
    opts: &MetricOptions,
) -> Value {
    let m = metrics::evaluate_case(pred, truth, spacing, opts);
    Value::Array(
        Region::ALL
            .iter()
            .map(|&r| {
                let s = m.region(r);
                json!({"region": r.name(), "dice": 100.0 * s.dice, "hd95": s.hd95})
            })
            .collect(),
    )
}

/// The label colour table NiiVue draws overlays with: the Fig.-2 colour of each class,
/// background transparent.
fn label_lut() -> Value {
    let classes: Vec<u8> = (0..4).collect();
    let colour = |c: u8, i: usize| class_colour(c).map_or(0, |rgb| rgb[i]);
    json!({
        "R": classes.iter().map(|&c| colour(c, 0)).collect::<Vec<_>>(),
        "G": classes.iter().map(|&c| colour(c, 1)).collect::<Vec<_>>(),
        "B": classes.iter().map(|&c| colour(c, 2)).collect::<Vec<_>>(),
        "A": classes.iter().map(|&c| if c == 0 { 0 } else { 255 }).collect::<Vec<_>>(),
        "I": classes,
        "labels": (0..4)
            .map(|c| LEGEND.iter().find(|(t, _)| t.index() == c).map_or("", |(_, n)| *n))
            .collect::<Vec<_>>(),
    })
}

/// The JSON a viewer section carries: volumes (each `{"nii", "coding"}` of
/// [`embed`], cropped), labels of the selectors, scores.
fn case_json(case: &ViewerCase) -> Result<Value> {
    case.check()?;
    let crop = brain_box(case);
    let geometry = crop_geometry(&case.geometry, &crop);
    let spacing = case.geometry.spacing;
    let mut images = Vec::new();
    for (m, img) in Modality::ALL.iter().zip(&case.images) {
        if let Some(img) = img {
            let (q, s) = quantise_image(img, IMAGE_STEPS);
            let mut v = embed(&geometry, &crop, &q, s, Coding::Predictive)?;
            v["label"] = json!(m.label());
            images.push(v);
        }
    }
    let truth = match &case.truth {
        Some(t) => embed(&geometry, &crop, t, Uint8Scaling::IDENTITY, Coding::Plain)?,
        None => Value::Null,
    };
    let mut methods = Vec::new();
    for m in &case.methods {
        let mut segs = Vec::new();
        for s in &m.segmentations {
            let scores = match &case.truth {
                Some(t) => scores_json(&s.classes, t, spacing, &case.metrics),
                None => Value::Null,
            };
            let mut v = embed(
                &geometry,
                &crop,
                &s.classes,
                Uint8Scaling::IDENTITY,
                Coding::Plain,
            )?;
            v["label"] = json!(s.label);
            v["scores"] = scores;
            segs.push(v);
        }
        let mut attention = Vec::new();
        for a in &m.attention {
            let (q, s) = quantise_attention(a);
            let mut v = embed(&geometry, &crop, &q, s, Coding::Predictive)?;
            v["label"] = json!(a.label);
            attention.push(v);
        }
        methods.push(json!({
            "label": m.label,
            "segmentations": segs,
            "attention": attention,
            "attention_note": m.attention_note,
        }));
    }
    Ok(json!({
        "id": case.id,
        "dims": crop.dims,
        "crop_start": crop.start,
        "images": images,
        "truth": truth,
        "methods": methods,
        "lut": label_lut(),
    }))
}

/// `json` safe inside a `<script>` element (no `</` can close it).
fn script_json(json: &Value) -> String {
    json.to_string().replace("</", "<\\/")
}

/// The HTML of one case's viewer: its controls, canvas, score table and embedded data.
/// Needs [`viewer_scripts`] once in the same page (after every section).
pub fn viewer_section(case: &ViewerCase) -> Result<String> {
    let data = case_json(case)?;
    let mut s = String::new();
    let _ = write!(
        s,
        "<section class=\"a2f-viewer\" data-case=\"{id}\">\n<div class=\"a2f-controls\">\n\
         <label>Image <select data-control=\"image\"></select></label>\n\
         <label class=\"a2f-method\">Method <select data-control=\"method\"></select></label>\n\
         <label>Overlay <select data-control=\"overlay\"></select></label>\n\
         <label>Subset <select data-control=\"subset\"></select></label>\n\
         <label>Opacity <input data-control=\"opacity\" type=\"range\" min=\"0\" max=\"1\" step=\"0.05\" value=\"0.7\"></label>\n\
         <label>Attention <select data-control=\"attention\"></select></label>\n\
         <label>View <select data-control=\"view\">\
         <option value=\"multiplanar\">multiplanar + 3D</option><option value=\"axial\">axial</option>\
         <option value=\"coronal\">coronal</option><option value=\"sagittal\">sagittal</option>\
         <option value=\"render\">3D render</option></select></label>\n</div>\n\
         <div class=\"a2f-body\"><div class=\"a2f-canvas\"><canvas></canvas></div>\
         <div class=\"a2f-side\"><table class=\"a2f-scores\"></table><p class=\"a2f-note\"></p>\
         <p class=\"a2f-legend\">{legend}</p></div></div>\n\
         <script type=\"application/json\" class=\"a2f-data\">{json}</script>\n</section>\n",
        id = escape(&case.id),
        legend = legend_html(),
        json = script_json(&data),
    );
    Ok(s)
}

/// The class colours as swatches.
fn legend_html() -> String {
    LEGEND
        .iter()
        .filter_map(|(class, name)| {
            let [r, g, b] = class_colour(class.index() as u8)?;
            Some(format!(
                "<span class=\"a2f-swatch\" style=\"background:rgb({r},{g},{b})\"></span>{name}"
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The style, NiiVue's bundle with its licence notice, and the viewer script: once per
/// page, after the viewer sections.
pub fn viewer_scripts() -> String {
    format!(
        "<style>\n{CSS}</style>\n<p class=\"a2f-credit\">Viewer: NiiVue {NIIVUE_VERSION} \
         (BSD-2-Clause licence, reproduced in this page's source).</p>\n\
         <!--\nNiiVue {NIIVUE_VERSION} (npm @niivue/niivue, dist/niivue.umd.js), embedded below:\n\
         {license}-->\n<script>\n{niivue}\n</script>\n<script>\n{VIEWER_JS}</script>\n",
        license = NIIVUE_LICENSE.replace("--", "- -"),
        niivue = niivue_script(),
    )
}

/// Styles of the viewer sections.
const CSS: &str = ".a2f-viewer { margin: 1em 0; }\n\
.a2f-controls label { margin-right: 0.8em; white-space: nowrap; }\n\
.a2f-body { display: flex; gap: 1em; align-items: flex-start; }\n\
.a2f-canvas { width: 720px; height: 540px; background: #000; flex: none; }\n\
.a2f-side { font-size: 0.9em; }\n\
.a2f-swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.2em 0 0.6em; vertical-align: middle; }\n\
.a2f-credit { color: #555; font-size: 0.8em; }\n";

/// A whole page showing `case` (the output of `a2fseg view`).
pub fn case_page(case: &ViewerCase) -> Result<String> {
    let section = viewer_section(case)?;
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>body {{ font-family: sans-serif; margin: 1em; color: #222; }} \
         table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #bbb; padding: 0.2em 0.5em; }}\
         </style>\n</head>\n<body>\n<h1>{title}</h1>\n{section}{scripts}</body>\n</html>\n",
        title = escape(&format!("Case {}", case.id)),
        scripts = viewer_scripts(),
    ))
}

/// A model's predictions of a case (from [`crate::infer::Predictor::predict_subsets`]) for a
/// viewer: the label maps, and the attention maps of the largest subset that has them.
pub fn predictions_method(label: &str, predictions: Vec<(Subset, Prediction)>) -> ViewerMethod {
    let attention = predictions
        .iter()
        .filter(|(_, p)| !p.attention.is_empty())
        .max_by_key(|(s, _)| s.len())
        .map(|(s, p)| (*s, p.attention_full()));
    let classes = predictions
        .into_iter()
        .map(|(s, p)| (s, p.classes))
        .collect();
    model_method(label, classes, attention)
}

/// The attention maps of one subset, per modality.
pub type SubsetAttention = (Subset, Vec<(Modality, Grid<f32>)>);

/// The predictions of one model for a viewer: each of `predictions` (in the paper's subset
/// order) and the attention maps `(subset, per modality)` of one subset.
pub fn model_method(
    label: &str,
    mut predictions: Vec<(Subset, Grid<u8>)>,
    attention: Option<SubsetAttention>,
) -> ViewerMethod {
    predictions.sort_by_key(|(s, _)| *s);
    let (attention, attention_note) = match attention {
        Some((subset, maps)) if !maps.is_empty() => (
            maps.into_iter()
                .map(|(m, weights)| AttentionMap {
                    label: m.label().to_string(),
                    weights,
                    fused: subset.len(),
                })
                .collect(),
            format!(
                "Attention: the adaptive fusion's weight of each modality with {} available; \
                 coloured where it exceeds an equal share (1/{}).",
                subset.describe(),
                subset.len()
            ),
        ),
        _ => (Vec::new(), String::new()),
    };
    ViewerMethod {
        label: label.to_string(),
        segmentations: predictions
            .into_iter()
            .map(|(s, c)| Segmentation::of_subset(s, c))
            .collect(),
        attention,
        attention_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    use crate::report::viewer_volumes::tests::geometry;
    use crate::volume::read_volume;

    /// A 20×16×12 case: a brain block [4,16)×[3,13)×[2,10) of rising intensity, a tumour
    /// [8,11)×[6,9)×[4,7) (edema, core of enhancing tumour).
    fn case() -> ViewerCase {
        let dims = [20, 16, 12];
        let mut img = Grid::<f32>::zeros(dims);
        let mut truth = Grid::<u8>::zeros(dims);
        for z in 0..12 {
            for y in 0..16 {
                for x in 0..20 {
                    if (4..16).contains(&x) && (3..13).contains(&y) && (2..10).contains(&z) {
                        img.set(x, y, z, 100.0 + x as f32);
                    }
                    if (8..11).contains(&x) && (6..9).contains(&y) && (4..7).contains(&z) {
                        truth.set(x, y, z, if x == 9 && y == 7 { 3 } else { 2 });
                    }
                }
            }
        }
        let mut pred = truth.clone();
        pred.set(8, 6, 4, 0);
        ViewerCase {
            id: "c1".into(),
            geometry: geometry(dims),
            images: [Some(img.clone()), None, None, Some(img)],
            truth: Some(truth.clone()),
            methods: vec![model_method(
                "m",
                vec![(Subset::FULL, truth), (Subset::from_bits(1), pred)],
                None,
            )],
            metrics: MetricOptions::default(),
        }
    }

    #[test]
    fn brain_box_covers_images_and_labels_with_a_margin() {
        let mut c = case();
        assert_eq!(
            brain_box(&c),
            CropBox {
                start: [2, 1, 0],
                dims: [16, 14, 12]
            }
        );
        // A label outside the images grows the box; the grid's edge clips it.
        c.truth.as_mut().unwrap().set(19, 15, 11, 2);
        let b = brain_box(&c);
        assert_eq!(b.start, [2, 1, 0]);
        assert_eq!(b.dims, [18, 15, 12]);
    }

    #[test]
    fn embedded_volumes_are_cropped_nifti_that_read_back() {
        let c = case();
        let data = case_json(&c).unwrap();
        assert_eq!(data["dims"], json!([16, 14, 12]));
        assert_eq!(data["images"].as_array().unwrap().len(), 2);
        let b64 = base64::engine::general_purpose::STANDARD;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.nii.gz");
        // Label maps plain, images and attention maps predictively coded.
        assert_eq!(data["truth"]["coding"], "plain");
        assert_eq!(data["images"][0]["coding"], "predictive");
        let truth = data["truth"]["nii"].as_str().unwrap();
        std::fs::write(&p, b64.decode(truth).unwrap()).unwrap();
        let v = read_volume(&p).unwrap();
        assert_eq!(v.geometry.dims, [16, 14, 12]);
        let crop = brain_box(&c);
        assert_eq!(
            v.channels[0],
            crop.crop(c.truth.as_ref().unwrap()).map(f32::from)
        );
        // Subsets in the paper's order, with the scores of each against the truth.
        let segs = data["methods"][0]["segmentations"].as_array().unwrap();
        assert_eq!(segs[0]["label"], "○○○● FLAIR");
        assert_eq!(segs[1]["label"], "●●●● T1+T1c+T2+FLAIR");
        assert_eq!(segs[1]["scores"][0]["dice"], json!(100.0));
        let dice = segs[0]["scores"][0]["dice"].as_f64().unwrap();
        assert!(dice < 100.0 && dice > 95.0, "{dice}");
    }

    #[test]
    fn page_embeds_the_bundle_once_and_refuses_mismatched_grids() {
        let c = case();
        let page = case_page(&c).unwrap();
        assert_eq!(page.matches(&niivue_script()).count(), 1);
        // The bundle is unchanged but for one escaped comma in a string literal; the page
        // has no PNG data URI of its own.
        assert_eq!(niivue_script().len(), NIIVUE_JS.len() + 3);
        assert_eq!(page.matches("data:image/png;base64,").count(), 0);
        assert!(page.contains("BSD 2-Clause License"));
        assert!(page.contains(&format!("NiiVue {NIIVUE_VERSION}")));
        // The bundle dominates; the 20×16×12 case adds a few kilobytes.
        assert!(page.len() < NIIVUE_JS.len() + 40_000, "{}", page.len());
        // The data, NiiVue and the viewer script (the bundle quotes the tag itself).
        assert_eq!(
            page.matches("<script").count(),
            3 + NIIVUE_JS.matches("<script").count()
        );
        let mut bad = c.clone();
        bad.methods[0].segmentations[0].classes = Grid::zeros([2, 2, 2]);
        let e = format!("{:#}", case_page(&bad).unwrap_err());
        assert!(e.contains("○○○● FLAIR") && e.contains("dims"), "{e}");
        let mut none = c;
        none.images = [None, None, None, None];
        assert!(case_page(&none).is_err());
    }

    #[test]
    fn label_colours_are_the_figures_colours() {
        let lut = label_lut();
        for c in 1..4u8 {
            let rgb = class_colour(c).unwrap();
            let i = c as usize;
            assert_eq!(
                [&lut["R"][i], &lut["G"][i], &lut["B"][i]],
                rgb.map(|v| json!(v)).each_ref()
            );
        }
        assert_eq!(lut["A"][0], 0);
    }
}
