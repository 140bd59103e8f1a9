//! The model card, `MODEL.md`, that `diten ship` writes beside a shipped policy:
//! what the model is, how it was trained, the comparison of [`compare`](super::compare)
//! and the verdict, and how to reproduce it.

use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::compare::{comparison_table, verdicts};
use super::{emd_label, SummaryRow, Sweep, SweepResult};
use crate::policy::Builtin;
use crate::scenario::Scenario;

/// The policy's label in the evaluation files: its file name in the model folder.
pub const POLICY_LABEL: &str = "policy.bin";

/// The label of the same blob run without the controller's improvement, the
/// first ablation row of every card.
pub const UNIMPROVED_LABEL: &str = "unimproved:policy.bin";

/// The label of the same blob run without the controller's consolidation and
/// improvement (the policy alone), the second ablation row of every card.
pub const UNCONSOLIDATED_LABEL: &str = "unconsolidated:policy.bin";

/// Every built-in decision maker a card compares the policy with, in table order
/// after the policy and its two ablations.
pub const COMPARED: [Builtin; 5] = [
    Builtin::Nearest,
    Builtin::NearestRandom,
    Builtin::Sticky,
    Builtin::Oracle,
    Builtin::Random,
];

/// How long a run trained (the last line of its metrics.csv).
#[derive(Debug)]
pub struct Trained {
    /// Iterations in all.
    pub iterations: u64,
    /// Slots simulated in all.
    pub slots: u64,
    /// Episodes in all.
    pub episodes: f64,
    /// Wall time in all, seconds.
    pub wall_s: f64,
}

/// Size and SHA-256 of a file's bytes, for the card.
fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} bytes, SHA-256 `{hex}`", bytes.len())
}

/// Seconds as `382 s (6.4 min)` or `5.2 h`.
fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{seconds:.0} s ({:.1} min)", seconds / 60.0)
    } else {
        format!("{seconds:.0} s ({:.1} h)", seconds / 3600.0)
    }
}

/// Seeds as a short text: `1..=5` for a run of consecutive seeds, else a list.
fn seeds_text(seeds: &[u64]) -> String {
    let consecutive = seeds.windows(2).all(|w| w[1] == w[0] + 1);
    match seeds {
        [first, .., last] if consecutive => format!("{first}..={last}"),
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Everything the model card shows.
pub struct Card<'a> {
    /// The model's name (its folder's).
    pub name: &'a str,
    /// The training run folder.
    pub run_dir: &'a Path,
    /// The training scenario.
    pub scenario: &'a Scenario,
    /// The training algorithm (`ppo`, `a2c`, `ddpg`).
    pub algo: &'a str,
    /// The training seed, as the model's metadata says it.
    pub seed: &'a str,
    /// The training options (`key = value`).
    pub options: &'a [String],
    /// How long the run trained.
    pub trained: &'a Trained,
    /// The evaluation: the policy first ([`POLICY_LABEL`]), then its ablations and
    /// [`COMPARED`].
    pub sweep: &'a Sweep,
    /// Its episodes.
    pub result: &'a SweepResult,
    /// Its summary.
    pub rows: &'a [SummaryRow],
    /// The bytes of `policy.onnx`.
    pub onnx: &'a [u8],
    /// The bytes of `policy.bin`.
    pub blob: &'a [u8],
    /// The command that wrote the card.
    pub command: &'a str,
    /// Its wall time.
    pub seconds: f64,
}

impl Card<'_> {
    /// `MODEL.md`.
    pub fn render(&self) -> String {
        let sc = self.scenario;
        let emd = emd_label(&sc.emd);
        let seed = self.seed;
        let t = self.trained;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# {} — {} policy for {} users and {} edge servers, φ = {emd}\n",
            self.name,
            self.algo.to_uppercase(),
            sc.users,
            sc.servers
        );
        let _ = writeln!(
            md,
            "Written by `diten ship` (diten {}) from the training run `{}`. The policy \
             decides, every slot, the edge server of each user's digital twin; the \
             controller repairs the association where it would break C2/C3 and solves \
             the data reuse γ exactly.\n",
            env!("CARGO_PKG_VERSION"),
            self.run_dir.display()
        );
        let facts = [
            ("users U", sc.users.to_string()),
            ("edge servers S", sc.servers.to_string()),
            ("EMD φ", emd.clone()),
            ("slots per episode T", sc.slots.to_string()),
            ("training scenario seed", sc.seed.to_string()),
            ("algorithm", self.algo.to_owned()),
            ("training seed", seed.to_owned()),
            (
                "options",
                self.options
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "training",
                format!(
                    "{} iterations, {} slots ({:.1} episodes) in {}",
                    t.iterations,
                    t.slots,
                    t.episodes,
                    duration(t.wall_s)
                ),
            ),
            ("policy.onnx", fingerprint(self.onnx)),
            ("policy.bin", fingerprint(self.blob)),
        ];
        md.push_str("| | |\n|---|---|\n");
        for (k, v) in facts {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let _ = writeln!(
            md,
            "\n`policy.onnx` follows SPEC §3.2 (metadata: format, observation layout, U, S, \
             algorithm, training scenario and seed, and this evaluation as \
             `diten.evaluation`); `policy.bin` is its firmware blob (SPEC §3.3), the file \
             the controller runs.\n"
        );

        let _ = writeln!(md, "## Evaluation\n");
        let _ = writeln!(
            md,
            "Every decision maker ran the same episodes: the training scenario, seeds {} \
             ({} per point), {} slots each. Mean ± sample standard deviation over the \
             seeds. `policy.bin` is the shipped blob run through the controller's decision \
             loop (observation, network, best server per user, repair, γ); the others are \
             the built-in decision makers: `nearest` (Baseline 2), `nearest-random` \
             (Baseline 3), `sticky`, `oracle` (a per-slot search with full knowledge, the \
             upper reference) and `random`. The gap to the oracle is the objective \
             difference (negative = below the oracle) and its size relative to the \
             oracle's objective. µs/decision is the wall time of one decision on the \
             machine that shipped the model; for `policy.bin` it includes the γ solve, \
             which the simulator does outside the timing for the others.\n",
            seeds_text(&self.sweep.seeds),
            self.sweep.seeds.len(),
            self.sweep.base.slots,
        );
        md.push_str(&comparison_table(self.rows).render_markdown());
        md.push_str("\n![objective of every decision maker](compare.png)\n\n");
        let _ = writeln!(md, "## Verdict\n");
        for paragraph in verdicts(self.sweep, self.result, 0) {
            let _ = writeln!(md, "{paragraph}\n");
        }
        let _ = writeln!(md, "## Reproduce\n");
        let _ = writeln!(
            md,
            "This card, the files beside it and `evaluation/` (episodes.csv, summary.csv, \
             summary.json, scenario.toml and a plot per metric) came from (in {}):\n",
            duration(self.seconds)
        );
        let _ = writeln!(md, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "The same comparison without shipping, run in this folder (`--out` a folder of \
             your choice): `diten compare --scenario evaluation/scenario.toml --policy \
             {POLICY_LABEL},{UNIMPROVED_LABEL},{UNCONSOLIDATED_LABEL},{} --seeds {} --out DIR`.",
            COMPARED.map(Builtin::name).join(","),
            seeds_text(&self.sweep.seeds)
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_read_naturally() {
        assert_eq!(seeds_text(&[1, 2, 3]), "1..=3");
        assert_eq!(seeds_text(&[3, 1]), "3,1");
        assert_eq!(seeds_text(&[7]), "7");
    }
}
