//! # diten-trainer
//!
//! Everything of diten that runs on a PC, behind the `diten` command line ([`cli`]):
//! atomic file writes and the plot frame ([`util`]), the scenario configuration
//! ([`scenario`]), the edge-network simulator ([`sim`]),
//! the decision makers that need no learning and trained policies as decision
//! makers ([`policy`]), evaluation and comparison with tables and plots ([`eval`]),
//! training on libtorch ([`train`], feature `torch`, on by default), and ONNX
//! export of trained policies and their conversion to the firmware blob
//! ([`onnx`], feature `onnx`, on by default and implied by `torch`; export reads
//! checkpoints, so it needs `torch`), and the signing of policy files with their
//! key files ([`signing`]). Without `onnx` (`make demo`'s build: no tract-onnx to
//! compile) `diten` runs firmware blobs only, and each command that would read or
//! write an ONNX graph fails with one line saying so. The system
//! model itself lives once, in `diten-controller`; this crate calls it and computes
//! none of its numbers.
//!
//! The modules are layers, each importing only those below it: [`util`] (with
//! [`scenario`] and [`signing`]) → [`sim`] → [`policy`] → [`eval`] → [`train`] →
//! [`onnx`] → [`cli`].
#![deny(missing_docs)]

pub mod cli;
pub mod eval;
pub mod onnx;
pub mod policy;
pub mod scenario;
pub mod signing;
pub mod sim;
pub mod train;
pub mod util;

pub use cli::run;
