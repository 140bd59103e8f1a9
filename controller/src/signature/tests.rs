//! Tests of the `.sig` format and its verification. Expected values come from
//! RFC 8032 (keys), FIPS 180-2 (SHA-256 of "abc") and the documented layout
//! written out byte by byte, not from the code under test.

extern crate std;

use std::format;
use std::string::ToString;
use std::vec;

use ed25519_compact::{KeyPair, Seed};
use proptest::prelude::*;

use super::*;
use crate::Error;

/// RFC 8032 §7.1, test 1: the secret seed and its public key.
const SEED_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
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

/// 300 bytes that are not all alike.
fn file() -> [u8; 300] {
    core::array::from_fn(|i| (i * 7 + 3) as u8)
}

#[test]
fn rfc8032_key_derivation_matches_the_key_file_text() {
    // The public key RFC 8032 gives for SEED_1, read through the key file parser.
    assert_eq!(
        public(SEED_1),
        PublicKey::parse(PUBLIC_1.as_bytes()).unwrap()
    );
}

#[test]
fn header_layout_is_the_documented_one() {
    // SHA-256("abc") from FIPS 180-2, appendix B.1.
    let sha_abc = [
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22,
        0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00,
        0x15, 0xad,
    ];
    let mut expected = vec![
        b'D', b'T', b'N', b'S', 1, 0, 4, 3, 2, 1, 3, 0, 0, 0, 0, 0, 0, 0,
    ];
    expected.extend_from_slice(&sha_abc);
    let header = SignedHeader::new(b"abc", 0x0102_0304);
    assert_eq!(header.sha256, sha_abc);
    assert_eq!(header.to_bytes().to_vec(), expected);
    let sig = sig_file(&header, [0x55; SIGNATURE_LEN]);
    assert_eq!(sig[..SIGNED_HEADER_LEN].to_vec(), expected);
    assert_eq!(sig[SIGNED_HEADER_LEN..].to_vec(), vec![0x55; 64]);
    let (read, signed, signature) = read_sig_file(&sig).unwrap();
    assert_eq!(read, header);
    assert_eq!(signed.to_vec(), expected);
    assert_eq!(*signature, [0x55; 64]);
}

#[test]
fn a_signed_file_verifies_and_gives_its_header() {
    let file = file();
    let sig = sign(SEED_1, &file, 7);
    let header = verify(&file, &sig, &public(SEED_1), 0).unwrap();
    assert_eq!(header.policy_version, 7);
    assert_eq!(header.file_len, 300);
    assert_eq!(verify(&file, &sig, &public(SEED_1), 7), Ok(header));
    // An empty file can be signed too.
    let empty = sign(SEED_1, &[], 0);
    assert!(verify(&[], &empty, &public(SEED_1), 0).is_ok());
}

#[test]
fn every_flipped_bit_of_the_file_is_refused() {
    let file = file();
    let sig = sign(SEED_1, &file, 1);
    let key = public(SEED_1);
    for bit in 0..file.len() * 8 {
        let mut bad = file;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            verify(&bad, &sig, &key, 0),
            Err(SignatureError::Digest),
            "bit {bit}"
        );
    }
}

#[test]
fn every_flipped_bit_of_the_signature_file_is_refused() {
    let file = file();
    let sig = sign(SEED_1, &file, 1);
    let key = public(SEED_1);
    for bit in 0..SIG_FILE_LEN * 8 {
        let mut bad = sig;
        bad[bit / 8] ^= 1 << (bit % 8);
        let expected = match bit / 8 {
            0..4 => SignatureError::Magic,
            4..6 => SignatureError::Version {
                found: u16::from_le_bytes([bad[4], bad[5]]),
            },
            // The header's fields and the signature itself: the signature does not
            // verify any more.
            _ => SignatureError::Mismatch,
        };
        assert_eq!(verify(&file, &bad, &key, 0), Err(expected), "bit {bit}");
    }
}

#[test]
fn another_key_is_refused() {
    let file = file();
    let sig = sign(SEED_2, &file, 1);
    assert_eq!(
        verify(&file, &sig, &public(SEED_1), 0),
        Err(SignatureError::Mismatch)
    );
    assert!(verify(&file, &sig, &public(SEED_2), 0).is_ok());
}

#[test]
fn a_truncated_or_extended_signature_file_is_refused() {
    let file = file();
    let sig = sign(SEED_1, &file, 1);
    let key = public(SEED_1);
    for len in 0..SIG_FILE_LEN {
        let expected = SignatureError::Length {
            expected: SIG_FILE_LEN,
            got: len,
        };
        assert_eq!(verify(&file, &sig[..len], &key, 0), Err(expected));
    }
    let mut long = sig.to_vec();
    long.push(0);
    assert_eq!(
        verify(&file, &long, &key, 0),
        Err(SignatureError::Length {
            expected: 114,
            got: 115
        })
    );
}

#[test]
fn the_signature_of_another_file_is_refused() {
    let file = file();
    let key = public(SEED_1);
    let mut other = file;
    other[299] = other[299].wrapping_add(1);
    assert_eq!(
        verify(&file, &sign(SEED_1, &other, 1), &key, 0),
        Err(SignatureError::Digest)
    );
    assert_eq!(
        verify(&file, &sign(SEED_1, &file[..299], 1), &key, 0),
        Err(SignatureError::FileLength {
            signed: 299,
            got: 300
        })
    );
    // A truncated or extended file under the right signature.
    let sig = sign(SEED_1, &file, 1);
    assert_eq!(
        verify(&file[..10], &sig, &key, 0),
        Err(SignatureError::FileLength {
            signed: 300,
            got: 10
        })
    );
}

#[test]
fn an_older_policy_version_is_refused() {
    let file = file();
    let key = public(SEED_1);
    let sig = sign(SEED_1, &file, 41);
    assert!(verify(&file, &sig, &key, 41).is_ok());
    assert_eq!(
        verify(&file, &sig, &key, 42),
        Err(SignatureError::Rollback {
            version: 41,
            min: 42
        })
    );
    let newest = sign(SEED_1, &file, u32::MAX);
    assert!(verify(&file, &newest, &key, u32::MAX).is_ok());
}

#[test]
fn a_public_key_that_is_no_curve_point_is_refused() {
    let file = file();
    let sig = sign(SEED_1, &file, 1);
    // y = 1, x = 0: the neutral element, of small order.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    assert_eq!(
        verify(&file, &sig, &PublicKey::from_bytes(neutral), 0),
        Err(SignatureError::PublicKey)
    );
}

#[test]
fn key_text() {
    let key = PublicKey::parse(PUBLIC_1.as_bytes()).unwrap();
    assert_eq!(key.as_bytes()[..3], [0xd7, 0x5a, 0x98]);
    assert_eq!(key.as_bytes()[31], 0x1a);
    let upper = PUBLIC_1.to_uppercase();
    assert_eq!(
        PublicKey::parse(format!("  {upper}\r\n").as_bytes()),
        Ok(key)
    );
    for bad in [
        &PUBLIC_1[1..],                  // 63 digits
        &format!("{PUBLIC_1}0")[..],     // 65 digits
        &PUBLIC_1.replace('d', "g")[..], // not hexadecimal
        &format!("{} {}", &PUBLIC_1[..32], &PUBLIC_1[32..])[..],
        "",
    ] {
        assert_eq!(
            PublicKey::parse(bad.as_bytes()),
            Err(SignatureError::KeyText),
            "{bad:?}"
        );
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let e = Error::from(SignatureError::Rollback { version: 3, min: 5 });
    assert_eq!(
        e.to_string(),
        "signature.policy_version: 3 is older than the lowest accepted, 5"
    );
    assert_eq!(
        Error::Signature(SignatureError::Length {
            expected: 114,
            got: 0
        })
        .to_string(),
        "signature: 0 bytes, a diten signature file has 114"
    );
}

proptest! {
    /// Arbitrary signature files with a valid magic and version never verify and
    /// never panic; nor do arbitrary bytes.
    #[test]
    fn forged_signatures_never_verify(
        body in proptest::collection::vec(any::<u8>(), SIG_FILE_LEN - 6),
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        file in proptest::collection::vec(any::<u8>(), 0..64),
        min in any::<u32>(),
    ) {
        let key = public(SEED_1);
        let mut sig = b"DTNS\x01\x00".to_vec();
        sig.extend_from_slice(&body);
        prop_assert!(verify(&file, &sig, &key, min).is_err());
        prop_assert!(verify(&file, &raw, &key, min).is_err());
    }
}
