//! The learning-rate schedule.

use serde::{Deserialize, Serialize};

use super::TrainConfig;

/// How the learning rate decays (`lr_schedule` in `config.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// [`poly_lr`] per epoch (nnU-Net, A2FSeg). The default.
    #[default]
    Poly,
    /// Multiplied by `lr_step_factor` every `lr_step_iterations` optimiser steps (U-HVED).
    Step,
}

/// The learning rate of step `iteration` of `epoch` (both from 0) under `cfg`'s schedule.
pub fn lr_at(cfg: &TrainConfig, epoch: usize, iteration: usize) -> f64 {
    match cfg.lr_schedule {
        LrSchedule::Poly => poly_lr(cfg.lr, epoch, cfg.epochs, cfg.poly_power),
        LrSchedule::Step => {
            let step = epoch * cfg.iterations_per_epoch + iteration;
            let drops = step / cfg.lr_step_iterations.max(1);
            cfg.lr * cfg.lr_step_factor.powi(drops.min(i32::MAX as usize) as i32)
        }
    }
}

/// Poly decay as the paper and nnU-Net use it: `base · (1 − epoch / max_epochs)^power`,
/// constant within an epoch. `epoch` counts from 0, so the first epoch trains at `base`;
/// an epoch at or past `max_epochs` gets 0.
pub fn poly_lr(base: f64, epoch: usize, max_epochs: usize, power: f64) -> f64 {
    if max_epochs == 0 || epoch >= max_epochs {
        return 0.0;
    }
    base * (1.0 - epoch as f64 / max_epochs as f64).powf(power)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_decay_drops_by_the_factor_every_n_steps() {
        let mut cfg = TrainConfig::preset(crate::model::Preset::Small);
        cfg.lr = 1e-3;
        cfg.lr_schedule = LrSchedule::Step;
        cfg.lr_step_iterations = 10;
        cfg.lr_step_factor = 0.25;
        cfg.iterations_per_epoch = 4;
        assert_eq!(lr_at(&cfg, 0, 0), 1e-3);
        assert_eq!(lr_at(&cfg, 2, 1), 1e-3); // step 9
        assert_eq!(lr_at(&cfg, 2, 2), 1e-3 * 0.25); // step 10
        assert_eq!(lr_at(&cfg, 5, 0), 1e-3 * 0.0625); // step 20
        cfg.lr_schedule = LrSchedule::Poly;
        assert_eq!(
            lr_at(&cfg, 3, 2),
            poly_lr(1e-3, 3, cfg.epochs, cfg.poly_power)
        );
    }

    #[test]
    fn poly_starts_at_base_and_decays_to_zero() {
        assert_eq!(poly_lr(0.01, 0, 400, 0.9), 0.01);
        let half = poly_lr(0.01, 200, 400, 0.9);
        assert!((half - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert!(poly_lr(0.01, 399, 400, 0.9) > 0.0);
        assert_eq!(poly_lr(0.01, 400, 400, 0.9), 0.0);
        let mut prev = f64::INFINITY;
        for e in 0..400 {
            let lr = poly_lr(0.01, e, 400, 0.9);
            assert!(lr < prev);
            prev = lr;
        }
    }
}
