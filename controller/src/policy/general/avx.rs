//! [`GeneralPolicy`]'s forward pass on AVX2, eight pairs at a time: the
//! servers of one user in blocks of 8, one pair per lane, through `pulp`'s
//! checked token (no `unsafe` here).
//!
//! Each lane does what the portable code ([`super::pair`]) does for its pair,
//! the same operations in the same order: a multiply, then an add (no fused
//! multiply-add), every sum in index order (the user's sum of embeddings over
//! the block's lanes one by one). So the logits are the portable code's bit
//! for bit, and a host replays the firmware's decisions exactly.
//!
//! Why lanes over pairs rather than over hidden units: a pair's sums are chains
//! of dependent additions (16 long at H = 16), so one pair at a time waits on
//! the adder's latency; eight pairs side by side keep the multipliers and
//! adders busy, and the output layer's sum needs no horizontal reduction.

use pulp::x86::V3;
use pulp::{f32x8, i32x8, m32x8, u32x8};

use super::{
    Embed, Error, GeneralPolicy, SlotIn, UserIn, COST_AT, DIST_SCALE, DYN_FEATURES,
    MAX_GENERAL_SERVERS, NO_FIT_PENALTY, N_PAIR,
};
use crate::model::norm_f32;
use crate::params::CostNorm;
use crate::policy::CLIP;
use crate::Params;

/// Lanes per vector.
const L: usize = 8;
/// Blocks of [`L`] servers a slot has at most.
const BLOCKS: usize = MAX_GENERAL_SERVERS.div_ceil(L);

/// A value of each of `N` hidden units for every server, in blocks of [`L`]
/// lanes (`[o][block]`, lane `i` of block `b` = server `8b + i`).
type Columns<const N: usize> = [[f32x8; BLOCKS]; N];

/// [`GeneralPolicy::forward`] on AVX2 (module docs).
pub(super) fn forward<const N: usize, const U: usize, const S: usize>(
    simd: V3,
    policy: &GeneralPolicy<'_>,
    inputs: &SlotIn<U, S>,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    simd.vectorize(Run::<N, U, S> {
        simd,
        policy,
        inputs,
        scratch,
        out,
    })
}

/// [`super::decode_in`] on AVX2: each decoding step's servers in blocks of 8,
/// one server per lane, with libm's `tanhf` ported to lanes (Norm's rise);
/// each lane does what the portable step does for its server, in its order,
/// so the decoded logits are the portable code's bit for bit.
pub(super) fn decode<const U: usize, const S: usize>(
    simd: V3,
    params: &Params,
    inputs: &SlotIn<U, S>,
    decoder: &[f32; DYN_FEATURES],
    out: &mut [f32],
) {
    simd.vectorize(Decode {
        lanes: Lanes(simd),
        params,
        inputs,
        decoder,
        out,
    })
}

/// One decoding for [`V3::vectorize`] (see [`Run`]).
struct Decode<'a, 'b, const U: usize, const S: usize> {
    lanes: Lanes,
    params: &'a Params,
    inputs: &'b SlotIn<U, S>,
    decoder: &'b [f32; DYN_FEATURES],
    out: &'b mut [f32],
}

/// The servers' states while the decoder places users ([`super::Placed`]), in
/// lanes.
struct PlacedLanes {
    /// Users placed on the server, as f32 (exact: at most 64).
    count: PerServer<f32>,
    cmp: PerServer<f32>,
    syn: PerServer<f32>,
    total: PerServer<f32>,
    /// Norm(total) ([`norm_f32`]).
    norm: PerServer<f32>,
}

impl<const U: usize, const S: usize> pulp::NullaryFnOnce for Decode<'_, '_, U, S> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Decode {
            lanes,
            params,
            inputs,
            decoder,
            out,
        } = self;
        let simd = lanes.0;
        let m = inputs.m;
        let blocks = m.div_ceil(L).min(BLOCKS);
        let servers = ServerLanes::new(inputs);
        let f32s = |v: f32| simd.splat_f32x8(v);
        let zero = f32s(0.0);
        let none = simd.splat_m32x8(pulp::m32::new(false));
        let empty = [[0.0f32; L]; BLOCKS];
        let mut placed = PlacedLanes {
            count: empty,
            cmp: empty,
            syn: empty,
            total: empty,
            norm: empty,
        };
        let scale = f32s((4.0 * params.f0) as f32);
        let paper = params.cost_norm == CostNorm::Paper;
        for (u, row) in out.chunks_exact_mut(m.max(1)).enumerate() {
            let Some(user) = inputs.users().get(u) else {
                break;
            };
            // The user's loads on every server and the sums with them.
            let mut add = [[zero; 3]; BLOCKS];
            let mut after = [[zero; 3]; BLOCKS];
            let mut fits = [none; BLOCKS];
            let mut any_fit = false;
            for b in 0..blocks {
                let load = lanes.pair_load(&servers, user, b);
                let sums = [
                    simd.add_f32x8(block(&placed.cmp, b), load[0]),
                    simd.add_f32x8(block(&placed.syn, b), load[1]),
                    simd.add_f32x8(block(&placed.total, b), load[2]),
                ];
                // LoadF32::fits: !(cmp > q || syn > p), a NaN fits.
                let breaks = simd.or_m32x8(
                    simd.cmp_gt_f32x8(sums[0], block(&servers.q, b)),
                    simd.cmp_gt_f32x8(sums[1], block(&servers.p, b)),
                );
                let fit = simd.not_m32x8(breaks);
                any_fit |= any(simd.and_m32x8(fit, servers.available(b)));
                if let (Some(a), Some(s), Some(f)) =
                    (add.get_mut(b), after.get_mut(b), fits.get_mut(b))
                {
                    (*a, *s, *f) = (load, sums, fit);
                }
            }
            let mut best: Option<(f32, usize)> = None;
            for (b, logits) in row.chunks_mut(L).enumerate() {
                let [cmp, _, total] = after.get(b).copied().unwrap_or([zero; 3]);
                let fit = fits.get(b).copied().unwrap_or(none);
                let open = servers.available(b);
                let count = block(&placed.count, b);
                // dyn_features, in its order.
                let y = simd.div_f32x8(total, scale);
                let norm = if paper { lanes.tanh(y) } else { y };
                let rise = simd.sub_f32x8(norm, block(&placed.norm, b));
                let one = f32s(1.0);
                let features = [
                    simd.select_f32x8(simd.cmp_gt_f32x8(count, zero), one, zero),
                    simd.div_f32x8(simd.min_f32x8(count, f32s(8.0)), f32s(4.0)),
                    simd.select_f32x8(fit, one, zero),
                    lanes.clamp(rise, 0.0, 4.0),
                    lanes.clamp(simd.div_f32x8(cmp, block(&servers.q, b)), 0.0, 4.0),
                ];
                let penalty = simd.select_f32x8(
                    open,
                    if any_fit {
                        simd.select_f32x8(fit, zero, f32s(-NO_FIT_PENALTY))
                    } else {
                        zero
                    },
                    f32s(f32::NEG_INFINITY),
                );
                // The term summed as `Iterator::sum` does (from −0; a ±0 term
                // gives the same logit, the penalty being +0 or far from 0).
                let mut term = f32s(-0.0);
                for (&f, &d) in features.iter().zip(decoder) {
                    term = simd.add_f32x8(term, simd.mul_f32x8(f, f32s(d)));
                }
                let mut base = [0.0f32; L];
                for (o, &v) in base.iter_mut().zip(logits.iter()) {
                    *o = v;
                }
                let v = simd.add_f32x8(pulp::cast(base), simd.add_f32x8(term, penalty));
                let v = simd.select_f32x8(simd.is_nan_f32x8(v), f32s(f32::NEG_INFINITY), v);
                let v: [f32; L] = pulp::cast(v);
                let open: [u32; L] = pulp::cast(open);
                for (i, ((o, &v), &open)) in logits.iter_mut().zip(&v).zip(&open).enumerate() {
                    *o = v;
                    if open != 0 && best.is_none_or(|(b, _)| v > b) {
                        best = Some((v, b * L + i));
                    }
                }
            }
            // Placed::add on the chosen server.
            if let Some((_, s)) = best {
                if let Some(&load) = add.get(s / L) {
                    placed.add(params, s, load.map(|v| lane(v, s % L)));
                }
            }
        }
    }
}

/// Lane `i` of `v`.
#[inline(always)]
fn lane(v: f32x8, i: usize) -> f32 {
    let v: [f32; L] = pulp::cast(v);
    v.get(i).copied().unwrap_or(0.0)
}

impl PlacedLanes {
    /// [`super::Placed::add`] on server `s`: one more user, whose load
    /// (computation, synchronisation, total) is `load`.
    #[inline(always)]
    fn add(&mut self, params: &Params, s: usize, [cmp, syn, total]: [f32; 3]) {
        let (b, i) = (s / L, s % L);
        let at = |v: &mut PerServer<f32>, add: f32| -> f32 {
            match v.get_mut(b).and_then(|c| c.get_mut(i)) {
                Some(v) => {
                    *v += add;
                    *v
                }
                None => 0.0,
            }
        };
        at(&mut self.count, 1.0);
        at(&mut self.cmp, cmp);
        at(&mut self.syn, syn);
        let total = at(&mut self.total, total);
        if let Some(n) = self.norm.get_mut(b).and_then(|c| c.get_mut(i)) {
            *n = norm_f32(params, total);
        }
    }
}

/// One forward pass for [`V3::vectorize`]: its `call` is `#[inline(always)]`,
/// so the pass is compiled into `vectorize`'s AVX2 function (a closure is not
/// inlined there, and each lane operation would stay a call compiled without
/// AVX2: ten times slower).
struct Run<'p, 'a, 'b, const N: usize, const U: usize, const S: usize> {
    simd: V3,
    policy: &'p GeneralPolicy<'a>,
    inputs: &'b SlotIn<U, S>,
    scratch: &'b mut [f32],
    out: &'b mut [f32],
}

impl<const N: usize, const U: usize, const S: usize> pulp::NullaryFnOnce
    for Run<'_, '_, '_, N, U, S>
{
    type Output = Result<(), Error>;

    #[inline(always)]
    fn call(self) -> Result<(), Error> {
        let Run {
            simd,
            policy,
            inputs,
            scratch,
            out,
        } = self;
        let (n, m) = (inputs.n, inputs.m);
        let blocks = m.div_ceil(L);
        let super::Pass {
            embed,
            server_ctx,
            server_pre,
            user_ctx,
            cost,
            mix,
        } = policy.pass::<N, U, S>(inputs, scratch)?;
        let lanes = Lanes(simd);
        let pre = lanes.columns::<N>(server_pre);
        let servers = ServerLanes::new(inputs);

        // Pass 1: the embeddings' sums per server (lane by lane) and per user
        // (over the lanes in server order).
        let mut sums: Columns<N> = [[simd.splat_f32x8(0.0); BLOCKS]; N];
        for (u, (uc, costs)) in user_ctx
            .chunks_exact_mut(N)
            .zip(cost.chunks_exact_mut(m.max(1)))
            .enumerate()
        {
            let up = user_term(&embed, inputs, u)?;
            let mut user_sum = [0.0f32; N];
            for b in 0..blocks {
                let x =
                    lanes.block_input(&embed, inputs, &servers, u, b, Costs::Write(&mut *costs))?;
                let h = lanes.embed::<N>(&up, &pre, b, embed.rows(0, N_PAIR), &x);
                let count = (m - b * L).min(L);
                for ((sum, &h), total) in sums.iter_mut().zip(&h).zip(user_sum.iter_mut()) {
                    if let Some(sum) = sum.get_mut(b) {
                        *sum = simd.add_f32x8(*sum, h);
                    }
                    // A full block's lanes as a fixed loop (no test per lane).
                    let h: [f32; L] = pulp::cast(h);
                    *total = match h.get(..count) {
                        Some(_) if count == L => h.iter().fold(*total, |t, &v| t + v),
                        Some(lanes) => lanes.iter().fold(*total, |t, &v| t + v),
                        None => *total,
                    };
                }
            }
            uc.copy_from_slice(&user_sum);
        }
        lanes.store_columns::<N>(&sums, server_ctx);
        mix.contexts(server_ctx, user_ctx, n, m);

        // Pass 2: the base logits, each pair's embedding computed again from
        // its kept cost.
        let ctx = lanes.columns::<N>(server_ctx);
        for (u, (row, uc)) in out
            .chunks_exact_mut(m.max(1))
            .zip(super::rows::<N>(user_ctx))
            .enumerate()
        {
            let up = user_term(&embed, inputs, u)?;
            let costs = cost.get(u * m..(u + 1) * m).unwrap_or(&[]);
            for (b, logits) in row.chunks_mut(L).enumerate() {
                let x = lanes.block_input(&embed, inputs, &servers, u, b, Costs::Read(costs))?;
                let h = lanes.embed::<N>(&up, &pre, b, embed.rows(0, N_PAIR), &x);
                let v = lanes.head::<N>(&h, &ctx, b, uc, mix.h, &mix.out_w, mix.b_out);
                let v: [f32; L] = pulp::cast(v);
                for (o, &v) in logits.iter_mut().zip(&v) {
                    *o = v;
                }
            }
        }
        Ok(())
    }
}

/// User `u`'s embedding term ([`super::Embed::user_term`]).
#[inline(always)]
fn user_term<const N: usize, const U: usize, const S: usize>(
    embed: &Embed<'_, N>,
    inputs: &SlotIn<U, S>,
    u: usize,
) -> Result<[f32; N], Error> {
    inputs
        .users()
        .get(u)
        .and_then(|user| embed.user_term(inputs.linear, user))
        .ok_or(Error::ObservationValue { index: u * S })
}

/// Where a block's cost features come from: taken and kept (pass 1) or read.
enum Costs<'c> {
    Write(&'c mut [f32]),
    Read(&'c [f32]),
}

/// What [`Lanes::pair_terms`] computes for 8 pairs.
struct PairTerms {
    dist: f32x8,
    mig_dist: f32x8,
    prev: f32x8,
    /// Computation, synchronisation, total.
    load: [f32x8; 3],
}

/// Per-server values in blocks of [`L`] lanes (lane `i` of block `b` =
/// server `8b + i`).
type PerServer<T> = [[T; L]; BLOCKS];

/// Block `b` of `v` as a vector (zeros past the last block).
#[inline(always)]
fn block(v: &PerServer<f32>, b: usize) -> f32x8 {
    pulp::cast(v.get(b).copied().unwrap_or([0.0; L]))
}

/// `pick` of every server of `inputs` in lanes, `pad` past the last one.
#[inline(always)]
fn per_server<T: Copy, const U: usize, const S: usize>(
    inputs: &SlotIn<U, S>,
    pad: T,
    pick: impl Fn(&super::ServerIn) -> T,
) -> PerServer<T> {
    let mut v = [[pad; L]; BLOCKS];
    for (s, srv) in inputs.servers().iter().enumerate() {
        if let Some(lane) = v.get_mut(s / L).and_then(|b| b.get_mut(s % L)) {
            *lane = pick(srv);
        }
    }
    v
}

/// The servers' values the pair features and the decoder read (past the last
/// server: position 0, bounds 1, unavailable).
struct ServerLanes {
    x: PerServer<f32>,
    y: PerServer<f32>,
    q: PerServer<f32>,
    p: PerServer<f32>,
    cmp_per_bit: PerServer<f32>,
    /// All ones for an available server, else 0.
    available: PerServer<u32>,
}

impl ServerLanes {
    #[inline(always)]
    fn new<const U: usize, const S: usize>(inputs: &SlotIn<U, S>) -> Self {
        ServerLanes {
            x: per_server(inputs, 0.0, |s| s.x),
            y: per_server(inputs, 0.0, |s| s.y),
            q: per_server(inputs, 1.0, |s| s.q),
            p: per_server(inputs, 1.0, |s| s.p),
            cmp_per_bit: per_server(inputs, 0.0, |s| s.cmp_per_bit),
            available: per_server(inputs, 0, |s| if s.available { u32::MAX } else { 0 }),
        }
    }

    /// Block `b`'s available servers.
    #[inline(always)]
    fn available(&self, b: usize) -> m32x8 {
        pulp::cast(self.available.get(b).copied().unwrap_or([0; L]))
    }
}

/// The normalised [`PAIR_COLUMNS`](super::PAIR_COLUMNS) of user `u`'s pairs
/// with the servers of block `b`, one pair per lane, by the portable code
/// ([`Embed::pair_input`]) pair by pair: what [`Lanes::block_input`] falls
/// back on for a block with a value it does not take (the first pair with a
/// value that is not finite is the error, as in the portable pass).
#[inline(always)]
fn block_input_pairs<const N: usize, const U: usize, const S: usize>(
    embed: &Embed<'_, N>,
    inputs: &SlotIn<U, S>,
    u: usize,
    b: usize,
    mut costs: Costs<'_>,
) -> Result<[f32x8; N_PAIR], Error> {
    let mut x = [[0.0f32; L]; N_PAIR];
    let user = inputs.users().get(u);
    let servers = inputs.servers().iter().enumerate().skip(b * L).take(L);
    for (lane, (s, srv)) in servers.enumerate() {
        let bad = Error::ObservationValue { index: u * S + s };
        let given = match &costs {
            Costs::Write(_) => None,
            Costs::Read(c) => Some(c.get(s).copied().ok_or(bad)?),
        };
        let (xn, cost) = user
            .and_then(|user| embed.pair_input(inputs, user, s, srv, given))
            .ok_or(bad)?;
        if let Costs::Write(c) = &mut costs {
            if let Some(c) = c.get_mut(s) {
                *c = cost;
            }
        }
        for (column, &v) in x.iter_mut().zip(&xn) {
            if let Some(slot) = column.get_mut(lane) {
                *slot = v;
            }
        }
    }
    Ok(x.map(pulp::cast))
}

/// Whether some lane of a mask is set.
#[inline(always)]
fn any(mask: m32x8) -> bool {
    let lanes: [u32; L] = pulp::cast(mask);
    lanes.iter().any(|&v| v != 0)
}

/// Whether two masks are the same in every lane.
#[inline(always)]
fn same(a: m32x8, b: m32x8) -> bool {
    let (a, b): ([u32; L], [u32; L]) = (pulp::cast(a), pulp::cast(b));
    a == b
}

/// The lane arithmetic on the checked AVX2 token.
#[derive(Clone, Copy)]
pub(super) struct Lanes(pub(super) V3);

impl Lanes {
    /// `values` (one row of `N` per server) as [`Columns`], zeros past the
    /// last server.
    #[inline(always)]
    pub(super) fn columns<const N: usize>(self, values: &[f32]) -> Columns<N> {
        let mut out = [[[0.0f32; L]; BLOCKS]; N];
        for (s, row) in super::rows::<N>(values).enumerate() {
            for (col, &v) in out.iter_mut().zip(row) {
                if let Some(lane) = col.get_mut(s / L).and_then(|c| c.get_mut(s % L)) {
                    *lane = v;
                }
            }
        }
        out.map(|col| col.map(pulp::cast))
    }

    /// [`columns`](Self::columns) back into rows of `N` per server.
    #[inline(always)]
    fn store_columns<const N: usize>(self, columns: &Columns<N>, values: &mut [f32]) {
        let columns: [[[f32; L]; BLOCKS]; N] = columns.map(|col| col.map(pulp::cast));
        for (s, row) in values.chunks_exact_mut(N).enumerate() {
            for (v, col) in row.iter_mut().zip(&columns) {
                if let Some(&lane) = col.get(s / L).and_then(|c| c.get(s % L)) {
                    *v = lane;
                }
            }
        }
    }

    /// [`pair::embed`](super::pair::embed) of the block's 8 pairs: unit `o` of
    /// lane `i` is `relu(user[o] + pre[o][b][i] + Σ_k x[k][i]·w[k][o])`.
    #[inline(always)]
    pub(super) fn embed<const N: usize>(
        self,
        user: &[f32; N],
        pre: &Columns<N>,
        b: usize,
        w: &[f32],
        x: &[f32x8; N_PAIR],
    ) -> [f32x8; N] {
        let simd = self.0;
        let zero = simd.splat_f32x8(0.0);
        let mut h = [zero; N];
        // Eight units at a time: eight independent chains of additions.
        for (o0, h) in (0..N).step_by(L).zip(h.chunks_exact_mut(L)) {
            let mut acc = [zero; L];
            for (g, acc) in acc.iter_mut().enumerate() {
                let o = o0 + g;
                let pre = pre.get(o).and_then(|c| c.get(b)).copied().unwrap_or(zero);
                *acc = simd.add_f32x8(simd.splat_f32x8(user.get(o).copied().unwrap_or(0.0)), pre);
            }
            self.axpy_units::<N>(w, x, o0, &mut acc);
            for (h, &acc) in h.iter_mut().zip(&acc) {
                *h = self.relu(acc);
            }
        }
        h
    }

    /// `acc[g] += Σ_k x[k]·w[k][o0 + g]` for the 8 units `o0..o0 + 8`, `w`
    /// input-major rows of `N`, `k` in index order (a multiply, then an add).
    #[inline(always)]
    fn axpy_units<const N: usize>(self, w: &[f32], x: &[f32x8], o0: usize, acc: &mut [f32x8; L]) {
        let simd = self.0;
        for (row, &xk) in w.chunks_exact(N).zip(x) {
            let row = row.get(o0..o0 + L).unwrap_or(&[]);
            for (acc, &wk) in acc.iter_mut().zip(row) {
                *acc = simd.add_f32x8(*acc, simd.mul_f32x8(xk, simd.splat_f32x8(wk)));
            }
        }
    }

    /// [`pair::head`](super::pair::head) of the block's 8 pairs: lane `i` is
    /// `bias + Σ_o out[o]·relu(ctx[o][b][i] + user[o] + Σ_j h[j][i]·w[j][o])`,
    /// the sum over `o` in index order.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn head<const N: usize>(
        self,
        h: &[f32x8; N],
        ctx: &Columns<N>,
        b: usize,
        user: &[f32; N],
        w: &[f32],
        out: &[f32; N],
        bias: f32,
    ) -> f32x8 {
        let simd = self.0;
        let zero = simd.splat_f32x8(0.0);
        let mut logit = simd.splat_f32x8(bias);
        for o0 in (0..N).step_by(L) {
            let mut t = [zero; L];
            for (g, t) in t.iter_mut().enumerate() {
                let o = o0 + g;
                let ctx = ctx.get(o).and_then(|c| c.get(b)).copied().unwrap_or(zero);
                *t = simd.add_f32x8(ctx, simd.splat_f32x8(user.get(o).copied().unwrap_or(0.0)));
            }
            self.axpy_units::<N>(w, h, o0, &mut t);
            for (&t, &wo) in t.iter().zip(out.get(o0..o0 + L).unwrap_or(&[])) {
                logit = simd.add_f32x8(logit, simd.mul_f32x8(simd.splat_f32x8(wo), self.relu(t)));
            }
        }
        logit
    }

    /// [`block_input_pairs`] in lanes: the portable code's operations in its
    /// order ([`super::pair_columns_raw`], [`Embed::normalise`], and for the
    /// cost feature [`ln_1p`](Self::ln_1p)); a block with a value that is not
    /// finite or a cost outside `ln_1p`'s lanes goes to the portable code.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn block_input<const N: usize, const U: usize, const S: usize>(
        self,
        embed: &Embed<'_, N>,
        inputs: &SlotIn<U, S>,
        servers: &ServerLanes,
        u: usize,
        b: usize,
        costs: Costs<'_>,
    ) -> Result<[f32x8; N_PAIR], Error> {
        let simd = self.0;
        let count = inputs.m.saturating_sub(b * L).min(L);
        let (Some(user), Some(at)) = (inputs.users().get(u), (b < BLOCKS).then_some(b)) else {
            return block_input_pairs(embed, inputs, u, b, costs);
        };
        let valid = simd.cmp_lt_i32x8(
            pulp::cast([0i32, 1, 2, 3, 4, 5, 6, 7]),
            simd.splat_i32x8(count as i32),
        );
        let mut x = self.pair_columns(inputs, servers, user, at);
        let inf = simd.splat_f32x8(f32::INFINITY);
        let mut finite = valid;
        for &v in x.iter().take(COST_AT) {
            finite = simd.and_m32x8(finite, simd.cmp_lt_f32x8(simd.abs_f32x8(v), inf));
        }
        if !same(finite, valid) {
            return block_input_pairs(embed, inputs, u, b, costs);
        }
        let cost = match costs {
            Costs::Write(c) => {
                // ln_1p's lanes: 0 <= x < inf (bits below +inf's).
                let bits: u32x8 = pulp::cast(x[COST_AT]);
                let taken = simd.cmp_lt_u32x8(bits, simd.splat_u32x8(0x7f80_0000));
                if !same(simd.and_m32x8(taken, valid), valid) {
                    return block_input_pairs(embed, inputs, u, b, Costs::Write(c));
                }
                let cost = self.ln_1p(x[COST_AT]);
                let lanes: [f32; L] = pulp::cast(cost);
                let kept = c.get_mut(b * L..b * L + count).unwrap_or(&mut []);
                for (k, &v) in kept.iter_mut().zip(&lanes) {
                    *k = v;
                }
                cost
            }
            Costs::Read(c) => {
                let mut lanes = [0.0f32; L];
                for (o, &v) in lanes.iter_mut().zip(c.iter().skip(b * L).take(count)) {
                    *o = v;
                }
                pulp::cast(lanes)
            }
        };
        if let Some(v) = x.get_mut(COST_AT) {
            *v = cost;
        }
        // Embed::normalise: clamp((v − mean)·inv_std, ±CLIP), as f32::clamp
        // (a NaN stays NaN), zeros past the last server.
        let zero = simd.splat_f32x8(0.0);
        for ((v, &m), &k) in x.iter_mut().zip(&embed.mean).zip(&embed.inv_std) {
            let t = simd.mul_f32x8(simd.sub_f32x8(*v, simd.splat_f32x8(m)), simd.splat_f32x8(k));
            *v = simd.select_f32x8(valid, self.clamp(t, -CLIP, CLIP), zero);
        }
        Ok(x)
    }

    /// [`super::pair_columns_raw`] of `user` with the 8 servers of block `b`.
    #[inline(always)]
    fn pair_columns<const U: usize, const S: usize>(
        self,
        inputs: &SlotIn<U, S>,
        servers: &ServerLanes,
        user: &UserIn,
        b: usize,
    ) -> [f32x8; N_PAIR] {
        let simd = self.0;
        let t = self.pair_terms(servers, user, b);
        let scale = simd.splat_f32x8(DIST_SCALE);
        [
            simd.div_f32x8(t.dist, scale),
            simd.div_f32x8(t.mig_dist, scale),
            t.prev,
            simd.div_f32x8(t.load[0], block(&servers.q, b)),
            simd.div_f32x8(t.load[1], block(&servers.p, b)),
            simd.mul_f32x8(t.load[2], simd.splat_f32x8(inputs.inv_2f0)),
        ]
    }

    /// [`super::pair_load`] of `user` with the 8 servers of block `b`: the
    /// load (computation, synchronisation, total) at γ = 0.
    #[inline(always)]
    fn pair_load(self, servers: &ServerLanes, user: &UserIn, b: usize) -> [f32x8; 3] {
        self.pair_terms(servers, user, b).load
    }

    /// The distances, the previous-server flag and the load of `user` with the
    /// 8 servers of block `b` ([`super::pair_load`]'s operations in its order).
    #[inline(always)]
    fn pair_terms(self, servers: &ServerLanes, user: &UserIn, b: usize) -> PairTerms {
        let simd = self.0;
        let zero = simd.splat_f32x8(0.0);
        let (sx, sy) = (block(&servers.x, b), block(&servers.y, b));
        let manhattan = |ax: f32, ay: f32| {
            simd.add_f32x8(
                simd.abs_f32x8(simd.sub_f32x8(simd.splat_f32x8(ax), sx)),
                simd.abs_f32x8(simd.sub_f32x8(simd.splat_f32x8(ay), sy)),
            )
        };
        let dist = manhattan(user.x, user.y);
        let (mig_dist, prev) = match user.prev {
            Some((p, px, py)) => {
                let here = simd.cmp_eq_u32x8(
                    pulp::cast([0u32, 1, 2, 3, 4, 5, 6, 7]),
                    simd.splat_u32x8(p.wrapping_sub(b * L) as u32),
                );
                (
                    simd.select_f32x8(here, zero, manhattan(px, py)),
                    simd.select_f32x8(here, simd.splat_f32x8(1.0), zero),
                )
            }
            None => (zero, zero),
        };
        let mig = simd.mul_f32x8(simd.splat_f32x8(user.mig_per_m), mig_dist);
        let syn = simd.mul_f32x8(simd.splat_f32x8(user.syn_per_m), dist);
        let cmp = simd.mul_f32x8(block(&servers.cmp_per_bit, b), simd.splat_f32x8(user.data));
        let total = simd.add_f32x8(simd.add_f32x8(mig, syn), cmp);
        PairTerms {
            dist,
            mig_dist,
            prev,
            load: [cmp, syn, total],
        }
    }

    /// `v.clamp(lo, hi)` lane by lane as `f32::clamp` (a NaN stays NaN).
    #[inline(always)]
    fn clamp(self, v: f32x8, lo: f32, hi: f32) -> f32x8 {
        let simd = self.0;
        let (lo, hi) = (simd.splat_f32x8(lo), simd.splat_f32x8(hi));
        let v = simd.select_f32x8(simd.cmp_lt_f32x8(v, lo), lo, v);
        simd.select_f32x8(simd.cmp_gt_f32x8(v, hi), hi, v)
    }

    /// `libm`'s `tanhf` (musl's `tanhf.c` with its `expm1f`) lane by lane, its
    /// operations in its order, so bit for bit its results; lanes outside
    /// `0 <= x < inf` go to `libm` itself.
    #[inline(always)]
    pub(super) fn tanh(self, x: f32x8) -> f32x8 {
        let simd = self.0;
        let f32s = |v: f32| simd.splat_f32x8(v);
        let w: u32x8 = pulp::cast(x);
        let u32s = |v: u32| simd.splat_u32x8(v);
        // w > 0x41200000: |x| > 10; > 0x3f0c9f54: > log(3)/2; > 0x3e82c578:
        // > log(5/3)/2; >= 0x00800000: normal.
        let (ten, big, mid, normal) = (
            simd.cmp_gt_u32x8(w, u32s(0x4120_0000)),
            simd.cmp_gt_u32x8(w, u32s(0x3f0c_9f54)),
            simd.cmp_gt_u32x8(w, u32s(0x3e82_c578)),
            simd.cmp_ge_u32x8(w, u32s(0x0080_0000)),
        );
        let two_x = simd.mul_f32x8(f32s(2.0), x);
        let minus_two_x = simd.mul_f32x8(f32s(-2.0), x);
        let t = self.expm1(simd.select_f32x8(mid, two_x, minus_two_x));
        let t2 = simd.add_f32x8(t, f32s(2.0));
        let v_big = simd.sub_f32x8(f32s(1.0), simd.div_f32x8(f32s(2.0), t2));
        let v_mid = simd.div_f32x8(t, t2);
        let v_small = simd.div_f32x8(simd.sub_f32x8(f32s(-0.0), t), t2);
        let v = simd.select_f32x8(normal, v_small, x);
        let v = simd.select_f32x8(mid, v_mid, v);
        let v = simd.select_f32x8(big, v_big, v);
        let v = simd.select_f32x8(ten, f32s(1.0), v);
        // Lanes outside 0 <= x < inf (negative, infinite, NaN): libm's.
        let outside = simd.cmp_ge_u32x8(w, u32s(0x7f80_0000));
        if !any(outside) {
            return v;
        }
        let (mut v, x): ([f32; L], [f32; L]) = (pulp::cast(v), pulp::cast(x));
        let outside: [u32; L] = pulp::cast(outside);
        for ((v, &x), &o) in v.iter_mut().zip(&x).zip(&outside) {
            if o != 0 {
                *v = libm::tanhf(x);
            }
        }
        pulp::cast(v)
    }

    /// `libm`'s `expm1f` for the lanes [`tanh`](Self::tanh) gives it:
    /// `-0.52 < a <= 20` (its branches with k = −1, 0, 1, 2…29 and |a| < 2^-25),
    /// its operations in its order.
    #[inline(always)]
    fn expm1(self, a: f32x8) -> f32x8 {
        #[allow(clippy::excessive_precision)]
        const LN2_HI: f32 = 6.9313812256e-01;
        #[allow(clippy::excessive_precision)]
        const LN2_LO: f32 = 9.0580006145e-06;
        #[allow(clippy::excessive_precision)]
        const INV_LN2: f32 = 1.4426950216e+00;
        #[allow(clippy::excessive_precision)]
        const Q1: f32 = -3.3333212137e-2;
        #[allow(clippy::excessive_precision)]
        const Q2: f32 = 1.5807170421e-3;
        let simd = self.0;
        let f32s = |v: f32| simd.splat_f32x8(v);
        let i32s = |v: i32| simd.splat_i32x8(v);
        let bits: u32x8 = pulp::cast(a);
        let hx = simd.and_u32x8(bits, simd.splat_u32x8(0x7fff_ffff));
        let negative = simd.cmp_lt_f32x8(a, f32s(0.0));
        // |a| > 0.5 ln2 and < 1.5 ln2: k = ±1.
        let near = simd.cmp_lt_u32x8(hx, simd.splat_u32x8(0x3F85_1592));
        let (hi1, lo1, k1) = (
            simd.select_f32x8(
                negative,
                simd.add_f32x8(a, f32s(LN2_HI)),
                simd.sub_f32x8(a, f32s(LN2_HI)),
            ),
            simd.select_f32x8(negative, f32s(-LN2_LO), f32s(LN2_LO)),
            simd.select_i32x8(negative, i32s(-1), i32s(1)),
        );
        // Farther: k = (1/ln2·a ± 0.5) truncated.
        let half = simd.select_f32x8(negative, f32s(-0.5), f32s(0.5));
        let k2: i32x8 = pulp::cast(simd.avx._mm256_cvttps_epi32(pulp::cast(
            simd.add_f32x8(simd.mul_f32x8(f32s(INV_LN2), a), half),
        )));
        let t = simd.convert_i32x8_to_f32x8(k2);
        let (hi2, lo2) = (
            simd.sub_f32x8(a, simd.mul_f32x8(t, f32s(LN2_HI))),
            simd.mul_f32x8(t, f32s(LN2_LO)),
        );
        let hi = simd.select_f32x8(near, hi1, hi2);
        let lo = simd.select_f32x8(near, lo1, lo2);
        let k = simd.select_i32x8(near, k1, k2);
        let reduced = simd.sub_f32x8(hi, lo);
        let c = simd.sub_f32x8(simd.sub_f32x8(hi, reduced), lo);
        // |a| <= 0.5 ln2: k = 0, no reduction.
        let primary = simd.cmp_le_u32x8(hx, simd.splat_u32x8(0x3eb1_7218));
        let x = simd.select_f32x8(primary, a, reduced);
        let c = simd.select_f32x8(primary, f32s(0.0), c);
        let k = simd.select_i32x8(primary, i32s(0), k);

        let hfx = simd.mul_f32x8(f32s(0.5), x);
        let hxs = simd.mul_f32x8(x, hfx);
        let r1 = simd.add_f32x8(
            f32s(1.0),
            simd.mul_f32x8(hxs, simd.add_f32x8(f32s(Q1), simd.mul_f32x8(hxs, f32s(Q2)))),
        );
        let t = simd.sub_f32x8(f32s(3.0), simd.mul_f32x8(r1, hfx));
        let e = simd.mul_f32x8(
            hxs,
            simd.div_f32x8(
                simd.sub_f32x8(r1, t),
                simd.sub_f32x8(f32s(6.0), simd.mul_f32x8(x, t)),
            ),
        );
        // k = 0.
        let v0 = simd.sub_f32x8(x, simd.sub_f32x8(simd.mul_f32x8(x, e), hxs));
        let e = simd.sub_f32x8(simd.mul_f32x8(x, simd.sub_f32x8(e, c)), c);
        let e = simd.sub_f32x8(e, hxs);
        // k = −1.
        let v_m1 = simd.sub_f32x8(simd.mul_f32x8(f32s(0.5), simd.sub_f32x8(x, e)), f32s(0.5));
        // k = 1.
        let v_1 = simd.select_f32x8(
            simd.cmp_lt_f32x8(x, f32s(-0.25)),
            simd.mul_f32x8(f32s(-2.0), simd.sub_f32x8(e, simd.add_f32x8(x, f32s(0.5)))),
            simd.add_f32x8(f32s(1.0), simd.mul_f32x8(f32s(2.0), simd.sub_f32x8(x, e))),
        );
        // 2 <= k <= 56: 2^k (x − e + 1) − 1 two ways.
        let twopk: f32x8 = pulp::cast(
            simd.shl_const_u32x8::<23>(pulp::cast(simd.wrapping_add_i32x8(i32s(0x7f), k))),
        );
        let uf: f32x8 = pulp::cast(
            simd.shl_const_u32x8::<23>(pulp::cast(simd.wrapping_sub_i32x8(i32s(0x7f), k))),
        );
        let v_lo = simd.mul_f32x8(
            simd.add_f32x8(simd.sub_f32x8(x, e), simd.sub_f32x8(f32s(1.0), uf)),
            twopk,
        );
        let v_hi = simd.mul_f32x8(
            simd.add_f32x8(simd.sub_f32x8(x, simd.add_f32x8(e, uf)), f32s(1.0)),
            twopk,
        );
        let v = simd.select_f32x8(simd.cmp_lt_i32x8(k, i32s(23)), v_lo, v_hi);
        let v = simd.select_f32x8(
            simd.cmp_eq_u32x8(pulp::cast(k), simd.splat_u32x8(1)),
            v_1,
            v,
        );
        let v = simd.select_f32x8(
            simd.cmp_eq_u32x8(pulp::cast(k), simd.splat_u32x8(u32::MAX)),
            v_m1,
            v,
        );
        let v = simd.select_f32x8(simd.cmp_eq_u32x8(pulp::cast(k), simd.splat_u32x8(0)), v0, v);
        // |a| < 2^-25: a itself.
        simd.select_f32x8(simd.cmp_lt_u32x8(hx, simd.splat_u32x8(0x3300_0000)), a, v)
    }

    /// `libm`'s `log1pf` (FreeBSD's `s_log1pf.c`) for lanes `0 <= x < inf`,
    /// its operations in its order (no fused multiply-add), so bit for bit
    /// its results.
    #[inline(always)]
    pub(super) fn ln_1p(self, x: f32x8) -> f32x8 {
        // libm's constants as libm writes them.
        #[allow(clippy::excessive_precision)]
        const LN2_HI: f32 = 6.9313812256e-01;
        #[allow(clippy::excessive_precision)]
        const LN2_LO: f32 = 9.0580006145e-06;
        #[allow(clippy::excessive_precision)]
        const LG1: f32 = 0.66666662693;
        #[allow(clippy::excessive_precision)]
        const LG2: f32 = 0.40000972152;
        #[allow(clippy::excessive_precision)]
        const LG3: f32 = 0.28498786688;
        #[allow(clippy::excessive_precision)]
        const LG4: f32 = 0.24279078841;
        let simd = self.0;
        let f32s = |v: f32| simd.splat_f32x8(v);
        let (zero, one) = (f32s(0.0), f32s(1.0));
        let ix: u32x8 = pulp::cast(x);
        // 1 + x >= sqrt(2): u = 1 + x reduced into [sqrt(2)/2, sqrt(2)] by k,
        // with the correction c of log(1 + x) − log(u).
        let u = simd.add_f32x8(one, x);
        let iu =
            simd.wrapping_add_u32x8(pulp::cast(u), simd.splat_u32x8(0x3f80_0000 - 0x3f35_04f3));
        let k: i32x8 = simd.wrapping_sub_i32x8(
            pulp::cast(simd.shr_const_u32x8::<23>(iu)),
            simd.splat_i32x8(0x7f),
        );
        let c = simd.select_f32x8(
            simd.cmp_ge_i32x8(k, simd.splat_i32x8(2)),
            simd.sub_f32x8(one, simd.sub_f32x8(u, x)),
            simd.sub_f32x8(x, simd.sub_f32x8(u, one)),
        );
        let c = simd.select_f32x8(
            simd.cmp_lt_i32x8(k, simd.splat_i32x8(25)),
            simd.div_f32x8(c, u),
            zero,
        );
        let reduced = simd.wrapping_add_u32x8(
            simd.and_u32x8(iu, simd.splat_u32x8(0x007f_ffff)),
            simd.splat_u32x8(0x3f35_04f3),
        );
        let f = simd.sub_f32x8(pulp::cast(reduced), one);
        // 1 + x < sqrt(2): k = 0, c = 0, f = x.
        let small = simd.cmp_lt_u32x8(ix, simd.splat_u32x8(0x3ed4_13d0));
        let (f, c) = (
            simd.select_f32x8(small, x, f),
            simd.select_f32x8(small, zero, c),
        );
        let k = simd.select_i32x8(small, simd.splat_i32x8(0), k);

        let s = simd.div_f32x8(f, simd.add_f32x8(f32s(2.0), f));
        let z = simd.mul_f32x8(s, s);
        let w = simd.mul_f32x8(z, z);
        let t1 = simd.mul_f32x8(w, simd.add_f32x8(f32s(LG2), simd.mul_f32x8(w, f32s(LG4))));
        let t2 = simd.mul_f32x8(z, simd.add_f32x8(f32s(LG1), simd.mul_f32x8(w, f32s(LG3))));
        let r = simd.add_f32x8(t2, t1);
        let hfsq = simd.mul_f32x8(simd.mul_f32x8(f32s(0.5), f), f);
        let dk = simd.convert_i32x8_to_f32x8(k);
        let v = simd.add_f32x8(
            simd.mul_f32x8(s, simd.add_f32x8(hfsq, r)),
            simd.add_f32x8(simd.mul_f32x8(dk, f32s(LN2_LO)), c),
        );
        let v = simd.add_f32x8(simd.sub_f32x8(v, hfsq), f);
        let v = simd.add_f32x8(v, simd.mul_f32x8(dk, f32s(LN2_HI)));
        // |x| < 2^-24: x itself.
        let tiny = simd.cmp_lt_u32x8(ix, simd.splat_u32x8(0x3380_0000));
        simd.select_f32x8(tiny, x, v)
    }

    /// The lanes' relu: `_mm256_max_ps(v, 0)` is `v > 0 ? v : 0`, the portable
    /// relu's comparison (0 for NaN and −0).
    #[inline(always)]
    fn relu(self, v: f32x8) -> f32x8 {
        self.0.max_f32x8(v, self.0.splat_f32x8(0.0))
    }
}
