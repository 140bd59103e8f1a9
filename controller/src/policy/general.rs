//! The size-agnostic policy (SPEC §3.2a, `policy-v2`): one small network that
//! serves any slot of at most [`MAX_GENERAL_USERS`] users and
//! [`MAX_GENERAL_SERVERS`] servers, churn included, and sees the load its own
//! choices put on each server.
//!
//! # Model
//!
//! Every (user, server) pair gets [`PAIR_FEATURES`] features ([`pair_features`],
//! layout [`OBS_LAYOUT_V2`]: distances, the previous-server flag, the user's loads
//! on that server relative to its capacities, …), normalised as in `policy-v1`
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
//! recomputed instead of stored, so the scratch is (U + S + 2)·H values plus the
//! two first layers' weights, transposed once per call, not U·S·H).
//!
//! # Decoding (controller code, shared with training)
//!
//! Users are then placed one at a time, in user order. Before user u is placed,
//! each server s has a state (the users placed on it and their loads at γ = 0,
//! [`Placed`]); [`user_step`] gives the [`DYN_FEATURES`] features of adding u
//! to s ([`dyn_features`]: is s open, how full, does u still fit, the rise of
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
use crate::model::{norm, Load};
use crate::params::CostNorm;
use crate::slot::Server;
use crate::{manhattan, Error, Params, Slot};

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
/// Widest hidden layer H.
pub const MAX_HIDDEN: usize = 64;
/// Most users a general policy decides for.
pub const MAX_GENERAL_USERS: usize = 64;
/// Most servers a general policy chooses among.
pub const MAX_GENERAL_SERVERS: usize = 32;
/// What the decoder takes off a server on which the user would break C2 or C3
/// while another server still takes it.
pub const NO_FIT_PENALTY: f32 = 1.0e4;

const DIST_SCALE: f64 = 100.0;
const DATA_SCALE: f64 = 1e6;

/// The features of pair (`u`, `s`) of `slot` (`rate` = [`Params::rate_bps`]),
/// `None` for an index out of range:
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
    let user = slot.users().get(u)?;
    let srv = slot.servers().get(s)?;
    let load = Load::at_zero(params, slot, user, s, rate);
    let (mig, prev, joined) = match user
        .prev_server
        .and_then(|p| slot.servers().get(p).map(|v| (p, v)))
    {
        Some((p, from)) => (
            manhattan(from.x, from.y, srv.x, srv.y),
            f64::from(u8::from(p == s)),
            0.0,
        ),
        None => (0.0, 0.0, 1.0),
    };
    let values = [
        manhattan(user.x, user.y, srv.x, srv.y) / DIST_SCALE,
        mig / DIST_SCALE,
        prev,
        joined,
        load.cmp / srv.q,
        load.syn / srv.p,
        crate::math::ln_1p(load.total / (2.0 * params.f0)),
        f64::from(u8::from(srv.available)),
        user.emd,
        user.data_bits / DATA_SCALE,
        user.prev_data_bits / DATA_SCALE,
        f64::from(u8::from(params.cost_norm == CostNorm::Linear)),
    ];
    Some(values.map(|v| v as f32))
}

/// A server's state while the decoder places users: how many and what they load
/// at γ = 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Placed {
    /// Users placed on it so far.
    pub count: usize,
    /// Their loads, summed in user order.
    pub load: Load,
    /// `Norm(load.total)`, kept by [`add`](Self::add) so that each decoding
    /// step computes one Norm per server, not two.
    pub norm: f64,
}

impl Placed {
    /// Places one more user, whose load at γ = 0 is `load`.
    pub fn add(&mut self, params: &Params, load: Load) {
        self.count += 1;
        self.load = self.load + load;
        self.norm = norm(params, self.load.total);
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
pub fn dyn_features(
    params: &Params,
    srv: &Server,
    placed: &Placed,
    add: &Load,
) -> [f32; DYN_FEATURES] {
    let after = placed.load + *add;
    let rise = norm(params, after.total) - placed.norm;
    [
        f64::from(u8::from(placed.count > 0)),
        placed.count.min(8) as f64 / 4.0,
        f64::from(u8::from(after.fits(srv))),
        rise.clamp(0.0, 4.0),
        (after.cmp / srv.q).clamp(0.0, 4.0),
    ]
    .map(|v| v as f32)
}

/// One decoding step for user `u` of `slot` given the servers' `placed` states: writes
/// each server's decoder features into `features` and its penalty into
/// `penalty` (0; −∞ when unavailable; −[`NO_FIT_PENALTY`] when u would break C2
/// or C3 there while some available server still takes it), and writes u's
/// load on each server through `loads`. Entries beyond the slot's servers are
/// untouched. Training calls it with the oracle's placement, the decoder with its
/// own.
pub fn user_step<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    u: usize,
    placed: &[Placed],
    features: &mut [[f32; DYN_FEATURES]],
    penalty: &mut [f32],
    loads: &mut [Load],
) {
    let Some(user) = slot.users().get(u) else {
        return;
    };
    let rate = params.rate_bps();
    let mut any_fit = false;
    for (s, ((srv, state), load)) in slot
        .servers()
        .iter()
        .zip(placed)
        .zip(loads.iter_mut())
        .enumerate()
    {
        *load = Load::at_zero(params, slot, user, s, rate);
        any_fit |= srv.available && (state.load + *load).fits(srv);
    }
    for ((((srv, state), load), f), p) in slot
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

    /// The shape checks shared by encoding and parsing.
    fn validate(&self) -> Result<(), BlobError> {
        let h = self.hidden();
        if !(1..=MAX_HIDDEN).contains(&h) {
            return Err(BlobError::Limit {
                field: BlobField::Layer {
                    index: 0,
                    field: "outputs",
                },
                value: h,
                min: 1,
                max: MAX_HIDDEN,
            });
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
    model.validate()?;
    Ok(HEADER_LEN.saturating_add(model.payload_len()?))
}

/// Writes `model` as a `policy-v2` blob into the front of `out` and returns its
/// length; the checks of parsing apply (nothing is written for a model that would
/// not parse), and `out` too short is [`BlobError::Buffer`]. Never allocates.
pub fn encode_general(model: &GeneralRef<'_>, out: &mut [u8]) -> Result<usize, Error> {
    model.validate()?;
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
        let (header, payload) = frame(blob, &[GENERAL_FORMAT_VERSION], LAYOUT_V2)?;
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
        model.validate()?;
        Ok(GeneralPolicy { model })
    }

    /// The network, borrowing the blob.
    pub fn model(&self) -> GeneralRef<'a> {
        self.model
    }

    /// Scratch values [`logits`](Self::logits) needs for `users` × `servers`:
    /// (U + S + 2)·H for the message passing, and the embed and mix layers'
    /// weights transposed to input-major f32 (F·H + 3H·H), so every layer is a
    /// few `y += x_i · w_i` passes over contiguous rows.
    pub fn scratch_len(&self, users: usize, servers: usize) -> usize {
        let h = self.model.hidden();
        (users + servers + 2) * h + PAIR_FEATURES * h + 3 * h * h
    }

    /// The decoded logits of `slot` (module docs), user-major into
    /// `out[..U·S]` for the slot's U users and S servers: each user's row is the
    /// one its decoding step saw, so the row's argmax is the server the decoder
    /// gave it. Errors: more users or servers than the policy serves
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
        let (n, m) = (slot.users().len(), slot.servers().len());
        for (field, count, capacity) in [
            ("users", n, MAX_GENERAL_USERS),
            ("servers", m, MAX_GENERAL_SERVERS),
        ] {
            if count > capacity {
                return Err(Error::PolicyCapacity {
                    field,
                    count,
                    capacity,
                });
            }
        }
        let h = self.model.hidden();
        let short = |expected, got| Error::WorkspaceLength { expected, got };
        let need = self.scratch_len(n, m);
        if scratch.len() < need {
            return Err(short(need, scratch.len()));
        }
        let out = match out.get_mut(..n * m) {
            Some(o) => o,
            None => return Err(short(n * m, out.len())),
        };
        let (server_ctx, rest) = scratch.split_at_mut_checked(m * h).ok_or(short(need, 0))?;
        let (user_ctx, rest) = rest.split_at_mut_checked(n * h).ok_or(short(need, 0))?;
        let (hid, rest) = rest.split_at_mut_checked(h).ok_or(short(need, 0))?;
        let (tmp, rest) = rest.split_at_mut_checked(h).ok_or(short(need, 0))?;
        let (embed_t, rest) = rest
            .split_at_mut_checked(PAIR_FEATURES * h)
            .ok_or(short(need, 0))?;
        let mix_t = rest.get_mut(..3 * h * h).ok_or(short(need, 0))?;
        let model = &self.model;
        transpose(&model.embed, embed_t);
        transpose(&model.mix, mix_t);
        let (mix_h, mix_rest) = mix_t.split_at(h * h);
        let (mix_g, mix_k) = mix_rest.split_at(h * h);
        server_ctx.iter_mut().for_each(|v| *v = 0.0);
        user_ctx.iter_mut().for_each(|v| *v = 0.0);
        let rate = params.rate_bps();

        // Pass 1: the embeddings' sums per server and per user.
        for (u, uc) in user_ctx.chunks_exact_mut(h).enumerate() {
            for (s, sc) in server_ctx.chunks_exact_mut(h).enumerate() {
                self.embed(params, slot, rate, u, s, embed_t, hid)?;
                for ((a, b), &x) in sc.iter_mut().zip(uc.iter_mut()).zip(hid.iter()) {
                    *a += x;
                    *b += x;
                }
            }
        }
        // Means, then their columns of the mix layer (the user's with the bias).
        let (inv_n, inv_m) = (1.0 / n.max(1) as f32, 1.0 / m.max(1) as f32);
        for sc in server_ctx.chunks_exact_mut(h) {
            sc.iter_mut().for_each(|v| *v *= inv_n);
            tmp.iter_mut().for_each(|v| *v = 0.0);
            axpys(mix_g, sc, tmp);
            sc.copy_from_slice(tmp);
        }
        for uc in user_ctx.chunks_exact_mut(h) {
            uc.iter_mut().for_each(|v| *v *= inv_m);
            for (t, b) in tmp.iter_mut().zip(model.mix.bias.iter()) {
                *t = b;
            }
            axpys(mix_k, uc, tmp);
            uc.copy_from_slice(tmp);
        }
        // Pass 2: the base logits.
        let b_out = model.out.bias.get(0).unwrap_or(0.0);
        for ((u, row), uc) in out
            .chunks_exact_mut(m)
            .enumerate()
            .zip(user_ctx.chunks_exact(h))
        {
            for ((s, o), sc) in row.iter_mut().enumerate().zip(server_ctx.chunks_exact(h)) {
                self.embed(params, slot, rate, u, s, embed_t, hid)?;
                for ((t, &a), &b) in tmp.iter_mut().zip(sc).zip(uc) {
                    *t = a + b;
                }
                axpys(mix_h, hid, tmp);
                let mut acc = b_out;
                for (&t, w) in tmp.iter().zip(model.out.weight.iter()) {
                    acc += w * t.max(0.0);
                }
                *o = acc;
            }
        }
        self.decode(params, slot, out);
        Ok(())
    }

    /// `hid = relu(W_e·x' + b_e)` for pair (u, s), `embed_t` the embed layer's
    /// weights transposed.
    #[allow(clippy::too_many_arguments)]
    fn embed<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        rate: f64,
        u: usize,
        s: usize,
        embed_t: &[f32],
        hid: &mut [f32],
    ) -> Result<(), Error> {
        let x = pair_features(params, slot, rate, u, s)
            .ok_or(Error::AssociationIndex { user: u, server: s })?;
        let mut xn = [0.0f32; PAIR_FEATURES];
        for (((o, &v), m), k) in xn
            .iter_mut()
            .zip(&x)
            .zip(self.model.pair_mean.iter())
            .zip(self.model.pair_inv_std.iter())
        {
            if !v.is_finite() {
                return Err(Error::ObservationValue { index: u * S + s });
            }
            *o = ((v - m) * k).clamp(-CLIP, CLIP);
        }
        for (o, b) in hid.iter_mut().zip(self.model.embed.bias.iter()) {
            *o = b;
        }
        axpys(embed_t, &xn, hid);
        hid.iter_mut().for_each(|v| *v = v.max(0.0));
        Ok(())
    }

    /// Sequential decoding (module docs): adds each server's decoder term and
    /// penalty to the user's base logits, in user order.
    fn decode<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        out: &mut [f32],
    ) {
        let m = slot.servers().len();
        let mut placed = [Placed::default(); S];
        let mut features = [[0.0f32; DYN_FEATURES]; S];
        let mut penalty = [0.0f32; S];
        let mut loads = [Load::default(); S];
        for (u, row) in out.chunks_exact_mut(m).enumerate() {
            user_step(
                params,
                slot,
                u,
                &placed,
                &mut features,
                &mut penalty,
                &mut loads,
            );
            let mut best: Option<(f32, usize)> = None;
            for (s, ((o, f), &p)) in row.iter_mut().zip(&features).zip(&penalty).enumerate() {
                let term: f32 = f
                    .iter()
                    .zip(self.model.decoder.iter())
                    .map(|(a, b)| a * b)
                    .sum();
                *o += term + p;
                if o.is_nan() {
                    *o = f32::NEG_INFINITY;
                }
                if slot.available(s) && best.is_none_or(|(b, _)| *o > b) {
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
}

/// Writes `layer`'s row-major `outputs × inputs` weights input-major into `out`
/// (`out[i·outputs + o] = W[o, i]`).
fn transpose(layer: &LayerRef<'_>, out: &mut [f32]) {
    let outputs = to_usize(layer.outputs);
    for (o, w) in layer.weight.iter().enumerate() {
        let (row, col) = (
            o / to_usize(layer.inputs).max(1),
            o % to_usize(layer.inputs).max(1),
        );
        if let Some(slot) = out.get_mut(col * outputs + row) {
            *slot = w;
        }
    }
}

/// `y += Σ_i x[i] · w_t[i]`, `w_t` input-major rows of `y.len()` weights each.
/// The common widths get a fixed-size loop the compiler unrolls into vector
/// instructions; the result is the same sum in the same order.
#[inline]
fn axpys(w_t: &[f32], x: &[f32], y: &mut [f32]) {
    match y.len() {
        8 => axpys_n::<8>(w_t, x, y),
        16 => axpys_n::<16>(w_t, x, y),
        32 => axpys_n::<32>(w_t, x, y),
        len => {
            for (row, &xi) in w_t.chunks_exact(len.max(1)).zip(x) {
                for (yo, &w) in y.iter_mut().zip(row) {
                    *yo += xi * w;
                }
            }
        }
    }
}

#[inline]
fn axpys_n<const N: usize>(w_t: &[f32], x: &[f32], y: &mut [f32]) {
    let Ok(y) = <&mut [f32; N]>::try_from(y) else {
        return;
    };
    let mut acc = *y;
    for (row, &xi) in w_t.chunks_exact(N).zip(x) {
        if let Ok(row) = <&[f32; N]>::try_from(row) {
            for (a, &w) in acc.iter_mut().zip(row) {
                *a += xi * w;
            }
        }
    }
    *y = acc;
}

#[cfg(test)]
mod tests;
