//! Model parameters of SPEC §2 (the constants; per-episode draws live in the simulator).

use serde::{Deserialize, Serialize};

pub use crate::cost_norm::CostNorm;
use crate::error::{Error, Problem};

/// The constants of the system model. Every field can be overridden by name in
/// `diten solve`'s `params` object or a scenario TOML; unknown names are rejected.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Utility fit α1..α6 of eq. (11)–(12). α3 is per image (SPEC §2).
    pub alpha: [f64; 6],
    /// Weight β1 of the utility term in the objective.
    pub beta1: f64,
    /// Weight β2 of the cost term in the objective.
    pub beta2: f64,
    /// Cost normalisation factor f0 of Norm.
    pub f0: f64,
    /// Unit energy of wired migration (per bit and metre).
    pub n_mig: f64,
    /// Unit energy of wireless synchronisation (per second and metre).
    pub n_syn: f64,
    /// Unit energy of one CPU cycle.
    pub n_cmp: f64,
    /// User transmit power P_u, watts.
    pub p_tx_w: f64,
    /// Sub-channel bandwidth W, hertz.
    pub bandwidth_hz: f64,
    /// Channel power gain ξ.
    pub gain: f64,
    /// Noise power N0, dBm.
    pub noise_dbm: f64,
    /// Local training epochs E_s.
    pub epochs_train: f64,
    /// Fine-tuning epochs E_{u,s}.
    pub epochs_finetune: f64,
    /// Barrier curve coefficient f of eq. (24).
    pub barrier_f: f64,
    /// Slack δ at which the barrier is clamped.
    pub barrier_min_slack: f64,
    /// Penalty P per violated constraint in the reward.
    pub infeasible_penalty: f64,
    /// Bits per training sample (28×28 MNIST image).
    pub bits_per_sample: f64,
    /// How the objective e prices a server's energy C_s (SPEC §2.1b).
    pub cost_norm: CostNorm,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            alpha: [0.8862, 6.8382, 0.0006, 0.9172, -0.0231, 0.8366],
            beta1: 0.3,
            beta2: 0.7,
            f0: 200.0,
            n_mig: 1e-4,
            n_syn: 1e-1,
            n_cmp: 1e-7,
            p_tx_w: 0.2,
            bandwidth_hz: 15e3,
            gain: 1.0,
            noise_dbm: -174.0,
            epochs_train: 50.0,
            epochs_finetune: 10.0,
            barrier_f: 10.0,
            barrier_min_slack: 1e-3,
            infeasible_penalty: 10.0,
            bits_per_sample: 784.0,
            cost_norm: CostNorm::Paper,
        }
    }
}

fn finite(field: &'static str, v: f64) -> Result<f64, Error> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::Param {
            field,
            problem: Problem::NotFinite,
        })
    }
}

fn positive(field: &'static str, v: f64) -> Result<(), Error> {
    if finite(field, v)? > 0.0 {
        Ok(())
    } else {
        Err(Error::Param {
            field,
            problem: Problem::NotPositive,
        })
    }
}

fn non_negative(field: &'static str, v: f64) -> Result<(), Error> {
    if finite(field, v)? >= 0.0 {
        Ok(())
    } else {
        Err(Error::Param {
            field,
            problem: Problem::Negative,
        })
    }
}

impl Params {
    /// Checks every parameter; the error names the first bad one.
    ///
    /// α1, α2, α3, α4 and α6 must be > 0 (α5 is free: the paper's own is negative);
    /// weights, unit costs, epochs and the penalty ≥ 0; f0, power, bandwidth, gain,
    /// barrier coefficient, barrier slack and bits per sample > 0.
    pub fn validate(&self) -> Result<(), Error> {
        for (i, &a) in self.alpha.iter().enumerate() {
            finite("alpha", a)?;
            if i != 4 && a <= 0.0 {
                return Err(Error::Param {
                    field: "alpha",
                    problem: Problem::NotPositive,
                });
            }
        }
        non_negative("beta1", self.beta1)?;
        non_negative("beta2", self.beta2)?;
        positive("f0", self.f0)?;
        non_negative("n_mig", self.n_mig)?;
        non_negative("n_syn", self.n_syn)?;
        non_negative("n_cmp", self.n_cmp)?;
        positive("p_tx_w", self.p_tx_w)?;
        positive("bandwidth_hz", self.bandwidth_hz)?;
        positive("gain", self.gain)?;
        finite("noise_dbm", self.noise_dbm)?;
        non_negative("epochs_train", self.epochs_train)?;
        non_negative("epochs_finetune", self.epochs_finetune)?;
        positive("barrier_f", self.barrier_f)?;
        positive("barrier_min_slack", self.barrier_min_slack)?;
        non_negative("infeasible_penalty", self.infeasible_penalty)?;
        positive("bits_per_sample", self.bits_per_sample)?;
        Ok(())
    }

    /// Noise power N0 in watts: 10^((dBm − 30)/10).
    pub fn noise_w(&self) -> f64 {
        crate::math::pow(10.0, (self.noise_dbm - 30.0) / 10.0)
    }

    /// Uplink rate W·log2(1 + P·ξ/N0) in bit/s (≈ 9.82e5 with the defaults).
    pub fn rate_bps(&self) -> f64 {
        self.bandwidth_hz * crate::math::log2(1.0 + self.p_tx_w * self.gain / self.noise_w())
    }

    /// Total epochs E_s + E_{u,s} that multiply the computation cost.
    pub fn epochs(&self) -> f64 {
        self.epochs_train + self.epochs_finetune
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;

    use super::*;

    /// `validate` on the defaults with `set` applied gives `Param { field, problem }`.
    #[track_caller]
    fn check(set: impl Fn(&mut Params), field: &'static str, problem: Problem) {
        let mut p = Params::default();
        set(&mut p);
        let e = p.validate().unwrap_err();
        assert_eq!(e, Error::Param { field, problem });
        assert!(e.to_string().starts_with(&std::format!("params.{field}: ")));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Params::default().validate(), Ok(()));
        // α5 may be negative (the paper's is), zero weights and costs are allowed.
        let p = Params {
            beta1: 0.0,
            n_mig: 0.0,
            infeasible_penalty: 0.0,
            ..Params::default()
        };
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn each_parameter_is_named() {
        check(|p| p.alpha[2] = f64::NAN, "alpha", Problem::NotFinite);
        check(|p| p.alpha[0] = 0.0, "alpha", Problem::NotPositive);
        check(|p| p.alpha[4] = f64::INFINITY, "alpha", Problem::NotFinite);
        check(|p| p.beta1 = -0.1, "beta1", Problem::Negative);
        check(|p| p.beta2 = f64::NAN, "beta2", Problem::NotFinite);
        check(|p| p.f0 = 0.0, "f0", Problem::NotPositive);
        check(|p| p.n_mig = -1e-9, "n_mig", Problem::Negative);
        check(|p| p.n_syn = f64::NEG_INFINITY, "n_syn", Problem::NotFinite);
        check(|p| p.n_cmp = -1.0, "n_cmp", Problem::Negative);
        check(|p| p.p_tx_w = 0.0, "p_tx_w", Problem::NotPositive);
        check(
            |p| p.bandwidth_hz = -1.0,
            "bandwidth_hz",
            Problem::NotPositive,
        );
        check(|p| p.gain = 0.0, "gain", Problem::NotPositive);
        check(|p| p.noise_dbm = f64::NAN, "noise_dbm", Problem::NotFinite);
        check(|p| p.epochs_train = -1.0, "epochs_train", Problem::Negative);
        check(
            |p| p.epochs_finetune = -1.0,
            "epochs_finetune",
            Problem::Negative,
        );
        check(|p| p.barrier_f = 0.0, "barrier_f", Problem::NotPositive);
        check(
            |p| p.barrier_min_slack = 0.0,
            "barrier_min_slack",
            Problem::NotPositive,
        );
        check(
            |p| p.infeasible_penalty = -1.0,
            "infeasible_penalty",
            Problem::Negative,
        );
        check(
            |p| p.bits_per_sample = 0.0,
            "bits_per_sample",
            Problem::NotPositive,
        );
    }
}
