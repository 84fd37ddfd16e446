//! The phases of a training run after [`super::prepare`]: [`Trainer::init_or_resume`] (the
//! model and optimiser, fresh or from `latest`), [`Trainer::epoch`] (the steps),
//! [`Trainer::end_epoch`] (validation, `log.csv`, best model, checkpoints) and
//! [`Trainer::finish`] (the post-processing decision). Every line the user sees goes through
//! the [`Sink`] as a [`TrainEvent`].

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::checkpoint::{self, Best, TrainState};
use super::events::{StartInfo, TrainEvent};
use super::loader::{BatchSpec, Loader};
use super::log::{self, LogRow, LossTerms};
use super::prepare::{Data, RunDir};
use super::step::{batch_tensors, build_optimizer, stable_param_ids, step};
use super::{TrainConfig, TrainOptions, TrainOutcome, ctrl_c_received, rng, schedule, validate};
use crate::infer::{Predictor, Tta, postprocess};
use crate::model::{self, Network};
use crate::progress::Sink;

/// A training run between its preparation and its end.
pub(super) struct Trainer<'a, N: Network> {
    opts: &'a TrainOptions,
    cfg: &'a TrainConfig,
    run: RunDir,
    data: Data,
    sink: Sink,
    /// The device of validation and post-processing.
    base_device: Device,
    /// `base_device` under autodiff: the device of the steps.
    device: Device,
    /// The model being trained; `None` only while a step has it (the optimiser consumes
    /// and returns it).
    model: Option<N>,
    optim: ModuleOptimizer,
    state: TrainState,
    spec: Arc<BatchSpec>,
    /// Steps done by this process (for [`TrainOptions::stop_after_steps`]).
    session_steps: u64,
}

/// When an epoch's clock started, and the seconds it had already run in an earlier session.
struct EpochClock {
    started: Instant,
    seconds_before: f64,
}

impl EpochClock {
    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }
}

impl<'a, N: Network> Trainer<'a, N> {
    /// The model, optimiser and state: from `latest` when resuming, else freshly initialised
    /// from the run seed. Saves `config.toml` and reports the start.
    pub fn init_or_resume(
        opts: &'a TrainOptions,
        run: RunDir,
        data: Data,
        sink: Sink,
        base_device: Device,
    ) -> Result<Trainer<'a, N>> {
        let cfg = &opts.config;
        let device = base_device.clone().autodiff();
        let (model, optim, state) = if opts.resume {
            let latest = run.latest();
            let saved = TrainConfig::load(&latest.join(checkpoint::TRAIN_CONFIG_FILE), None, None)?;
            if &saved != cfg {
                sink.emit(&TrainEvent::ConfigDiffers);
            }
            let (m, _) = model::load_model::<N>(&latest, &device)?;
            let m = stable_param_ids(m);
            let path = latest.join(checkpoint::OPTIMIZER_FILE);
            let o = build_optimizer(cfg)
                .load(&path)
                .map_err(|e| anyhow::anyhow!("{e:?}"))
                .with_context(|| format!("cannot read {}", path.display()))?;
            (m, o, TrainState::load(&latest)?)
        } else {
            let seed = rng::key(cfg.seed, &[rng::INIT]);
            let m = stable_param_ids(model::device::init_seeded::<N>(&cfg.model, seed, &device));
            (m, build_optimizer(cfg), TrainState::new())
        };
        cfg.save(&run.config())?;
        let spec = Arc::new(BatchSpec {
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            patch: cfg.model.patch_size,
            foreground_fraction: cfg.foreground_fraction,
            dropout: cfg.modality_dropout,
            subset_draw: cfg.subset_draw,
            augment: cfg.augmentation.clone(),
            all_modalities: N::trains_on_all_modalities(&cfg.model),
        });
        sink.emit(&TrainEvent::Start(StartInfo {
            run_dir: run.root.clone(),
            train_cases: data.train.len(),
            validation_cases: data.validation.len(),
            cases_read_on_demand: data.lazy,
            cache_dir: data.cache_dir.clone(),
            max_cases_in_memory: cfg.max_cases_in_memory,
            parameters: model.num_params(),
            epochs: cfg.epochs,
            iterations_per_epoch: cfg.iterations_per_epoch,
            patch_size: cfg.model.patch_size,
            resume: opts.resume,
            resume_epoch: state.next_epoch,
            resume_iteration: state.next_iteration,
        }));
        Ok(Trainer {
            opts,
            cfg,
            run,
            data,
            sink,
            base_device,
            device,
            model: Some(model),
            optim,
            state,
            spec,
            session_steps: 0,
        })
    }

    /// Runs the remaining epochs and the finish; stops early (saving `latest`) on Ctrl-C or
    /// after [`TrainOptions::stop_after_steps`].
    pub fn run(mut self) -> Result<TrainOutcome> {
        while self.state.next_epoch < self.cfg.epochs {
            let epoch = self.state.next_epoch;
            let lr = schedule::lr_at(self.cfg, epoch, 0);
            let clock = EpochClock {
                started: Instant::now(),
                seconds_before: self.state.partial.seconds,
            };
            let completed = self.epoch(epoch)?;
            self.state.partial.seconds = clock.seconds();
            if !completed {
                self.save_checkpoint(&self.run.latest())?;
                return Ok(self.outcome(true));
            }
            self.end_epoch(epoch, lr, &clock)?;
            if self.stop_now() && self.state.next_epoch < self.cfg.epochs {
                return Ok(self.outcome(true));
            }
        }
        self.finish()
    }

    /// The model (an error only after a failed step, which ends the run anyway).
    fn model(&self) -> Result<&N> {
        self.model
            .as_ref()
            .context("the model was lost in a failed step")
    }

    /// Whether to stop before the next step: Ctrl-C, or the session's step limit reached.
    fn stop_now(&self) -> bool {
        ctrl_c_received()
            || self
                .opts
                .stop_after_steps
                .is_some_and(|n| self.session_steps >= n)
    }

    /// The steps of `epoch` from `state.next_iteration` on, each at its learning rate
    /// ([`schedule::lr_at`]), with a progress bar; false if it stopped before its last step.
    fn epoch(&mut self, epoch: usize) -> Result<bool> {
        let cfg = self.cfg;
        let bar = self.sink.bar(
            cfg.iterations_per_epoch,
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            "steps",
        );
        bar.set_position(self.state.next_iteration as u64);
        let batches = Loader::new(
            Arc::clone(&self.data.train),
            Arc::clone(&self.spec),
            epoch,
            self.state.next_iteration,
            cfg.iterations_per_epoch,
            cfg.workers,
            cfg.prefetch,
        );
        let mut completed = true;
        for batch in batches {
            let batch = batch?;
            if self.stop_now() {
                completed = false;
                break;
            }
            let model = self
                .model
                .take()
                .context("the model was lost in a failed step")?;
            let (m, losses) = step(
                model,
                &mut self.optim,
                batch_tensors(&batch, cfg.seed, &self.device),
                cfg,
                schedule::lr_at(cfg, epoch, batch.iteration),
            )
            .with_context(|| {
                format!(
                    "forward pass failed in epoch {} iteration {}",
                    batch.epoch + 1,
                    batch.iteration
                )
            })?;
            self.model = Some(m);
            let p = &mut self.state.partial;
            p.add(&losses);
            self.state.next_iteration += 1;
            self.state.steps += 1;
            self.session_steps += 1;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", p.total / p.steps as f64));
            if self.stop_now() && self.state.next_iteration < cfg.iterations_per_epoch {
                completed = false;
                break;
            }
        }
        bar.finish_and_clear();
        Ok(completed)
    }

    /// After the last step of `epoch`: validation (when due), the `log.csv` row and
    /// `progress.png`, the best model and `latest`, and the epoch's event. Fails if the
    /// loss is no longer finite.
    fn end_epoch(&mut self, epoch: usize, lr: f64, clock: &EpochClock) -> Result<()> {
        let cfg = self.cfg;
        let val = &self.data.validation;
        let validate_now = !val.is_empty()
            && cfg.validate_every > 0
            && ((epoch + 1).is_multiple_of(cfg.validate_every) || epoch + 1 == cfg.epochs);
        let dice = if validate_now {
            Some(validate::validate(
                self.model()?.valid(),
                val.len(),
                |i| val.get(i),
                &self.base_device,
            )?)
        } else {
            None
        };
        let p = &self.state.partial;
        let n = p.steps.max(1) as f64;
        let row = LogRow {
            epoch: epoch + 1,
            lr,
            loss_total: p.total / n,
            loss_terms: LossTerms(
                self.model()?
                    .loss_terms()
                    .iter()
                    .zip(p.terms.iter().chain(std::iter::repeat(&0.0)))
                    .map(|(name, sum)| (name.to_string(), sum / n))
                    .collect(),
            ),
            val_dice_wt: dice.map(|d| d[0]),
            val_dice_tc: dice.map(|d| d[1]),
            val_dice_et: dice.map(|d| d[2]),
            seconds: clock.seconds(),
        };
        let state = &mut self.state;
        state.rows.push(row.clone());
        state.next_epoch += 1;
        state.next_iteration = 0;
        state.partial = Default::default();
        let improved = match (row.val_dice_mean(), &state.best) {
            (Some(m), Some(b)) => m > b.mean_dice,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            state.best = Some(Best {
                epoch: epoch + 1,
                mean_dice: row.val_dice_mean().unwrap_or(0.0),
            });
        }
        log::write_csv(&self.run.log(), &state.rows)?;
        log::plot(&self.run.plot(), &state.rows)?;
        if improved {
            self.save_checkpoint(&self.run.best())?;
        }
        self.save_checkpoint(&self.run.latest())?;
        self.sink.emit(&TrainEvent::Epoch {
            row: &row,
            epochs: cfg.epochs,
            best: self.state.best.as_ref(),
        });
        if !row.loss_total.is_finite() {
            bail!(
                "the training loss became {} in epoch {}: lower the learning rate (--lr)",
                row.loss_total,
                epoch + 1
            );
        }
        Ok(())
    }

    /// After the last epoch: the post-processing, decided once on the best model over the
    /// validation cases (again after a resume that finds it missing).
    fn finish(self) -> Result<TrainOutcome> {
        let best_dir = self.run.best();
        let val = &self.data.validation;
        if self.cfg.determine_postprocessing
            && !val.is_empty()
            && best_dir.join("config.json").is_file()
            && !best_dir.join(postprocess::FILE).is_file()
        {
            let mut predictor = Predictor::load(
                &best_dir,
                self.base_device.clone(),
                validate::STEP,
                Tta::OFF,
            )?;
            let bar = self.sink.bar(
                val.len(),
                "deciding post-processing on validation cases (all subsets)",
                "cases",
            );
            let decision = postprocess::determine(
                &mut predictor,
                val.len(),
                |i| val.get(i),
                &mut |done, _| {
                    bar.set_position(done as u64);
                    !ctrl_c_received()
                },
            )?;
            bar.finish_and_clear();
            match decision {
                Some(d) => {
                    d.save(&best_dir)?;
                    self.sink.emit(&TrainEvent::Postprocessing(&d));
                }
                None => return Ok(self.outcome(true)),
            }
        }
        Ok(self.outcome(false))
    }

    /// The outcome so far, reported as the last event.
    fn outcome(&self, interrupted: bool) -> TrainOutcome {
        let state = &self.state;
        self.sink.emit(&TrainEvent::Finished {
            run_dir: &self.run.root,
            epochs_completed: state.next_epoch,
            epochs: self.cfg.epochs,
            steps: state.steps,
            best: state.best.as_ref(),
            interrupted,
        });
        TrainOutcome {
            run_dir: self.run.root.clone(),
            epochs_completed: state.next_epoch,
            steps: state.steps,
            interrupted,
            last: state.rows.last().cloned(),
            best: state.best.clone(),
        }
    }

    /// Writes model, optimiser, state and configuration to `dir`, atomically.
    fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let cfg = self.cfg;
        checkpoint::write_atomically(dir, |tmp| {
            let mut model_cfg = cfg.model.clone();
            model_cfg.spacing = Some(self.data.spacing);
            model::save_model(tmp, self.model()?, &model_cfg)?;
            let path = tmp.join(checkpoint::OPTIMIZER_FILE);
            self.optim
                .save(&path)
                .map_err(|e| anyhow::anyhow!("{e:?}"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            self.state.save(tmp)?;
            cfg.save(&tmp.join(checkpoint::TRAIN_CONFIG_FILE))
        })
        .with_context(|| format!("cannot save the checkpoint {}", dir.display()))
    }
}
