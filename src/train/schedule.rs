//! The learning-rate schedule.

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
