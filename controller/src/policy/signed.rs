//! Signed blobs: [`Policy::parse_signed`], the blob engine behind a signature check
//! (see [`crate::signature`] for the `.sig` file and what it proves).

use super::Policy;
use crate::signature::{self, PublicKey};
use crate::Error;

impl<'a> Policy<'a> {
    /// Parses `blob` as [`parse`](Self::parse) does, but only after checking that
    /// `signature` (the bytes of its `.sig` file) is `public_key`'s signature of
    /// exactly these bytes at a `policy_version` of at least `min_version`
    /// (pass 0 to accept every version). A policy that is unsigned, signed by
    /// another key, altered, or older than `min_version` is refused with
    /// [`Error::Signature`] before a byte of it is parsed. Never allocates or
    /// panics.
    pub fn parse_signed(
        blob: &'a [u8],
        signature: &[u8],
        public_key: &PublicKey,
        min_version: u32,
    ) -> Result<Self, Error> {
        signature::verify(blob, signature, public_key, min_version)?;
        Policy::parse(blob)
    }
}
