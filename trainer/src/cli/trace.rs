//! `diten trace`: records a simulated episode as a gateway trace for replay on a
//! host (`diten replay`) or a firmware (`firmware-example/`).
//!
//! The trace holds only what does not depend on the decisions (the format and
//! the replay rules are [`diten_controller::trace`]'s): the servers, the model
//! parameters, each user's data of the slot before the first, and per slot each
//! user's position, EMD, twin data and training data. The simulator's random
//! stream does not depend on the decisions either, so the episode is stepped with
//! every user staying on its previous server and the statuses are the ones any
//! decision maker would see, previous association aside.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use diten_controller::trace::{encode, encoded_len, TraceUser};

use super::ScenarioArgs;
use crate::eval::report::write_atomic;
use crate::scenario::Scenario;
use crate::sim::{Decision, Env};

/// Arguments of `diten trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The recorded episode's scenario (`--slots`: the slots to record; `--seed`:
    /// the episode, as `diten evaluate --seeds` uses it).
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// The trace file to write (its folder is created if missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `diten trace`.
pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let scenario = args.scenario.load()?;
    let bytes = record(&scenario)?;
    super::export::prepare_out(&args.out)?;
    write_atomic(&args.out, &bytes)?;
    eprintln!(
        "trace: {} slots of {} users and {} servers (seed {}) -> {} ({} bytes)",
        scenario.slots,
        scenario.users,
        scenario.servers,
        scenario.seed,
        args.out.display(),
        bytes.len()
    );
    Ok(())
}

/// The trace of the episode of `scenario` with its seed, every slot of it.
pub fn record(scenario: &Scenario) -> anyhow::Result<Vec<u8>> {
    let mut env = Env::new(scenario, scenario.seed)?;
    let servers = env.status().servers().to_vec();
    let first_prev: Vec<f64> = env
        .status()
        .users()
        .iter()
        .map(|u| u.prev_data_bits)
        .collect();
    let mut slots = Vec::with_capacity(scenario.slots * scenario.users);
    while !env.done() {
        slots.extend(env.status().users().iter().map(|u| TraceUser {
            x: u.x,
            y: u.y,
            emd: u.emd,
            twin_bits: u.twin_bits,
            data_bits: u.data_bits,
        }));
        // Any decision gives the same next status, previous association aside.
        let stay = Decision::optimal(env.prev_association().to_vec());
        env.step(&stay)
            .with_context(|| format!("simulating slot {}", env.t()))?;
    }
    let len = encoded_len(first_prev.len(), servers.len(), scenario.slots)
        .map_err(|e| anyhow!("trace: {e}"))?;
    let mut bytes = vec![0u8; len];
    encode(&scenario.params, &servers, &first_prev, &slots, &mut bytes)
        .map_err(|e| anyhow!("trace: {e}"))?;
    Ok(bytes)
}
