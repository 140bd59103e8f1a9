//! Error values of the controller: small, `Copy`, no heap, printable.
//!
//! The bottom layer of the crate: every module imports [`Error`], and this module
//! imports none of them (only the leaf `cost_norm`, which [`Error::PolicyObjective`]
//! names). The enums of the file formats live here too, each in a child module
//! with its `Display` and the `From` into [`Error`] (`blob`: [`BlobError`] and
//! [`BlobField`]; `trace`: [`TraceError`]; `signature`: [`SignatureError`]), and
//! each format re-exports its enum at its public path (`policy::BlobError`,
//! `trace::TraceError`, `signature::SignatureError`). So does the version
//! constant each error's text names (`FORMAT_VERSION`, `TRACE_VERSION`,
//! `SIG_FORMAT_VERSION`). How a format maps the shared framing's `FrameError`
//! into its enum stays with the format.

use core::fmt;

mod blob;
mod signature;
mod trace;

pub use blob::{BlobError, BlobField, FORMAT_VERSION};
pub use signature::{SignatureError, SIG_FORMAT_VERSION};
pub use trace::{TraceError, TRACE_VERSION};

use crate::cost_norm::CostNorm;

/// What is wrong with a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// NaN or ±∞.
    NotFinite,
    /// Below zero where zero or more is required.
    Negative,
    /// Zero or below where a strictly positive value is required.
    NotPositive,
    /// Outside the documented range of the field.
    OutOfRange,
    /// A position outside the square area (see [`Slot::check_area`](crate::Slot::check_area)).
    OutsideArea,
}

impl Problem {
    fn text(self) -> &'static str {
        match self {
            Problem::NotFinite => "must be a finite number",
            Problem::Negative => "must be >= 0",
            Problem::NotPositive => "must be > 0",
            Problem::OutOfRange => "is out of range",
            Problem::OutsideArea => "lies outside the area",
        }
    }
}

/// Every way an input to the model, the solver or the decision can be invalid.
///
/// `Display` names the offending field the way the JSON contract of `diten solve`
/// spells it (`users[3].data_bits: must be >= 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The slot has no users.
    NoUsers,
    /// The slot has no servers.
    NoServers,
    /// Every server of the slot is unavailable (SPEC §2.2a): nobody can be placed.
    NoAvailableServers,
    /// More users than the compile-time capacity.
    TooManyUsers {
        /// Users given.
        count: usize,
        /// Capacity of the container.
        capacity: usize,
    },
    /// More servers than the compile-time capacity.
    TooManyServers {
        /// Servers given.
        count: usize,
        /// Capacity of the container.
        capacity: usize,
    },
    /// A user field is invalid.
    User {
        /// Index of the user.
        index: usize,
        /// Name of the field as in JSON.
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// A server field is invalid.
    Server {
        /// Index of the server.
        index: usize,
        /// Name of the field as in JSON.
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// A model parameter is invalid.
    Param {
        /// Name of the parameter as in JSON/TOML (`alpha`, `beta1`, ...).
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// `alpha` and this user's EMD give a utility exponent v(φ) outside (0, 1]:
    /// the utility would not be concave in the data size and the γ solver's
    /// optimality proof would not hold.
    UtilityExponent {
        /// Index of the user whose `emd` gives the bad exponent.
        user: usize,
    },
    /// The association does not have one entry per user.
    AssociationLength {
        /// Number of users.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// The observation buffer is shorter than the observation.
    ObservationLength {
        /// Values the observation needs.
        expected: usize,
        /// Length of the buffer given.
        got: usize,
    },
    /// An association entry names a server that does not exist.
    AssociationIndex {
        /// The user whose entry is wrong.
        user: usize,
        /// The server index given.
        server: usize,
    },
    /// An association entry names a server that is unavailable this slot
    /// (SPEC §2.2a: it hosts nobody).
    AssociationUnavailable {
        /// The user whose entry is wrong.
        user: usize,
        /// The unavailable server.
        server: usize,
    },
    /// A policy blob was refused or could not be written: see [`BlobError`].
    Blob(BlobError),
    /// The ONNX engine (`onnx` feature, tract) failed to run a loaded model.
    PolicyRun,
    /// A buffer given to the policy engine has the wrong length: `policy.obs`,
    /// `policy.logits` and `policy.servers` must match exactly, `policy.scratch`
    /// must be at least as long as required.
    PolicyBuffer {
        /// Which buffer.
        buffer: &'static str,
        /// Values required.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// An observation value given to the policy engine is NaN or ±∞.
    ObservationValue {
        /// Index of the value in the observation.
        index: usize,
    },
    /// A policy decides for more users or servers than the controller's
    /// compile-time capacity.
    PolicyCapacity {
        /// `users` or `servers`.
        field: &'static str,
        /// The policy's count.
        count: usize,
        /// The controller's capacity.
        capacity: usize,
    },
    /// The controller's workspace is shorter than the policy needs.
    WorkspaceLength {
        /// Values needed.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A status has another number of users or servers than the policy decides for.
    PolicyDims {
        /// `users` or `servers`.
        field: &'static str,
        /// The policy's count.
        expected: usize,
        /// The status's count.
        got: usize,
    },
    /// The policy was trained for another objective than the controller's
    /// parameters set (SPEC §2.1b); [`Controller::new_any_objective`](crate::Controller::new_any_objective)
    /// runs it anyway.
    PolicyObjective {
        /// What the policy was trained for.
        policy: CostNorm,
        /// What the parameters say.
        params: CostNorm,
    },
    /// A trace was refused, could not be written or was replayed past its end:
    /// see [`TraceError`].
    Trace(TraceError),
    /// A signed policy was refused: see [`SignatureError`].
    Signature(SignatureError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoUsers => f.write_str("users: at least one user is required"),
            Error::NoServers => f.write_str("servers: at least one server is required"),
            Error::NoAvailableServers => {
                f.write_str("servers: at least one server must be available")
            }
            Error::TooManyUsers { count, capacity } => {
                write!(f, "users: {count} users exceed the capacity of {capacity}")
            }
            Error::TooManyServers { count, capacity } => {
                write!(f, "servers: {count} servers exceed the capacity of {capacity}")
            }
            Error::User { index, field, problem } => {
                write!(f, "users[{index}].{field}: {}", problem.text())
            }
            Error::Server { index, field, problem } => {
                write!(f, "servers[{index}].{field}: {}", problem.text())
            }
            Error::Param { field, problem } => write!(f, "params.{field}: {}", problem.text()),
            Error::UtilityExponent { user } => write!(
                f,
                "users[{user}].emd: with params.alpha the utility exponent v(emd) must lie in (0, 1]"
            ),
            Error::AssociationLength { expected, got } => {
                write!(f, "association: {got} entries for {expected} users")
            }
            Error::ObservationLength { expected, got } => {
                write!(f, "obs: {got} values for an observation of {expected}")
            }
            Error::AssociationIndex { user, server } => {
                write!(f, "association[{user}]: server {server} does not exist")
            }
            Error::AssociationUnavailable { user, server } => {
                write!(f, "association[{user}]: server {server} is unavailable this slot")
            }
            Error::Blob(error) => error.fmt(f),
            Error::PolicyRun => write!(f, "policy: the ONNX engine failed to run the model"),
            Error::PolicyBuffer { buffer, expected, got } => {
                write!(f, "{buffer}: {got} values, {expected} needed")
            }
            Error::ObservationValue { index } => write!(f, "obs[{index}]: must be a finite number"),
            Error::PolicyCapacity { field, count, capacity } => write!(
                f,
                "policy.{field}: {count} exceed the controller's capacity of {capacity}"
            ),
            Error::WorkspaceLength { expected, got } => {
                write!(f, "workspace: {got} values, {expected} needed")
            }
            Error::PolicyDims { field, expected, got } => {
                write!(f, "{field}: {got} in the status, the policy decides for {expected}")
            }
            Error::PolicyObjective { policy, params } => write!(
                f,
                "params.cost_norm: `{params}`, but the policy was trained for `{policy}` \
                 (run it anyway only on purpose)"
            ),
            Error::Trace(error) => error.fmt(f),
            Error::Signature(error) => error.fmt(f),
        }
    }
}

impl core::error::Error for Error {}
