//! # diten-trainer
//!
//! Everything of diten that runs on a PC: today the `diten` command line ([`cli`]);
//! later the simulator, PPO training, the baselines, evaluation and export. The
//! system model itself lives once, in `diten-controller`; this crate calls it and
//! computes none of its numbers.
#![deny(missing_docs)]

pub mod cli;
pub mod eval;
pub mod policy;
pub mod scenario;
pub mod sim;
pub mod train;

pub use cli::run;
