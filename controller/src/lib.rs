//! # diten-controller
//!
//! The per-slot brain of a diten gateway: the system model of the paper
//! "Energy-Efficient Federated Learning and Migration in Digital Twin Edge Networks"
//! (with the corrections of SPEC §2), and the globally optimal γ solver. It is
//! `#![no_std]`, never allocates and never panics on bad input: every fallible
//! function returns [`Error`].
//!
//! ```
//! use diten_controller::{evaluate, solve_gamma, Params, Server, Slot, User};
//!
//! let servers = [Server { x: 10.0, y: 20.0, p: 125.0, q: 1450.0, eps: 55.0, available: true }];
//! let users = [User {
//!     x: 3.0, y: 4.0, emd: 0.2, twin_bits: 4500.0,
//!     data_bits: 784_000.0, prev_data_bits: 392_000.0, prev_server: Some(0),
//! }];
//! let slot: Slot<4, 4> = Slot::new(&servers, &users)?;
//! let params = Params::default();
//! let association = [0];
//! let mut gamma = [0.0];
//! solve_gamma(&params, &slot, &association, &mut gamma)?;
//! let eval = evaluate(&params, &slot, &association, &gamma)?;
//! assert!((eval.objective - 0.0395068).abs() < 1e-6);
//! assert!(eval.feasible());
//! # Ok::<(), diten_controller::Error>(())
//! ```
//!
//! [`signature`] checks a policy's detached `.sig` file (Ed25519 over a header
//! with the file's SHA-256 and a monotonic `policy_version`, no heap), and
//! [`policy::Policy::parse_signed`] parses a blob only when it verifies.
//!
//! Features (additive; the manifest says more): `std` adds `std` support to
//! serde; `onnx` (with `std`) adds `policy::OnnxPolicy`: an exported ONNX policy
//! loaded at run time and run by tract-onnx, an [`policy::Engine`] for the same
//! [`Controller`]; `wide` (with `std`) runs `policy-v2` networks of up to 64
//! hidden units instead of 16 ([`policy::general::RUN_MAX_HIDDEN`]); none
//! changes a number. `host-math` (the platform's libm instead of the `libm` crate) and
//! `simd` (the `policy-v1` engine's AVX2 + FMA path on x86-64; the `policy-v2`
//! engine's AVX2 path gives the scalar logits bit for bit) each change results
//! in the last bits, so a build names them. The error type implements
//! `core::error::Error` in every build.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod controller;
mod cost_norm;
mod error;
mod frame;
mod math;
pub mod model;
pub mod obs;
mod params;
pub mod policy;
pub mod signature;
mod slot;
pub mod solver;
#[cfg(test)]
mod test_rng;
pub mod trace;

pub use controller::{Controller, Decision, RepairOutcome};
pub use error::{Error, Problem};
pub use model::{evaluate, Evaluation, ServerCost, Violations};
pub use params::{CostNorm, Params};
pub use slot::{manhattan, Server, Slot, User, MAX_SERVERS, MAX_USERS};
pub use solver::{solve_gamma, solve_gamma_f32, GammaSolver, ServerSolverF32, SolveStats};
