//! `Policy::parse` on arbitrary bytes; when a blob parses, its logits on an
//! arbitrary observation.
//!
//! The input is a blob, optionally followed by observation bytes: the whole input
//! is parsed first (trailing bytes must be an error, never a panic); then the
//! header's `payload_len` splits it into blob and observation (`f32` LE values,
//! repeated to `obs_dim`, zeros when there are none), and the blob is parsed again
//! with its CRC recomputed, so that mutations reach the payload decoder.
//!
//! The signed path, `Policy::parse_signed`: the input's last `SIG_FILE_LEN` bytes
//! as a signature file of the bytes before them (the fuzzer cannot forge an
//! Ed25519 signature: always refused, never a panic), the whole input as an
//! unsigned blob, and the CRC-fixed blob signed with a fuzz key (accepted exactly
//! when it parses; refused after a flipped bit or under a higher minimum version).
#![no_main]

use diten_controller::policy::{crc32, encode, encoded_len, Policy, HEADER_LEN};
use diten_controller::signature::{
    sig_file, PublicKey, SignatureError, SignedHeader, SIG_FILE_LEN,
};
use diten_controller::Error;
use ed25519_compact::{KeyPair, Seed};
use libfuzzer_sys::fuzz_target;

/// The fuzz key pair (a fixed seed: the runs are reproducible).
fn fuzz_key() -> KeyPair {
    KeyPair::from_seed(Seed::new([7; 32]))
}

/// `Policy::parse_signed` on `blob`: arbitrary signature files are refused, a real
/// one is accepted exactly when the blob parses.
fn signed_path(data: &[u8], blob: &[u8]) {
    let pair = fuzz_key();
    let key = PublicKey::from_bytes(*pair.pk);
    let min = u32::from(data.first().copied().unwrap_or(0));
    let (body, sig) = data.split_at(data.len().saturating_sub(SIG_FILE_LEN));
    assert!(matches!(
        Policy::parse_signed(body, sig, &key, min),
        Err(Error::Signature(_))
    ));
    assert!(matches!(
        Policy::parse_signed(data, &[], &key, 0),
        Err(Error::Signature(SignatureError::Length { .. }))
    ));
    let version = min + 1;
    let header = SignedHeader::new(blob, version);
    let sig = sig_file(&header, *pair.sk.sign(header.to_bytes(), None));
    assert_eq!(
        Policy::parse_signed(blob, &sig, &key, version).is_ok(),
        Policy::parse(blob).is_ok()
    );
    assert_eq!(
        Policy::parse_signed(blob, &sig, &key, version + 1).err(),
        Some(Error::Signature(SignatureError::Rollback {
            version,
            min: version + 1
        }))
    );
    if !blob.is_empty() {
        let mut flipped = blob.to_vec();
        let bit = min as usize * 31 % (8 * blob.len());
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            Policy::parse_signed(&flipped, &sig, &key, 0).err(),
            Some(Error::Signature(SignatureError::Digest))
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = Policy::parse(data);
    let split = data
        .get(30..34)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .and_then(|payload| HEADER_LEN.checked_add(payload))
        .filter(|&end| end <= data.len())
        .unwrap_or(data.len());
    let (blob, rest) = data.split_at(split);
    if split == data.len() {
        assert_eq!(whole.is_ok(), Policy::parse(blob).is_ok());
    }
    // Mutations almost always break the CRC; with the CRC recomputed (and the
    // payload length made consistent) they reach the payload decoder.
    let mut fixed = blob.to_vec();
    if fixed.len() >= HEADER_LEN {
        let payload_len = (fixed.len() - HEADER_LEN) as u32;
        let crc = crc32(&fixed[HEADER_LEN..]);
        fixed[30..34].copy_from_slice(&payload_len.to_le_bytes());
        fixed[34..38].copy_from_slice(&crc.to_le_bytes());
    }
    signed_path(data, &fixed);
    let Ok(policy) = Policy::parse(&fixed) else {
        return;
    };
    // A parsed model re-encodes into a blob that parses to the same model.
    let model = policy.model();
    let len = encoded_len(&model).expect("a parsed model encodes");
    let mut again = vec![0u8; len];
    assert_eq!(encode(&model, &mut again), Ok(len));
    let reparsed = Policy::parse(&again).expect("a re-encoded blob parses");
    assert_eq!(reparsed.model(), model);

    let dim = policy.obs_dim();
    let values: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let obs: Vec<f32> = if values.is_empty() {
        vec![0.0; dim]
    } else {
        values.iter().copied().cycle().take(dim).collect()
    };
    let mut scratch = vec![0.0f32; policy.scratch_len()];
    let mut logits = vec![0.0f32; policy.logits_len()];
    let result = policy.logits(&obs, &mut scratch, &mut logits);
    match obs.iter().position(|v| !v.is_finite()) {
        Some(index) => assert_eq!(result, Err(Error::ObservationValue { index })),
        None => assert_eq!(result, Ok(())),
    }
    // Wrong buffer lengths are errors.
    if let Some(short) = scratch.len().checked_sub(1) {
        assert!(policy
            .logits(&obs, &mut scratch[..short], &mut logits)
            .is_err());
    }
    assert!(policy.logits(&obs[1..], &mut scratch, &mut logits).is_err());
});
