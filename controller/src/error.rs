//! Error values of the controller: small, `Copy`, no heap, printable.

use core::fmt;

use crate::params::CostNorm;
use crate::policy::{BlobField, FORMAT_VERSION};
use crate::signature::SignatureError;
use crate::trace::TRACE_VERSION;

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
    /// A policy blob does not start with the magic `DTNB`.
    BlobMagic,
    /// A policy blob has a format version this build cannot read.
    BlobVersion {
        /// The version in the header.
        found: u16,
    },
    /// A policy blob was made for another observation layout than
    /// [`OBS_LAYOUT`](crate::obs::OBS_LAYOUT).
    BlobLayout,
    /// A policy blob is shorter than its header, or than the header plus the
    /// payload length the header states.
    BlobTruncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A policy blob is longer than its header plus the payload length the header
    /// states.
    BlobTrailing {
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The CRC32 of a policy blob's payload is not the one in its header.
    BlobCrc {
        /// CRC32 in the header.
        stored: u32,
        /// CRC32 of the payload as given.
        computed: u32,
    },
    /// A policy blob's payload is not valid postcard data at this field (a bad
    /// varint or option tag, or a value running past the end of the payload).
    BlobPayload {
        /// The field being read.
        field: BlobField,
    },
    /// A policy blob's payload has bytes left over after the model.
    BlobPayloadTrailing {
        /// Bytes left over.
        unused: usize,
    },
    /// A count or width in a policy blob is outside its allowed range.
    BlobLimit {
        /// The field.
        field: BlobField,
        /// The value given.
        value: usize,
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
    },
    /// A dimension in a policy blob disagrees with what the rest of the blob fixes.
    BlobDim {
        /// The field.
        field: BlobField,
        /// The value the rest of the blob requires.
        expected: usize,
        /// The value given.
        got: usize,
    },
    /// An array of `f32` values in a policy blob has the wrong length in bytes.
    BlobLength {
        /// The field.
        field: BlobField,
        /// Bytes required (4 per value).
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// An index in a policy blob (the prior's inputs) is out of range.
    BlobIndex {
        /// The array.
        field: BlobField,
        /// Position in the array.
        index: usize,
        /// The value found.
        value: usize,
        /// Values must be below this.
        limit: usize,
    },
    /// A value in a policy blob is NaN or ±∞.
    BlobValue {
        /// The array.
        field: BlobField,
        /// Index of the value in the array.
        index: usize,
    },
    /// The buffer given to the blob encoder is too small.
    BlobBuffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
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
    /// A trace does not start with the magic `DTNT`.
    TraceMagic,
    /// A trace has a format version this build cannot read.
    TraceVersion {
        /// The version in the header.
        found: u16,
    },
    /// A count in a trace (`users`, `servers`, `slots`) is zero or too large.
    TraceDims {
        /// The field.
        field: &'static str,
        /// The value given.
        value: usize,
    },
    /// A trace's `payload_len` is not what its dimensions need.
    TraceLength {
        /// Bytes the dimensions need.
        expected: usize,
        /// Bytes the header states.
        got: usize,
    },
    /// A trace is shorter than its header, or than header + payload.
    TraceTruncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A trace is longer than its header + payload.
    TraceTrailing {
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The CRC32 of a trace's payload is not the one in its header.
    TraceCrc {
        /// CRC32 in the header.
        stored: u32,
        /// CRC32 of the payload as given.
        computed: u32,
    },
    /// A slot, user or server index beyond a trace's counts.
    TraceRange {
        /// `slots`, `users` or `servers`.
        field: &'static str,
        /// The index given.
        index: usize,
        /// The trace's count.
        count: usize,
    },
    /// A flag in a trace (`available`, `present`) is neither 0.0 nor 1.0.
    TraceFlag {
        /// `available` or `present`.
        field: &'static str,
        /// The slot.
        slot: usize,
        /// The server (`available`) or user (`present`).
        index: usize,
    },
    /// A decision was committed after a trace's last slot.
    TraceEnd,
    /// The buffer given to the trace encoder is too small.
    TraceBuffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
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
            Error::BlobMagic => f.write_str("blob.magic: not a diten policy blob (expected \"DTNB\")"),
            Error::BlobVersion { found } => write!(
                f,
                "blob.version: format version {found} is not supported (expected {FORMAT_VERSION})"
            ),
            Error::BlobLayout => f.write_str("blob.layout: the observation layout is not diten-obs-v1"),
            Error::BlobTruncated { expected, got } => {
                write!(f, "blob: truncated, {got} bytes of {expected}")
            }
            Error::BlobTrailing { expected, got } => {
                write!(f, "blob: {got} bytes, but the header accounts for {expected}")
            }
            Error::BlobCrc { stored, computed } => write!(
                f,
                "blob.crc: the payload's CRC32 is {computed:#010x}, the header says {stored:#010x}"
            ),
            Error::BlobPayload { field } => write!(f, "{field}: malformed postcard data"),
            Error::BlobPayloadTrailing { unused } => {
                write!(f, "blob.payload: {unused} bytes left after the model")
            }
            Error::BlobLimit { field, value, min, max } => {
                write!(f, "{field}: {value} is outside {min}..={max}")
            }
            Error::BlobDim { field, expected, got } => write!(f, "{field}: {got}, expected {expected}"),
            Error::BlobLength { field, expected, got } => {
                write!(f, "{field}: {got} bytes, expected {expected}")
            }
            Error::BlobIndex { field, index, value, limit } => {
                write!(f, "{field}[{index}]: {value} is out of range (must be below {limit})")
            }
            Error::BlobValue { field, index } => write!(f, "{field}[{index}]: must be a finite number"),
            Error::BlobBuffer { expected, got } => {
                write!(f, "blob: output buffer of {got} bytes, {expected} needed")
            }
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
            Error::TraceMagic => f.write_str("trace.magic: not a diten trace (expected \"DTNT\")"),
            Error::TraceVersion { found } => write!(
                f,
                "trace.version: format version {found} is not supported (expected {TRACE_VERSION})"
            ),
            Error::TraceDims { field, value } => write!(f, "trace.{field}: {value} is out of range"),
            Error::TraceLength { expected, got } => write!(
                f,
                "trace.payload_len: {got} bytes, the dimensions need {expected}"
            ),
            Error::TraceTruncated { expected, got } => {
                write!(f, "trace: truncated, {got} bytes of {expected}")
            }
            Error::TraceTrailing { expected, got } => {
                write!(f, "trace: {got} bytes, but the header accounts for {expected}")
            }
            Error::TraceCrc { stored, computed } => write!(
                f,
                "trace.crc: the payload's CRC32 is {computed:#010x}, the header says {stored:#010x}"
            ),
            Error::TraceRange { field, index, count } => {
                write!(f, "trace.{field}: index {index}, the trace has {count}")
            }
            Error::TraceFlag { field, slot, index } => write!(
                f,
                "trace.slots[{slot}].{field}[{index}]: a flag must be 0.0 or 1.0"
            ),
            Error::TraceEnd => f.write_str("trace: every slot has been replayed"),
            Error::TraceBuffer { expected, got } => {
                write!(f, "trace: output buffer of {got} bytes, {expected} needed")
            }
            Error::Signature(error) => error.fmt(f),
        }
    }
}

impl core::error::Error for Error {}
