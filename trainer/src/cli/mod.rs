//! The `diten` command line: the clap types, the dispatch and the error conventions
//! of SPEC §3.4 (an error is one line on stderr and a non-zero exit).
//!
//! Each subcommand has its own module with a `run` taking its parsed arguments;
//! a new subcommand adds a variant to [`Command`], an `Args` struct here and a
//! module beside [`solve`].

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod compare;
pub mod convert;
pub mod demo;
mod demo_plot;
pub mod evaluate;
pub mod export;
pub mod foresight;
pub mod frontier;
pub mod infer;
mod input;
pub mod models;
pub mod replay;
pub mod results;
pub mod ship;
pub mod sign;
pub mod solve;
pub mod trace;
pub mod train;
pub mod train_general;

pub use evaluate::{Seeds, INTERRUPTED_EXIT_CODE};

/// Energy-efficient digital-twin association and federated-learning data reuse
/// for edge networks.
#[derive(Debug, Parser)]
// Without a subcommand, report a one-line usage error rather than the full help.
#[command(name = "diten", version, arg_required_else_help = false)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `diten`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Solve one slot: read a JSON instance, print the optimal γ and the model's
    /// costs, objective and reward as one JSON object (SPEC §3.1).
    Solve(SolveArgs),
    /// Run one decision maker through whole episodes and report its objective,
    /// utility, costs, migrations, violations and decision time (table on stdout,
    /// CSV, JSON and plots under --out).
    Evaluate(EvaluateArgs),
    /// Run several decision makers on the same episodes and compare them (table on
    /// stdout, CSV, JSON and plots against the number of servers under --out).
    Compare(CompareArgs),
    /// Sweep the energy price of the linear objective (SPEC §2.1b) and draw the
    /// oracle's utility against its energy per slot, with other decision makers as
    /// points on the same axes (frontier.csv and one PNG per S under --out).
    Frontier(FrontierArgs),
    /// Measure what foresight is worth: the myopic oracle against a clairvoyant
    /// two-slot lookahead on the same episodes, under each objective
    /// (foresight.csv and foresight.md under --out).
    Foresight(ForesightArgs),
    /// Train a policy in the simulator (PPO, or the A2C and DDPG baselines); writes
    /// config.toml, metrics.csv, curve.png, checkpoint.ot and, at the end,
    /// policy.onnx under --out.
    Train(TrainArgs),
    /// Train the size-agnostic policy (policy-v2, SPEC §3.2a) by imitating the
    /// oracle over mixed sizes, with and without churn; writes policy.bin,
    /// metrics.csv and config.toml under --out.
    TrainGeneral(train_general::TrainGeneralArgs),
    /// Export a trained policy (a checkpoint or its run folder) as an ONNX model
    /// with the observation normalisation folded in (SPEC §3.2).
    Export(ExportArgs),
    /// Convert an exported ONNX policy into the controller's firmware blob (SPEC §3.3),
    /// or a size-agnostic (policy-v2) blob into ONNX (SPEC §3.2a).
    Convert(ConvertArgs),
    /// Run a policy (ONNX or firmware blob) with the controller's engine: on one
    /// observation (`--obs`, prints `{"logits": [...]}`), or a size-agnostic policy
    /// on one slot (`--instance`, prints the graph's inputs and logits).
    Infer(InferArgs),
    /// Record a simulated episode as a gateway trace (servers, parameters, and per
    /// slot each user's position and data) for `diten replay` and the firmware.
    Trace(trace::TraceArgs),
    /// Replay a trace through the controller's decision loop with a policy (ONNX or
    /// firmware blob); prints one line per slot: association, γ and objective.
    Replay(replay::ReplayArgs),
    /// Make a training run shippable: export policy.onnx, convert policy.bin,
    /// evaluate the blob through the controller against every other decision maker
    /// and write the model card MODEL.md (and compare.png, evaluation/) under --out.
    Ship(ship::ShipArgs),
    /// List the shipped models of a folder (default onnx-models/): U, S, φ,
    /// algorithm, seed, blob size, objective and gap to the oracle.
    Models(models::ModelsArgs),
    /// Merge the shipped models' evaluations (default onnx-models/): one table per
    /// φ of every decision maker against S, summary.csv and the plots, under --out.
    Results(results::ResultsArgs),
    /// Run a shipped policy through the controller's decision loop on a default
    /// scenario against the baselines; print the comparison and write the plot.
    Demo(demo::DemoArgs),
    /// Make an Ed25519 key pair for signing policies: DIR/policy-signing.key
    /// (secret, mode 0600) and DIR/policy-signing.pub.
    Keygen(sign::KeygenArgs),
    /// Sign a policy file (blob or ONNX) with a secret key: writes FILE.sig, a
    /// detached signature of its exact bytes and a policy version.
    Sign(sign::SignArgs),
    /// Check FILE.sig against FILE and a public key; prints the verdict, exits
    /// non-zero when the signature is not good.
    Verify(sign::VerifyArgs),
}

/// Arguments of `diten export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The training checkpoint (`checkpoint.ot`) or its run folder.
    #[arg(long, value_name = "FILE|DIR")]
    pub checkpoint: PathBuf,
    /// The ONNX file to write (its folder is created if missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// An evaluation summary (JSON, e.g. the summary.json of `diten evaluate`) to
    /// store in the model's metadata (default: `none`).
    #[arg(long, value_name = "FILE")]
    pub evaluation: Option<PathBuf>,
}

/// Arguments of `diten convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The policy: an ONNX model (`diten export`'s, or a policy-v2 one) becomes a
    /// blob; a policy-v2 blob (told apart by its magic bytes) becomes ONNX.
    #[arg(value_name = "FILE")]
    pub model: PathBuf,
    /// The file to write, blob or ONNX (its folder is created if missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `diten infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// The policy: an ONNX model (`.onnx`) or a firmware blob (`.bin`); other names
    /// are told apart by the blob's magic bytes.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// JSON `{"obs": [f32, ...]}` with the model's obs_dim values; `-` reads stdin.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "instance",
        conflicts_with = "instance"
    )]
    pub obs: Option<PathBuf>,
    /// A slot (SPEC §3.1's instance JSON; an `association` is ignored) for a
    /// size-agnostic (policy-v2) model; `-` reads stdin. Prints the graph's inputs
    /// `users`, `servers`, `pairs`, its base `logits` \[U\]\[S\] and the controller's
    /// `decoded` logits (null where a server is masked).
    #[arg(long, value_name = "FILE")]
    pub instance: Option<PathBuf>,
}

/// One scenario: a TOML file and overrides of its main values (`train`, `trace`).
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Scenario TOML file (see `diten_trainer::scenario`); without it the SPEC §2 defaults.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Number of edge servers S (default: the scenario's).
    #[arg(long, value_name = "S")]
    pub servers: Option<usize>,
    /// Number of users U (default: the scenario's).
    #[arg(long, value_name = "U")]
    pub users: Option<usize>,
    /// EMD φ of every user's data (default: the scenario's).
    #[arg(long, value_name = "PHI")]
    pub emd: Option<f64>,
    /// Slots per episode T (default: the scenario's).
    #[arg(long, value_name = "T")]
    pub slots: Option<usize>,
    /// Seed (default: the scenario's): of the episodes, and in `train` of the
    /// networks and the sampling too.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ScenarioArgs {
    /// Whether any option was given.
    pub fn any(&self) -> bool {
        self.scenario.is_some()
            || self.servers.is_some()
            || self.users.is_some()
            || self.emd.is_some()
            || self.slots.is_some()
            || self.seed.is_some()
    }

    /// The scenario file (or the defaults) with the options applied.
    pub fn load(&self) -> anyhow::Result<crate::scenario::Scenario> {
        let mut scenario = crate::scenario::Scenario::load(self.scenario.as_deref())?;
        if let Some(s) = self.servers {
            scenario.servers = s;
        }
        if let Some(u) = self.users {
            scenario.users = u;
        }
        if let Some(e) = self.emd {
            scenario.emd = crate::scenario::Emd::All(e);
        }
        if let Some(t) = self.slots {
            scenario.slots = t;
        }
        if let Some(seed) = self.seed {
            scenario.seed = seed;
        }
        Ok(scenario)
    }
}

/// Arguments of `diten train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The algorithm: ppo (the paper's Algorithm 1), a2c (Baseline 1) or ddpg (Baseline 4).
    #[arg(long, value_enum, default_value = "ppo")]
    pub algo: crate::train::Algo,
    /// The training scenario.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Iterations (rollout + update) in all (default 300).
    #[arg(long, value_name = "N")]
    pub iterations: Option<usize>,
    /// Environments stepped in lockstep (default 8).
    #[arg(long, value_name = "N")]
    pub envs: Option<usize>,
    /// Slots per environment per iteration (default 64; 16 for a2c).
    #[arg(long, value_name = "N")]
    pub rollout: Option<usize>,
    /// Training signal: reward (eq. 25, the paper) or objective (e minus the penalty).
    #[arg(long, value_enum)]
    pub reward: Option<crate::train::RewardSignal>,
    /// PPO's probability ratio: joint (summed over users, the paper) or per-user.
    #[arg(long, value_enum)]
    pub ratio: Option<crate::train::Ratio>,
    /// PPO/A2C: a learnt weight per logit on the user's "previous server" one-hot,
    /// starting at C, so each user starts near its previous server (0, the default,
    /// is the paper's plain MLP).
    #[arg(long, value_name = "C")]
    pub stay_prior: Option<f64>,
    /// PPO/A2C: first imitate the oracle for N iterations (DAgger: the oracle labels
    /// every slot and hands the driving over to the actor), then PPO (default 0,
    /// the paper). An iteration costs about 20 ms of oracle per slot.
    #[arg(long, value_name = "N")]
    pub imitate: Option<usize>,
    /// Entropy bonus: weight on the mean per-user entropy (default 0.01).
    #[arg(long)]
    pub entropy: Option<f64>,
    /// Actor learning rate (default 2.5e-4).
    #[arg(long)]
    pub lr_actor: Option<f64>,
    /// Critic learning rate (default 1.5e-3).
    #[arg(long)]
    pub lr_critic: Option<f64>,
    /// Where to train: auto (CUDA when present), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run folder, created if missing (default: a fresh `runs/train-<UTC timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its checkpoint (its config.toml is used; only
    /// --iterations may be given to extend it).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

/// Arguments of `diten solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    /// JSON instance with `params` (optional), `servers`, `users` and
    /// `association`; `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pub instance: PathBuf,
    /// Exported policy (.onnx or .bin blob) that decides the association when the
    /// instance has none, through the controller's decision loop (with repair).
    #[arg(long, value_name = "NAME|PATH")]
    pub policy: Option<String>,
    /// Signature checks of --policy.
    #[command(flatten)]
    pub trust: sign::TrustArgs,
    /// The γ solver: `exact` (f64, the global optimum within 1e-6 on e) or `f32`
    /// (the single-precision path of a target without a double-precision FPU,
    /// within 1e-5 of exact on e as measured). Applies to the γ step only; every
    /// printed figure is evaluated exactly at the chosen γ.
    #[arg(long, value_enum, default_value_t = solve::GammaSolver::Exact)]
    pub solver: solve::GammaSolver,
}

/// Arguments of `diten evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The decision maker: a built-in name (nearest, nearest-random, sticky, oracle,
    /// random), a training checkpoint (`checkpoint.ot` or its run folder) or a
    /// firmware blob (`.bin`, run through the controller's decision loop); `{S}` in
    /// a path stands for the episode's number of servers.
    #[arg(long, value_name = "NAME|PATH")]
    pub policy: String,
    /// The scenario and the sweep.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// Arguments of `diten compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Decision makers, comma-separated built-in names or trained policy files
    /// (default: nearest,nearest-random,sticky,oracle). All run on the same episodes.
    /// `{S}` in a path stands for the episode's number of servers, so
    /// `runs/u20-s{S}/policy.bin` puts a flat model trained per S on its own S.
    #[arg(long, value_name = "NAME|PATH,...", value_delimiter = ',')]
    pub policy: Vec<String>,
    /// The scenario and the sweep.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// Arguments of `diten frontier`.
#[derive(Debug, Args)]
pub struct FrontierArgs {
    /// Prices to sweep: values of f0 for `cost_norm = "linear"`, comma-separated
    /// (default: 100,1000,3000,10000,30000,100000,300000,1000000). Under the linear
    /// objective a server's energy C_s costs β2·C_s / (4·f0·S) of e: a small f0
    /// makes energy dominate, a large one utility.
    #[arg(long, value_name = "F0,...", value_delimiter = ',')]
    pub prices: Vec<f64>,
    /// Decision makers drawn as points beside the frontier, run under the
    /// scenario's own objective (as `compare --policy`; default: every built-in).
    #[arg(long, value_name = "NAME|PATH,...", value_delimiter = ',')]
    pub policy: Vec<String>,
    /// The scenario and the sweep.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// Arguments of `diten foresight`.
#[derive(Debug, Args)]
pub struct ForesightArgs {
    /// Objectives to measure under, comma-separated: `paper` (eq. 22, with the
    /// scenario's f0) and `linear` (SPEC §2.1b, with --linear-f0) (default: both).
    #[arg(long, value_name = "NORM,...", value_delimiter = ',', value_parser = parse_cost_norm)]
    pub objectives: Vec<diten_controller::CostNorm>,
    /// f0 of the linear objective's runs: the energy price (default 3000, the
    /// price of examples/energy-aware.toml).
    #[arg(long, value_name = "F0", default_value_t = 3000.0)]
    pub linear_f0: f64,
    /// The scenario and the sweep (each episode is run by the oracle and by the
    /// lookahead, about 8 oracle calls per slot together).
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// Parses an objective's name (`paper`, `linear`).
fn parse_cost_norm(text: &str) -> Result<diten_controller::CostNorm, String> {
    diten_controller::CostNorm::from_name(text.trim())
        .ok_or_else(|| format!("`{text}` is not an objective (paper, linear)"))
}

/// The scenario, the sweep and the outputs of `evaluate` and `compare`. Each
/// decision maker runs one full episode per (servers, emd, seed); flags override
/// the scenario file, and a flag left out takes the scenario's value.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Scenario TOML file (see `diten_trainer::scenario`); without it the SPEC §2
    /// defaults (20 users, 15 servers, 750 slots, φ = 0, seed 1).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Numbers of edge servers S to evaluate, comma-separated, e.g. `9,15,21`
    /// (default: the scenario's `servers`).
    #[arg(long, value_name = "S,...", value_delimiter = ',')]
    pub servers: Vec<usize>,
    /// EMD φ of every user's data, comma-separated values in [0, 2], e.g. `0,0.2,0.4`
    /// (default: the scenario's `emd`); one plot per value.
    #[arg(long, value_name = "PHI,...", value_delimiter = ',')]
    pub emd: Vec<f64>,
    /// Slots per episode T (default: the scenario's `slots`).
    #[arg(long, value_name = "T")]
    pub slots: Option<usize>,
    /// Number of users U (default: the scenario's `users`).
    #[arg(long, value_name = "U")]
    pub users: Option<usize>,
    /// Episode seeds: a count N (the seeds 1..=N), a comma list (`1,2,3`), an
    /// inclusive range (`4..=6`) or both (`1,4..=6`) (default: the scenario's
    /// `seed`). Mean and standard deviation are taken over these episodes.
    #[arg(long, value_name = "SEEDS", value_parser = evaluate::parse_seeds)]
    pub seeds: Option<Seeds>,
    /// Output folder, created if missing; nothing is written outside it (default:
    /// a fresh folder `runs/<command>-<UTC timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON (the content of summary.json) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Episodes run at the same time (default: the number of CPUs). Results do not
    /// depend on it.
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
    /// Signature checks of the policy files in --policy.
    #[command(flatten)]
    pub trust: sign::TrustArgs,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Solve(args) => solve::run(&args),
        Command::Evaluate(args) => evaluate::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Frontier(args) => frontier::run(&args),
        Command::Foresight(args) => foresight::run(&args),
        Command::Train(args) => train::run(&args),
        Command::TrainGeneral(args) => train_general::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Infer(args) => infer::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Ship(args) => ship::run(&args),
        Command::Models(args) => models::run(&args),
        Command::Results(args) => results::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Keygen(args) => sign::keygen(&args),
        Command::Sign(args) => sign::sign(&args),
        Command::Verify(args) => sign::verify(&args),
    }
}

/// Prints one line on stdout. A closed pipe (`diten solve ... | head -c0`) is not an
/// error: the reader wanted no more, as with any Unix filter.
pub(crate) fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// Reports a command-line parse error: `--help` and `--version` print as clap
/// renders them (exit 0); a usage error becomes one line `error: ...` on stderr
/// with exit code 2 (clap's and the usual Unix convention for usage errors).
pub fn report_usage_error(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        // Help or version: a failed write to stdout has nowhere better to go.
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let rendered = err.render().to_string();
    // Clap's message spans several lines: the error, indented details and tips,
    // then the usage. Keep everything before the usage, joined on one line.
    let message = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("error: {}", one_line(message));
    ExitCode::from(2)
}

/// Makes `text` safe to print as one line: control characters (newlines included,
/// which may come from file names or JSON keys) are escaped as in Rust strings.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
