//! The errors of the recorded trace ([`crate::trace`]): why a trace is refused,
//! cannot be written, or cannot be replayed further ([`TraceError`]).

use core::fmt;

use super::Error;

/// The trace format version this build writes and reads.
///
/// Defined beside [`TraceError`], whose text names it, so that the error vocabulary
/// imports no file format; [`crate::trace`] re-exports it.
pub const TRACE_VERSION: u16 = 3;

/// Why a trace is refused, cannot be written, or cannot be replayed further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceError {
    /// The trace does not start with the magic `DTNT`.
    Magic,
    /// The trace has a format version this build cannot read.
    Version {
        /// The version in the header.
        found: u16,
    },
    /// A count (`users`, `servers`, `slots`) is zero or too large.
    Dims {
        /// The field.
        field: &'static str,
        /// The value given.
        value: usize,
    },
    /// The trace's `payload_len` is not what its dimensions need.
    Length {
        /// Bytes the dimensions need.
        expected: usize,
        /// Bytes the header states.
        got: usize,
    },
    /// The trace is shorter than its header, or than header + payload.
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The trace is longer than its header + payload.
    Trailing {
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The CRC32 of the trace's payload is not the one in its header.
    Crc {
        /// CRC32 in the header.
        stored: u32,
        /// CRC32 of the payload as given.
        computed: u32,
    },
    /// A slot, user or server index beyond the trace's counts.
    Range {
        /// `slots`, `users` or `servers`.
        field: &'static str,
        /// The index given.
        index: usize,
        /// The trace's count.
        count: usize,
    },
    /// A flag (`available`, `present`) is neither 0.0 nor 1.0.
    Flag {
        /// `available` or `present`.
        field: &'static str,
        /// The slot.
        slot: usize,
        /// The server (`available`) or user (`present`).
        index: usize,
    },
    /// A decision was committed after the trace's last slot.
    End,
    /// The buffer given to the trace encoder is too small.
    Buffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TraceError::Magic => f.write_str("trace.magic: not a diten trace (expected \"DTNT\")"),
            TraceError::Version { found } => write!(
                f,
                "trace.version: format version {found} is not supported (expected {TRACE_VERSION})"
            ),
            TraceError::Dims { field, value } => {
                write!(f, "trace.{field}: {value} is out of range")
            }
            TraceError::Length { expected, got } => write!(
                f,
                "trace.payload_len: {got} bytes, the dimensions need {expected}"
            ),
            TraceError::Truncated { expected, got } => {
                write!(f, "trace: truncated, {got} bytes of {expected}")
            }
            TraceError::Trailing { expected, got } => {
                write!(
                    f,
                    "trace: {got} bytes, but the header accounts for {expected}"
                )
            }
            TraceError::Crc { stored, computed } => write!(
                f,
                "trace.crc: the payload's CRC32 is {computed:#010x}, the header says {stored:#010x}"
            ),
            TraceError::Range {
                field,
                index,
                count,
            } => {
                write!(f, "trace.{field}: index {index}, the trace has {count}")
            }
            TraceError::Flag { field, slot, index } => write!(
                f,
                "trace.slots[{slot}].{field}[{index}]: a flag must be 0.0 or 1.0"
            ),
            TraceError::End => f.write_str("trace: every slot has been replayed"),
            TraceError::Buffer { expected, got } => {
                write!(f, "trace: output buffer of {got} bytes, {expected} needed")
            }
        }
    }
}

impl core::error::Error for TraceError {}

impl From<TraceError> for Error {
    fn from(error: TraceError) -> Self {
        Error::Trace(error)
    }
}
