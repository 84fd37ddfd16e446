//! The contrast table: mean intensity of each tissue in each modality.
//!
//! Values are relative to white matter on T1 (= 1) and were chosen to follow the
//! appearance of real 1.5–3 T brain MRI as it is seen in BraTS:
//!
//! | tissue                 | T1   | T1c  | T2   | FLAIR |
//! |------------------------|------|------|------|-------|
//! | white matter           | 1.00 | 1.00 | 0.55 | 0.62  |
//! | cortical grey matter   | 0.72 | 0.75 | 0.82 | 0.82  |
//! | deep grey matter       | 0.82 | 0.84 | 0.70 | 0.74  |
//! | CSF                    | 0.28 | 0.30 | 1.55 | 0.16  |
//! | edema (ED)             | 0.74 | 0.76 | 1.15 | 1.20  |
//! | necrosis (NCR)         | 0.38 | 0.38 | 1.40 | 0.72  |
//! | non-enhancing core     | 0.62 | 0.64 | 1.12 | 1.08  |
//! | enhancing tumour (ET)  | 0.76 | 1.70 | 0.92 | 1.00  |
//! | choroid plexus         | 0.62 | 1.45 | 0.85 | 0.55  |
//! | white-matter lesion    | 0.86 | 0.88 | 1.02 | 1.12  |
//!
//! T1: WM > GM > CSF, edema slightly dark (close to GM), necrosis dark. T1c: as T1 except
//! that the enhancing rim and the choroid plexus light up. T2: fluid bright (CSF and
//! necrosis overlap with edema). FLAIR: CSF suppressed, edema brightest, the core
//! moderately bright, necrosis darker than its rim. White-matter lesions (small vessel
//! disease) and the choroid plexus are unlabelled look-alikes that keep a pure intensity
//! threshold from segmenting the tumour.

/// Tissues with their own row of contrasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tissue {
    /// White matter.
    WhiteMatter = 0,
    /// Cortical grey matter.
    GreyMatter = 1,
    /// Deep grey nuclei (basal ganglia, thalamus).
    DeepGreyMatter = 2,
    /// Cerebrospinal fluid (sulci, fissure, ventricles).
    Csf = 3,
    /// Peritumoral edema.
    Edema = 4,
    /// Necrosis (fluid-filled, label NCR).
    Necrosis = 5,
    /// Solid non-enhancing tumour core (label NCR/NET).
    NonEnhancing = 6,
    /// Enhancing tumour (label ET).
    Enhancing = 7,
    /// Choroid plexus inside the ventricles: enhances on T1c, label background.
    ChoroidPlexus = 8,
    /// Small white-matter hyperintensities: bright on T2/FLAIR, label background.
    WhiteMatterLesion = 9,
}

impl Tissue {
    /// Every tissue, in table order.
    pub const ALL: [Tissue; 10] = [
        Tissue::WhiteMatter,
        Tissue::GreyMatter,
        Tissue::DeepGreyMatter,
        Tissue::Csf,
        Tissue::Edema,
        Tissue::Necrosis,
        Tissue::NonEnhancing,
        Tissue::Enhancing,
        Tissue::ChoroidPlexus,
        Tissue::WhiteMatterLesion,
    ];

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Tissue::WhiteMatter => "white matter",
            Tissue::GreyMatter => "cortical grey matter",
            Tissue::DeepGreyMatter => "deep grey matter",
            Tissue::Csf => "CSF",
            Tissue::Edema => "edema",
            Tissue::Necrosis => "necrosis",
            Tissue::NonEnhancing => "non-enhancing core",
            Tissue::Enhancing => "enhancing tumour",
            Tissue::ChoroidPlexus => "choroid plexus",
            Tissue::WhiteMatterLesion => "white-matter lesion",
        }
    }

    /// Mean relative intensity in T1, T1c, T2, FLAIR.
    pub fn contrast(self) -> [f64; 4] {
        CONTRAST[self as usize]
    }
}

/// Rows in [`Tissue::ALL`] order, columns T1, T1c, T2, FLAIR.
const CONTRAST: [[f64; 4]; 10] = [
    [1.00, 1.00, 0.55, 0.62],
    [0.72, 0.75, 0.82, 0.82],
    [0.82, 0.84, 0.70, 0.74],
    [0.28, 0.30, 1.55, 0.16],
    [0.74, 0.76, 1.15, 1.20],
    [0.38, 0.38, 1.40, 0.72],
    [0.62, 0.64, 1.12, 1.08],
    [0.76, 1.70, 0.92, 1.00],
    [0.62, 1.45, 0.85, 0.55],
    [0.86, 0.88, 1.02, 1.12],
];
