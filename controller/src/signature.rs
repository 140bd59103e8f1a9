//! Detached policy signatures: the `.sig` file beside a policy blob or ONNX file,
//! and its verification without a heap (Ed25519 by `ed25519-compact`, SHA-256 by
//! `sha2`; no cryptography is written here).
//!
//! A gateway built with the operator's [`PublicKey`] runs only the policies that
//! key signed: [`verify`] checks a `.sig` file against the exact bytes of the
//! policy file, and [`Policy::parse_signed`](crate::policy::Policy::parse_signed)
//! (and, with `onnx`, `OnnxPolicy::load_signed`) refuses the policy on any
//! failure. Neither the blob format (SPEC §3.3) nor the ONNX file changes: the
//! signature lives entirely in the `.sig` file.
//!
//! # The `.sig` file
//!
//! [`SIG_FILE_LEN`] = 114 bytes, integers little-endian, nothing after them:
//!
//! | offset | size | field            | value                                               |
//! |-------:|-----:|------------------|-----------------------------------------------------|
//! | 0      | 4    | `magic`          | [`SIG_MAGIC`] = `b"DTNS"`                           |
//! | 4      | 2    | `version`        | `u16`, [`SIG_FORMAT_VERSION`] = 1                   |
//! | 6      | 4    | `policy_version` | `u32`, chosen by the signer, monotonic per gateway  |
//! | 10     | 8    | `file_len`       | `u64`, bytes of the signed policy file              |
//! | 18     | 32   | `sha256`         | SHA-256 of the policy file's bytes                  |
//! | 50     | 64   | `signature`      | Ed25519 (RFC 8032) over bytes 0..50                 |
//!
//! Bytes 0..[`SIGNED_HEADER_LEN`] are the signed header ([`SignedHeader`]); the
//! Ed25519 signature covers exactly them, and they name the file by its length
//! and SHA-256 digest (as MCUboot signs an image's SHA-256). Signing the digest
//! instead of the whole file keeps the verification cheap where it is dear: on
//! a Cortex-M4F, Ed25519's own SHA-512 over the 1 MB blob would cost about twice
//! the instructions of SHA-256. The magic and format version at the start of
//! the signed bytes keep a diten policy signature from being read as any other
//! message the same key might sign.
//!
//! `policy_version` is what refuses rollbacks: an old policy, even properly
//! signed, carries an older version, and [`verify`] refuses versions below the
//! minimum the gateway accepts ([`SignatureError::Rollback`]). The gateway keeps
//! that minimum (for example the version it last ran) in its own storage.
//!
//! # Checks, in order
//!
//! [`verify`] returns the [`SignedHeader`] or the first failure, each its own
//! [`SignatureError`]: a `.sig` of another length ([`SignatureError::Length`]),
//! magic ([`SignatureError::Magic`]) or format version
//! ([`SignatureError::Version`]); a public key that is not a curve point
//! ([`SignatureError::PublicKey`]); a signature that does not verify with the key
//! ([`SignatureError::Mismatch`]); a `policy_version` below the minimum
//! ([`SignatureError::Rollback`]); a file of another length
//! ([`SignatureError::FileLength`]) or digest ([`SignatureError::Digest`]). The
//! fields are trusted only after the signature verified.
//!
//! # Key files
//!
//! `diten keygen` writes `policy-signing.pub`, the 32-byte Ed25519 public key as
//! 64 lowercase hexadecimal digits and a newline, and `policy-signing.key`, the
//! 32-byte RFC 8032 secret seed in the same text form (mode 0600).
//! [`PublicKey::parse`] reads the former (surrounding ASCII whitespace allowed).
//!
//! ```
//! use diten_controller::signature::{self, PublicKey, SignatureError};
//!
//! // A test key pair (RFC 8032, test 1) and a file signed with it.
//! # use diten_controller::signature::{SignedHeader, sig_file};
//! # let seed = [0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4,
//! #     0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b,
//! #     0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60];
//! # let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
//! let key = PublicKey::parse(
//!     b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n",
//! )?;
//! let file = b"a policy";
//! # let header = SignedHeader::new(file, 7);
//! # let sig = sig_file(&header, *pair.sk.sign(header.to_bytes(), None));
//! let header = signature::verify(file, &sig, &key, 5)?;
//! assert_eq!(header.policy_version, 7);
//! // The same signature does not cover another file, nor a gateway at version 8.
//! assert_eq!(signature::verify(b"a policz", &sig, &key, 5), Err(SignatureError::Digest));
//! assert_eq!(
//!     signature::verify(file, &sig, &key, 8),
//!     Err(SignatureError::Rollback { version: 7, min: 8 })
//! );
//! # Ok::<(), SignatureError>(())
//! ```

use sha2::{Digest, Sha256};

pub use crate::error::{SignatureError, SIG_FORMAT_VERSION};

/// First 4 bytes of every `.sig` file.
pub const SIG_MAGIC: [u8; 4] = *b"DTNS";

/// Bytes of the signed header (magic to digest).
pub const SIGNED_HEADER_LEN: usize = 50;

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Bytes of a `.sig` file: the signed header and the signature.
pub const SIG_FILE_LEN: usize = SIGNED_HEADER_LEN + SIGNATURE_LEN;

/// Bytes of an Ed25519 public key (and of a secret seed).
pub const KEY_LEN: usize = 32;

/// An Ed25519 public key: the one a gateway trusts to sign its policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// The key from its 32 bytes (RFC 8032 encoding). Whether they are a curve
    /// point is checked when a signature is verified.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    /// The 32 bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key from the text of a `policy-signing.pub` file: 64 hexadecimal
    /// digits (either case), with ASCII whitespace allowed around them.
    pub fn parse(text: &[u8]) -> Result<PublicKey, SignatureError> {
        parse_hex32(text).map(PublicKey)
    }
}

/// 32 bytes from 64 hexadecimal digits with ASCII whitespace around them (the
/// key file format, public and secret alike).
pub fn parse_hex32(text: &[u8]) -> Result<[u8; KEY_LEN], SignatureError> {
    let text = text.trim_ascii();
    if text.len() != 2 * KEY_LEN {
        return Err(SignatureError::KeyText);
    }
    let mut out = [0u8; KEY_LEN];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let mut value = 0u8;
        for &digit in pair {
            let nibble = char::from(digit)
                .to_digit(16)
                .ok_or(SignatureError::KeyText)?;
            value = (value << 4) | nibble as u8;
        }
        *byte = value;
    }
    Ok(out)
}

/// The signed part of a `.sig` file: what the signer vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedHeader {
    /// The policy's version: gateways refuse versions below their minimum.
    pub policy_version: u32,
    /// Bytes of the policy file.
    pub file_len: u64,
    /// SHA-256 of the policy file.
    pub sha256: [u8; 32],
}

impl SignedHeader {
    /// The header for `file` at `policy_version` (hashes the file).
    pub fn new(file: &[u8], policy_version: u32) -> SignedHeader {
        SignedHeader {
            policy_version,
            file_len: file.len() as u64,
            sha256: Sha256::digest(file).into(),
        }
    }

    /// The [`SIGNED_HEADER_LEN`] bytes the Ed25519 signature covers.
    pub fn to_bytes(&self) -> [u8; SIGNED_HEADER_LEN] {
        let mut out = [0u8; SIGNED_HEADER_LEN];
        let fields = SIG_MAGIC
            .into_iter()
            .chain(SIG_FORMAT_VERSION.to_le_bytes())
            .chain(self.policy_version.to_le_bytes())
            .chain(self.file_len.to_le_bytes())
            .chain(self.sha256);
        for (slot, byte) in out.iter_mut().zip(fields) {
            *slot = byte;
        }
        out
    }
}

/// The bytes of a `.sig` file: `header` and the Ed25519 `signature` over
/// [`header.to_bytes()`](SignedHeader::to_bytes).
pub fn sig_file(header: &SignedHeader, signature: [u8; SIGNATURE_LEN]) -> [u8; SIG_FILE_LEN] {
    let mut out = [0u8; SIG_FILE_LEN];
    for (slot, byte) in out
        .iter_mut()
        .zip(header.to_bytes().into_iter().chain(signature))
    {
        *slot = byte;
    }
    out
}

/// Reads a `.sig` file's fields without verifying anything but its format: the
/// header, its bytes as signed and the signature. Never panics.
pub fn read_sig_file(
    sig: &[u8],
) -> Result<(SignedHeader, &[u8; SIGNED_HEADER_LEN], &[u8; SIGNATURE_LEN]), SignatureError> {
    let length = SignatureError::Length {
        expected: SIG_FILE_LEN,
        got: sig.len(),
    };
    let (signed, signature) = sig.split_first_chunk::<SIGNED_HEADER_LEN>().ok_or(length)?;
    let signature: &[u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| length)?;
    let (magic, rest) = signed.split_first_chunk::<4>().ok_or(length)?;
    if *magic != SIG_MAGIC {
        return Err(SignatureError::Magic);
    }
    let (version, rest) = rest.split_first_chunk::<2>().ok_or(length)?;
    let version = u16::from_le_bytes(*version);
    if version != SIG_FORMAT_VERSION {
        return Err(SignatureError::Version { found: version });
    }
    let (policy_version, rest) = rest.split_first_chunk::<4>().ok_or(length)?;
    let (file_len, rest) = rest.split_first_chunk::<8>().ok_or(length)?;
    let sha256: &[u8; 32] = rest.try_into().map_err(|_| length)?;
    let header = SignedHeader {
        policy_version: u32::from_le_bytes(*policy_version),
        file_len: u64::from_le_bytes(*file_len),
        sha256: *sha256,
    };
    Ok((header, signed, signature))
}

/// Checks that `sig` (the bytes of a `.sig` file) is `key`'s signature of
/// exactly `file`, at a `policy_version` of at least `min_version`; returns the
/// signed header. The checks and their order are in the [module docs](self).
/// Never allocates or panics; the work is one SHA-256 over `file` and one
/// Ed25519 verification of 50 bytes.
pub fn verify(
    file: &[u8],
    sig: &[u8],
    key: &PublicKey,
    min_version: u32,
) -> Result<SignedHeader, SignatureError> {
    let (header, signed, signature) = read_sig_file(sig)?;
    let public = ed25519_compact::PublicKey::new(key.0);
    let signature = ed25519_compact::Signature::new(*signature);
    public
        .verify(signed, &signature)
        .map_err(|error| match error {
            ed25519_compact::Error::InvalidPublicKey | ed25519_compact::Error::WeakPublicKey => {
                SignatureError::PublicKey
            }
            _ => SignatureError::Mismatch,
        })?;
    if header.policy_version < min_version {
        return Err(SignatureError::Rollback {
            version: header.policy_version,
            min: min_version,
        });
    }
    if header.file_len != file.len() as u64 {
        return Err(SignatureError::FileLength {
            signed: header.file_len,
            got: file.len(),
        });
    }
    let digest: [u8; 32] = Sha256::digest(file).into();
    if digest != header.sha256 {
        return Err(SignatureError::Digest);
    }
    Ok(header)
}

/// The `.sig` file beside `path`: `path` with `.sig` appended
/// (`policy.bin` → `policy.bin.sig`).
#[cfg(feature = "std")]
pub fn sig_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    std::path::PathBuf::from(name)
}

#[cfg(test)]
mod tests;
