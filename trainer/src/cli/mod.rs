//! The `diten` command line: the clap types, the dispatch and the error conventions
//! of SPEC §3.4 (an error is one line on stderr and a non-zero exit).
//!
//! Each subcommand has its own module with a `run` taking its parsed arguments;
//! a new subcommand adds a variant to [`Command`], an `Args` struct here and a
//! module beside [`solve`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod input;
pub mod solve;

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
}

/// Arguments of `diten solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    /// JSON instance with `params` (optional), `servers`, `users` and
    /// `association`; `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pub instance: PathBuf,
    /// Decision maker for the association when the instance has none: a baseline
    /// name or an ONNX file (no policies are available yet).
    #[arg(long, value_name = "NAME|PATH")]
    pub policy: Option<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Solve(args) => solve::run(&args),
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
