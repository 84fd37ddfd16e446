//! The phantoms' contrasts: a fixed table for the healthy tissues, and per-case draws for
//! the tumour's tissues.
//!
//! **Healthy tissues.** Mean intensity relative to white matter on T1 (= 1), following the
//! appearance of real 1.5–3 T brain MRI as seen in BraTS; each case multiplies every cell by
//! its own factor in 0.92–1.08:
//!
//! | tissue                 | T1   | T1c  | T2   | FLAIR |
//! |------------------------|------|------|------|-------|
//! | white matter           | 1.00 | 1.00 | 0.55 | 0.62  |
//! | cortical grey matter   | 0.72 | 0.75 | 0.82 | 0.82  |
//! | deep grey matter       | 0.82 | 0.84 | 0.70 | 0.74  |
//! | CSF                    | 0.28 | 0.30 | 1.55 | 0.16  |
//! | choroid plexus         | 0.62 | 1.45 | 0.85 | 0.55  |
//! | white-matter lesion    | 0.86 | 0.88 | 1.02 | 1.12  |
//!
//! White-matter lesions (small vessel disease) and the choroid plexus are unlabelled
//! look-alikes that keep a pure intensity threshold from segmenting the tumour.
//!
//! **Tumour tissues** (edema, necrosis, solid non-enhancing tumour, enhancing tumour) are
//! drawn per case as z-scores, the unit in which the network sees them after its per-case
//! normalisation, and turned into intensities against the case's own brain
//! (`CaseModel::calibrate`). The distributions (`TumourZ::draw`) follow what real
//! skull-stripped BraTS cases show (the README's `dataset stats` table): mean z of each
//! labelled region and its spread across cases. Three facts of real glioma shape them:
//! - enhancing tumour is told from everything else by T1c alone; on T1 and FLAIR it looks
//!   like the edema around it (its z there is the edema's plus a small difference), on T2 it
//!   is a little darker than the edema next to it, so without T1c its rim can only be
//!   inferred from shape and a faint T2 ring;
//! - the tumour core (label 1: necrosis and non-enhancing tumour) is brighter than edema on
//!   T2 and FLAIR, and near the brain's mean on T1, with a wide spread;
//! - contrasts vary widely between cases (scanners, sequences, tumour biology), which is what
//!   makes real data harder than a fixed table; within a case the core's contrast follows the
//!   edema's (`CORE_EDEMA_CORRELATION`), as both are measured against the same brain with
//!   the same sequence.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Healthy tissues and look-alikes, each with a row of fixed contrasts.
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
    /// Choroid plexus inside the ventricles: enhances on T1c, label background.
    ChoroidPlexus = 4,
    /// Small white-matter hyperintensities: bright on T2/FLAIR, label background.
    WhiteMatterLesion = 5,
}

impl Tissue {
    /// Every tissue, in table order.
    pub const ALL: [Tissue; 6] = [
        Tissue::WhiteMatter,
        Tissue::GreyMatter,
        Tissue::DeepGreyMatter,
        Tissue::Csf,
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
const CONTRAST: [[f64; 4]; 6] = [
    [1.00, 1.00, 0.55, 0.62],
    [0.72, 0.75, 0.82, 0.82],
    [0.82, 0.84, 0.70, 0.74],
    [0.28, 0.30, 1.55, 0.16],
    [0.62, 1.45, 0.85, 0.55],
    [0.86, 0.88, 1.02, 1.12],
];

/// The tumour's tissues, whose contrasts are drawn per case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TumourTissue {
    /// Peritumoral edema (label ED).
    Edema = 0,
    /// Necrosis (label NCR).
    Necrosis = 1,
    /// Solid non-enhancing tumour (label NCR/NET).
    NonEnhancing = 2,
    /// Enhancing tumour (label ET).
    Enhancing = 3,
}

/// Mean and s.d. across cases of the edema's z-score, T1, T1c, T2, FLAIR (tissue level: the
/// labelled region's mean is a little lower, as edema fades towards its border).
const EDEMA_Z: [(f64, f64); 4] = [(-0.1, 0.62), (-0.55, 0.45), (1.05, 0.72), (2.7, 1.2)];

/// Mean and s.d. of the tumour core's z-score (necrosis and non-enhancing tumour share it,
/// each with its own small deviation, [`CORE_PART_SD`]).
const CORE_Z: [(f64, f64); 4] = [(-0.2, 1.2), (-0.5, 0.8), (2.25, 1.4), (2.85, 0.8)];

/// Correlation across cases, per modality, between the edema's and the core's z-scores.
/// Both are z-scores against the same brain, acquired by the same sequence, so a case whose
/// brain is homogeneous (small s.d.) or whose sequence is heavily T2-weighted shifts both
/// the same way; drawn independently (generator version 3), the core came out darker than
/// the edema on T2 in about a quarter of the cases, where in glioma the fluid of necrosis
/// and the dense tumour keep it brighter (+1.43 against +0.57 in real cases' means). At 0.75
/// (with the core's T2 draw at 2.25 ± 1.4, so that the labelled core keeps the real mean and
/// at least the real spread across cases) it is darker in about one case in eleven; each
/// tissue's own distribution is unchanged by the correlation.
const CORE_EDEMA_CORRELATION: f64 = 0.75;

/// S.d. of necrosis' and non-enhancing tumour's own deviation from the core's draw.
const CORE_PART_SD: f64 = 0.3;

/// Enhancing tumour on T1c: mean and s.d. of its z-score.
const ENHANCING_T1C_Z: (f64, f64) = (2.7, 1.15);

/// Enhancing tumour on T1, T2 and FLAIR (the T1c cell unused): mean and s.d. of its z-score
/// minus the edema's. The edema next to the rim is at full strength, brighter than the
/// labelled edema's mean, which fades towards its border; against it the cellular rim is
/// darker on T2 and a little darker on FLAIR, as in glioblastoma (a T2-dark ring between
/// bright edema and bright necrosis), while the labelled regions' means stay those of real
/// cases (ET about as bright as edema on T2 and FLAIR).
const ENHANCING_MINUS_EDEMA_Z: [(f64, f64); 4] =
    [(-0.05, 0.72), (0.0, 0.0), (-0.6, 0.5), (-0.3, 1.0)];

/// Draws are kept within this many s.d. of their mean.
const CLIP_SD: f64 = 2.2;

/// Lowest z-score of every tumour tissue on FLAIR. Real tumour tissue is always clearly
/// brighter than the brain on FLAIR (labelled regions +1.96 to +2.61 on average, one s.d.
/// below that still above +1.2); at the former floor of 0.7 the tumour was as bright as the
/// cortex, and a FLAIR-only reader had nothing to go by.
const FLAIR_FLOOR: f64 = 1.0;

/// Lowest z-score of every tumour tissue on T2 (never darker than the brain's mean).
const T2_FLOOR: f64 = 0.0;

/// One case's tumour contrasts as z-scores over its brain, per [`TumourTissue`], each
/// `[T1, T1c, T2, FLAIR]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TumourZ(pub [[f64; 4]; 4]);

/// A standard normal number (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A draw of `N(mean, sd)` kept within [`CLIP_SD`] s.d.
fn draw(rng: &mut ChaCha8Rng, dist: (f64, f64)) -> f64 {
    at(dist, normal(rng))
}

/// `mean + sd · u` for a standard normal `u`, kept within [`CLIP_SD`] s.d.
fn at((mean, sd): (f64, f64), u: f64) -> f64 {
    mean + sd * u.clamp(-CLIP_SD, CLIP_SD)
}

impl TumourZ {
    /// Draws one case's tumour contrasts. Orderings that hold in every real glioma are
    /// enforced: edema and core are brighter than the brain on FLAIR (z ≥ [`FLAIR_FLOOR`])
    /// and T2 (z ≥ [`T2_FLOOR`]); enhancing tumour is clearly brighter than the brain
    /// (z ≥ 0.9) and than the core (by ≥ 0.9) on T1c.
    pub(crate) fn draw(rng: &mut ChaCha8Rng) -> Self {
        let edema_u: [f64; 4] = std::array::from_fn(|_| normal(rng));
        let core_v: [f64; 4] = std::array::from_fn(|_| normal(rng));
        let edema: [f64; 4] = std::array::from_fn(|m| at(EDEMA_Z[m], edema_u[m]));
        let core: [f64; 4] = std::array::from_fn(|m| {
            let u = CORE_EDEMA_CORRELATION * edema_u[m]
                + (1.0 - CORE_EDEMA_CORRELATION.powi(2)).sqrt() * core_v[m];
            at(CORE_Z[m], u)
        });
        let mut parts = [[0.0; 4]; 2];
        for part in &mut parts {
            for m in 0..4 {
                part[m] = core[m] + CORE_PART_SD * normal(rng).clamp(-CLIP_SD, CLIP_SD);
            }
        }
        let [mut necrosis, mut non_enhancing] = parts;
        let mut enhancing: [f64; 4] =
            std::array::from_fn(|m| edema[m] + draw(rng, ENHANCING_MINUS_EDEMA_Z[m]));
        enhancing[1] = draw(rng, ENHANCING_T1C_Z).max(0.9);
        let mut edema = edema;
        for t in [
            &mut edema,
            &mut necrosis,
            &mut non_enhancing,
            &mut enhancing,
        ] {
            t[2] = t[2].max(T2_FLOOR);
            t[3] = t[3].max(FLAIR_FLOOR);
        }
        for t in [&mut necrosis, &mut non_enhancing] {
            t[1] = t[1].min(enhancing[1] - 0.9);
        }
        TumourZ([edema, necrosis, non_enhancing, enhancing])
    }

    /// The z-scores of `tissue`, `[T1, T1c, T2, FLAIR]`.
    #[cfg(test)]
    pub(crate) fn of(&self, tissue: TumourTissue) -> [f64; 4] {
        self.0[tissue as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tumour_draws_keep_the_orderings_and_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draws: Vec<TumourZ> = (0..400).map(|_| TumourZ::draw(&mut rng)).collect();
        for z in &draws {
            let et = z.of(TumourTissue::Enhancing);
            for t in [TumourTissue::Necrosis, TumourTissue::NonEnhancing] {
                assert!(z.of(t)[1] <= et[1] - 0.9 + 1e-12);
            }
            for t in 0..4 {
                assert!(z.0[t][3] >= FLAIR_FLOOR && z.0[t][2] >= T2_FLOOR);
            }
        }
        let n = draws.len() as f64;
        let col =
            |t: TumourTissue, m: usize| -> Vec<f64> { draws.iter().map(|z| z.of(t)[m]).collect() };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        let sd = |v: &[f64]| {
            let m = mean(v);
            (v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n).sqrt()
        };
        let corr = |a: &[f64], b: &[f64]| {
            let (ma, mb) = (mean(a), mean(b));
            let cov = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - ma) * (y - mb))
                .sum::<f64>()
                / n;
            cov / (sd(a) * sd(b))
        };
        // Enhancing tumour follows the edema on FLAIR: strongly correlated across cases.
        let (ed, et) = (col(TumourTissue::Edema, 3), col(TumourTissue::Enhancing, 3));
        assert!(corr(&ed, &et) > 0.6);
        // The core follows the edema within a case (same brain, same sequence), and stays
        // brighter than it on T2 in most cases.
        let (ed2, co2) = (col(TumourTissue::Edema, 2), col(TumourTissue::Necrosis, 2));
        let r2 = corr(&ed2, &co2);
        assert!(r2 > 0.6 && r2 < 0.9, "{r2}");
        let darker = ed2.iter().zip(&co2).filter(|(e, c)| c < e).count() as f64 / n;
        assert!(darker < 0.15, "{darker}");
        // The core on T1 spreads about as widely as in real cases (s.d. 0.85 there).
        let core_t1 = col(TumourTissue::Necrosis, 0);
        assert!(sd(&core_t1) > 0.85, "{}", sd(&core_t1));
    }
}
