//! Training batches, prepared ahead of the model on worker threads.
//!
//! A batch is a pure function of `(seed, epoch, iteration)` ([`make_batch`]): the modality
//! subset, the cases, the patch positions and every augmentation come from random streams
//! keyed by those coordinates. The [`Loader`] hands iteration `i` to worker `i mod W`, each
//! worker sending into its own bounded channel, and the consumer reads the channels in turn:
//! batches arrive in iteration order and are bit-identical whatever the number of workers
//! or the thread timing, while at most `prefetch` batches per worker wait in memory.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::Result;
use rand::RngExt;

use super::augment::{self, AugmentConfig};
use super::dropout::{self, ModalityDropout, SubsetDraw};
use super::rng;
use super::sampler::{self, TrainCase};
use crate::modality::{Modality, Subset};

/// Where batches get their training cases: all in memory (`Vec<TrainCase>`), or read on
/// demand ([`super::store::LazyCases`]). Only the modalities of every case are needed
/// up front; a case's data is asked for when a batch item uses it.
pub trait CaseSource: Send + Sync {
    /// Number of training cases.
    fn len(&self) -> usize;
    /// Whether there is no case.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The modalities case `index` has.
    fn available(&self, index: usize) -> Subset;
    /// Case `index`.
    fn case(&self, index: usize) -> Result<CaseRef<'_>>;
}

/// A training case lent by a [`CaseSource`].
pub enum CaseRef<'a> {
    /// Held by the source.
    Borrowed(&'a TrainCase),
    /// Shared with the source's cache of recently used cases.
    Shared(Arc<TrainCase>),
}

impl Deref for CaseRef<'_> {
    type Target = TrainCase;

    fn deref(&self) -> &TrainCase {
        match self {
            CaseRef::Borrowed(c) => c,
            CaseRef::Shared(c) => c,
        }
    }
}

impl CaseSource for Vec<TrainCase> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn available(&self, index: usize) -> Subset {
        self[index].available()
    }
    fn case(&self, index: usize) -> Result<CaseRef<'_>> {
        Ok(CaseRef::Borrowed(&self[index]))
    }
}

/// What a batch is made from: the cases and the sampling settings.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    /// Run seed.
    pub seed: u64,
    /// Patches per batch.
    pub batch_size: usize,
    /// Patch size `[x, y, z]`.
    pub patch: [usize; 3],
    /// Share of patches centred on a tumour voxel.
    pub foreground_fraction: f64,
    /// Modality dropout mode.
    pub dropout: ModalityDropout,
    /// One subset per batch or per sample.
    pub subset_draw: SubsetDraw,
    /// Augmentation settings.
    pub augment: AugmentConfig,
    /// Load every modality the batch's cases share, not only the drawn subset (for a
    /// network whose loss needs the hidden modalities too:
    /// [`crate::model::Network::trains_on_all_modalities`]).
    pub all_modalities: bool,
}

/// One training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Epoch (from 0).
    pub epoch: usize,
    /// Iteration within the epoch (from 0).
    pub iteration: usize,
    /// The modalities this step trains on: the union of [`Batch::sample_subsets`].
    pub subset: Subset,
    /// Each sample's own subset (all equal to `subset` with [`SubsetDraw::Batch`]).
    pub sample_subsets: Vec<Subset>,
    /// Per modality loaded (canonical order): `[B, 1, D, H, W]` voxels, C order. Those of
    /// `subset`, or with [`BatchSpec::all_modalities`] every modality the batch's cases
    /// share (a superset of `subset`). Each modality's patch is the same whichever others
    /// are loaded.
    pub images: Vec<(Modality, Vec<f32>)>,
    /// Class maps `[B, D, H, W]` (TumourClass indices).
    pub classes: Vec<u8>,
    /// Index of each item's case in the training list.
    pub cases: Vec<usize>,
    /// How many patches were centred on tumour.
    pub foreground_patches: usize,
    /// Batch size B.
    pub batch_size: usize,
    /// Patch size `[x, y, z]`.
    pub patch: [usize; 3],
}

impl Batch {
    /// The tensor shape of the images: `[B, 1, D, H, W]` = `[B, 1, z, y, x]`.
    pub fn image_shape(&self) -> [usize; 5] {
        [
            self.batch_size,
            1,
            self.patch[2],
            self.patch[1],
            self.patch[0],
        ]
    }

    /// The tensor shape of the class maps: `[B, D, H, W]`.
    pub fn class_shape(&self) -> [usize; 4] {
        [self.batch_size, self.patch[2], self.patch[1], self.patch[0]]
    }
}

/// Builds the batch of iteration `iteration` of epoch `epoch`.
///
/// Each item draws its case first from its stream `(PATCH, epoch, iteration, item)`. One
/// subset serves the whole batch, so the cases must share a modality: an item whose case
/// shares none with the earlier items' cases is given another case, drawn uniformly among
/// those that do (stream `(COMPATIBLE, epoch, iteration, item)`). The dropout subset is then
/// restricted to the modalities all the batch's cases have ([`dropout::restrict`]). With
/// complete cases neither step changes anything.
pub fn make_batch<S: CaseSource + ?Sized>(
    cases: &S,
    spec: &BatchSpec,
    epoch: usize,
    iteration: usize,
) -> Result<Batch> {
    let (e, it) = (epoch as u64, iteration as u64);
    let mut shared = Subset::FULL;
    let mut items = Vec::with_capacity(spec.batch_size);
    for item in 0..spec.batch_size {
        let mut r = rng::stream(spec.seed, &[rng::PATCH, e, it, item as u64]);
        let mut case_index = r.random_range(0..cases.len());
        let overlaps = |i: usize| cases.available(i).bits() & shared.bits() != 0;
        if !overlaps(case_index) {
            let compatible: Vec<usize> = (0..cases.len()).filter(|&i| overlaps(i)).collect();
            let mut rc = rng::stream(spec.seed, &[rng::COMPATIBLE, e, it, item as u64]);
            case_index = compatible[rc.random_range(0..compatible.len())];
        }
        shared = Subset::from_bits(shared.bits() & cases.available(case_index).bits());
        items.push((r, case_index));
    }
    let sample_subsets: Vec<Subset> = match spec.subset_draw {
        SubsetDraw::Batch => {
            let sampled = spec.dropout.sample(spec.seed, epoch, iteration);
            let subset = dropout::restrict(sampled, shared, spec.seed, epoch, iteration);
            vec![subset; spec.batch_size]
        }
        SubsetDraw::Sample => (0..spec.batch_size)
            .map(|item| {
                let sampled = spec.dropout.sample_item(spec.seed, epoch, iteration, item);
                let kept = Subset::from_bits(sampled.bits() & shared.bits());
                if kept.is_empty() {
                    dropout::restrict(sampled, shared, spec.seed, epoch, iteration)
                } else {
                    kept
                }
            })
            .collect(),
    };
    let subset = Subset::from_bits(sample_subsets.iter().fold(0, |acc, s| acc | s.bits()));
    let loaded = if spec.all_modalities { shared } else { subset };
    let n = spec.patch.iter().product::<usize>();
    let mut images: Vec<(Modality, Vec<f32>)> = loaded
        .modalities()
        .map(|m| (m, Vec::with_capacity(n * spec.batch_size)))
        .collect();
    let mut classes = Vec::with_capacity(n * spec.batch_size);
    let mut foreground_patches = 0;
    let case_indices: Vec<usize> = items.iter().map(|(_, i)| *i).collect();
    for (item, (mut r, case_index)) in items.into_iter().enumerate() {
        let case = cases.case(case_index)?;
        let plan = sampler::plan_patch(
            &mut r,
            case_index,
            &case,
            spec.patch,
            spec.foreground_fraction,
        );
        foreground_patches += plan.foreground as usize;
        let transform = augment::sample_spatial(&mut r, &spec.augment);
        let blur_patch = r.random_bool(spec.augment.blur_p);
        let patch = sampler::extract_patch(&case, &plan, spec.patch, &transform, loaded);
        for ((m, out), (pm, mut img)) in images.iter_mut().zip(patch.images) {
            debug_assert_eq!(*m, pm);
            let mut ri = rng::stream(
                spec.seed,
                &[rng::INTENSITY, e, it, item as u64, m.index() as u64],
            );
            augment::augment_intensity(&mut ri, &spec.augment, &mut img, spec.patch, blur_patch);
            out.extend_from_slice(&img);
        }
        classes.extend_from_slice(&patch.classes);
    }
    Ok(Batch {
        epoch,
        iteration,
        subset,
        sample_subsets,
        images,
        classes,
        cases: case_indices,
        foreground_patches,
        batch_size: spec.batch_size,
        patch: spec.patch,
    })
}

/// Prepares the batches of iterations `start..end` of one epoch on worker threads and
/// yields them in order (an [`Iterator`]; a case that cannot be read is an error item).
/// Dropping it stops the workers.
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    end: usize,
}

impl Loader {
    /// Starts `workers` threads (at least 1) preparing iterations `start..end` of `epoch`,
    /// each keeping at most `prefetch` (at least 1) finished batches waiting.
    pub fn new(
        cases: Arc<dyn CaseSource>,
        spec: Arc<BatchSpec>,
        epoch: usize,
        start: usize,
        end: usize,
        workers: usize,
        prefetch: usize,
    ) -> Loader {
        let workers = workers.max(1).min(end.saturating_sub(start).max(1));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx): (SyncSender<Result<Batch>>, Receiver<Result<Batch>>) =
                sync_channel(prefetch.max(1));
            let (cases, spec) = (Arc::clone(&cases), Arc::clone(&spec));
            let handle = std::thread::Builder::new()
                .name(format!("a2fseg-loader-{w}"))
                .spawn(move || {
                    let mut it = start + w;
                    while it < end {
                        let batch = make_batch(&*cases, &spec, epoch, it);
                        if tx.send(batch).is_err() {
                            return; // the consumer is gone
                        }
                        it += workers;
                    }
                })
                .expect("cannot start a data-loading thread");
            receivers.push(rx);
            handles.push(handle);
        }
        Loader {
            receivers,
            handles,
            next: start,
            end,
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.end {
            return None;
        }
        let w = self.next % self.receivers.len();
        // Iteration `next` is the k-th of worker `w`, which sends them in order.
        let batch = self.receivers[w]
            .recv()
            .expect("a data-loading thread stopped early (it panicked)");
        if let Ok(b) = &batch {
            debug_assert_eq!(b.iteration, self.next);
        }
        self.next += 1;
        Some(batch)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channels makes blocked workers return.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Grid;

    fn cases() -> Vec<TrainCase> {
        (0..3)
            .map(|k| {
                let dims = [10 + k, 9, 8];
                let mut classes = Grid::<u8>::zeros(dims);
                classes.set(5, 4, 3, 3);
                classes.set(5, 5, 3, 1);
                let images = std::array::from_fn(|m| {
                    let mut g = Grid::<f32>::zeros(dims);
                    for (i, v) in g.data_mut().iter_mut().enumerate() {
                        *v = ((i * (m + 3) + k) % 17) as f32 / 8.0 - 1.0;
                    }
                    g
                });
                TrainCase::new(format!("case{k}"), images, classes).unwrap()
            })
            .collect()
    }

    fn spec() -> BatchSpec {
        BatchSpec {
            seed: 17,
            batch_size: 2,
            patch: [6, 5, 4],
            foreground_fraction: 0.33,
            dropout: ModalityDropout::Paper,
            subset_draw: SubsetDraw::Batch,
            augment: AugmentConfig {
                rotation_p: 0.5,
                scale_p: 0.5,
                noise_p: 0.5,
                blur_p: 0.5,
                ..Default::default()
            },
            all_modalities: false,
        }
    }

    #[test]
    fn batches_have_the_documented_shapes() {
        let b = make_batch(&cases(), &spec(), 1, 0).unwrap();
        assert_eq!(b.subset, Subset::FULL); // odd epoch in paper mode
        assert_eq!(b.images.len(), 4);
        for (_, img) in &b.images {
            assert_eq!(img.len(), b.image_shape().iter().product::<usize>());
        }
        assert_eq!(b.classes.len(), 2 * 6 * 5 * 4);
        assert!(b.classes.iter().all(|&c| c <= 3));
    }

    #[test]
    fn loader_yields_the_same_batches_in_order_for_any_worker_count() {
        let cases = Arc::new(cases());
        let spec = Arc::new(spec());
        let direct: Vec<Batch> = (0..7)
            .map(|i| make_batch(&*cases, &spec, 2, i).unwrap())
            .collect();
        for workers in [1, 2, 3, 5] {
            let got: Vec<Batch> = Loader::new(cases.clone(), spec.clone(), 2, 0, 7, workers, 1)
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, direct, "workers = {workers}");
        }
        // A resumed epoch starting at iteration 4 continues with the same batches.
        let tail: Vec<Batch> = Loader::new(cases.clone(), spec.clone(), 2, 4, 7, 2, 2)
            .map(Result::unwrap)
            .collect();
        assert_eq!(tail, direct[4..]);
    }

    #[test]
    fn cases_with_missing_modalities_share_one_available_subset_per_batch() {
        // Case k < 3 lacks modality k; case 3 has only T1c; case 4 only FLAIR.
        let mut cs = cases();
        cs.push(cases()[0].clone());
        cs.push(cases()[1].clone());
        for (k, c) in cs.iter_mut().enumerate() {
            match k {
                0..3 => c.images[k] = None,
                3 => c.images = [None, c.images[1].take(), None, None],
                _ => c.images = [None, None, None, c.images[3].take()],
            }
        }
        let mut spec = spec();
        spec.batch_size = 3;
        let mut used = std::collections::BTreeSet::new();
        for mode in [
            ModalityDropout::Paper,
            ModalityDropout::Uniform,
            ModalityDropout::Full,
        ] {
            spec.dropout = mode;
            for epoch in 0..2 {
                for it in 0..80 {
                    let b = make_batch(&cs, &spec, epoch, it).unwrap();
                    assert_eq!(b, make_batch(&cs, &spec, epoch, it).unwrap());
                    let shared = b.cases.iter().fold(Subset::FULL, |acc, &i| {
                        Subset::from_bits(acc.bits() & cs[i].available().bits())
                    });
                    assert!(!b.subset.is_empty() && b.subset.is_subset_of(shared));
                    if mode == ModalityDropout::Full {
                        assert_eq!(b.subset, shared);
                    }
                    assert_eq!(b.images.len(), b.subset.len());
                    for (m, img) in &b.images {
                        assert!(b.subset.contains(*m));
                        assert_eq!(img.len(), 3 * 6 * 5 * 4);
                    }
                    used.extend(b.cases.iter().copied());
                }
            }
        }
        // The single-modality cases 3 and 4 still train.
        assert_eq!(used.len(), 5);
    }

    #[test]
    fn all_modalities_adds_the_hidden_ones_and_changes_no_patch() {
        let cs = cases();
        let subset_only = spec();
        let all = BatchSpec {
            all_modalities: true,
            ..spec()
        };
        for epoch in 0..2 {
            for it in 0..30 {
                let a = make_batch(&cs, &subset_only, epoch, it).unwrap();
                let b = make_batch(&cs, &all, epoch, it).unwrap();
                assert_eq!(a.subset, b.subset);
                assert_eq!(a.classes, b.classes);
                let shared = b.cases.iter().fold(Subset::FULL, |acc, &i| {
                    Subset::from_bits(acc.bits() & cs[i].available().bits())
                });
                let loaded: Vec<Modality> = b.images.iter().map(|(m, _)| *m).collect();
                assert_eq!(loaded, shared.modalities().collect::<Vec<_>>());
                for (m, img) in &a.images {
                    let same = b.images.iter().find(|(n, _)| n == m).unwrap();
                    assert_eq!(img, &same.1, "{m:?} differs when more modalities load");
                }
            }
        }
    }

    #[test]
    fn per_sample_draws_load_the_union_and_keep_each_samples_subset() {
        let cs = cases();
        let per_sample = BatchSpec {
            dropout: ModalityDropout::Uniform,
            subset_draw: SubsetDraw::Sample,
            ..spec()
        };
        let mut mixed = 0;
        for it in 0..30 {
            let b = make_batch(&cs, &per_sample, 0, it).unwrap();
            assert_eq!(b.sample_subsets.len(), 2);
            let union = b.sample_subsets[0].bits() | b.sample_subsets[1].bits();
            assert_eq!(b.subset.bits(), union);
            let loaded: Vec<Modality> = b.images.iter().map(|(m, _)| *m).collect();
            assert_eq!(loaded, b.subset.modalities().collect::<Vec<_>>());
            mixed += usize::from(b.sample_subsets[0] != b.sample_subsets[1]);
        }
        assert!(mixed > 20, "only {mixed} of 30 batches mix two subsets");
        let shared = make_batch(&cs, &spec(), 0, 3).unwrap();
        assert_eq!(shared.sample_subsets, vec![shared.subset; 2]);
    }

    #[test]
    fn complete_cases_keep_the_sampled_subset() {
        let cs = cases();
        let spec = spec();
        for it in 0..40 {
            assert_eq!(
                make_batch(&cs, &spec, 0, it).unwrap().subset,
                spec.dropout.sample(spec.seed, 0, it)
            );
        }
    }

    #[test]
    fn dropping_a_loader_early_stops_its_workers() {
        let cases = Arc::new(cases());
        let spec = Arc::new(spec());
        let mut l = Loader::new(cases, spec, 0, 0, 1000, 2, 1);
        assert!(l.next().is_some());
        drop(l); // must not hang
    }
}
