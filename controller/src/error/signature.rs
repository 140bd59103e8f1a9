//! The errors of detached policy signatures ([`crate::signature`]): why a signed
//! policy is refused ([`SignatureError`]).

use core::fmt;

use super::Error;

/// The `.sig` format version this build writes and reads.
///
/// Defined beside [`SignatureError`], whose text names it, so that the error
/// vocabulary imports no file format; [`crate::signature`] re-exports it.
pub const SIG_FORMAT_VERSION: u16 = 1;

/// Why a signed policy is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The `.sig` file is not [`SIG_FILE_LEN`](crate::signature::SIG_FILE_LEN) bytes long (truncated, or with
    /// bytes after the signature).
    Length {
        /// Bytes a `.sig` file has.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The `.sig` file does not start with [`SIG_MAGIC`](crate::signature::SIG_MAGIC).
    Magic,
    /// The `.sig` file has a format version this build cannot read.
    Version {
        /// The version in the file.
        found: u16,
    },
    /// The public key is not a valid Ed25519 public key.
    PublicKey,
    /// The public key text is not 64 hexadecimal digits.
    KeyText,
    /// The signature was not made by the public key's secret key over this
    /// header: another key signed it, or the header or signature was changed.
    Mismatch,
    /// The signed `policy_version` is older than the gateway accepts.
    Rollback {
        /// The signed version.
        version: u32,
        /// The lowest version accepted.
        min: u32,
    },
    /// The policy file has another length than the one signed.
    FileLength {
        /// Bytes signed.
        signed: u64,
        /// Bytes given.
        got: usize,
    },
    /// The policy file's SHA-256 is not the one signed: it is another file, or it
    /// was changed.
    Digest,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SignatureError::Length { expected, got } => write!(
                f,
                "signature: {got} bytes, a diten signature file has {expected}"
            ),
            SignatureError::Magic => {
                f.write_str("signature.magic: not a diten signature file (expected \"DTNS\")")
            }
            SignatureError::Version { found } => write!(
                f,
                "signature.version: format version {found} is not supported \
                 (expected {SIG_FORMAT_VERSION})"
            ),
            SignatureError::PublicKey => f.write_str("public key: not a valid Ed25519 public key"),
            SignatureError::KeyText => {
                f.write_str("public key: expected 64 hexadecimal digits (32 bytes)")
            }
            SignatureError::Mismatch => f.write_str(
                "signature: does not verify with this public key (signed by another key, or altered)",
            ),
            SignatureError::Rollback { version, min } => write!(
                f,
                "signature.policy_version: {version} is older than the lowest accepted, {min}"
            ),
            SignatureError::FileLength { signed, got } => write!(
                f,
                "signature.file_len: the policy file has {got} bytes, {signed} were signed"
            ),
            SignatureError::Digest => f.write_str(
                "signature.sha256: the policy file is not the one signed (altered or another file)",
            ),
        }
    }
}

impl core::error::Error for SignatureError {}

impl From<SignatureError> for Error {
    fn from(error: SignatureError) -> Self {
        Error::Signature(error)
    }
}
