//! [`PerModality`]: one sub-network per modality, stored under the modality's key so that
//! tensor names read `…t1.…`, `…t1c.…`, `…t2.…`, `…flair.…`.

use burn::module::Module;

use crate::modality::Modality;

/// One module of type `M` per modality (A2FSeg's MSFEs, U-HVED's encoders and image
/// decoders), each with its own weights.
#[derive(Module, Debug)]
pub struct PerModality<M> {
    /// The module of T1.
    pub t1: M,
    /// The module of T1c.
    pub t1c: M,
    /// The module of T2.
    pub t2: M,
    /// The module of FLAIR.
    pub flair: M,
}

impl<M> PerModality<M> {
    /// Builds the four modules with `make`, in canonical order (T1, T1c, T2, FLAIR), so that
    /// a seeded device draws the same weights every time.
    pub fn new(mut make: impl FnMut(Modality) -> M) -> Self {
        PerModality {
            t1: make(Modality::T1),
            t1c: make(Modality::T1c),
            t2: make(Modality::T2),
            flair: make(Modality::Flair),
        }
    }

    /// The module of modality `m`.
    pub fn get(&self, m: Modality) -> &M {
        match m {
            Modality::T1 => &self.t1,
            Modality::T1c => &self.t1c,
            Modality::T2 => &self.t2,
            Modality::Flair => &self.flair,
        }
    }
}
