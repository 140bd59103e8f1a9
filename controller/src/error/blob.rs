//! The errors of the policy blob (SPEC §3.3, [`crate::policy::blob`]): why a blob
//! is refused or cannot be written ([`BlobError`]) and where in it ([`BlobField`]).

use core::fmt;

use super::Error;

/// The blob format version this build writes (and reads, besides version 2).
///
/// Defined beside [`BlobError`], whose text names it, so that the error vocabulary
/// imports no file format; [`crate::policy::blob`] re-exports it.
pub const FORMAT_VERSION: u16 = 3;

/// Why a policy blob is refused, or cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob does not start with the magic `DTNB`.
    Magic,
    /// The blob has a format version the parser it was given to cannot read
    /// (a `policy-v2` blob given to the `policy-v1` parser, or the other way
    /// round, or a version of another build).
    Version {
        /// The version in the header.
        found: u16,
        /// The version the parser reads ([`FORMAT_VERSION`] for `policy-v1`,
        /// [`GENERAL_FORMAT_VERSION`](crate::policy::general::GENERAL_FORMAT_VERSION)
        /// for `policy-v2`).
        expected: u16,
    },
    /// The blob was made for another observation layout than the parser's
    /// ([`OBS_LAYOUT`](crate::obs::OBS_LAYOUT) for `policy-v1`,
    /// [`OBS_LAYOUT_V2`](crate::policy::general::OBS_LAYOUT_V2) for `policy-v2`).
    Layout {
        /// The layout the parser reads.
        expected: &'static str,
    },
    /// The blob is shorter than its header, or than the header plus the payload
    /// length the header states.
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The blob is longer than its header plus the payload length the header
    /// states.
    Trailing {
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The CRC32 of the blob's payload is not the one in its header.
    Crc {
        /// CRC32 in the header.
        stored: u32,
        /// CRC32 of the payload as given.
        computed: u32,
    },
    /// The payload is not valid postcard data at this field (a bad varint or
    /// option tag, or a value running past the end of the payload).
    Payload {
        /// The field being read.
        field: BlobField,
    },
    /// The payload has bytes left over after the model.
    PayloadTrailing {
        /// Bytes left over.
        unused: usize,
    },
    /// A count or width is outside its allowed range.
    Limit {
        /// The field.
        field: BlobField,
        /// The value given.
        value: usize,
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
    },
    /// A dimension disagrees with what the rest of the blob fixes.
    Dim {
        /// The field.
        field: BlobField,
        /// The value the rest of the blob requires.
        expected: usize,
        /// The value given.
        got: usize,
    },
    /// An array of `f32` values has the wrong length in bytes.
    Length {
        /// The field.
        field: BlobField,
        /// Bytes required (4 per value).
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// An index (the prior's inputs) is out of range.
    Index {
        /// The array.
        field: BlobField,
        /// Position in the array.
        index: usize,
        /// The value found.
        value: usize,
        /// Values must be below this.
        limit: usize,
    },
    /// A value is NaN or ±∞.
    Value {
        /// The array.
        field: BlobField,
        /// Index of the value in the array.
        index: usize,
    },
    /// The buffer given to the blob encoder is too small.
    Buffer {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlobError::Magic => {
                f.write_str("blob.magic: not a diten policy blob (expected \"DTNB\")")
            }
            BlobError::Version { found, expected } => write!(
                f,
                "blob.version: format version {found} is not supported (expected {expected})"
            ),
            BlobError::Layout { expected } => {
                write!(f, "blob.layout: the observation layout is not {expected}")
            }
            BlobError::Truncated { expected, got } => {
                write!(f, "blob: truncated, {got} bytes of {expected}")
            }
            BlobError::Trailing { expected, got } => {
                write!(
                    f,
                    "blob: {got} bytes, but the header accounts for {expected}"
                )
            }
            BlobError::Crc { stored, computed } => write!(
                f,
                "blob.crc: the payload's CRC32 is {computed:#010x}, the header says {stored:#010x}"
            ),
            BlobError::Payload { field } => write!(f, "{field}: malformed postcard data"),
            BlobError::PayloadTrailing { unused } => {
                write!(f, "blob.payload: {unused} bytes left after the model")
            }
            BlobError::Limit {
                field,
                value,
                min,
                max,
            } => {
                write!(f, "{field}: {value} is outside {min}..={max}")
            }
            BlobError::Dim {
                field,
                expected,
                got,
            } => write!(f, "{field}: {got}, expected {expected}"),
            BlobError::Length {
                field,
                expected,
                got,
            } => {
                write!(f, "{field}: {got} bytes, expected {expected}")
            }
            BlobError::Index {
                field,
                index,
                value,
                limit,
            } => {
                write!(
                    f,
                    "{field}[{index}]: {value} is out of range (must be below {limit})"
                )
            }
            BlobError::Value { field, index } => {
                write!(f, "{field}[{index}]: must be a finite number")
            }
            BlobError::Buffer { expected, got } => {
                write!(f, "blob: output buffer of {got} bytes, {expected} needed")
            }
        }
    }
}

impl core::error::Error for BlobError {}

impl From<BlobError> for Error {
    fn from(error: BlobError) -> Self {
        Error::Blob(error)
    }
}

/// Where in a policy blob a bad value lies; `Display` spells it as a path
/// (`blob.obs_dim`, `blob.layers[1].weight`, `blob.skip.inputs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobField {
    /// A header field or a top-level payload field, by name: `users`, `servers`,
    /// `obs_dim`, `norm_mean`, `norm_inv_std`, `layers`, `skip`, `prior`, `cost_norm`.
    Model(&'static str),
    /// A field of dense layer `index`: `inputs`, `outputs`, `weight`, `bias`.
    Layer {
        /// Position of the layer, from 0.
        index: usize,
        /// Name of the field.
        field: &'static str,
    },
    /// A field of the skip layer: `inputs`, `outputs`, `weight`, `bias`.
    Skip(&'static str),
    /// A field of the prior: `index`, `weight`.
    Prior(&'static str),
}

impl fmt::Display for BlobField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlobField::Model(name) => write!(f, "blob.{name}"),
            BlobField::Layer { index, field } => write!(f, "blob.layers[{index}].{field}"),
            BlobField::Skip(field) => write!(f, "blob.skip.{field}"),
            BlobField::Prior(field) => write!(f, "blob.prior.{field}"),
        }
    }
}
