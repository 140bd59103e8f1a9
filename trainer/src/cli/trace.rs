//! `diten trace`: records a simulated episode as a gateway trace for replay on a
//! host (`diten replay`) or a firmware (`firmware-example/`).
//!
//! The trace holds only what does not depend on the decisions (the format and
//! the replay rules are [`diten_controller::trace`]'s): the servers, the model
//! parameters, and per slot which servers are up, which users of the
//! population are present (a `[churn]` scenario, SPEC §2.2a) and each present
//! user's position, EMD, twin data and training data of this slot and the one
//! before. The simulator's random stream does not depend on the decisions
//! either, so the episode is stepped with every user staying on its previous
//! server (or, when that server is down, moving to the nearest one up) and the
//! statuses are the ones any decision maker would see, previous association
//! aside.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use diten_controller::trace::{encode, encoded_len, TraceUser};

use super::ScenarioArgs;
use crate::scenario::Scenario;
use crate::sim::{nearest_available, Decision, Env};
use crate::util::fs::write_atomic;

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
    let population = scenario.users;
    let absent = TraceUser {
        x: 0.0,
        y: 0.0,
        emd: 0.0,
        twin_bits: 0.0,
        data_bits: 0.0,
        prev_data_bits: 0.0,
        present: false,
    };
    let mut available = Vec::with_capacity(scenario.slots * servers.len());
    let mut records = Vec::with_capacity(scenario.slots * population);
    while !env.done() {
        let status = env.status();
        available.extend(status.servers().iter().map(|s| s.available));
        let start = records.len();
        records.resize(start + population, absent);
        for (&id, u) in env.user_ids().iter().zip(status.users()) {
            let record = records
                .get_mut(start + id)
                .ok_or_else(|| anyhow!("user id {id} beyond the population {population}"))?;
            *record = TraceUser {
                x: u.x,
                y: u.y,
                emd: u.emd,
                twin_bits: u.twin_bits,
                data_bits: u.data_bits,
                prev_data_bits: u.prev_data_bits,
                present: true,
            };
        }
        // Any decision gives the same next status, previous association aside:
        // stay, or move to the nearest server up when the previous one is down.
        let stay: Vec<usize> = env
            .prev_association()
            .iter()
            .zip(status.users())
            .map(|(&p, u)| {
                if status.servers().get(p).is_some_and(|s| s.available) {
                    p
                } else {
                    nearest_available(status.servers(), u.x, u.y)
                }
            })
            .collect();
        env.step(&Decision::optimal(stay))
            .with_context(|| format!("simulating slot {}", env.t()))?;
    }
    let len = encoded_len(population, servers.len(), scenario.slots)
        .map_err(|e| anyhow!("trace: {e}"))?;
    let mut bytes = vec![0u8; len];
    encode(
        &scenario.params,
        &servers,
        population,
        &available,
        &records,
        &mut bytes,
    )
    .map_err(|e| anyhow!("trace: {e}"))?;
    Ok(bytes)
}
