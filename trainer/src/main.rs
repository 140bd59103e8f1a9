//! The `diten` command: parse the command line, run, report an error as one line.

use std::process::ExitCode;

use clap::Parser;
use diten_trainer::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return diten_trainer::cli::report_usage_error(&e),
    };
    match diten_trainer::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain with ": " on one line.
            eprintln!("error: {}", diten_trainer::cli::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
