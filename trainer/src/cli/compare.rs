//! `diten compare`: several decision makers on the same episodes (SPEC §2.3), with
//! the same scenario flags and outputs as `diten evaluate` ([`super::evaluate`]).

use super::CompareArgs;

/// Runs `diten compare`; without `--policy`, every built-in decision maker.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    super::evaluate::run_sweep("compare", &args.sweep, &args.policy)
}
