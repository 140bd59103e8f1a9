//! What an evaluation measures: per slot ([`SlotMetrics`]), per episode (means over
//! slots, [`EpisodeMetrics`]) and over seeds ([`Stats`]: mean, standard deviation,
//! minimum, maximum).

use std::time::Duration;

use serde::Serialize;

use crate::sim::Outcome;

/// One measured quantity of an episode, in table and file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Objective e of eq. (22), mean over slots.
    Objective,
    /// Reward r of eq. (25), mean over slots.
    Reward,
    /// Utility ρ, mean over users and slots.
    Utility,
    /// Migration cost Σ_s C_mig,s, mean over slots.
    CostMig,
    /// Synchronisation cost Σ_s C_syn,s, mean over slots.
    CostSyn,
    /// Computation cost Σ_s C_cmp,s, mean over slots.
    CostCmp,
    /// Energy Σ_s C_s (eq. (21), the total cost), mean over slots.
    CostTotal,
    /// Users whose server changed, mean per slot.
    Migrations,
    /// Slots with at least one violated constraint (C2, C3 or C5), a count.
    ViolatingSlots,
    /// Violated constraints summed over all slots (a server breaking C2 in three
    /// slots counts 3), a count.
    Violations,
    /// Wall time of the decision maker's `decide`, microseconds, mean per slot. The
    /// only measurement that differs between runs.
    DecideUs,
}

impl Metric {
    /// Every metric, in table and file order.
    pub const ALL: [Metric; 11] = [
        Metric::Objective,
        Metric::Reward,
        Metric::Utility,
        Metric::CostMig,
        Metric::CostSyn,
        Metric::CostCmp,
        Metric::CostTotal,
        Metric::Migrations,
        Metric::ViolatingSlots,
        Metric::Violations,
        Metric::DecideUs,
    ];

    /// The column and key name (`cost_total`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Objective => "objective",
            Metric::Reward => "reward",
            Metric::Utility => "utility",
            Metric::CostMig => "cost_mig",
            Metric::CostSyn => "cost_syn",
            Metric::CostCmp => "cost_cmp",
            Metric::CostTotal => "cost_total",
            Metric::Migrations => "migrations",
            Metric::ViolatingSlots => "violating_slots",
            Metric::Violations => "violations",
            Metric::DecideUs => "decide_us",
        }
    }

    /// A human title for plot axes (`energy per slot (Σ C_s)`).
    pub fn title(self) -> &'static str {
        match self {
            Metric::Objective => "objective e per slot",
            Metric::Reward => "reward r per slot",
            Metric::Utility => "mean utility ρ",
            Metric::CostMig => "migration energy per slot",
            Metric::CostSyn => "synchronisation energy per slot",
            Metric::CostCmp => "computation energy per slot",
            Metric::CostTotal => "energy per slot (Σ C_s)",
            Metric::Migrations => "migrations per slot",
            Metric::ViolatingSlots => "slots with violations per episode",
            Metric::Violations => "violations per episode",
            Metric::DecideUs => "decision time per slot (µs)",
        }
    }

    /// Whether the value depends on the machine and the run (wall-clock time).
    pub fn is_timing(self) -> bool {
        self == Metric::DecideUs
    }
}

/// What one slot measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotMetrics {
    /// Objective e.
    pub objective: f64,
    /// Reward r.
    pub reward: f64,
    /// Mean utility over users.
    pub utility: f64,
    /// Σ_s C_mig,s.
    pub cost_mig: f64,
    /// Σ_s C_syn,s.
    pub cost_syn: f64,
    /// Σ_s C_cmp,s.
    pub cost_cmp: f64,
    /// Σ_s C_s.
    pub cost_total: f64,
    /// Users whose server changed.
    pub migrations: usize,
    /// Violated constraints.
    pub violations: usize,
    /// Wall time of `decide`, microseconds.
    pub decide_us: f64,
}

impl SlotMetrics {
    /// The measurements of a stepped slot whose decision took `decide`.
    pub fn of(outcome: &Outcome, decide: Duration) -> Self {
        let e = &outcome.evaluation;
        let mut m = SlotMetrics {
            objective: e.objective,
            reward: e.reward,
            utility: e.mean_utility(),
            migrations: outcome.migrations,
            violations: e.violations.total(),
            decide_us: decide.as_secs_f64() * 1e6,
            ..SlotMetrics::default()
        };
        for c in &e.servers {
            m.cost_mig += c.mig;
            m.cost_syn += c.syn;
            m.cost_cmp += c.cmp;
            m.cost_total += c.total;
        }
        m
    }
}

/// An episode's measurements: means over its slots, and violation counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EpisodeMetrics {
    /// Slots run.
    pub slots: usize,
    /// Mean objective e.
    pub objective: f64,
    /// Mean reward r.
    pub reward: f64,
    /// Mean utility.
    pub utility: f64,
    /// Mean Σ_s C_mig,s.
    pub cost_mig: f64,
    /// Mean Σ_s C_syn,s.
    pub cost_syn: f64,
    /// Mean Σ_s C_cmp,s.
    pub cost_cmp: f64,
    /// Mean Σ_s C_s.
    pub cost_total: f64,
    /// Mean migrations per slot.
    pub migrations: f64,
    /// Slots with at least one violation.
    pub violating_slots: usize,
    /// Violations summed over slots.
    pub violations: usize,
    /// Mean decision time, microseconds.
    pub decide_us: f64,
}

impl EpisodeMetrics {
    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Objective => self.objective,
            Metric::Reward => self.reward,
            Metric::Utility => self.utility,
            Metric::CostMig => self.cost_mig,
            Metric::CostSyn => self.cost_syn,
            Metric::CostCmp => self.cost_cmp,
            Metric::CostTotal => self.cost_total,
            Metric::Migrations => self.migrations,
            Metric::ViolatingSlots => self.violating_slots as f64,
            Metric::Violations => self.violations as f64,
            Metric::DecideUs => self.decide_us,
        }
    }
}

/// Sums slot measurements in slot order (so the result does not depend on threads).
#[derive(Clone, Debug, Default)]
pub struct EpisodeAccumulator {
    sum: SlotMetrics,
    migrations: usize,
    violating_slots: usize,
    slots: usize,
}

impl EpisodeAccumulator {
    /// Adds one slot.
    pub fn add(&mut self, m: &SlotMetrics) {
        let s = &mut self.sum;
        s.objective += m.objective;
        s.reward += m.reward;
        s.utility += m.utility;
        s.cost_mig += m.cost_mig;
        s.cost_syn += m.cost_syn;
        s.cost_cmp += m.cost_cmp;
        s.cost_total += m.cost_total;
        s.decide_us += m.decide_us;
        s.violations += m.violations;
        self.migrations += m.migrations;
        self.violating_slots += usize::from(m.violations > 0);
        self.slots += 1;
    }

    /// Means over the slots added (all zero when none were).
    pub fn finish(&self) -> EpisodeMetrics {
        let n = self.slots.max(1) as f64;
        let s = &self.sum;
        EpisodeMetrics {
            slots: self.slots,
            objective: s.objective / n,
            reward: s.reward / n,
            utility: s.utility / n,
            cost_mig: s.cost_mig / n,
            cost_syn: s.cost_syn / n,
            cost_cmp: s.cost_cmp / n,
            cost_total: s.cost_total / n,
            migrations: self.migrations as f64 / n,
            violating_slots: self.violating_slots,
            violations: s.violations,
            decide_us: s.decide_us / n,
        }
    }
}

/// Mean, standard deviation, minimum and maximum of a sample (one value per seed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor n − 1); 0 for a single value.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`; `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        // Two passes: the sum of squared deviations from the mean does not cancel
        // catastrophically the way Σx² − n·mean² does.
        let std = if values.len() < 2 {
            0.0
        } else {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1.0)).sqrt()
        };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats {
            mean,
            std,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(values: &[f64], mean: f64, std: f64, min: f64, max: f64) {
        let s = Stats::of(values).expect("non-empty");
        for (what, got, want) in [
            ("mean", s.mean, mean),
            ("std", s.std, std),
            ("min", s.min, min),
            ("max", s.max, max),
        ] {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{what} of {values:?}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn stats_match_hand_calculations() {
        // Σ = 40, mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; 32/7 = 4.571428…,
        // √ = 2.138089935299395.
        check(
            &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
            5.0,
            2.138089935299395,
            2.0,
            9.0,
        );
        // One seed: no spread.
        check(&[0.25], 0.25, 0.0, 0.25, 0.25);
        // mean 0.2; deviations ±0.1: (0.01+0.01)/1 = 0.02, √ = 0.1414213562373095.
        check(&[0.1, 0.3], 0.2, 0.1414213562373095, 0.1, 0.3);
        // Negative objectives: mean −2, deviations 1, 0, −1: 2/2 = 1.
        check(&[-1.0, -2.0, -3.0], -2.0, 1.0, -3.0, -1.0);
        // Large offset, small spread: the naive Σx² − n·mean² formula loses it.
        check(
            &[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0],
            1e9 + 2.0,
            1.0,
            1e9 + 1.0,
            1e9 + 3.0,
        );
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn episode_means_and_counts() {
        let mut acc = EpisodeAccumulator::default();
        let slot = |objective, cost_total, migrations, violations, decide_us| SlotMetrics {
            objective,
            reward: objective - 1.0,
            utility: 0.5,
            cost_mig: cost_total / 2.0,
            cost_syn: cost_total / 4.0,
            cost_cmp: cost_total / 4.0,
            cost_total,
            migrations,
            violations,
            decide_us,
        };
        acc.add(&slot(0.1, 100.0, 0, 0, 10.0));
        acc.add(&slot(0.2, 200.0, 3, 2, 20.0));
        acc.add(&slot(0.6, 600.0, 1, 1, 30.0));
        let e = acc.finish();
        assert_eq!(e.slots, 3);
        // (0.1 + 0.2 + 0.6) / 3 = 0.3; costs (100 + 200 + 600) / 3 = 300.
        assert!((e.objective - 0.3).abs() < 1e-15);
        assert!((e.reward + 0.7).abs() < 1e-15);
        assert_eq!(e.utility, 0.5);
        assert_eq!(
            (e.cost_total, e.cost_mig, e.cost_syn, e.cost_cmp),
            (300.0, 150.0, 75.0, 75.0)
        );
        // 4 migrations over 3 slots; 2 slots broke 3 constraints in all.
        assert!((e.migrations - 4.0 / 3.0).abs() < 1e-15);
        assert_eq!((e.violating_slots, e.violations), (2, 3));
        assert_eq!(e.decide_us, 20.0);
        assert_eq!(e.get(Metric::Violations), 3.0);
        assert_eq!(EpisodeAccumulator::default().finish().slots, 0);
    }

    #[test]
    fn metric_names_are_unique() {
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }
}
