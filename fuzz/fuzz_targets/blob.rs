//! `Policy::parse` on arbitrary bytes; when a blob parses, its logits on an
//! arbitrary observation.
//!
//! The input is a blob, optionally followed by observation bytes: the whole input
//! is parsed first (trailing bytes must be an error, never a panic); then the
//! header's `payload_len` splits it into blob and observation (`f32` LE values,
//! repeated to `obs_dim`, zeros when there are none), and the blob is parsed again
//! with its CRC recomputed, so that mutations reach the payload decoder.
#![no_main]

use diten_controller::policy::{crc32, encode, encoded_len, Policy, HEADER_LEN};
use diten_controller::Error;
use libfuzzer_sys::fuzz_target;

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
    let mut best = vec![usize::MAX; policy.users()];
    assert_eq!(policy.best_servers(&logits, &mut best), Ok(()));
    assert!(best.iter().all(|&s| s < policy.servers()));
    // Wrong buffer lengths are errors.
    if let Some(short) = scratch.len().checked_sub(1) {
        assert!(policy
            .logits(&obs, &mut scratch[..short], &mut logits)
            .is_err());
    }
    assert!(policy.logits(&obs[1..], &mut scratch, &mut logits).is_err());
});
