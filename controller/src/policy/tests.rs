//! Tests of the blob format and the engine. Expected logits come from hand
//! calculation or from a plain f64 implementation below; expected blobs from a
//! writer below that spells the documented format out byte by byte, not from
//! [`encode`].

extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::obs::obs_dim;
use crate::Error;

use crate::test_rng::Rng;

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn floats(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// A layer owning its bytes, free to be inconsistent.
#[derive(Clone, Debug)]
struct L {
    inputs: u32,
    outputs: u32,
    w: Vec<u8>,
    b: Vec<u8>,
}

impl L {
    fn new(inputs: usize, outputs: usize, w: &[f32], b: &[f32]) -> L {
        L {
            inputs: inputs as u32,
            outputs: outputs as u32,
            w: le(w),
            b: le(b),
        }
    }
    fn random(rng: &mut Rng, inputs: usize, outputs: usize) -> L {
        let scale = 1.5 / (inputs as f64).sqrt();
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|_| rng.range(-scale, scale))
            .collect();
        let b: Vec<f32> = (0..outputs).map(|_| rng.range(-0.5, 0.5)).collect();
        L::new(inputs, outputs, &w, &b)
    }
    fn as_ref(&self) -> LayerRef<'_> {
        LayerRef {
            inputs: self.inputs,
            outputs: self.outputs,
            weight: F32Le::new(&self.w),
            bias: F32Le::new(&self.b),
        }
    }
}

/// A network owning its bytes, free to be inconsistent.
#[derive(Clone, Debug)]
struct Net {
    users: usize,
    servers: usize,
    mean: Vec<u8>,
    inv: Vec<u8>,
    layers: Vec<L>,
    skip: Option<L>,
    /// The prior's index (u32) and weight (f32) bytes.
    prior: Option<(Vec<u8>, Vec<u8>)>,
}

impl Net {
    fn dim(&self) -> usize {
        obs_dim(self.users, self.servers)
    }

    fn random(seed: u64, users: usize, servers: usize, hidden: &[usize], skip: bool) -> Net {
        let mut rng = Rng::new(seed);
        let dim = obs_dim(users, servers);
        let mean: Vec<f32> = (0..dim).map(|_| rng.range(-1.0, 1.0)).collect();
        let inv: Vec<f32> = (0..dim).map(|_| rng.range(0.2, 3.0)).collect();
        let mut widths = vec![dim];
        widths.extend_from_slice(hidden);
        widths.push(users * servers);
        let layers = widths
            .windows(2)
            .map(|w| L::random(&mut rng, w[0], w[1]))
            .collect();
        let skip = skip.then(|| L::random(&mut rng, dim, users * servers));
        // With the skip layer comes a prior reading random columns.
        let prior = skip.is_some().then(|| {
            let index: Vec<u8> = (0..users * servers)
                .flat_map(|_| {
                    ((rng.unit() * dim as f64) as u32)
                        .min(dim as u32 - 1)
                        .to_le_bytes()
                })
                .collect();
            let weight: Vec<f32> = (0..users * servers).map(|_| rng.range(-2.0, 2.0)).collect();
            (index, le(&weight))
        });
        Net {
            users,
            servers,
            mean: le(&mean),
            inv: le(&inv),
            layers,
            skip,
            prior,
        }
    }

    fn with_model<R>(&self, f: impl FnOnce(&ModelRef<'_>) -> R) -> R {
        let layers: Vec<LayerRef<'_>> = self.layers.iter().map(L::as_ref).collect();
        f(&ModelRef {
            users: self.users,
            servers: self.servers,
            norm_mean: F32Le::new(&self.mean),
            norm_inv_std: F32Le::new(&self.inv),
            layers: &layers,
            skip: self.skip.as_ref().map(L::as_ref),
            prior: self.prior.as_ref().map(|(index, weight)| PriorRef {
                index: U32Le::new(index),
                weight: F32Le::new(weight),
            }),
            cost_norm: crate::CostNorm::Paper,
        })
    }

    /// The blob by [`encode`].
    fn encoded(&self) -> Vec<u8> {
        self.with_model(|m| {
            let mut buf = vec![0u8; encoded_len(m).unwrap()];
            assert_eq!(encode(m, &mut buf), Ok(buf.len()));
            buf
        })
    }

    /// The blob by the hand-written writer, header values from the network.
    fn hand(&self) -> Vec<u8> {
        hand_blob(
            self.users as u16,
            self.servers as u16,
            self.dim() as u32,
            &hand_payload(self),
        )
    }

    /// What `encode` says about this network (buffer large enough).
    fn encode_result(&self) -> Result<usize, Error> {
        self.with_model(|m| encode(m, &mut vec![0u8; 1 << 20]))
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn hand_layer(out: &mut Vec<u8>, l: &L) {
    varint(out, l.inputs.into());
    varint(out, l.outputs.into());
    bytes(out, &l.w);
    bytes(out, &l.b);
}

/// The payload as the module docs describe it, written without postcard.
fn hand_payload(net: &Net) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, &net.mean);
    bytes(&mut out, &net.inv);
    varint(&mut out, net.layers.len() as u64);
    for l in &net.layers {
        hand_layer(&mut out, l);
    }
    match &net.skip {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            hand_layer(&mut out, l);
        }
    }
    match &net.prior {
        None => out.push(0),
        Some((index, weight)) => {
            out.push(1);
            bytes(&mut out, index);
            bytes(&mut out, weight);
        }
    }
    out.push(0); // cost_norm: the paper's objective
    out
}

/// The header as the module docs describe it, then the payload.
fn hand_blob(users: u16, servers: u16, obs_dim: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DTNB");
    out.extend_from_slice(&3u16.to_le_bytes());
    out.extend_from_slice(b"diten-obs-v1\0\0\0\0");
    out.extend_from_slice(&users.to_le_bytes());
    out.extend_from_slice(&servers.to_le_bytes());
    out.extend_from_slice(&obs_dim.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    assert_eq!(out.len(), 38);
    out.extend_from_slice(payload);
    out
}

/// The network in f64, straight from its definition.
fn reference(net: &Net, obs: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = obs
        .iter()
        .zip(floats(&net.mean))
        .zip(floats(&net.inv))
        .map(|((&o, m), s)| ((f64::from(o) - m) * s).clamp(-10.0, 10.0))
        .collect();
    let affine = |l: &L, input: &[f64]| -> Vec<f64> {
        let w = floats(&l.w);
        let b = floats(&l.b);
        (0..l.outputs as usize)
            .map(|o| {
                let row = &w[o * input.len()..(o + 1) * input.len()];
                row.iter().zip(input).map(|(w, x)| w * x).sum::<f64>() + b[o]
            })
            .collect()
    };
    let mut h = x.clone();
    for (i, l) in net.layers.iter().enumerate() {
        h = affine(l, &h);
        if i + 1 < net.layers.len() {
            h.iter_mut().for_each(|v| *v = v.tanh());
        }
    }
    if let Some(skip) = &net.skip {
        for (v, s) in h.iter_mut().zip(affine(skip, &x)) {
            *v += s;
        }
    }
    if let Some((index, weight)) = &net.prior {
        let index = index
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for ((v, i), w) in h.iter_mut().zip(index).zip(floats(weight)) {
            *v += w * x[i as usize];
        }
    }
    h
}

fn random_obs(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            if i % 17 == 3 {
                rng.range(-200.0, 200.0) // far outside the clip
            } else {
                rng.range(-4.0, 4.0)
            }
        })
        .collect()
}

fn run(policy: &Policy<'_>, obs: &[f32]) -> Vec<f32> {
    let mut scratch = vec![f32::NAN; policy.scratch_len()];
    let mut out = vec![f32::NAN; policy.logits_len()];
    policy.logits(obs, &mut scratch, &mut out).unwrap();
    out
}

#[track_caller]
fn check_rejected(net: &Net, expected: Error) {
    assert_eq!(
        Policy::parse(&net.hand()).map(|_| ()),
        Err(expected),
        "parse"
    );
    assert_eq!(net.encode_result(), Err(expected), "encode");
}

#[track_caller]
fn check_parse(blob: &[u8], expected: Error) {
    assert_eq!(Policy::parse(blob).map(|_| ()), Err(expected));
}

// ---------------------------------------------------------------- CRC and constants

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"a"), 0xE8B7_BE43);
}

#[test]
fn layout_id_is_the_observation_layout_zero_padded() {
    let mut expected = [0u8; 16];
    expected[..crate::obs::OBS_LAYOUT.len()].copy_from_slice(crate::obs::OBS_LAYOUT.as_bytes());
    assert_eq!(LAYOUT_ID, expected);
    assert_eq!(MAGIC, *b"DTNB");
    assert_eq!(HEADER_LEN, 38);
}

#[test]
fn f32le_reads_little_endian_values() {
    let bytes = [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0xFF];
    let v = F32Le::new(&bytes);
    assert_eq!(v.len(), 2);
    assert_eq!(v.get(0), Some(1.0));
    assert_eq!(v.get(1), Some(-2.0));
    assert_eq!(v.get(2), None);
    assert_eq!(v.iter().collect::<Vec<_>>(), [1.0, -2.0]);
}

// ---------------------------------------------------------------- known logits

/// U = S = 1 (11 inputs); only inputs 0, 1 and 2 carry weight.
/// Normalised: x0 = (3 − 1)·0.5 = 1, x1 = (0.25 − 0)·2 = 0.5, x2 = 100 → clipped to 10.
/// Hidden: z0 = 1·1 + 0.01·10 = 1.1, z1 = 0.5·1 − 1·0.5 + 0.25 = 0.25;
/// output = 2·tanh(1.1) − 4·tanh(0.25) + 0.5
///        = 2·0.8004990217606297 − 4·0.24491866240370913 + 0.5 = 1.1213233939064229.
/// Skip: 1·1 + 1·0.5 + 0.1·10 − 0.5 = 2.0, so with it 3.121323393906423.
fn tiny(skip: bool) -> Net {
    let mut mean = [0.0f32; 11];
    mean[0] = 1.0;
    let mut inv = [1.0f32; 11];
    inv[0] = 0.5;
    inv[1] = 2.0;
    let mut w0 = [0.0f32; 22];
    w0[0] = 1.0; // row 0
    w0[2] = 0.01;
    w0[11] = 0.5; // row 1
    w0[12] = -1.0;
    let mut ws = [0.0f32; 11];
    ws[..3].copy_from_slice(&[1.0, 1.0, 0.1]);
    Net {
        users: 1,
        servers: 1,
        mean: le(&mean),
        inv: le(&inv),
        layers: vec![
            L::new(11, 2, &w0, &[0.0, 0.25]),
            L::new(2, 1, &[2.0, -4.0], &[0.5]),
        ],
        skip: skip.then(|| L::new(11, 1, &ws, &[-0.5])),
        prior: None,
    }
}

fn tiny_obs() -> [f32; 11] {
    let mut obs = [7.0f32; 11]; // weightless features
    obs[0] = 3.0;
    obs[1] = 0.25;
    obs[2] = 100.0;
    obs
}

#[test]
fn tiny_network_by_hand() {
    for (skip, expected) in [(false, 1.1213233939064229), (true, 3.121323393906423)] {
        let blob = tiny(skip).encoded();
        let policy = Policy::parse(&blob).unwrap();
        assert_eq!(
            (policy.users(), policy.servers(), policy.obs_dim()),
            (1, 1, 11)
        );
        assert_eq!(policy.scratch_len(), 11 + 2 * 2);
        let out = run(&policy, &tiny_obs());
        assert!(
            (f64::from(out[0]) - expected).abs() < 1e-6,
            "skip {skip}: {out:?}"
        );
    }
}

#[test]
fn prior_by_hand() {
    // Feature 6 of one user and one server is the previous-server one-hot; the
    // prior adds 0.5 · x'[6] = 0.5 · (7 − 0) · 1 = 3.5 to the plain network's logit.
    assert_eq!(crate::obs::prev_server_feature(0, 0, 1), 6);
    let mut net = tiny(false);
    net.prior = Some((6u32.to_le_bytes().to_vec(), le(&[0.5])));
    let blob = net.encoded();
    assert_eq!(blob, net.hand());
    let out = run(&Policy::parse(&blob).unwrap(), &tiny_obs());
    assert!(
        (f64::from(out[0]) - (1.1213233939064229 + 3.5)).abs() < 1e-6,
        "{out:?}"
    );
}

#[test]
fn prior_index_out_of_range_is_named() {
    let mut net = tiny(false);
    net.prior = Some((11u32.to_le_bytes().to_vec(), le(&[0.5])));
    check_rejected(
        &net,
        Error::Blob(BlobError::Index {
            field: BlobField::Prior("index"),
            index: 0,
            value: 11,
            limit: 11,
        }),
    );
    net.prior = Some((vec![0; 3], le(&[0.5])));
    check_rejected(
        &net,
        Error::Blob(BlobError::Length {
            field: BlobField::Prior("index"),
            expected: 4,
            got: 3,
        }),
    );
    net.prior = Some((vec![0; 4], le(&[f32::NAN])));
    check_rejected(
        &net,
        Error::Blob(BlobError::Value {
            field: BlobField::Prior("weight"),
            index: 0,
        }),
    );
}

#[test]
fn single_linear_layer_needs_no_hidden_scratch() {
    // Logit = 2·x'0 + 1 with x'0 = (5 − 1)·0.25 = 1: 3.
    let mut w = [0.0f32; 11];
    w[0] = 2.0;
    let mut mean = [0.0f32; 11];
    mean[0] = 1.0;
    let net = Net {
        users: 1,
        servers: 1,
        mean: le(&mean),
        inv: le(&[0.25; 11]),
        layers: vec![L::new(11, 1, &w, &[1.0])],
        skip: None,
        prior: None,
    };
    let blob = net.encoded();
    let policy = Policy::parse(&blob).unwrap();
    assert_eq!(policy.scratch_len(), 11);
    let mut obs = [0.0f32; 11];
    obs[0] = 5.0;
    assert_eq!(run(&policy, &obs), [3.0]);
}

// ---------------------------------------------------------------- round trips

const SHAPES: &[(usize, usize, &[usize], bool)] = &[
    (4, 3, &[16, 16], true),
    (4, 3, &[16, 16], false),
    (2, 5, &[8], false),
    (1, 2, &[], true),
    (3, 2, &[4, 9, 4, 4, 1, 4, 4], true), // 8 dense layers, a width-1 bottleneck
    (20, 21, &[128, 128], true),          // the benchmark shape, obs_dim 1424
];

#[test]
fn round_trip_matches_f64_reference() {
    for (k, &(users, servers, hidden, skip)) in SHAPES.iter().enumerate() {
        let net = Net::random(k as u64 + 1, users, servers, hidden, skip);
        let blob = net.encoded();
        let policy = Policy::parse(&blob).unwrap();
        assert_eq!(policy.obs_dim(), obs_dim(users, servers));
        assert_eq!(policy.logits_len(), users * servers);
        let widest = hidden.iter().copied().max().unwrap_or(0);
        assert_eq!(policy.scratch_len(), policy.obs_dim() + 2 * widest);
        let mut rng = Rng::new(100 + k as u64);
        for _ in 0..3 {
            let obs = random_obs(&mut rng, policy.obs_dim());
            let expected = reference(&net, &obs);
            let got = run(&policy, &obs);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                let tol = 1e-5 * e.abs().max(1.0);
                assert!(
                    (f64::from(*g) - e).abs() < tol,
                    "shape {k} logit {i}: {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn encode_writes_the_documented_format() {
    for (k, &(users, servers, hidden, skip)) in SHAPES.iter().enumerate() {
        let net = Net::random(k as u64 + 1, users, servers, hidden, skip);
        assert!(net.encoded() == net.hand(), "shape {k}");
    }
}

#[test]
fn parse_then_encode_gives_the_same_bytes() {
    let net = Net::random(7, 4, 3, &[16, 16], true);
    let blob = net.encoded();
    let policy = Policy::parse(&blob).unwrap();
    let model = policy.model();
    let mut again = vec![0u8; blob.len() + 5];
    assert_eq!(encode(&model, &mut again), Ok(blob.len()));
    assert_eq!(&again[..blob.len()], &blob[..]);
    assert_eq!(again[blob.len()..], [0; 5], "wrote past the blob");
}

#[test]
fn encode_into_a_short_buffer_is_an_error() {
    let net = tiny(true);
    let len = net.with_model(encoded_len).unwrap();
    for short in [0, 10, HEADER_LEN, len - 1] {
        let got = net.with_model(|m| encode(m, &mut vec![0u8; short]));
        assert_eq!(
            got,
            Err(Error::Blob(BlobError::Buffer {
                expected: len,
                got: short
            }))
        );
    }
}

#[test]
fn parses_from_a_static_blob() {
    let blob: &'static [u8] = tiny(false).encoded().leak();
    let policy: Policy<'static> = Policy::parse(blob).unwrap();
    assert_eq!(policy.model().layers.len(), 2);
}

// ---------------------------------------------------------------- corrupt blobs

fn small() -> Net {
    Net::random(11, 1, 2, &[3], true)
}

#[test]
fn wrong_magic() {
    let mut blob = small().encoded();
    blob[3] = b'X';
    check_parse(&blob, Error::Blob(BlobError::Magic));
    check_parse(b"DX", Error::Blob(BlobError::Magic));
    check_parse(b"{\"users\": 3}", Error::Blob(BlobError::Magic));
}

#[test]
fn wrong_version() {
    let mut blob = small().encoded();
    for v in [0u16, 1, 4, 0x0300] {
        blob[4..6].copy_from_slice(&v.to_le_bytes());
        check_parse(
            &blob,
            Error::Blob(BlobError::Version {
                found: v,
                expected: 3,
            }),
        );
    }
}

/// Rewrites the last payload byte (`cost_norm`) of a version-3 blob and its CRC.
fn with_cost_norm_byte(mut blob: Vec<u8>, code: u8) -> Vec<u8> {
    let last = blob.len() - 1;
    blob[last] = code;
    let crc = crc32(&blob[HEADER_LEN..]);
    blob[34..38].copy_from_slice(&crc.to_le_bytes());
    blob
}

#[test]
fn the_objective_is_the_last_payload_byte() {
    let blob = small().encoded();
    assert_eq!(*blob.last().unwrap(), 0);
    let paper = Policy::parse(&blob).unwrap();
    assert_eq!(paper.model().cost_norm, crate::CostNorm::Paper);
    let linear = with_cost_norm_byte(blob.clone(), 1);
    let policy = Policy::parse(&linear).unwrap();
    assert_eq!(policy.model().cost_norm, crate::CostNorm::Linear);
    assert_eq!(
        crate::policy::Engine::cost_norm(&policy),
        crate::CostNorm::Linear
    );
    for code in [2u8, 7, 0xFF] {
        check_parse(
            &with_cost_norm_byte(blob.clone(), code),
            Error::Blob(BlobError::Payload {
                field: BlobField::Model("cost_norm"),
            }),
        );
    }
}

#[test]
fn version_2_blobs_are_read_as_trained_for_the_paper_objective() {
    // A version-2 blob is the version-3 layout without the cost_norm byte.
    let net = small();
    let mut payload = hand_payload(&net);
    payload.pop();
    let mut blob = hand_blob(
        net.users as u16,
        net.servers as u16,
        net.dim() as u32,
        &payload,
    );
    blob[4..6].copy_from_slice(&2u16.to_le_bytes());
    let policy = Policy::parse(&blob).unwrap();
    assert_eq!(policy.model().cost_norm, crate::CostNorm::Paper);
    // Its logits are the version-3 blob's.
    let encoded = net.encoded();
    let v3 = Policy::parse(&encoded).unwrap();
    let obs = random_obs(&mut Rng::new(5), v3.obs_dim());
    assert_eq!(run(&policy, &obs), run(&v3, &obs));
    drop(policy);
    // A version-3 header over a version-2 payload lacks the byte.
    blob[4..6].copy_from_slice(&3u16.to_le_bytes());
    check_parse(
        &blob,
        Error::Blob(BlobError::Payload {
            field: BlobField::Model("cost_norm"),
        }),
    );
}

#[test]
fn wrong_layout_id() {
    let good = small().encoded();
    let mut blob = good.clone();
    blob[6..22].copy_from_slice(b"diten-obs-v2\0\0\0\0");
    let layout = BlobError::Layout {
        expected: "diten-obs-v1",
    };
    check_parse(&blob, Error::Blob(layout));
    let mut blob = good;
    blob[21] = b'x'; // in the zero padding
    check_parse(&blob, Error::Blob(layout));
}

#[test]
fn every_flipped_payload_bit_fails_the_crc() {
    let blob = small().encoded();
    let stored = u32::from_le_bytes(blob[34..38].try_into().unwrap());
    for i in HEADER_LEN..blob.len() {
        for bit in [0, 7] {
            let mut bad = blob.clone();
            bad[i] ^= 1 << bit;
            let computed = crc32(&bad[HEADER_LEN..]);
            assert_ne!(computed, stored);
            check_parse(&bad, Error::Blob(BlobError::Crc { stored, computed }));
        }
    }
    let mut bad = blob.clone();
    bad[35] ^= 0x10; // the CRC field itself
    check_parse(
        &bad,
        Error::Blob(BlobError::Crc {
            stored: stored ^ 0x1000,
            computed: stored,
        }),
    );
}

#[test]
fn every_prefix_is_truncated() {
    for net in [small(), Net::random(3, 4, 3, &[16, 16], true)] {
        let blob = net.encoded();
        for n in 0..blob.len() {
            let expected = if n < HEADER_LEN {
                HEADER_LEN
            } else {
                blob.len()
            };
            check_parse(
                &blob[..n],
                Error::Blob(BlobError::Truncated { expected, got: n }),
            );
        }
        assert!(Policy::parse(&blob).is_ok());
    }
}

#[test]
fn trailing_bytes() {
    let mut blob = small().encoded();
    let len = blob.len();
    blob.push(0);
    check_parse(
        &blob,
        Error::Blob(BlobError::Trailing {
            expected: len,
            got: len + 1,
        }),
    );
}

#[test]
fn payload_with_bytes_after_the_model() {
    let net = small();
    let mut payload = hand_payload(&net);
    payload.extend_from_slice(&[0, 0]);
    let blob = hand_blob(1, 2, net.dim() as u32, &payload);
    check_parse(&blob, Error::Blob(BlobError::PayloadTrailing { unused: 2 }));
}

#[test]
fn malformed_postcard_names_the_field() {
    let net = small();
    let dim = net.dim() as u32;
    let payload = hand_payload(&net);
    let field = |f| Error::Blob(BlobError::Payload { field: f });
    // Cut inside norm_mean, and just before the skip tag of a skip-less network.
    check_parse(
        &hand_blob(1, 2, dim, &payload[..20]),
        field(BlobField::Model("norm_mean")),
    );
    let mut no_skip = net.clone();
    no_skip.skip = None;
    no_skip.prior = None;
    let p = hand_payload(&no_skip);
    check_parse(
        &hand_blob(1, 2, dim, &p[..p.len() - 3]),
        field(BlobField::Model("skip")),
    );
    check_parse(
        &hand_blob(1, 2, dim, &p[..p.len() - 2]),
        field(BlobField::Model("prior")),
    );
    check_parse(
        &hand_blob(1, 2, dim, &p[..p.len() - 1]),
        field(BlobField::Model("cost_norm")),
    );
    // Cut inside the bias of layer 1, the last byte before the two option tags and
    // the cost_norm byte.
    check_parse(
        &hand_blob(1, 2, dim, &p[..p.len() - 4]),
        field(BlobField::Layer {
            index: 1,
            field: "bias",
        }),
    );
    // An option tag that is neither 0 nor 1.
    let mut p2 = p.clone();
    let n = p2.len();
    p2[n - 2] = 2;
    check_parse(&hand_blob(1, 2, dim, &p2), field(BlobField::Model("prior")));
    p2[n - 3] = 2;
    check_parse(&hand_blob(1, 2, dim, &p2), field(BlobField::Model("skip")));
    // A layer count whose varint never ends.
    let mut p3 = Vec::new();
    bytes(&mut p3, &net.mean);
    bytes(&mut p3, &net.inv);
    p3.extend_from_slice(&[0xFF; 6]);
    check_parse(
        &hand_blob(1, 2, dim, &p3),
        field(BlobField::Model("layers")),
    );
}

#[test]
fn header_dims_out_of_range_or_inconsistent() {
    let net = small();
    let payload = hand_payload(&net);
    let dim = net.dim();
    check_parse(
        &hand_blob(1, 2, dim as u32 + 1, &payload),
        Error::Blob(BlobError::Dim {
            field: BlobField::Model("obs_dim"),
            expected: dim,
            got: dim + 1,
        }),
    );
    let limit = |name, value, max| {
        Error::Blob(BlobError::Limit {
            field: BlobField::Model(name),
            value,
            min: 1,
            max,
        })
    };
    check_parse(
        &hand_blob(0, 2, dim as u32, &payload),
        limit("users", 0, 64),
    );
    check_parse(
        &hand_blob(65, 2, dim as u32, &payload),
        limit("users", 65, 64),
    );
    check_parse(
        &hand_blob(1, 0, dim as u32, &payload),
        limit("servers", 0, 64),
    );
    check_parse(
        &hand_blob(1, 65, dim as u32, &payload),
        limit("servers", 65, 64),
    );
    // Header says 2 users: obs_dim and every size in the payload disagree.
    check_parse(
        &hand_blob(2, 2, dim as u32, &payload),
        Error::Blob(BlobError::Dim {
            field: BlobField::Model("obs_dim"),
            expected: 28,
            got: dim,
        }),
    );
}

#[test]
fn inconsistent_model_dims() {
    let base = Net::random(5, 2, 2, &[6, 5], true);
    let dim = base.dim(); // 2·10 + 8 = 28
    let layer = |index, field| BlobField::Layer { index, field };
    type Corrupt = fn(&mut Net);
    let cases: Vec<(Corrupt, Error)> = vec![
        (
            |n| n.users = 65,
            Error::Blob(BlobError::Limit {
                field: BlobField::Model("users"),
                value: 65,
                min: 1,
                max: 64,
            }),
        ),
        (
            |n| {
                n.mean.truncate(n.mean.len() - 4);
            },
            Error::Blob(BlobError::Length {
                field: BlobField::Model("norm_mean"),
                expected: 4 * 28,
                got: 4 * 27,
            }),
        ),
        (
            |n| n.inv.push(0),
            Error::Blob(BlobError::Length {
                field: BlobField::Model("norm_inv_std"),
                expected: 112,
                got: 113,
            }),
        ),
        (
            |n| n.layers.clear(),
            Error::Blob(BlobError::Limit {
                field: BlobField::Model("layers"),
                value: 0,
                min: 1,
                max: 8,
            }),
        ),
        (
            |n| {
                let l = L::new(6, 6, &[0.0; 36], &[0.0; 6]);
                while n.layers.len() < 9 {
                    n.layers.insert(1, l.clone());
                }
            },
            Error::Blob(BlobError::Limit {
                field: BlobField::Model("layers"),
                value: 9,
                min: 1,
                max: 8,
            }),
        ),
        (
            |n| n.layers[0].inputs = 27,
            Error::Blob(BlobError::Dim {
                field: layer(0, "inputs"),
                expected: dim,
                got: 27,
            }),
        ),
        (
            |n| n.layers[1].inputs = 5,
            Error::Blob(BlobError::Dim {
                field: layer(1, "inputs"),
                expected: 6,
                got: 5,
            }),
        ),
        (
            |n| n.layers[2].outputs = 5,
            Error::Blob(BlobError::Dim {
                field: layer(2, "outputs"),
                expected: 4,
                got: 5,
            }),
        ),
        (
            |n| {
                n.layers[0] = L::new(28, 513, &vec![0.0; 28 * 513], &vec![0.0; 513]);
            },
            Error::Blob(BlobError::Limit {
                field: layer(0, "outputs"),
                value: 513,
                min: 1,
                max: MAX_WIDTH,
            }),
        ),
        (
            |n| {
                n.layers[1] = L::new(6, 0, &[], &[]);
                n.layers[2].inputs = 0;
            },
            Error::Blob(BlobError::Limit {
                field: layer(1, "outputs"),
                value: 0,
                min: 1,
                max: MAX_WIDTH,
            }),
        ),
        (
            |n| {
                n.layers[0].w.truncate(4 * 28 * 6 - 4);
            },
            Error::Blob(BlobError::Length {
                field: layer(0, "weight"),
                expected: 4 * 28 * 6,
                got: 4 * 28 * 6 - 4,
            }),
        ),
        (
            |n| n.layers[1].w.push(0),
            Error::Blob(BlobError::Length {
                field: layer(1, "weight"),
                expected: 120,
                got: 121,
            }),
        ),
        (
            |n| n.layers[2].b.clear(),
            Error::Blob(BlobError::Length {
                field: layer(2, "bias"),
                expected: 16,
                got: 0,
            }),
        ),
        (
            |n| n.skip.as_mut().unwrap().inputs = 6,
            Error::Blob(BlobError::Dim {
                field: BlobField::Skip("inputs"),
                expected: dim,
                got: 6,
            }),
        ),
        (
            |n| n.skip.as_mut().unwrap().outputs = 2,
            Error::Blob(BlobError::Dim {
                field: BlobField::Skip("outputs"),
                expected: 4,
                got: 2,
            }),
        ),
        (
            |n| n.skip.as_mut().unwrap().w.truncate(8),
            Error::Blob(BlobError::Length {
                field: BlobField::Skip("weight"),
                expected: 4 * 28 * 4,
                got: 8,
            }),
        ),
        (
            |n| n.skip.as_mut().unwrap().b.push(1),
            Error::Blob(BlobError::Length {
                field: BlobField::Skip("bias"),
                expected: 16,
                got: 17,
            }),
        ),
    ];
    assert!(Policy::parse(&base.hand()).is_ok());
    for (i, (corrupt, expected)) in cases.into_iter().enumerate() {
        let mut net = base.clone();
        corrupt(&mut net);
        let blob = if net.users > 64 {
            hand_blob(net.users as u16, 2, dim as u32, &hand_payload(&net))
        } else {
            net.hand()
        };
        assert_eq!(
            Policy::parse(&blob).map(|_| ()),
            Err(expected),
            "case {i}: parse"
        );
        assert_eq!(net.encode_result(), Err(expected), "case {i}: encode");
    }
}

#[test]
fn non_finite_values_are_rejected() {
    let base = Net::random(9, 2, 2, &[6, 5], true);
    let set = |bytes: &mut Vec<u8>, index: usize, v: f32| {
        bytes[4 * index..4 * index + 4].copy_from_slice(&v.to_le_bytes());
    };
    let value = |field, index| Error::Blob(BlobError::Value { field, index });
    let mut n = base.clone();
    set(&mut n.mean, 0, f32::NAN);
    check_rejected(&n, value(BlobField::Model("norm_mean"), 0));
    let mut n = base.clone();
    set(&mut n.inv, 3, f32::INFINITY);
    check_rejected(&n, value(BlobField::Model("norm_inv_std"), 3));
    let mut n = base.clone();
    set(&mut n.layers[1].w, 5, f32::NAN);
    check_rejected(
        &n,
        value(
            BlobField::Layer {
                index: 1,
                field: "weight",
            },
            5,
        ),
    );
    let mut n = base.clone();
    set(&mut n.layers[2].b, 3, f32::NEG_INFINITY);
    check_rejected(
        &n,
        value(
            BlobField::Layer {
                index: 2,
                field: "bias",
            },
            3,
        ),
    );
    let mut n = base.clone();
    set(&mut n.skip.as_mut().unwrap().w, 111, -f32::NAN);
    check_rejected(&n, value(BlobField::Skip("weight"), 111));
}

// ---------------------------------------------------------------- engine

#[test]
fn engine_checks_its_buffers_and_the_observation() {
    let blob = tiny(true).encoded();
    let policy = Policy::parse(&blob).unwrap();
    let obs = tiny_obs();
    let mut scratch = [0.0f32; 15];
    let mut out = [0.0f32; 1];
    let buf = |buffer, expected, got| {
        Err(Error::PolicyBuffer {
            buffer,
            expected,
            got,
        })
    };
    assert_eq!(
        policy.logits(&obs[..10], &mut scratch, &mut out),
        buf("policy.obs", 11, 10)
    );
    assert_eq!(
        policy.logits(&[0.0; 12], &mut scratch, &mut out),
        buf("policy.obs", 11, 12)
    );
    assert_eq!(
        policy.logits(&obs, &mut scratch[..14], &mut out),
        buf("policy.scratch", 15, 14)
    );
    assert_eq!(
        policy.logits(&obs, &mut scratch, &mut [0.0; 2]),
        buf("policy.logits", 1, 2)
    );
    let mut bad = obs;
    bad[4] = f32::NAN;
    assert_eq!(
        policy.logits(&bad, &mut scratch, &mut out),
        Err(Error::ObservationValue { index: 4 })
    );
    bad[4] = 0.0;
    bad[9] = f32::NEG_INFINITY;
    assert_eq!(
        policy.logits(&bad, &mut scratch, &mut out),
        Err(Error::ObservationValue { index: 9 })
    );
    // A longer scratch is fine, and its old contents do not matter.
    let mut long = [f32::NAN; 40];
    assert_eq!(policy.logits(&obs, &mut long, &mut out), Ok(()));
    assert!((out[0] - 3.121_323_4).abs() < 1e-6);
}

#[test]
fn max_scratch_len_covers_every_shape() {
    assert_eq!(max_scratch_len(1424), 1424 + 1024);
    let net = Net::random(2, 2, 2, &[MAX_WIDTH, 3], false);
    let blob = net.encoded();
    let policy = Policy::parse(&blob).unwrap();
    assert_eq!(policy.scratch_len(), max_scratch_len(policy.obs_dim()));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            Error::Blob(BlobError::Magic),
            "blob.magic: not a diten policy blob (expected \"DTNB\")",
        ),
        (
            Error::Blob(BlobError::Version {
                found: 4,
                expected: 3,
            }),
            "blob.version: format version 4 is not supported (expected 3)",
        ),
        (
            Error::Blob(BlobError::Layout {
                expected: "diten-obs-v2",
            }),
            "blob.layout: the observation layout is not diten-obs-v2",
        ),
        (
            Error::Blob(BlobError::Index {
                field: BlobField::Prior("index"),
                index: 4,
                value: 99,
                limit: 11,
            }),
            "blob.prior.index[4]: 99 is out of range (must be below 11)",
        ),
        (
            Error::Blob(BlobError::Truncated {
                expected: 38,
                got: 5,
            }),
            "blob: truncated, 5 bytes of 38",
        ),
        (
            Error::Blob(BlobError::Crc {
                stored: 0xCBF4_3926,
                computed: 1,
            }),
            "blob.crc: the payload's CRC32 is 0x00000001, the header says 0xcbf43926",
        ),
        (
            Error::Blob(BlobError::Dim {
                field: BlobField::Layer {
                    index: 1,
                    field: "inputs",
                },
                expected: 16,
                got: 15,
            }),
            "blob.layers[1].inputs: 15, expected 16",
        ),
        (
            Error::Blob(BlobError::Limit {
                field: BlobField::Model("layers"),
                value: 9,
                min: 1,
                max: 8,
            }),
            "blob.layers: 9 is outside 1..=8",
        ),
        (
            Error::Blob(BlobError::Value {
                field: BlobField::Skip("bias"),
                index: 0,
            }),
            "blob.skip.bias[0]: must be a finite number",
        ),
        (
            Error::PolicyBuffer {
                buffer: "policy.scratch",
                expected: 20,
                got: 3,
            },
            "policy.scratch: 3 values, 20 needed",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(std::format!("{e}"), text);
    }
}
