//! Reports and figures: the paper's Table 1 and Table 2, Fig. 2 (segmentations for growing
//! modality subsets), Fig. 3 (attention per modality and region) and training curves, as
//! PNG files, `report.md` and a self-contained `report.html`.
//!
//! Everything is rebuilt from files on disk (`summary.json` and `attention.json` from
//! `a2fseg evaluate`, `log.csv` from `a2fseg train`) by [`document::write_report`];
//! [`slices::slice_panel`] draws the Fig.-2 panel from in-memory grids. [`scores`] and
//! [`attention`] own the formats of `summary.json` and `attention.json`; [`tables::table1`]
//! is the one Table-1 renderer (also used by `evaluate`'s `summary.md`) and
//! [`charts::training_curves`] the one training-curve figure (also `train`'s
//! `progress.png`).

pub mod attention;
pub mod charts;
pub mod document;
pub mod fonts;
pub mod inputs;
pub mod scores;
pub mod slices;
pub mod tables;
pub mod view_files;
pub mod viewer;
pub mod viewer_volumes;

pub use attention::{Attention, AttentionFile, ModalityWeights, RegionWeights};
pub use document::{ModelFiles, ModelReport, ReportFiles, ReportInput, write_report};
pub use inputs::TrainLog;
pub use scores::{RegionScore, ScoreTable, SubsetScores};
