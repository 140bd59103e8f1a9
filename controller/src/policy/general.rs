//! The size-agnostic policy (SPEC §3.2a, `policy-v2`): one small network that
//! serves any slot of at most [`MAX_GENERAL_USERS`] users and
//! [`MAX_GENERAL_SERVERS`] servers, churn included, and sees the load its own
//! choices put on each server.
//!
//! # Model
//!
//! Every (user, server) pair gets [`PAIR_FEATURES`] features ([`pair_features`],
//! layout [`OBS_LAYOUT_V2`]: distances, the previous-server flag, the user's loads
//! on that server relative to its capacities, …), computed in f32 from each
//! user's and server's values rounded to f32 once per slot (the network's
//! precision; a Cortex-M4F has no f64 FPU, and f64 arithmetic per pair cost it
//! more than the network itself), normalised as in `policy-v1`
//! (`x' = clamp((x − mean)·inv_std, ±CLIP)`). With H hidden units (at most
//! [`MAX_HIDDEN`]) and weights shared over all pairs:
//!
//! 1. `h_us = relu(W_e·x'_us + b_e)` (embed, `F → H`);
//! 2. one round of message passing over the bipartite graph: the server's mean
//!    `ḡ_s = mean_u h_us` and the user's mean `k̄_u = mean_s h_us`;
//! 3. `z_us = relu(W_m·[h_us; ḡ_s; k̄_u] + b_m)` (mix, `3H → H`);
//! 4. `base_us = w_o·z_us + b_o` (out, `H → 1`).
//!
//! Its cost grows like U·S·H² (two passes over the pairs: the embedding is
//! recomputed instead of stored, so the scratch is (U + 2S)·H values plus the
//! two first layers' weights, transposed once per call, and one value per pair,
//! not U·S·H). The embed layer is linear before its relu, so the columns of a
//! user (with the bias) and of a server are summed once each, and a pair adds
//! only its own 6; H is padded to 16, 32 or 64 with zero weights (the same
//! logits, bit for bit), so that a pair's vectors stay in registers. The pass
//! is portable scalar code, one pair at a time (the firmware's), or with the
//! feature `simd` on an x86-64 CPU with AVX2 eight pairs at a time, one per
//! lane, each doing the portable code's operations in its order: the same
//! logits bit for bit (`avx`).
//!
//! # Decoding (controller code, shared with training)
//!
//! Users are then placed one at a time, in user order. Before user u is placed,
//! each server s has a state (the users placed on it and their loads at γ = 0,
//! [`Placed`]); [`user_step`] gives the [`DYN_FEATURES`] features of adding u
//! to s (`dyn_features`: is s open, how full, does u still fit, the rise of
//! Norm) and a penalty: −∞ for an unavailable server, −[`NO_FIT_PENALTY`] for a
//! server where u would break C2 or C3 while another one still takes it. The
//! decoded logit is `base_us + v·d_us + penalty`, `v` the learnt
//! [`DYN_FEATURES`] decoder weights; u goes to its largest logit (ties to the
//! lower index) and that server's state is updated. The controller then treats
//! the decoded logits as any policy's: the argmax is the decoder's association,
//! which the repair, consolidation and improvement start from.
//!
//! Training (the trainer's `general` learner) imitates the oracle with teacher
//! forcing: the state before user u is the oracle's placement of the users
//! before u, computed by the same [`user_step`].
//!
//! # Blob
//!
//! The header of SPEC §3.3 ([`super::blob`]) with version
//! [`GENERAL_FORMAT_VERSION`] = 4, layout `diten-obs-v2`, `users` =
//! [`MAX_GENERAL_USERS`], `servers` = [`MAX_GENERAL_SERVERS`] (what it serves at
//! most) and `obs_dim` = [`PAIR_FEATURES`]; then the postcard payload
//!
//! ```text
//! struct GeneralPayload {
//!     pair_mean:    bytes,   // PAIR_FEATURES f32
//!     pair_inv_std: bytes,   // PAIR_FEATURES f32
//!     embed:        Layer,   // PAIR_FEATURES → H
//!     mix:          Layer,   // 3H → H (columns: h, server mean, user mean)
//!     out:          Layer,   // H → 1
//!     decoder:      bytes,   // DYN_FEATURES f32
//!     cost_norm:    u8,      // CostNorm::code
//! }
//! ```
//!
//! (`Layer` as in `policy-v1`). [`GeneralPolicy::parse`] checks it as
//! [`Policy::parse`](super::Policy::parse) checks a `policy-v1` blob and borrows
//! the weights without allocating.

use serde::Serialize;

use super::blob::{
    check_dense, check_dim, check_values, frame, BlobError, BlobField, Cursor, F32Le, LayerRef,
    BLOB_FRAME, HEADER_LEN, MAGIC, OFF_LAYOUT, OFF_OBS_DIM, OFF_SERVERS, OFF_USERS,
};
use super::CLIP;
use crate::frame::{field, put, to_usize, OFF_VERSION};
use crate::model::norm_f32;
#[cfg(doc)]
use crate::model::Load;
use crate::params::CostNorm;
use crate::slot::{Server, User};
use crate::{Error, Params, Slot};
use pair::axpy_rows;

#[cfg(all(feature = "simd", target_arch = "x86_64"))]
mod avx;
mod pair;

/// The pair-feature layout [`pair_features`] writes.
pub const OBS_LAYOUT_V2: &str = "diten-obs-v2";
/// The header's `layout` field of a `policy-v2` blob.
pub const LAYOUT_V2: [u8; 16] = *b"diten-obs-v2\0\0\0\0";
/// Blob format version of a `policy-v2` blob.
pub const GENERAL_FORMAT_VERSION: u16 = 4;
/// Features per (user, server) pair.
pub const PAIR_FEATURES: usize = 12;
/// Decoder features per (user, server) pair, from the servers' state.
pub const DYN_FEATURES: usize = 5;
/// Widest hidden layer H a `policy-v2` blob may have.
pub const MAX_HIDDEN: usize = 64;
/// Widest hidden layer H this build runs: [`MAX_HIDDEN`] with the feature
/// `wide` (which `std` turns on), 16 without it. Each padded width (16, 32, 64)
/// is its own unrolled forward pass; the two wide ones cost about 50 KB of
/// code that a microcontroller's flash is better without (the firmware's
/// workspace fits H ≤ 16 anyway). A wider blob is refused at parsing.
pub const RUN_MAX_HIDDEN: usize = if cfg!(feature = "wide") {
    MAX_HIDDEN
} else {
    16
};
/// Most users a general policy decides for.
pub const MAX_GENERAL_USERS: usize = 64;
/// Most servers a general policy chooses among.
pub const MAX_GENERAL_SERVERS: usize = 32;
/// What the decoder takes off a server on which the user would break C2 or C3
/// while another server still takes it.
pub const NO_FIT_PENALTY: f32 = 1.0e4;

const DIST_SCALE: f32 = 100.0;
const DATA_SCALE: f32 = 1e6;

/// What the pair features and the decoder read of one user, in f32: computed once
/// per slot, so that a pair costs a few single-precision operations (on a
/// Cortex-M4F, whose FPU has no f64, the f64 model arithmetic per pair would cost
/// thousands of instructions).
#[derive(Clone, Copy, Debug, Default)]
struct UserIn {
    x: f32,
    y: f32,
    /// The previous server and its position; `None` for a user that joined.
    prev: Option<(usize, f32, f32)>,
    /// D_t (bits): the data trained at γ = 0.
    data: f32,
    /// D_t−1 (bits).
    prev_data: f32,
    /// n_mig · (D_t + D_twin): the migration cost per metre at γ = 0.
    mig_per_m: f32,
    /// n_syn · D_t / rate: the synchronisation cost per metre.
    syn_per_m: f32,
    emd: f32,
}

impl UserIn {
    fn new<const U: usize, const S: usize>(
        params: &Params,
        slot: &Slot<U, S>,
        user: &User,
        rate: f64,
    ) -> UserIn {
        let prev = user
            .prev_server
            .and_then(|p| slot.servers().get(p).map(|v| (p, v.x as f32, v.y as f32)));
        UserIn {
            x: user.x as f32,
            y: user.y as f32,
            prev,
            data: user.data_bits as f32,
            prev_data: user.prev_data_bits as f32,
            mig_per_m: (params.n_mig * (user.data_bits + user.twin_bits)) as f32,
            syn_per_m: (params.n_syn * user.data_bits / rate) as f32,
            emd: user.emd as f32,
        }
    }
}

/// What the pair features and the decoder read of one server, in f32.
#[derive(Clone, Copy, Debug, Default)]
struct ServerIn {
    x: f32,
    y: f32,
    /// C2's bound q_s.
    q: f32,
    /// C3's bound p_s.
    p: f32,
    /// n_cmp · ε_s · (E_s + E_u,s): the computation cost per bit.
    cmp_per_bit: f32,
    available: bool,
}

impl ServerIn {
    fn new(params: &Params, srv: &Server) -> ServerIn {
        ServerIn {
            x: srv.x as f32,
            y: srv.y as f32,
            q: srv.q as f32,
            p: srv.p as f32,
            cmp_per_bit: (params.n_cmp * srv.eps * params.epochs()) as f32,
            available: srv.available,
        }
    }
}

/// What one user puts on one server at γ = 0, in f32: the model's [`Load`]
/// (`Load::at_zero`, the same formula) at the precision the network's inputs and
/// the decoder need. The decoder sums these in user order; its C2/C3 test is a
/// hint for the network, the repair's f64 [`Load`] decides feasibility.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadF32 {
    /// Computation cost (bound q_s, C2).
    pub cmp: f32,
    /// Synchronisation cost (bound p_s, C3).
    pub syn: f32,
    /// Total cost C_s: migration, synchronisation and computation.
    pub total: f32,
}

impl core::ops::Add for LoadF32 {
    type Output = LoadF32;
    fn add(self, o: LoadF32) -> LoadF32 {
        LoadF32 {
            cmp: self.cmp + o.cmp,
            syn: self.syn + o.syn,
            total: self.total + o.total,
        }
    }
}

impl LoadF32 {
    /// Whether C2 and C3 hold on `srv` (a NaN sum fits, as [`Load::fits`] decides).
    fn fits(&self, srv: &ServerIn) -> bool {
        let breaks = self.cmp > srv.q || self.syn > srv.p;
        !breaks
    }
}

/// Manhattan distance in f32.
fn manhattan_f32(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    (ax - bx).abs() + (ay - by).abs()
}

/// The slot as the network and its decoder read it: every user's and server's
/// values in f32 and the objective's constants, computed once per slot, so that
/// each (user, server) pair and each decoding step costs a few single-precision
/// operations. [`pair_features`] and [`user_step`] build one for a single call;
/// a caller that asks for every pair or every user builds it once.
pub struct SlotIn<const U: usize, const S: usize> {
    users: [UserIn; U],
    servers: [ServerIn; S],
    n: usize,
    m: usize,
    /// 1 / (2 f0).
    inv_2f0: f32,
    /// 1 under the linear objective.
    linear: f32,
}

impl<const U: usize, const S: usize> SlotIn<U, S> {
    /// The f32 inputs of `slot` under `params`.
    pub fn new(params: &Params, slot: &Slot<U, S>) -> Self {
        let rate = params.rate_bps();
        let mut users = [UserIn::default(); U];
        for (o, user) in users.iter_mut().zip(slot.users()) {
            *o = UserIn::new(params, slot, user, rate);
        }
        let mut servers = [ServerIn::default(); S];
        for (o, srv) in servers.iter_mut().zip(slot.servers()) {
            *o = ServerIn::new(params, srv);
        }
        SlotIn {
            users,
            servers,
            n: slot.users().len(),
            m: slot.servers().len(),
            inv_2f0: (1.0 / (2.0 * params.f0)) as f32,
            linear: f32::from(u8::from(params.cost_norm == CostNorm::Linear)),
        }
    }

    fn users(&self) -> &[UserIn] {
        self.users.get(..self.n).unwrap_or(&[])
    }

    fn servers(&self) -> &[ServerIn] {
        self.servers.get(..self.m).unwrap_or(&[])
    }

    /// The features of pair (`u`, `s`) ([`pair_features`]), `None` for an index
    /// out of range.
    pub fn features(&self, u: usize, s: usize) -> Option<[f32; PAIR_FEATURES]> {
        let (user, srv) = (self.users().get(u)?, self.servers().get(s)?);
        Some(features(self.inv_2f0, self.linear, user, s, srv))
    }

    /// [`user_step`] on these inputs.
    pub fn step(
        &self,
        params: &Params,
        u: usize,
        placed: &[Placed],
        features: &mut [[f32; DYN_FEATURES]],
        penalty: &mut [f32],
        loads: &mut [LoadF32],
    ) {
        let Some(user) = self.users().get(u) else {
            return;
        };
        let mut any_fit = false;
        for (s, ((srv, state), load)) in self
            .servers()
            .iter()
            .zip(placed)
            .zip(loads.iter_mut())
            .enumerate()
        {
            *load = pair_load(user, s, srv).0;
            any_fit |= srv.available && (state.load + *load).fits(srv);
        }
        for ((((srv, state), load), f), p) in self
            .servers()
            .iter()
            .zip(placed)
            .zip(loads.iter())
            .zip(features.iter_mut())
            .zip(penalty.iter_mut())
        {
            *f = dyn_features(params, srv, state, load);
            *p = if !srv.available {
                f32::NEG_INFINITY
            } else if any_fit && f[2] == 0.0 {
                -NO_FIT_PENALTY
            } else {
                0.0
            };
        }
    }
}

/// User `u`'s load on server `s` at γ = 0 and the two distances (to the user,
/// and from its previous server; 0 without one).
fn pair_load(u: &UserIn, s: usize, srv: &ServerIn) -> (LoadF32, f32, f32) {
    let dist = manhattan_f32(u.x, u.y, srv.x, srv.y);
    let mig_dist = match u.prev {
        Some((p, px, py)) if p != s => manhattan_f32(px, py, srv.x, srv.y),
        _ => 0.0,
    };
    let (mig, syn, cmp) = (
        u.mig_per_m * mig_dist,
        u.syn_per_m * dist,
        srv.cmp_per_bit * u.data,
    );
    let load = LoadF32 {
        cmp,
        syn,
        total: mig + syn + cmp,
    };
    (load, dist, mig_dist)
}

/// The [`PAIR_COLUMNS`] of pair (`u`, `s`), in that order, except that the last
/// (the cost term, column 6) is left as its argument `C_us / (2·f0)`: the
/// forward pass takes its `ln(1 + ·)` once per pair and keeps it for its second
/// pass. Inlined: on a Cortex-M4F a call per pair returns its six values
/// through memory.
#[inline(always)]
fn pair_columns_raw(inv_2f0: f32, u: &UserIn, s: usize, srv: &ServerIn) -> [f32; 6] {
    let (load, dist, mig_dist) = pair_load(u, s, srv);
    let prev = match u.prev {
        Some((p, _, _)) => f32::from(u8::from(p == s)),
        None => 0.0,
    };
    [
        dist / DIST_SCALE,
        mig_dist / DIST_SCALE,
        prev,
        load.cmp / srv.q,
        load.syn / srv.p,
        load.total * inv_2f0,
    ]
}

/// The [`USER_COLUMNS`] of user `u`, in that order.
fn user_columns(linear: f32, u: &UserIn) -> [f32; 5] {
    [
        f32::from(u8::from(u.prev.is_none())),
        u.emd,
        u.data / DATA_SCALE,
        u.prev_data / DATA_SCALE,
        linear,
    ]
}

/// The [`SERVER_COLUMNS`] of server `srv`.
fn server_columns(srv: &ServerIn) -> [f32; 1] {
    [f32::from(u8::from(srv.available))]
}

/// The features of pair (`u`, `s`) (table at [`pair_features`]): the pair's,
/// the user's and the server's columns in their places.
fn features(
    inv_2f0: f32,
    linear: f32,
    u: &UserIn,
    s: usize,
    srv: &ServerIn,
) -> [f32; PAIR_FEATURES] {
    let mut pair = pair_columns_raw(inv_2f0, u, s, srv);
    pair[5] = crate::math::ln_1pf(pair[5]);
    let mut x = [0.0; PAIR_FEATURES];
    let columns = [
        (&PAIR_COLUMNS[..], &pair[..]),
        (&USER_COLUMNS[..], &user_columns(linear, u)[..]),
        (&SERVER_COLUMNS[..], &server_columns(srv)[..]),
    ];
    for (cols, values) in columns {
        for (&c, &v) in cols.iter().zip(values) {
            if let Some(o) = x.get_mut(c) {
                *o = v;
            }
        }
    }
    x
}

/// The features of pair (`u`, `s`) of `slot` (`rate` = [`Params::rate_bps`]),
/// `None` for an index out of range. Computed in f32 from the slot's values
/// rounded to f32 (the network's precision; the firmware has no f64 FPU):
///
/// | # | feature |
/// |--:|---|
/// | 0 | distance `l_us / 100` (metres, Manhattan) |
/// | 1 | migration distance from u's previous server `/ 100` (0 without one) |
/// | 2 | 1 if s is u's previous server |
/// | 3 | 1 if u has no previous server (first slot, or it joined) |
/// | 4 | u's computation load on s at γ = 0 over `q_s` (C2) |
/// | 5 | u's synchronisation load on s over `p_s` (C3) |
/// | 6 | `ln(1 + C_us / (2·f0))`, C_us what u adds to C_s at γ = 0 |
/// | 7 | 1 if s is available |
/// | 8 | φ_u |
/// | 9 | `D_u,t / 1e6` |
/// | 10 | `D_u,t−1 / 1e6` |
/// | 11 | 1 under the linear objective (SPEC §2.1b) |
pub fn pair_features<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    rate: f64,
    u: usize,
    s: usize,
) -> Option<[f32; PAIR_FEATURES]> {
    let user = UserIn::new(params, slot, slot.users().get(u)?, rate);
    let srv = ServerIn::new(params, slot.servers().get(s)?);
    let inv_2f0 = (1.0 / (2.0 * params.f0)) as f32;
    let linear = f32::from(u8::from(params.cost_norm == CostNorm::Linear));
    Some(features(inv_2f0, linear, &user, s, &srv))
}

/// The columns of [`pair_features`] that depend on the user alone (and on the
/// objective, the same for every user): joined, φ, `D_t`, `D_{t−1}`, linear. The
/// `users` input of the ONNX graph (SPEC §3.2a), `F_u` = 5.
pub const USER_COLUMNS: [usize; 5] = [3, 8, 9, 10, 11];
/// The column of [`pair_features`] that depends on the server alone: available.
/// The `servers` input of the ONNX graph, `F_s` = 1.
pub const SERVER_COLUMNS: [usize; 1] = [7];
/// The columns of [`pair_features`] that depend on the pair: distance, migration
/// distance, previous-server flag, the C2 and C3 fills and the cost term. The
/// `pairs` input of the ONNX graph, `F_p` = 6.
pub const PAIR_COLUMNS: [usize; 6] = [0, 1, 2, 4, 5, 6];

/// The three inputs of a `policy-v2` ONNX graph (SPEC §3.2a) for `slot`, each
/// row-major for the slot's U users and S servers: `users` `[U, 5]`
/// ([`USER_COLUMNS`]), `servers` `[S, 1]` ([`SERVER_COLUMNS`]) and `pairs`
/// `[U, S, 6]` ([`PAIR_COLUMNS`]): the [`pair_features`] of every pair, each
/// column given once at the level it varies on. The blob engine, the ONNX
/// engine, `diten infer --instance` and the tests all build them here.
///
/// Errors: a buffer of another length ([`Error::PolicyBuffer`], named
/// `policy.users`, `policy.servers` or `policy.pairs`) or a feature that is not
/// finite in f32 ([`Error::ObservationValue`], index `u·S + s`). Never allocates.
pub fn general_inputs<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    users: &mut [f32],
    servers: &mut [f32],
    pairs: &mut [f32],
) -> Result<(), Error> {
    let (n, m) = (slot.users().len(), slot.servers().len());
    for (buffer, expected, got) in [
        ("policy.users", n * USER_COLUMNS.len(), users.len()),
        ("policy.servers", m * SERVER_COLUMNS.len(), servers.len()),
        ("policy.pairs", n * m * PAIR_COLUMNS.len(), pairs.len()),
    ] {
        if expected != got {
            return Err(Error::PolicyBuffer {
                buffer,
                expected,
                got,
            });
        }
    }
    let inputs = SlotIn::new(params, slot);
    let gather = |x: &[f32; PAIR_FEATURES], columns: &[usize], out: &mut [f32]| {
        for (o, &c) in out.iter_mut().zip(columns) {
            debug_assert!(c < PAIR_FEATURES);
            *o = x.get(c).copied().unwrap_or(f32::NAN);
        }
    };
    let mut user_rows = users.chunks_exact_mut(USER_COLUMNS.len());
    let mut pair_rows = pairs.chunks_exact_mut(PAIR_COLUMNS.len());
    for u in 0..n {
        let mut user_row = user_rows.next();
        let mut server_rows = servers.chunks_exact_mut(SERVER_COLUMNS.len());
        for s in 0..m {
            let x = inputs
                .features(u, s)
                .ok_or(Error::AssociationIndex { user: u, server: s })?;
            if x.iter().any(|v| !v.is_finite()) {
                return Err(Error::ObservationValue { index: u * m + s });
            }
            if let Some(row) = pair_rows.next() {
                gather(&x, &PAIR_COLUMNS, row);
            }
            let server_row = server_rows.next();
            if let (0, Some(row)) = (u, server_row) {
                gather(&x, &SERVER_COLUMNS, row);
            }
            if let (0, Some(row)) = (s, user_row.as_deref_mut()) {
                gather(&x, &USER_COLUMNS, row);
            }
        }
    }
    Ok(())
}

/// A server's state while the decoder places users: how many and what they load
/// at γ = 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Placed {
    /// Users placed on it so far.
    pub count: usize,
    /// Their loads, summed in user order.
    pub load: LoadF32,
    /// `Norm(load.total)` ([`norm_f32`]), kept by [`add`](Self::add) so that
    /// each decoding step computes one Norm per server, not two.
    pub norm: f32,
}

impl Placed {
    /// Places one more user, whose load at γ = 0 is `load`.
    pub fn add(&mut self, params: &Params, load: LoadF32) {
        self.count += 1;
        self.load = self.load + load;
        self.norm = norm_f32(params, self.load.total);
    }
}

/// The decoder features of adding a user whose load on `srv` is `add` to a
/// server in state `placed`:
///
/// | # | feature |
/// |--:|---|
/// | 0 | 1 if the server already hosts someone |
/// | 1 | `min(count, 8) / 4` |
/// | 2 | 1 if C2 and C3 still hold with the user added |
/// | 3 | `min(Norm(C + c) − Norm(C), 4)`: the rise of the server's Norm at γ = 0 |
/// | 4 | `min((C_cmp + c_cmp) / q_s, 4)`: C2's fill with the user added |
fn dyn_features(
    params: &Params,
    srv: &ServerIn,
    placed: &Placed,
    add: &LoadF32,
) -> [f32; DYN_FEATURES] {
    let after = placed.load + *add;
    let rise = norm_f32(params, after.total) - placed.norm;
    [
        f32::from(u8::from(placed.count > 0)),
        placed.count.min(8) as f32 / 4.0,
        f32::from(u8::from(after.fits(srv))),
        rise.clamp(0.0, 4.0),
        (after.cmp / srv.q).clamp(0.0, 4.0),
    ]
}

/// One decoding step for user `u` of `slot` given the servers' `placed` states: writes
/// each server's decoder features into `features` and its penalty into
/// `penalty` (0; −∞ when unavailable; −[`NO_FIT_PENALTY`] when u would break C2
/// or C3 there while some available server still takes it), and writes u's
/// load on each server through `loads`. Entries beyond the slot's servers are
/// untouched. Training calls it with the oracle's placement, the decoder with its
/// own (through the same arithmetic, on values computed once per slot).
pub fn user_step<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    u: usize,
    placed: &[Placed],
    features: &mut [[f32; DYN_FEATURES]],
    penalty: &mut [f32],
    loads: &mut [LoadF32],
) {
    SlotIn::new(params, slot).step(params, u, placed, features, penalty, loads);
}

/// Scratch values a `policy-v2` forward pass of width `hidden` needs for
/// `users` × `servers`, with W = [`padded_width`]`(hidden)`: for the message
/// passing two rows of W per server (its embedding term, then its mean) and one
/// per user, the embed and mix layers' weights transposed to input-major f32
/// (F·W + 3W·W, so every layer is a few `y += x_i · w_i` passes over
/// contiguous rows), and each pair's cost feature.
pub const fn general_scratch_len(users: usize, servers: usize, hidden: usize) -> usize {
    let w = padded_width(hidden);
    (users + 2 * servers) * w + PAIR_FEATURES * w + 3 * w * w + users * servers
}

/// [`Error::PolicyCapacity`] unless `users` ≤ [`MAX_GENERAL_USERS`] and
/// `servers` ≤ [`MAX_GENERAL_SERVERS`]: what every `policy-v2` engine serves.
pub fn check_capacity(users: usize, servers: usize) -> Result<(), Error> {
    for (field, count, capacity) in [
        ("users", users, MAX_GENERAL_USERS),
        ("servers", servers, MAX_GENERAL_SERVERS),
    ] {
        if count > capacity {
            return Err(Error::PolicyCapacity {
                field,
                count,
                capacity,
            });
        }
    }
    Ok(())
}

/// A `policy-v2` network, borrowed: what [`encode_general`] writes and
/// [`GeneralPolicy::model`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralRef<'a> {
    /// [`PAIR_FEATURES`] means subtracted from the pair features.
    pub pair_mean: F32Le<'a>,
    /// [`PAIR_FEATURES`] factors applied after the mean is subtracted.
    pub pair_inv_std: F32Le<'a>,
    /// `PAIR_FEATURES → H`, relu.
    pub embed: LayerRef<'a>,
    /// `3H → H`, relu; input columns: the pair's h, the server's mean, the user's mean.
    pub mix: LayerRef<'a>,
    /// `H → 1`.
    pub out: LayerRef<'a>,
    /// [`DYN_FEATURES`] decoder weights.
    pub decoder: F32Le<'a>,
    /// The objective the policy was trained for (SPEC §2.1b).
    pub cost_norm: CostNorm,
}

#[derive(Serialize)]
struct GeneralPayload<'m, 'a> {
    pair_mean: F32Le<'a>,
    pair_inv_std: F32Le<'a>,
    embed: &'m LayerRef<'a>,
    mix: &'m LayerRef<'a>,
    out: &'m LayerRef<'a>,
    decoder: F32Le<'a>,
    cost_norm: u8,
}

impl<'a> GeneralRef<'a> {
    /// Hidden width H.
    pub fn hidden(&self) -> usize {
        to_usize(self.embed.outputs)
    }

    /// The [`DYN_FEATURES`] decoder weights as values (what [`decode`] takes).
    pub fn decoder_weights(&self) -> [f32; DYN_FEATURES] {
        let mut v = [0.0; DYN_FEATURES];
        debug_assert_eq!(self.decoder.len(), DYN_FEATURES);
        for (o, w) in v.iter_mut().zip(self.decoder.iter()) {
            *o = w;
        }
        v
    }

    fn payload(&self) -> GeneralPayload<'_, 'a> {
        GeneralPayload {
            pair_mean: self.pair_mean,
            pair_inv_std: self.pair_inv_std,
            embed: &self.embed,
            mix: &self.mix,
            out: &self.out,
            decoder: self.decoder,
            cost_norm: self.cost_norm.code(),
        }
    }

    /// The shape checks shared by encoding and parsing, the hidden width at
    /// most `max_hidden` ([`MAX_HIDDEN`] to write a blob, [`RUN_MAX_HIDDEN`] to
    /// run one).
    fn validate(&self, max_hidden: usize) -> Result<(), BlobError> {
        let h = self.hidden();
        if !(1..=max_hidden).contains(&h) {
            return Err(hidden_limit(h, max_hidden));
        }
        check_values(BlobField::Model("pair_mean"), self.pair_mean, PAIR_FEATURES)?;
        check_values(
            BlobField::Model("pair_inv_std"),
            self.pair_inv_std,
            PAIR_FEATURES,
        )?;
        let layers = [
            (&self.embed, PAIR_FEATURES, h),
            (&self.mix, 3 * h, h),
            (&self.out, h, 1),
        ];
        for (index, (layer, inputs, outputs)) in layers.into_iter().enumerate() {
            let name = move |field| BlobField::Layer { index, field };
            check_dim(name("inputs"), layer.inputs, inputs)?;
            check_dim(name("outputs"), layer.outputs, outputs)?;
            check_dense(name, layer, inputs, outputs)?;
        }
        check_values(BlobField::Model("decoder"), self.decoder, DYN_FEATURES)
    }

    fn payload_len(&self) -> Result<usize, BlobError> {
        postcard::serialize_with_flavor(&self.payload(), postcard::ser_flavors::Size::default())
            .map_err(|_| BlobError::Payload {
                field: BlobField::Model("payload"),
            })
    }
}

/// Bytes [`encode_general`] writes for `model` (header included).
pub fn general_encoded_len(model: &GeneralRef<'_>) -> Result<usize, Error> {
    model.validate(MAX_HIDDEN)?;
    Ok(HEADER_LEN.saturating_add(model.payload_len()?))
}

/// Writes `model` as a `policy-v2` blob into the front of `out` and returns its
/// length; the checks of parsing apply (nothing is written for a model that would
/// not parse), and `out` too short is [`BlobError::Buffer`]. Never allocates.
pub fn encode_general(model: &GeneralRef<'_>, out: &mut [u8]) -> Result<usize, Error> {
    model.validate(MAX_HIDDEN)?;
    let payload_len = model.payload_len()?;
    let total = HEADER_LEN.saturating_add(payload_len);
    let too_small = BlobError::Buffer {
        expected: total,
        got: out.len(),
    };
    let (header, rest) = out.split_first_chunk_mut().ok_or(too_small)?;
    let payload = rest.get_mut(..payload_len).ok_or(too_small)?;
    let written = postcard::to_slice(&model.payload(), payload).map_err(|_| too_small)?;
    BLOB_FRAME
        .seal(header, GENERAL_FORMAT_VERSION, written)
        .ok_or(too_small)?;
    put(header, OFF_LAYOUT, &LAYOUT_V2);
    put(header, OFF_USERS, &(MAX_GENERAL_USERS as u16).to_le_bytes());
    put(
        header,
        OFF_SERVERS,
        &(MAX_GENERAL_SERVERS as u16).to_le_bytes(),
    );
    put(header, OFF_OBS_DIM, &(PAIR_FEATURES as u32).to_le_bytes());
    Ok(total)
}

/// Whether `blob` claims to be a `policy-v2` blob (magic and version; nothing
/// else is checked): which parser to use.
pub fn is_general_blob(blob: &[u8]) -> bool {
    blob.get(..4) == Some(&MAGIC[..])
        && blob.get(OFF_VERSION..OFF_VERSION + 2) == Some(&GENERAL_FORMAT_VERSION.to_le_bytes()[..])
}

/// A parsed `policy-v2` blob and its engine (module docs).
#[derive(Clone, Copy, Debug)]
pub struct GeneralPolicy<'a> {
    model: GeneralRef<'a>,
}

impl<'a> GeneralPolicy<'a> {
    /// Checks and parses a `policy-v2` blob, borrowing its weights (errors as
    /// [`Policy::parse`](super::Policy::parse)'s, each naming its field).
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        let (header, payload) = frame(blob, &[GENERAL_FORMAT_VERSION], &LAYOUT_V2)?;
        let dims = [
            ("users", OFF_USERS, MAX_GENERAL_USERS),
            ("servers", OFF_SERVERS, MAX_GENERAL_SERVERS),
        ];
        for (name, at, max) in dims {
            let v = u16::from_le_bytes(field(header, at));
            check_dim(BlobField::Model(name), u32::from(v), max)?;
        }
        check_dim(
            BlobField::Model("obs_dim"),
            u32::from_le_bytes(field(header, OFF_OBS_DIM)),
            PAIR_FEATURES,
        )?;
        let mut cur = Cursor(payload);
        let pair_mean = cur.values(BlobField::Model("pair_mean"))?;
        let pair_inv_std = cur.values(BlobField::Model("pair_inv_std"))?;
        let embed = cur.layer(|field| BlobField::Layer { index: 0, field })?;
        let mix = cur.layer(|field| BlobField::Layer { index: 1, field })?;
        let out = cur.layer(|field| BlobField::Layer { index: 2, field })?;
        let decoder = cur.values(BlobField::Model("decoder"))?;
        let field = BlobField::Model("cost_norm");
        let cost_norm =
            CostNorm::from_code(cur.take::<u8>(field)?).ok_or(BlobError::Payload { field })?;
        if !cur.0.is_empty() {
            return Err(BlobError::PayloadTrailing {
                unused: cur.0.len(),
            }
            .into());
        }
        let model = GeneralRef {
            pair_mean,
            pair_inv_std,
            embed,
            mix,
            out,
            decoder,
            cost_norm,
        };
        model.validate(RUN_MAX_HIDDEN)?;
        Ok(GeneralPolicy { model })
    }

    /// The network, borrowing the blob.
    pub fn model(&self) -> GeneralRef<'a> {
        self.model
    }

    /// Scratch values [`logits`](Self::logits) needs for `users` × `servers`:
    /// [`general_scratch_len`] at the blob's width.
    pub fn scratch_len(&self, users: usize, servers: usize) -> usize {
        general_scratch_len(users, servers, self.model.hidden())
    }

    /// The decoded logits of `slot` (module docs), user-major into
    /// `out[..U·S]` for the slot's U users and S servers: each user's row is the
    /// one its decoding step saw, so the row's argmax is the server the decoder
    /// gave it. [`base_logits`](Self::base_logits), then [`decode`] with the
    /// blob's decoder weights. Errors: more users or servers than the policy serves
    /// ([`Error::PolicyCapacity`]), `scratch` shorter than
    /// [`scratch_len`](Self::scratch_len) or `out` than U·S
    /// ([`Error::WorkspaceLength`]).
    pub fn logits<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let inputs = SlotIn::new(params, slot);
        self.base_in(&inputs, scratch, out)?;
        let n = slot.users().len() * slot.servers().len();
        if let Some(out) = out.get_mut(..n) {
            decode_at(params, &inputs, &self.model.decoder_weights(), out);
        }
        Ok(())
    }

    /// The network's scores `base_us` of `slot` before decoding (steps 1–4 of the
    /// module docs), user-major into `out[..U·S]`: what the `policy-v2` ONNX graph
    /// computes from [`general_inputs`]. Errors as [`logits`](Self::logits).
    pub fn base_logits<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.base_in(&SlotIn::new(params, slot), scratch, out)
    }

    /// [`base_logits`](Self::base_logits) on the slot's [`SlotIn`]: checks the
    /// buffers, then runs [`forward`](Self::forward) at the blob's width padded
    /// to 8, 16, 32 or 64 ([`padded_width`]).
    fn base_in<const U: usize, const S: usize>(
        &self,
        inputs: &SlotIn<U, S>,
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let (n, m) = (inputs.n, inputs.m);
        check_capacity(n, m)?;
        let need = self.scratch_len(n, m);
        let short = |expected, got| Error::WorkspaceLength { expected, got };
        let scratch = match scratch.get_mut(..need) {
            Some(s) => s,
            None => return Err(short(need, scratch.len())),
        };
        let out = match out.get_mut(..n * m) {
            Some(o) => o,
            None => return Err(short(n * m, out.len())),
        };
        match padded_width(self.model.hidden()) {
            16 => self.forward_at::<16, U, S>(inputs, scratch, out),
            #[cfg(feature = "wide")]
            32 => self.forward_at::<32, U, S>(inputs, scratch, out),
            #[cfg(feature = "wide")]
            _ => self.forward_at::<64, U, S>(inputs, scratch, out),
            // Parsing refused the blob already (`RUN_MAX_HIDDEN`).
            #[cfg(not(feature = "wide"))]
            _ => Err(hidden_limit(self.model.hidden(), RUN_MAX_HIDDEN).into()),
        }
    }

    /// [`forward`](Self::forward) at width `N`: on AVX2, eight pairs at a time
    /// ([`avx`]), where the build (feature `simd`, x86-64) and the CPU have it
    /// (checked once, then cached by `pulp`); on scalar code elsewhere. The same
    /// logits bit for bit.
    fn forward_at<const N: usize, const U: usize, const S: usize>(
        &self,
        inputs: &SlotIn<U, S>,
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        #[cfg(all(feature = "simd", target_arch = "x86_64"))]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return avx::forward::<N, U, S>(simd, self, inputs, scratch, out);
        }
        self.forward::<N, U, S>(inputs, scratch, out)
    }

    /// The buffers of a forward pass at width `N`, carved from `scratch`, with
    /// the embed and mix layers' weights transposed into them and each server's
    /// embedding term computed. Out of line: inlined, it crowded the scalar
    /// pass's registers (on a Cortex-M4F its loops then spilled more).
    #[inline(never)]
    fn pass<'w, const N: usize, const U: usize, const S: usize>(
        &self,
        inputs: &SlotIn<U, S>,
        scratch: &'w mut [f32],
    ) -> Result<Pass<'w, N>, Error> {
        let (n, m) = (inputs.n, inputs.m);
        let short = Error::WorkspaceLength {
            expected: self.scratch_len(n, m),
            got: scratch.len(),
        };
        let mut rest = scratch;
        let mut take = |len| carve(&mut rest, len).ok_or(short);
        let server_ctx = take(m * N)?;
        let server_pre = take(m * N)?;
        let user_ctx = take(n * N)?;
        let embed_t = take(PAIR_FEATURES * N)?;
        let mix_t = take(3 * N * N)?;
        let cost = take(n * m)?;

        let model = &self.model;
        let embed = Embed::<N>::new(model, embed_t);
        transpose_padded(&model.mix, 3, N, mix_t);
        let (mix_h, mix_rest) = mix_t.split_at(N * N);
        let (mix_g, mix_k) = mix_rest.split_at(N * N);

        // The server column's term of each server's pairs.
        for (s, (pre, srv)) in server_pre
            .chunks_exact_mut(N)
            .zip(inputs.servers())
            .enumerate()
        {
            let term = embed
                .server_term(srv)
                .ok_or(Error::ObservationValue { index: s })?;
            pre.copy_from_slice(&term);
        }
        server_ctx.iter_mut().for_each(|v| *v = 0.0);
        user_ctx.iter_mut().for_each(|v| *v = 0.0);
        Ok(Pass {
            embed,
            server_ctx,
            server_pre,
            user_ctx,
            cost,
            mix: Mix {
                h: mix_h,
                g: mix_g,
                k: mix_k,
                bias: padded(model.mix.bias),
                out_w: padded(model.out.weight),
                b_out: model.out.bias.get(0).unwrap_or(0.0),
            },
        })
    }

    /// Steps 1–4 of the module docs with every hidden vector `N` wide: the
    /// weights beyond the blob's H are zeros, so the padded units are 0 after
    /// every relu and add exact zeros to every sum (the logits are those of the
    /// unpadded network, bit for bit), and each pair's vectors live in
    /// registers. Portable scalar code, one pair at a time ([`pair`]), in a
    /// function of its own (a pair's vectors in registers, in a frame of their
    /// own).
    ///
    /// The embed layer is linear before its relu, so its user columns (with the
    /// bias) are summed once per user and its server column once per server; a
    /// pair adds its own [`PAIR_COLUMNS`] only. The cost feature's `ln(1 + ·)`
    /// is taken once per pair and kept for the second pass.
    #[inline(never)]
    fn forward<const N: usize, const U: usize, const S: usize>(
        &self,
        inputs: &SlotIn<U, S>,
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let (n, m) = (inputs.n, inputs.m);
        // Locals, not a struct's fields: the per-pair loops keep them in
        // registers (through a struct they were reloaded after every call).
        let Pass {
            embed,
            server_ctx,
            server_pre,
            user_ctx,
            cost,
            mix,
        } = self.pass::<N, U, S>(inputs, scratch)?;
        let w_pair = embed.rows(0, N_PAIR);

        // Pass 1: the embeddings' sums per server and per user.
        for (u, ((uc, user), costs)) in user_ctx
            .chunks_exact_mut(N)
            .zip(inputs.users())
            .zip(cost.chunks_exact_mut(m.max(1)))
            .enumerate()
        {
            let up = embed
                .user_term(inputs.linear, user)
                .ok_or(Error::ObservationValue { index: u * S })?;
            let mut user_sum = [0.0f32; N];
            let servers = server_ctx
                .chunks_exact_mut(N)
                .filter_map(|c| <&mut [f32; N]>::try_from(c).ok())
                .zip(rows::<N>(server_pre));
            for (s, (((sc, pre), srv), c)) in servers
                .zip(inputs.servers())
                .zip(costs.iter_mut())
                .enumerate()
            {
                let x = embed
                    .pair_input(inputs, user, s, srv, None)
                    .ok_or(Error::ObservationValue { index: u * S + s })?;
                *c = x.1;
                let hid = pair::embed(&up, pre, w_pair, &x.0);
                pair::accumulate(&hid, sc, &mut user_sum);
            }
            uc.copy_from_slice(&user_sum);
        }
        mix.contexts(server_ctx, user_ctx, n, m);
        // Pass 2: the base logits, each pair's embedding computed again (U·S·H
        // values would not fit a microcontroller's RAM) from its kept cost.
        for (u, (((row, uc), user), costs)) in out
            .chunks_exact_mut(m.max(1))
            .zip(rows::<N>(user_ctx))
            .zip(inputs.users())
            .zip(cost.chunks_exact(m.max(1)))
            .enumerate()
        {
            let up = embed
                .user_term(inputs.linear, user)
                .ok_or(Error::ObservationValue { index: u * S })?;
            let servers = rows::<N>(server_ctx).zip(rows::<N>(server_pre));
            for (s, (((o, (sc, pre)), srv), &c)) in row
                .iter_mut()
                .zip(servers)
                .zip(inputs.servers())
                .zip(costs)
                .enumerate()
            {
                let x = embed
                    .pair_input(inputs, user, s, srv, Some(c))
                    .ok_or(Error::ObservationValue { index: u * S + s })?;
                let hid = pair::embed(&up, pre, w_pair, &x.0);
                *o = pair::head(&hid, sc, uc, mix.h, &mix.out_w, mix.b_out);
            }
        }
        Ok(())
    }
}

/// The buffers and weights of one forward pass at width `N`
/// ([`GeneralPolicy::pass`]): both passes read them, pass 1 writes the sums
/// and the costs, [`Mix::contexts`] turns the sums into the mix layer's terms.
struct Pass<'w, const N: usize> {
    embed: Embed<'w, N>,
    /// Per server: its embeddings' sum, then its mean's term of the mix layer.
    server_ctx: &'w mut [f32],
    /// Per server: its column's term of the embed layer.
    server_pre: &'w [f32],
    /// Per user: its embeddings' sum, then its mean's term of the mix layer
    /// with the bias.
    user_ctx: &'w mut [f32],
    /// Per pair: its cost feature `ln(1 + C/2f0)`.
    cost: &'w mut [f32],
    mix: Mix<'w, N>,
}

/// The mix and out layers of one forward pass at width `N`, the mix layer's
/// weights input-major by its three column blocks.
struct Mix<'w, const N: usize> {
    /// The columns of the pair's h.
    h: &'w [f32],
    /// The columns of the server's mean.
    g: &'w [f32],
    /// The columns of the user's mean.
    k: &'w [f32],
    bias: [f32; N],
    out_w: [f32; N],
    b_out: f32,
}

impl<const N: usize> Mix<'_, N> {
    /// Step 2 between the passes: the sums of `n` users' and `m` servers'
    /// embeddings into their means, then into their columns of the mix layer
    /// (the user's with the bias).
    fn contexts(&self, server_ctx: &mut [f32], user_ctx: &mut [f32], n: usize, m: usize) {
        let (inv_n, inv_m) = (1.0 / n.max(1) as f32, 1.0 / m.max(1) as f32);
        for sc in server_ctx.chunks_exact_mut(N) {
            let mut mean = [0.0f32; N];
            for (o, &v) in mean.iter_mut().zip(sc.iter()) {
                *o = v * inv_n;
            }
            let mut t = [0.0f32; N];
            axpy_rows(self.g, &mean, &mut t);
            sc.copy_from_slice(&t);
        }
        for uc in user_ctx.chunks_exact_mut(N) {
            let mut mean = [0.0f32; N];
            for (o, &v) in mean.iter_mut().zip(uc.iter()) {
                *o = v * inv_m;
            }
            let mut t = self.bias;
            axpy_rows(self.k, &mean, &mut t);
            uc.copy_from_slice(&t);
        }
    }
}

/// `values` as rows of `N`.
fn rows<const N: usize>(values: &[f32]) -> impl Iterator<Item = &[f32; N]> {
    values
        .chunks_exact(N)
        .filter_map(|c| <&[f32; N]>::try_from(c).ok())
}

/// The width the forward pass computes a hidden layer of `h` units at: 16, 32
/// or 64 (a fixed width lets the compiler keep a pair's vectors in registers;
/// [`MAX_HIDDEN`] is 64).
pub const fn padded_width(h: usize) -> usize {
    if h <= 16 {
        16
    } else if h <= 32 {
        32
    } else {
        64
    }
}

/// The error for a hidden width `h` outside `1..=max`.
fn hidden_limit(h: usize, max: usize) -> BlobError {
    BlobError::Limit {
        field: BlobField::Layer {
            index: 0,
            field: "outputs",
        },
        value: h,
        min: 1,
        max,
    }
}

/// The first `len` values of `rest`, which keeps the others (`None` when it is
/// shorter).
fn carve<'a>(rest: &mut &'a mut [f32], len: usize) -> Option<&'a mut [f32]> {
    let (head, tail) = core::mem::take(rest).split_at_mut_checked(len)?;
    *rest = tail;
    Some(head)
}

/// `values` as `N` f32, zeros after them.
fn padded<const N: usize>(values: F32Le<'_>) -> [f32; N] {
    let mut out = [0.0f32; N];
    for (o, v) in out.iter_mut().zip(values.iter()) {
        *o = v;
    }
    out
}

/// Where the cost feature (column 6) sits among the [`PAIR_COLUMNS`].
const COST_AT: usize = 5;

const N_PAIR: usize = PAIR_COLUMNS.len();
const N_USER: usize = USER_COLUMNS.len();

/// The embed layer of one forward pass, `N` wide: its columns reordered pair,
/// user, server ([`PAIR_COLUMNS`], [`USER_COLUMNS`], [`SERVER_COLUMNS`]) with
/// their normalisers, its weights transposed input-major and zero-padded into
/// the caller's scratch.
struct Embed<'w, const N: usize> {
    mean: [f32; PAIR_FEATURES],
    inv_std: [f32; PAIR_FEATURES],
    bias: [f32; N],
    /// `PAIR_FEATURES · N` weights, one row of N per column in the order above.
    weights: &'w [f32],
}

impl<'w, const N: usize> Embed<'w, N> {
    fn new(model: &GeneralRef<'_>, scratch: &'w mut [f32]) -> Self {
        let h = model.hidden();
        let inputs = to_usize(model.embed.inputs);
        let columns = PAIR_COLUMNS
            .iter()
            .chain(&USER_COLUMNS)
            .chain(&SERVER_COLUMNS);
        let (mut mean, mut inv_std) = ([0.0; PAIR_FEATURES], [0.0; PAIR_FEATURES]);
        for (((mean, inv_std), &c), row) in mean
            .iter_mut()
            .zip(inv_std.iter_mut())
            .zip(columns)
            .zip(scratch.chunks_exact_mut(N))
        {
            *mean = model.pair_mean.get(c).unwrap_or(0.0);
            *inv_std = model.pair_inv_std.get(c).unwrap_or(0.0);
            for (o, w) in row.iter_mut().enumerate() {
                *w = if o < h {
                    model.embed.weight.get(o * inputs + c).unwrap_or(0.0)
                } else {
                    0.0
                };
            }
        }
        Embed {
            mean,
            inv_std,
            bias: padded(model.embed.bias),
            weights: scratch,
        }
    }

    /// `x` normalised by the columns `at..` (`None` when a value is not finite).
    #[inline(always)]
    fn normalise<const K: usize>(&self, x: &[f32; K], at: usize) -> Option<[f32; K]> {
        let mut xn = [0.0f32; K];
        let norms = self.mean.iter().zip(&self.inv_std).skip(at);
        for ((o, &v), (m, k)) in xn.iter_mut().zip(x).zip(norms) {
            if !v.is_finite() {
                return None;
            }
            *o = ((v - m) * k).clamp(-CLIP, CLIP);
        }
        Some(xn)
    }

    /// The rows of the columns `at..at + len`.
    fn rows(&self, at: usize, len: usize) -> &'w [f32] {
        self.weights.get(at * N..(at + len) * N).unwrap_or(&[])
    }

    /// `b_e + W_user·x'_u`: the user's columns and the bias.
    fn user_term(&self, linear: f32, user: &UserIn) -> Option<[f32; N]> {
        let xn = self.normalise(&user_columns(linear, user), N_PAIR)?;
        let mut pre = self.bias;
        axpy_rows(self.rows(N_PAIR, N_USER), &xn, &mut pre);
        Some(pre)
    }

    /// `W_server·x'_s`: the server's column.
    fn server_term(&self, srv: &ServerIn) -> Option<[f32; N]> {
        let xn = self.normalise(&server_columns(srv), N_PAIR + N_USER)?;
        let mut pre = [0.0f32; N];
        axpy_rows(
            self.rows(N_PAIR + N_USER, SERVER_COLUMNS.len()),
            &xn,
            &mut pre,
        );
        Some(pre)
    }

    /// The normalised [`PAIR_COLUMNS`] of pair (`user`, `s`) and its cost
    /// feature `ln(1 + C/2f0)`, taken here or given as `cost` (`None` when a
    /// value is not finite).
    #[inline(always)]
    fn pair_input<const U: usize, const S: usize>(
        &self,
        inputs: &SlotIn<U, S>,
        user: &UserIn,
        s: usize,
        srv: &ServerIn,
        cost: Option<f32>,
    ) -> Option<([f32; N_PAIR], f32)> {
        let mut x = pair_columns_raw(inputs.inv_2f0, user, s, srv);
        x[COST_AT] = match cost {
            Some(c) => c,
            None => crate::math::ln_1pf(x[COST_AT]),
        };
        Some((self.normalise(&x, 0)?, x[COST_AT]))
    }
}

/// Sequential decoding (module docs): adds each server's decoder term (the
/// [`DYN_FEATURES`] weights `decoder`) and penalty to the user's base logits in
/// `out` (user-major, the slot's U·S), in user order. Controller code whatever
/// computed the base logits: the blob engine ([`GeneralPolicy::logits`]) and the
/// ONNX engine (`OnnxGeneralPolicy`, feature `onnx`) both end here.
pub fn decode<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    decoder: &[f32; DYN_FEATURES],
    out: &mut [f32],
) {
    decode_at(params, &SlotIn::new(params, slot), decoder, out);
}

/// [`decode_in`] on AVX2, one server per lane ([`avx`]), where the build
/// (feature `simd`, x86-64) and the CPU have it and the slot has at most
/// [`MAX_GENERAL_SERVERS`] servers; the same logits bit for bit.
fn decode_at<const U: usize, const S: usize>(
    params: &Params,
    inputs: &SlotIn<U, S>,
    decoder: &[f32; DYN_FEATURES],
    out: &mut [f32],
) {
    // The lanes hold the servers a policy-v2 engine serves; `decode` itself
    // takes any slot.
    #[cfg(all(feature = "simd", target_arch = "x86_64"))]
    if let (Some(simd), true) = (pulp::x86::V3::try_new(), inputs.m <= MAX_GENERAL_SERVERS) {
        return avx::decode(simd, params, inputs, decoder, out);
    }
    decode_in(params, inputs, decoder, out)
}

/// [`decode`] on the slot's [`SlotIn`], portable scalar code (the firmware's).
fn decode_in<const U: usize, const S: usize>(
    params: &Params,
    inputs: &SlotIn<U, S>,
    decoder: &[f32; DYN_FEATURES],
    out: &mut [f32],
) {
    let m = inputs.m;
    let mut placed = [Placed::default(); S];
    let mut features = [[0.0f32; DYN_FEATURES]; S];
    let mut penalty = [0.0f32; S];
    let mut loads = [LoadF32::default(); S];
    for (u, row) in out.chunks_exact_mut(m).enumerate() {
        inputs.step(params, u, &placed, &mut features, &mut penalty, &mut loads);
        let mut best: Option<(f32, usize)> = None;
        for (s, ((o, f), &p)) in row.iter_mut().zip(&features).zip(&penalty).enumerate() {
            let term: f32 = f.iter().zip(decoder).map(|(a, b)| a * b).sum();
            *o += term + p;
            if o.is_nan() {
                *o = f32::NEG_INFINITY;
            }
            let available = inputs.servers().get(s).is_some_and(|v| v.available);
            if available && best.is_none_or(|(b, _)| *o > b) {
                best = Some((*o, s));
            }
        }
        if let Some((_, s)) = best {
            if let (Some(state), Some(&load)) = (placed.get_mut(s), loads.get(s)) {
                state.add(params, load);
            }
        }
    }
}

/// Writes `layer`'s row-major `H × blocks·H` weights input-major into `out`,
/// each of its `blocks` column blocks zero-padded to `width` rows of `width`
/// (`out[(b·width + j)·width + o] = W[o, b·H + j]`, 0 where `j` or `o` ≥ H).
fn transpose_padded(layer: &LayerRef<'_>, blocks: usize, width: usize, out: &mut [f32]) {
    let h = to_usize(layer.outputs);
    let inputs = to_usize(layer.inputs);
    for (r, row) in out
        .chunks_exact_mut(width.max(1))
        .take(blocks * width)
        .enumerate()
    {
        let (b, j) = (r / width.max(1), r % width.max(1));
        for (o, w) in row.iter_mut().enumerate() {
            *w = if j < h && o < h {
                layer.weight.get(o * inputs + b * h + j).unwrap_or(0.0)
            } else {
                0.0
            };
        }
    }
}

// `pub(crate)`: the controller's tests decide with its random general policies
// and slots (the controller imports the policy, never the other way round).
#[cfg(test)]
pub(crate) mod tests;
