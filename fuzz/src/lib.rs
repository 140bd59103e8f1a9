//! Helpers shared by diten's fuzz targets and the seed writer: test policies built
//! from deterministic weights, and a compact byte format for one slot's status that
//! libFuzzer can mutate and the seed writer can write.
//!
//! # Status format (target `decide`)
//!
//! Missing bytes read as zero, so every input decodes.
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | servers S = byte % 11 (0 and 9, 10 exercise the empty and over-capacity errors) |
//! | 1 | users U = byte % 11 |
//! | 1 | flags: bit 0 parameter overrides follow; bit 1 the policy decides for U + 1 users; bit 2 an availability byte follows the servers |
//! | S × 5 numbers | x, y, p, q, eps of each server |
//! | 1 | with flag bit 2: server s is unavailable when bit s % 8 is set (SPEC §2.2a) |
//! | U × (6 numbers + 1 byte) | x, y, emd, twin_bits, data_bits, prev_data_bits; prev_server (0xFF none, else byte % (S + 1)) |
//! | 1 + 2k | with flag bit 0: a count k (byte % 9), then k × (field byte, number) |
//!
//! A number is a tag byte and its value: tag % 4 = 0: a raw `f64` (8 bytes LE, any
//! bit pattern); 1: a `u16` LE scaled into the field's realistic range; 2: zero;
//! 3: a byte b giving `(b − 64)/64` times the field's range top (negative, zero,
//! and up to four times too large).

use diten_controller::obs::obs_dim;
use diten_controller::policy::{encode, encoded_len, F32Le, LayerRef, ModelRef};
use diten_controller::{Params, Server, User};

/// Capacity of the fuzzed slots (users and servers).
pub const CAP: usize = 8;

/// xorshift64*: deterministic weights without a rand crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }
}

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A dense layer's values: `outputs × inputs` weights and `outputs` biases.
pub struct RawLayer {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Row-major weights.
    pub weight: Vec<f32>,
    /// Biases.
    pub bias: Vec<f32>,
}

/// A policy's raw values, deterministic in `seed`: normaliser, `hidden` tanh
/// layers of `width`, a last layer to U·S logits and optionally a skip layer.
pub struct RawPolicy {
    /// Users.
    pub users: usize,
    /// Servers.
    pub servers: usize,
    /// Normaliser mean per observation value.
    pub mean: Vec<f32>,
    /// Normaliser inverse standard deviation per observation value.
    pub inv_std: Vec<f32>,
    /// Dense layers in order.
    pub layers: Vec<RawLayer>,
    /// Optional linear skip from the normalised observation to the logits.
    pub skip: Option<RawLayer>,
}

impl RawPolicy {
    /// Random weights (scaled like an initialised network) from `seed`.
    pub fn random(
        users: usize,
        servers: usize,
        hidden: usize,
        width: usize,
        skip: bool,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let dim = obs_dim(users, servers);
        let layer = |rng: &mut Rng, inputs: usize, outputs: usize| {
            let scale = 1.5 / (inputs as f64).sqrt();
            RawLayer {
                inputs,
                outputs,
                weight: (0..inputs * outputs)
                    .map(|_| rng.range(-scale, scale))
                    .collect(),
                bias: (0..outputs).map(|_| rng.range(-0.5, 0.5)).collect(),
            }
        };
        let mut layers = Vec::new();
        let mut inputs = dim;
        for _ in 0..hidden {
            layers.push(layer(&mut rng, inputs, width));
            inputs = width;
        }
        layers.push(layer(&mut rng, inputs, users * servers));
        let skip = skip.then(|| layer(&mut rng, dim, users * servers));
        RawPolicy {
            users,
            servers,
            mean: (0..dim).map(|_| rng.range(-0.2, 0.2)).collect(),
            inv_std: (0..dim).map(|_| rng.range(0.5, 2.0)).collect(),
            layers,
            skip,
        }
    }

    /// The firmware blob, written by the controller's own encoder.
    pub fn blob(&self) -> Vec<u8> {
        let bytes: Vec<(Vec<u8>, Vec<u8>)> = self
            .layers
            .iter()
            .map(|l| (le(&l.weight), le(&l.bias)))
            .collect();
        let layers: Vec<LayerRef<'_>> = self
            .layers
            .iter()
            .zip(&bytes)
            .map(|(l, (w, b))| LayerRef {
                inputs: l.inputs as u32,
                outputs: l.outputs as u32,
                weight: F32Le::new(w),
                bias: F32Le::new(b),
            })
            .collect();
        let skip_bytes = self.skip.as_ref().map(|l| (le(&l.weight), le(&l.bias)));
        let skip = self
            .skip
            .as_ref()
            .zip(skip_bytes.as_ref())
            .map(|(l, (w, b))| LayerRef {
                inputs: l.inputs as u32,
                outputs: l.outputs as u32,
                weight: F32Le::new(w),
                bias: F32Le::new(b),
            });
        let (mean, inv_std) = (le(&self.mean), le(&self.inv_std));
        let model = ModelRef {
            users: self.users,
            servers: self.servers,
            norm_mean: F32Le::new(&mean),
            norm_inv_std: F32Le::new(&inv_std),
            layers: &layers,
            skip,
            prior: None,
            cost_norm: diten_controller::CostNorm::Paper,
        };
        let len = encoded_len(&model).expect("a valid test policy");
        let mut out = vec![0; len];
        encode(&model, &mut out).expect("a valid test policy");
        out
    }
}

/// The fixed valid blob the `decide` target uses for `users` × `servers`: one
/// hidden layer of 16 and a skip layer, weights from a seed of the dimensions.
pub fn decide_blob(users: usize, servers: usize) -> Vec<u8> {
    RawPolicy::random(users, servers, 1, 16, true, (users * 100 + servers) as u64).blob()
}

/// Realistic range of each server field (x, y, p, q, eps).
const SERVER_RANGES: [(f64, f64); 5] = [
    (0.0, 120.0),
    (0.0, 120.0),
    (120.0, 150.0),
    (1400.0, 1500.0),
    (54.0, 56.0),
];

/// Realistic range of each user number (x, y, emd, twin_bits, data_bits,
/// prev_data_bits).
const USER_RANGES: [(f64, f64); 6] = [
    (0.0, 120.0),
    (0.0, 120.0),
    (0.0, 0.6),
    (4400.0, 4600.0),
    (200.0 * 784.0, 2000.0 * 784.0),
    (200.0 * 784.0, 2000.0 * 784.0),
];

/// Parameters a status may override, by index, with the range its numbers are
/// scaled into.
const PARAMS: [(&str, f64, f64); 17] = [
    ("alpha1", 0.0, 2.0),
    ("alpha2", 0.0, 14.0),
    ("alpha3", 0.0, 0.0012),
    ("alpha4", 0.0, 1.0),
    ("alpha5", -1.0, 1.0),
    ("alpha6", 0.0, 2.0),
    ("beta1", 0.0, 1.0),
    ("beta2", 0.0, 1.0),
    ("f0", 0.0, 400.0),
    ("n_mig", 0.0, 2e-4),
    ("n_syn", 0.0, 0.2),
    ("n_cmp", 0.0, 2e-7),
    ("p_tx_w", 0.0, 0.4),
    ("bandwidth_hz", 0.0, 3e4),
    ("noise_dbm", -200.0, 0.0),
    ("epochs_train", 0.0, 100.0),
    ("bits_per_sample", 1.0, 2000.0),
];

fn set_param(params: &mut Params, index: usize, v: f64) {
    match index {
        0..=5 => params.alpha[index] = v,
        6 => params.beta1 = v,
        7 => params.beta2 = v,
        8 => params.f0 = v,
        9 => params.n_mig = v,
        10 => params.n_syn = v,
        11 => params.n_cmp = v,
        12 => params.p_tx_w = v,
        13 => params.bandwidth_hz = v,
        14 => params.noise_dbm = v,
        15 => params.epochs_train = v,
        _ => params.bits_per_sample = v,
    }
}

/// One slot's status decoded from fuzz bytes (see the module docs).
#[derive(Debug, Clone)]
pub struct Status {
    /// The servers.
    pub servers: Vec<Server>,
    /// The users.
    pub users: Vec<User>,
    /// The model parameters (defaults unless overridden).
    pub params: Params,
    /// Whether the policy decides for one user more than the status has.
    pub wrong_dims: bool,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.byte())
    }
    fn number(&mut self, (lo, hi): (f64, f64)) -> f64 {
        match self.byte() % 4 {
            0 => f64::from_le_bytes(self.bytes()),
            1 => lo + (hi - lo) * f64::from(u16::from_le_bytes(self.bytes())) / 65535.0,
            2 => 0.0,
            _ => (f64::from(self.byte()) - 64.0) / 64.0 * hi.abs().max(lo.abs()),
        }
    }
}

impl Status {
    /// Decodes a status; every byte string decodes to some status.
    pub fn decode(data: &[u8]) -> Status {
        let mut r = Reader(data);
        let n_servers = usize::from(r.byte() % 11);
        let n_users = usize::from(r.byte() % 11);
        let flags = r.byte();
        let mut servers: Vec<Server> = (0..n_servers)
            .map(|_| {
                let v: [f64; 5] = core::array::from_fn(|i| r.number(SERVER_RANGES[i]));
                Server {
                    x: v[0],
                    y: v[1],
                    p: v[2],
                    q: v[3],
                    eps: v[4],
                    available: true,
                }
            })
            .collect();
        if flags & 4 != 0 {
            let down = r.byte();
            for (s, server) in servers.iter_mut().enumerate() {
                server.available = down & (1 << (s % 8)) == 0;
            }
        }
        let users = (0..n_users)
            .map(|_| {
                let v: [f64; 6] = core::array::from_fn(|i| r.number(USER_RANGES[i]));
                let prev = r.byte();
                User {
                    x: v[0],
                    y: v[1],
                    emd: v[2],
                    twin_bits: v[3],
                    data_bits: v[4],
                    prev_data_bits: v[5],
                    prev_server: (prev != 0xFF).then(|| usize::from(prev) % (n_servers + 1)),
                }
            })
            .collect();
        let mut params = Params::default();
        if flags & 1 != 0 {
            for _ in 0..r.byte() % 9 {
                let index = usize::from(r.byte()) % PARAMS.len();
                let (_, lo, hi) = PARAMS[index];
                let v = r.number((lo, hi));
                set_param(&mut params, index, v);
            }
        }
        Status {
            servers,
            users,
            params,
            wrong_dims: flags & 2 != 0,
        }
    }
}

/// Writes statuses in the format [`Status::decode`] reads, every number as a
/// scaled `u16` (tag 1) unless given raw.
#[derive(Default)]
pub struct StatusWriter(pub Vec<u8>);

impl StatusWriter {
    /// Starts a status of `servers` and `users` with `flags`.
    pub fn new(servers: u8, users: u8, flags: u8) -> Self {
        StatusWriter(vec![servers, users, flags])
    }
    /// A number at `fraction` (0..=1) of its field's range.
    pub fn scaled(&mut self, fraction: f64) -> &mut Self {
        let v = (fraction.clamp(0.0, 1.0) * 65535.0).round() as u16;
        self.0.push(1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A raw `f64`.
    pub fn raw(&mut self, v: f64) -> &mut Self {
        self.0.push(0);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A plain byte (a `prev_server`, a count or a parameter index).
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
}
