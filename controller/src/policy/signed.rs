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

#[cfg(test)]
mod tests {
    //! [`Policy::parse_signed`] against keys of RFC 8032 §7.1 and a blob written by
    //! the encoder; what a `.sig` file proves is tested in `signature`'s own tests.

    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use ed25519_compact::{KeyPair, Seed};

    use super::*;
    use crate::policy::{encode, BlobError, F32Le, LayerRef, ModelRef};
    use crate::signature::{parse_hex32, sig_file, SignatureError, SignedHeader, SIG_FILE_LEN};
    use crate::CostNorm;

    /// RFC 8032 §7.1, test 1: the secret seed.
    const SEED_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    /// RFC 8032 §7.1, test 2: another key pair.
    const SEED_2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

    fn pair(seed: &str) -> KeyPair {
        KeyPair::from_seed(Seed::new(parse_hex32(seed.as_bytes()).unwrap()))
    }

    fn public(seed: &str) -> PublicKey {
        PublicKey::from_bytes(*pair(seed).pk)
    }

    fn sign(seed: &str, file: &[u8], policy_version: u32) -> [u8; SIG_FILE_LEN] {
        let header = SignedHeader::new(file, policy_version);
        sig_file(&header, *pair(seed).sk.sign(header.to_bytes(), None))
    }

    /// A one-user, one-server blob (as in the `policy` module docs).
    fn blob(bias: f32) -> Vec<u8> {
        let zeros = [0u8; 4 * 11];
        let ones: [u8; 4 * 11] = core::array::from_fn(|i| 1.0f32.to_le_bytes()[i % 4]);
        let bias = bias.to_le_bytes();
        let layer = LayerRef {
            inputs: 11,
            outputs: 1,
            weight: F32Le::new(&ones),
            bias: F32Le::new(&bias),
        };
        let model = ModelRef {
            users: 1,
            servers: 1,
            norm_mean: F32Le::new(&zeros),
            norm_inv_std: F32Le::new(&ones),
            layers: &[layer],
            skip: None,
            prior: None,
            cost_norm: CostNorm::Paper,
        };
        let mut out = vec![0u8; 512];
        let len = encode(&model, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn parse_signed_parses_only_signed_blobs() {
        let blob = blob(0.5);
        let key = public(SEED_1);
        let sig = sign(SEED_1, &blob, 3);
        let policy = Policy::parse_signed(&blob, &sig, &key, 3).unwrap();
        assert_eq!((policy.users(), policy.servers()), (1, 1));

        let refused =
            |blob: &[u8], sig: &[u8], min| match Policy::parse_signed(blob, sig, &key, min) {
                Err(Error::Signature(e)) => e,
                other => panic!("expected a signature error, got {other:?}"),
            };
        // Unsigned.
        assert_eq!(
            refused(&blob, &[], 0),
            SignatureError::Length {
                expected: 114,
                got: 0
            }
        );
        // Rolled back, signed by another key, or another blob of the same length.
        assert_eq!(
            refused(&blob, &sig, 4),
            SignatureError::Rollback { version: 3, min: 4 }
        );
        assert_eq!(
            refused(&blob, &sign(SEED_2, &blob, 3), 0),
            SignatureError::Mismatch
        );
        let other = self::blob(0.25);
        assert_eq!(other.len(), blob.len());
        assert_eq!(refused(&other, &sig, 0), SignatureError::Digest);
        // A blob whose CRC is wrong but that is properly signed is still refused by
        // the blob parser: the signature adds a check, it removes none.
        let mut damaged = blob.clone();
        *damaged.last_mut().unwrap() ^= 1;
        let resigned = sign(SEED_1, &damaged, 3);
        assert!(matches!(
            Policy::parse_signed(&damaged, &resigned, &key, 0),
            Err(Error::Blob(BlobError::Crc { .. }))
        ));
    }
}
