//! Reports and figures: the paper's Table 1 and Table 2, Fig. 2 (segmentations for growing
//! modality subsets), Fig. 3 (attention per modality and region) and training curves, as
//! PNG files, `report.md` and a self-contained `report.html`.
//!
//! Everything is rebuilt from files on disk (`summary.json` and `attention.json` from
//! `a2fseg evaluate`, `log.csv` from `a2fseg train`) by [`document::write_report`];
//! [`slices::slice_panel`] draws the Fig.-2 panel from in-memory grids.

pub mod charts;
pub mod document;
pub mod fonts;
pub mod inputs;
pub mod slices;
pub mod tables;

pub use document::{ModelFiles, ModelReport, ReportFiles, ReportInput, write_report};
pub use inputs::{Attention, RegionScore, RegionScores, Summary, TrainLog};
