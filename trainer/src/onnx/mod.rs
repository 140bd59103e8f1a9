//! Trained policies as ONNX models (SPEC §3.2) and ONNX models as firmware blobs
//! (SPEC §3.3).
//!
//! `export` writes a policy as an ONNX `ModelProto` (IR version [`IR_VERSION`],
//! opset [`OPSET`]); `convert` reads such a model back, accepting exactly the graph
//! the exporter writes, and encodes it as the controller's blob. `general` does
//! both for the size-agnostic `policy-v2` (SPEC §3.2a: inputs `users`, `servers`,
//! `pairs` with symbolic U and S, output `logits [U, S]`), and turns a `policy-v2`
//! blob back into ONNX; [`onnx_to_blob`] takes either format, by `diten.format`. Both are built on
//! tract-onnx's protobuf types and exist only with the `onnx` feature (default;
//! `make demo` builds without it): without it [`onnx_to_blob`] is an error saying
//! so, and every command that reads or writes an ONNX graph fails with it. The
//! names and [`keys`] below, and [`metadata`] (a model's `metadata_props`, all
//! that `diten models` and `diten demo` read of a shipped `policy.onnx`), are in
//! every build.
//!
//! # The graph
//!
//! One input [`INPUT`] (`obs`), float32 `[batch, obs_dim]` (`batch` a symbolic
//! dimension), one output [`OUTPUT`] (`logits`), float32 `[batch, U·S]`, user-major.
//! The nodes, in this order, for an actor with layers `l0 … lN` (N ≥ 0):
//!
//! | node             | op   | inputs                                             | output              |
//! |------------------|------|----------------------------------------------------|---------------------|
//! | `obs_norm.sub`   | Sub  | `obs`, `obs_norm.mean`                             | `obs_norm.centered` |
//! | `obs_norm.mul`   | Mul  | `obs_norm.centered`, `obs_norm.inv_std`            | `obs_norm.scaled`   |
//! | `obs_norm.clip`  | Clip | `obs_norm.scaled`, `obs_norm.min`, `obs_norm.max`  | `obs_norm.out`      |
//! | `actor.l0`       | Gemm | `obs_norm.out`, `actor.l0.weight`, `actor.l0.bias` | `actor.l0.out`      |
//! | `actor.l0.tanh`  | Tanh | `actor.l0.out`                                     | `actor.l0.tanh`     |
//! | …                |      |                                                    |                     |
//! | `actor.lN`       | Gemm | `actor.l(N−1).tanh`, `actor.lN.weight`, `actor.lN.bias` | `logits`       |
//!
//! With a skip layer the last Gemm writes `actor.lN.out` instead, and two nodes
//! follow: `actor.skip` (Gemm of `obs_norm.out`, `actor.skip.weight`,
//! `actor.skip.bias` into `actor.skip.out`) and `actor.skip.add` (Add of
//! `actor.lN.out` and `actor.skip.out` into `logits`).
//!
//! With a prior (trained with `--stay-prior`) three nodes come last:
//! `actor.prior.gather` (Gather, `axis = 1`, of `obs_norm.out` at the int64
//! indices `actor.prior.index` `[U·S]` into `actor.prior.gathered`),
//! `actor.prior.mul` (Mul by `actor.prior.weight` `[U·S]` into `actor.prior.out`)
//! and `actor.prior.add` (Add of the logits so far — `actor.lN.out`, or
//! `actor.skip.sum` after a skip layer — and `actor.prior.out` into `logits`).
//!
//! Every Gemm has `transB = 1` (weights `outputs × inputs`, row-major: torch's
//! layout and the blob's), `alpha = beta = 1`. The initializers are float32 with
//! their values in `raw_data`, little-endian: `obs_norm.mean` and
//! `obs_norm.inv_std` (`[obs_dim]`, the normaliser folded as
//! `inv_std = 1/sqrt(var + 1e-8)`), the scalars `obs_norm.min` = −10 and
//! `obs_norm.max` = 10, and the layers' weights `[outputs, inputs]` and biases
//! `[outputs]`, named as in the training checkpoint (the skip layer's bias is zero).
//!
//! # Metadata
//!
//! `metadata_props` hold [`keys::FORMAT`] = [`FORMAT`], [`keys::OBS_LAYOUT`] =
//! [`OBS_LAYOUT`](diten_controller::obs::OBS_LAYOUT), [`keys::USERS`],
//! [`keys::SERVERS`] and, from a training run, [`keys::ALGO`], [`keys::SCENARIO`]
//! (the `[scenario]` table of the run's `config.toml`, as TOML), [`keys::SEED`],
//! [`keys::COST_NORM`] (the objective of the training scenario's `params`) and
//! [`keys::EVALUATION`] (an evaluation summary, or `none`).

#[cfg(feature = "onnx")]
pub mod convert;
#[cfg(feature = "onnx")]
pub mod export;
#[cfg(feature = "onnx")]
pub mod general;
pub mod metadata;

#[cfg(feature = "onnx")]
pub use convert::onnx_to_blob;
#[cfg(feature = "torch")]
pub use export::export;
#[cfg(feature = "onnx")]
pub use export::{model_proto, Network};
pub use metadata::Metadata;

/// Why an ONNX file cannot be read or written by this build: one line, as every
/// command that needs the `onnx` feature reports it.
pub const NO_ONNX: &str = "this diten was built without ONNX support (feature `onnx`, \
     which `make demo` leaves out); rebuild with `--features onnx` or default features";

/// Without the `onnx` feature: the error [`NO_ONNX`], for any bytes.
#[cfg(not(feature = "onnx"))]
pub fn onnx_to_blob(_bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    Err(anyhow::anyhow!(
        "{NO_ONNX}, or give the firmware blob (.bin)"
    ))
}

/// ONNX IR version the exporter writes.
pub const IR_VERSION: i64 = 8;

/// Opset of the default domain the exporter writes (Clip takes its bounds as inputs
/// from opset 11 on).
pub const OPSET: i64 = 13;

/// Oldest opset the converter reads.
pub const MIN_OPSET: i64 = 11;

/// Value of [`keys::FORMAT`].
pub const FORMAT: &str = "policy-v1";

/// Value of [`keys::FORMAT`] for the size-agnostic policy (SPEC §3.2a, [`general`]).
pub const FORMAT_V2: &str = "policy-v2";

/// Name of the graph input.
pub const INPUT: &str = "obs";

/// Name of the graph output.
pub const OUTPUT: &str = "logits";

/// File name of the exported policy in a run folder.
pub const FILE: &str = "policy.onnx";

/// The `metadata_props` keys.
pub mod keys {
    /// The model format, [`FORMAT`](super::FORMAT).
    pub const FORMAT: &str = "diten.format";
    /// The observation layout id.
    pub const OBS_LAYOUT: &str = "diten.obs_layout";
    /// Users U, decimal.
    pub const USERS: &str = "diten.users";
    /// Servers S, decimal.
    pub const SERVERS: &str = "diten.servers";
    /// The training algorithm (`ppo`, `a2c`, `ddpg`).
    pub const ALGO: &str = "diten.algo";
    /// The training scenario as TOML.
    pub const SCENARIO: &str = "diten.scenario";
    /// The training seed.
    pub const SEED: &str = "diten.seed";
    /// The evaluation summary, or `none`.
    pub const EVALUATION: &str = "diten.evaluation";
    /// The objective the policy was trained for (`paper` or `linear`, SPEC §2.1b);
    /// read as `paper` when absent.
    pub const COST_NORM: &str = "diten.cost_norm";
    /// `policy-v2` only: the decoder weights, comma-separated f32 (see [`general`](super::general)).
    pub const DECODER: &str = "diten.decoder";
}
