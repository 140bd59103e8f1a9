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
    Embed, Error, GeneralPolicy, SlotIn, UserIn, COST_AT, DIST_SCALE, MAX_GENERAL_SERVERS, N_PAIR,
};
use crate::policy::CLIP;

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

/// The servers' values the pair features read, in blocks of [`L`] lanes (past
/// the last server: position 0, bounds 1).
struct ServerLanes {
    x: [f32x8; BLOCKS],
    y: [f32x8; BLOCKS],
    q: [f32x8; BLOCKS],
    p: [f32x8; BLOCKS],
    cmp_per_bit: [f32x8; BLOCKS],
}

impl ServerLanes {
    #[inline(always)]
    fn new<const U: usize, const S: usize>(inputs: &SlotIn<U, S>) -> Self {
        let lanes = |pick: &dyn Fn(&super::ServerIn) -> f32, pad: f32| {
            let mut v = [[pad; L]; BLOCKS];
            for (s, srv) in inputs.servers().iter().enumerate() {
                if let Some(lane) = v.get_mut(s / L).and_then(|b| b.get_mut(s % L)) {
                    *lane = pick(srv);
                }
            }
            v.map(pulp::cast)
        };
        ServerLanes {
            x: lanes(&|s| s.x, 0.0),
            y: lanes(&|s| s.y, 0.0),
            q: lanes(&|s| s.q, 1.0),
            p: lanes(&|s| s.p, 1.0),
            cmp_per_bit: lanes(&|s| s.cmp_per_bit, 0.0),
        }
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
            for (row, &xk) in w.chunks_exact(N).zip(x) {
                let row = row.get(o0..o0 + L).unwrap_or(&[]);
                for (acc, &wk) in acc.iter_mut().zip(row) {
                    *acc = simd.add_f32x8(*acc, simd.mul_f32x8(xk, simd.splat_f32x8(wk)));
                }
            }
            for (h, &acc) in h.iter_mut().zip(&acc) {
                *h = self.relu(acc);
            }
        }
        h
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
            for (row, &hj) in w.chunks_exact(N).zip(h) {
                let row = row.get(o0..o0 + L).unwrap_or(&[]);
                for (t, &wj) in t.iter_mut().zip(row) {
                    *t = simd.add_f32x8(*t, simd.mul_f32x8(hj, simd.splat_f32x8(wj)));
                }
            }
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
        let (lo, hi, zero) = (
            simd.splat_f32x8(-CLIP),
            simd.splat_f32x8(CLIP),
            simd.splat_f32x8(0.0),
        );
        for ((v, &m), &k) in x.iter_mut().zip(&embed.mean).zip(&embed.inv_std) {
            let t = simd.mul_f32x8(simd.sub_f32x8(*v, simd.splat_f32x8(m)), simd.splat_f32x8(k));
            let t = simd.select_f32x8(simd.cmp_lt_f32x8(t, lo), lo, t);
            let t = simd.select_f32x8(simd.cmp_gt_f32x8(t, hi), hi, t);
            *v = simd.select_f32x8(valid, t, zero);
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
        let zero = simd.splat_f32x8(0.0);
        let pick = |v: &[f32x8; BLOCKS]| v.get(b).copied().unwrap_or(zero);
        let (sx, sy) = (pick(&servers.x), pick(&servers.y));
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
        let cmp = simd.mul_f32x8(pick(&servers.cmp_per_bit), simd.splat_f32x8(user.data));
        let total = simd.add_f32x8(simd.add_f32x8(mig, syn), cmp);
        let scale = simd.splat_f32x8(DIST_SCALE);
        [
            simd.div_f32x8(dist, scale),
            simd.div_f32x8(mig_dist, scale),
            prev,
            simd.div_f32x8(cmp, pick(&servers.q)),
            simd.div_f32x8(syn, pick(&servers.p)),
            simd.mul_f32x8(total, simd.splat_f32x8(inputs.inv_2f0)),
        ]
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
