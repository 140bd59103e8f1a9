//! The policy engine: evaluates a parsed blob on an observation, in `f32`, without
//! allocating, reading the weights straight from the blob's bytes.

use super::blob::{self, Decoded, F32Le, LayerRef, ModelRef};
use super::{CLIP, MAX_WIDTH};
use crate::obs::obs_dim;
use crate::Error;

/// Scratch values [`Policy::logits`] needs at most for a policy with observations
/// of `obs_dim` values: `obs_dim + 2·MAX_WIDTH`. Enough for every policy of that
/// shape; [`Policy::scratch_len`] gives the exact need of one policy.
pub const fn max_scratch_len(obs_dim: usize) -> usize {
    obs_dim + 2 * MAX_WIDTH
}

/// A policy parsed from a blob (see [`blob`](super::blob)); the weights stay in the
/// blob and are borrowed for `'a`.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    net: Decoded<'a>,
    obs_dim: usize,
    max_hidden: usize,
}

impl<'a> Policy<'a> {
    /// Parses and checks a blob. Never allocates or panics: every way the blob can
    /// be wrong is an [`Error`] (listed in the [`blob`](super::blob) docs). Every
    /// weight is scanned once here, so [`logits`](Self::logits) has nothing left to
    /// check in the model.
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        let net = blob::decode(blob)?;
        let obs_dim = obs_dim(net.users, net.servers);
        let hidden = net.layers.split_last().map_or(&[][..], |(_, h)| h);
        let max_hidden = hidden.iter().map(|l| width(l.outputs)).max().unwrap_or(0);
        Ok(Policy {
            net,
            obs_dim,
            max_hidden,
        })
    }

    /// Users U the policy decides for.
    pub fn users(&self) -> usize {
        self.net.users
    }

    /// Servers S the policy chooses among.
    pub fn servers(&self) -> usize {
        self.net.servers
    }

    /// Values of the observation the policy takes: `obs_dim(U, S)`.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Logits the policy gives: U·S.
    pub fn logits_len(&self) -> usize {
        self.net.users * self.net.servers
    }

    /// Scratch values [`logits`](Self::logits) needs: `obs_dim + 2·h`, where `h`
    /// is the widest hidden layer (0 with a single layer). At most
    /// [`max_scratch_len`]`(obs_dim)`.
    pub fn scratch_len(&self) -> usize {
        self.obs_dim + 2 * self.max_hidden
    }

    /// The network, borrowing from the blob (for inspection or [`encode`](super::encode)).
    pub fn model(&self) -> ModelRef<'_> {
        self.net.model()
    }

    /// Evaluates the policy: `out[u·S + s]` is the logit of user `u` on server `s`.
    ///
    /// `obs` must hold exactly [`obs_dim`](Self::obs_dim) finite values (as
    /// [`observe`](crate::obs::observe) writes them), `out` exactly
    /// [`logits_len`](Self::logits_len), and `scratch` at least
    /// [`scratch_len`](Self::scratch_len) (its contents are overwritten); otherwise
    /// [`Error::PolicyBuffer`] or [`Error::ObservationValue`], and `out` may be
    /// partly written. Never allocates or panics; the work is fixed by the shape.
    pub fn logits(&self, obs: &[f32], scratch: &mut [f32], out: &mut [f32]) -> Result<(), Error> {
        let need = |buffer, expected: usize, got: usize| {
            if got == expected {
                Ok(())
            } else {
                Err(Error::PolicyBuffer {
                    buffer,
                    expected,
                    got,
                })
            }
        };
        need("policy.obs", self.obs_dim, obs.len())?;
        need("policy.logits", self.logits_len(), out.len())?;
        let short = Error::PolicyBuffer {
            buffer: "policy.scratch",
            expected: self.scratch_len(),
            got: scratch.len(),
        };
        let (x, rest) = scratch.split_at_mut_checked(self.obs_dim).ok_or(short)?;
        let (mut a, rest) = rest.split_at_mut_checked(self.max_hidden).ok_or(short)?;
        let mut b = rest.get_mut(..self.max_hidden).ok_or(short)?;

        let norm = self.net.norm_mean.iter().zip(self.net.norm_inv_std.iter());
        for (index, ((x, &o), (mean, inv_std))) in x.iter_mut().zip(obs).zip(norm).enumerate() {
            if !o.is_finite() {
                return Err(Error::ObservationValue { index });
            }
            *x = ((o - mean) * inv_std).clamp(-CLIP, CLIP);
        }
        let x: &[f32] = x;

        let Some((last, hidden)) = self.net.layers.split_last() else {
            return Ok(()); // never: parsing requires at least one layer
        };
        // Each hidden layer writes `b`, then `a` and `b` swap: `a` holds the newest.
        let mut input = x;
        for layer in hidden {
            let w = width(layer.outputs);
            let dst = b.get_mut(..w).ok_or(short)?;
            dense(layer, input, dst);
            for v in dst.iter_mut() {
                *v = tanh(*v);
            }
            core::mem::swap(&mut a, &mut b);
            input = a.get(..w).ok_or(short)?;
        }
        dense(last, input, out);
        if let Some(skip) = &self.net.skip {
            add_dense(skip, x, out);
        }
        if let Some(prior) = &self.net.prior {
            // Indices were checked below obs_dim at parse: the 0 fallback never applies.
            for ((o, i), w) in out
                .iter_mut()
                .zip(prior.index.iter())
                .zip(prior.weight.iter())
            {
                *o += w * x.get(i).copied().unwrap_or(0.0);
            }
        }
        Ok(())
    }
}

/// `tanh(x)` as a rational function (odd degree-13 numerator, even degree-6
/// denominator, Eigen's `generic_fast_tanh_float` coefficients) on x clamped to
/// ±7.905 311, where f32 tanh is within 3e-7 of ±1. Measured over every `f32`
/// in [−12, 12] against `f64` tanh: max absolute error 4.7e-7 (at |x| ≈ 5.95;
/// `libm::tanhf` 1e-7), far inside the 1e-5 the logits are checked to. One
/// division and no call, where `libm::tanhf` calls `expm1f`.
#[inline]
fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    if x.abs() < 0.0004 {
        return x; // tanh x = x − x³/3 + …: x is exact to f32 here
    }
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

fn width(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `out = W·x + b` (all shapes checked at parse).
fn dense(layer: &LayerRef<'_>, x: &[f32], out: &mut [f32]) {
    matvec(layer, x, out, |o, v| *o = v);
}

/// `out += W·x + b`.
fn add_dense(layer: &LayerRef<'_>, x: &[f32], out: &mut [f32]) {
    matvec(layer, x, out, |o, v| *o += v);
}

/// `W·x + b` row by row, each value handed to `put` with its output; the rows
/// of `W` (`x.len()` values each) are read as `f32` straight from the blob
/// ([`F32Le`] stores them as little-endian bytes of no guaranteed alignment).
///
/// With the feature `simd` on x86-64, a CPU with AVX2 and FMA (checked once, then cached by
/// `pulp`) runs the same loops 8 lanes wide with fused multiply-adds; elsewhere
/// they run on `wide`'s portable vectors, except on 32-bit Arm (the firmware),
/// which has its own scalar kernel, [`row_pairs`].
#[inline(always)]
fn matvec(layer: &LayerRef<'_>, x: &[f32], out: &mut [f32], put: impl Fn(&mut f32, f32)) {
    let (w, _) = layer.weight.as_bytes().as_chunks::<4>();
    #[cfg(target_arch = "arm")]
    row_pairs(w, layer.bias, x, out, put);
    #[cfg(all(feature = "simd", target_arch = "x86_64"))]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| rows_times(Fma(simd), w, layer.bias, x, out, put));
    }
    #[cfg(not(target_arch = "arm"))]
    rows_times(Portable, w, layer.bias, x, out, put);
}

/// [`rows_times`] for the Cortex-M4F: two rows per pass, `LANES` (4) scalar sums
/// each. The FPU has no vector unit, and its loads need 4-byte alignment, which
/// the blob's weights lack: every weight costs an integer load, a move to the FPU
/// and a multiply-add whatever the kernel, so the saving is in the loads of `x`
/// (one per two multiply-adds) and in keeping every pointer and sum in registers
/// (four rows, or `wide`'s `f32x4`, spill). RESULTS.md has the kernels measured
/// against each other.
#[cfg(target_arch = "arm")]
#[inline(always)]
fn row_pairs(
    w: &[Weight],
    bias: F32Le<'_>,
    x: &[f32],
    out: &mut [f32],
    put: impl Fn(&mut f32, f32),
) {
    let n = x.len().max(1);
    let (xb, xt) = x.as_chunks::<LANES>();
    let pair = |pair: &[Weight]| {
        // `pair` holds exactly 2·n weights: the split always succeeds.
        let (r0, r1) = pair.split_at_checked(n).unwrap_or_default();
        let ((w0, t0), (w1, t1)) = (r0.as_chunks::<LANES>(), r1.as_chunks::<LANES>());
        let (mut a0, mut a1) = ([0.0f32; LANES], [0.0f32; LANES]);
        for ((x, w0), w1) in xb.iter().zip(w0).zip(w1) {
            let lanes = a0.iter_mut().zip(a1.iter_mut()).zip(x);
            for (((a0, a1), x), (w0, w1)) in lanes.zip(block(w0).into_iter().zip(block(w1))) {
                *a0 += w0 * x;
                *a1 += w1 * x;
            }
        }
        [reduce(a0) + tail(t0, xt), reduce(a1) + tail(t1, xt)]
    };
    by_rows(w, bias, n, out, put, pair, |row| tail(row, x));
}

/// The loop every kernel shares: `put(out[r], Σ_i w[r·n + i]·x[i] + bias[r])` for
/// each row `r`, K rows at a time through `rows` (given the K·n weights of K
/// consecutive rows), the last rows one at a time through `row`.
#[inline(always)]
fn by_rows<const K: usize>(
    w: &[Weight],
    bias: F32Le<'_>,
    n: usize,
    out: &mut [f32],
    put: impl Fn(&mut f32, f32),
    rows: impl Fn(&[Weight]) -> [f32; K],
    row: impl Fn(&[Weight]) -> f32,
) {
    let mut bias = bias.iter();
    let mut blocks = w.chunks_exact(K * n);
    let mut outs = out.chunks_exact_mut(K);
    for (block, o) in (&mut blocks).zip(&mut outs) {
        for (o, s) in o.iter_mut().zip(rows(block)) {
            put(o, s + bias.next().unwrap_or(0.0));
        }
    }
    for (o, r) in outs
        .into_remainder()
        .iter_mut()
        .zip(blocks.remainder().chunks_exact(n))
    {
        put(o, row(r) + bias.next().unwrap_or(0.0));
    }
}

/// One stored weight: 4 little-endian bytes.
type Weight = [u8; 4];

/// `LANES` weights at once (one unaligned vector load where the target has them).
#[inline(always)]
fn block(b: &[Weight; LANES]) -> [f32; LANES] {
    // On a little-endian target the bytes already are the values.
    #[cfg(target_endian = "little")]
    {
        bytemuck::cast(*b)
    }
    #[cfg(not(target_endian = "little"))]
    {
        b.map(f32::from_le_bytes)
    }
}

/// Rows computed together: each block of `x` is loaded once for `ROWS` rows.
#[cfg(not(target_arch = "arm"))]
const ROWS: usize = 4;

/// Lanes of each row's dot product: independent partial sums kept in vector
/// registers (a single running sum would serialise every addition); on the
/// Cortex-M4F, scalar sums in its 32 single-precision registers.
#[cfg(target_arch = "arm")]
const LANES: usize = 4;
#[cfg(not(target_arch = "arm"))]
const LANES: usize = 8;

/// The vector operations the dot products need.
#[cfg(not(target_arch = "arm"))]
trait Simd: Copy {
    type V: Copy;
    fn zero(self) -> Self::V;
    fn load(self, v: [f32; LANES]) -> Self::V;
    /// `acc + w·x` (rounded once or twice, as the target does it).
    fn mul_add(self, acc: Self::V, w: Self::V, x: Self::V) -> Self::V;
    fn lanes(self, v: Self::V) -> [f32; LANES];
}

/// `wide`'s vectors: SSE on x86-64.
#[cfg(not(target_arch = "arm"))]
#[derive(Clone, Copy)]
struct Portable;

#[cfg(not(target_arch = "arm"))]
type WideLanes = wide::f32x8;

#[cfg(not(target_arch = "arm"))]
impl Simd for Portable {
    type V = WideLanes;
    #[inline(always)]
    fn zero(self) -> WideLanes {
        WideLanes::splat(0.0)
    }
    #[inline(always)]
    fn load(self, v: [f32; LANES]) -> WideLanes {
        WideLanes::from(v)
    }
    #[inline(always)]
    fn mul_add(self, acc: WideLanes, w: WideLanes, x: WideLanes) -> WideLanes {
        acc + w * x
    }
    #[inline(always)]
    fn lanes(self, v: WideLanes) -> [f32; LANES] {
        v.to_array()
    }
}

/// AVX2 + FMA through `pulp`'s checked token (no `unsafe` here).
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[derive(Clone, Copy)]
struct Fma(pulp::x86::V3);

#[cfg(all(feature = "simd", target_arch = "x86_64"))]
impl Simd for Fma {
    type V = pulp::f32x8;
    #[inline(always)]
    fn zero(self) -> pulp::f32x8 {
        self.0.splat_f32x8(0.0)
    }
    #[inline(always)]
    fn load(self, v: [f32; LANES]) -> pulp::f32x8 {
        pulp::cast(v)
    }
    #[inline(always)]
    fn mul_add(self, acc: pulp::f32x8, w: pulp::f32x8, x: pulp::f32x8) -> pulp::f32x8 {
        self.0.mul_add_f32x8(w, x, acc)
    }
    #[inline(always)]
    fn lanes(self, v: pulp::f32x8) -> [f32; LANES] {
        pulp::cast(v)
    }
}

/// `put(out[r], Σ_i w[r·n + i]·x[i] + bias[r])` for each row `r`, `n = x.len()`.
#[cfg(not(target_arch = "arm"))]
#[inline(always)]
fn rows_times<S: Simd>(
    simd: S,
    w: &[Weight],
    bias: F32Le<'_>,
    x: &[f32],
    out: &mut [f32],
    put: impl Fn(&mut f32, f32),
) {
    let n = x.len().max(1);
    let four = |block: &[Weight]| {
        // `block` holds exactly ROWS·n weights: the splits always succeed.
        let (r0, rest) = block.split_at_checked(n).unwrap_or_default();
        let (r1, rest) = rest.split_at_checked(n).unwrap_or_default();
        let (r2, r3) = rest.split_at_checked(n).unwrap_or_default();
        dot4(simd, [r0, r1, r2, r3], x)
    };
    by_rows(w, bias, n, out, put, four, |row| dot(simd, row, x));
}

/// The dot products of four rows with `x`: `x` is read once for all four.
#[cfg(not(target_arch = "arm"))]
#[inline(always)]
fn dot4<S: Simd>(simd: S, rows: [&[Weight]; ROWS], x: &[f32]) -> [f32; ROWS] {
    let (xb, xt) = x.as_chunks::<LANES>();
    let [(w0, t0), (w1, t1), (w2, t2), (w3, t3)] = rows.map(|r| r.as_chunks::<LANES>());
    let zero = simd.zero();
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    for ((((xb, w0), w1), w2), w3) in xb.iter().zip(w0).zip(w1).zip(w2).zip(w3) {
        let x = simd.load(*xb);
        a0 = simd.mul_add(a0, simd.load(block(w0)), x);
        a1 = simd.mul_add(a1, simd.load(block(w1)), x);
        a2 = simd.mul_add(a2, simd.load(block(w2)), x);
        a3 = simd.mul_add(a3, simd.load(block(w3)), x);
    }
    [
        reduce(simd.lanes(a0)) + tail(t0, xt),
        reduce(simd.lanes(a1)) + tail(t1, xt),
        reduce(simd.lanes(a2)) + tail(t2, xt),
        reduce(simd.lanes(a3)) + tail(t3, xt),
    ]
}

/// `Σ w_i·x_i`; extra values on either side are ignored.
#[cfg(not(target_arch = "arm"))]
#[inline(always)]
fn dot<S: Simd>(simd: S, w: &[Weight], x: &[f32]) -> f32 {
    let (xb, xt) = x.as_chunks::<LANES>();
    let (wb, wt) = w.as_chunks::<LANES>();
    let mut acc = simd.zero();
    for (w, x) in wb.iter().zip(xb) {
        acc = simd.mul_add(acc, simd.load(block(w)), simd.load(*x));
    }
    reduce(simd.lanes(acc)) + tail(wt, xt)
}

#[inline(always)]
fn tail(w: &[Weight], x: &[f32]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| f32::from_le_bytes(*w) * x)
        .sum()
}

/// The lanes summed pairwise, halves first: `(a0 + a4) + (a1 + a5) + …`.
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        let (lo, hi) = acc.split_at_mut(width);
        for (l, h) in lo.iter_mut().zip(hi.iter()) {
            *l += *h;
        }
    }
    acc.first().copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    /// The error bound stated on `tanh`, against f64 tanh (an independent
    /// reference), on a grid over [−12, 12] and at the extremes.
    #[test]
    fn tanh_error_is_below_5e_7() {
        let mut worst = 0.0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            let err = (f64::from(super::tanh(x)) - f64::from(x).tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "max error {worst:e}");
        assert_eq!(super::tanh(0.0), 0.0);
        assert_eq!(super::tanh(1e30), -super::tanh(-1e30));
        assert!((super::tanh(f32::INFINITY) - 1.0).abs() < 5e-7);
    }
}
