//! The per-pair arithmetic of [`GeneralPolicy`](super::GeneralPolicy)'s forward
//! pass on hidden vectors `N` wide: portable scalar code ([`Scalar`], the
//! firmware's), and with the feature `simd` on an x86-64 CPU with AVX2 the same
//! operations 8 lanes at a time ([`Avx`]).
//!
//! Both compute every output element with the same operations in the same order
//! (a multiply, then an add; no fused multiply-add; the output layer's sum
//! taken lane by lane in index order), so the two give the same logits bit for
//! bit and a host replays the firmware's decisions exactly.

use super::N_PAIR;

/// The three per-pair steps of the forward pass (module docs of `general`).
pub(super) trait Lanes<const N: usize>: Copy {
    /// `relu(a + b + Σ_i x[i]·w[i])`, `w` input-major rows of `N` (the pair's
    /// embedding from its user's and server's terms and its own columns).
    fn embed(self, a: &[f32; N], b: &[f32; N], w: &[f32], x: &[f32; N_PAIR]) -> [f32; N];

    /// `s += h` and `t += h` (the server's and the user's sums of embeddings).
    fn accumulate(self, h: &[f32; N], s: &mut [f32; N], t: &mut [f32; N]);

    /// `bias + Σ_o out[o]·relu(a[o] + b[o] + Σ_j h[j]·w[j][o])`, `w` input-major
    /// rows of `N`, the sum over `o` in index order (the mix and out layers of
    /// one pair).
    fn head(
        self,
        h: &[f32; N],
        a: &[f32; N],
        b: &[f32; N],
        w: &[f32],
        out: &[f32; N],
        bias: f32,
    ) -> f32;
}

/// Portable scalar code: the fixed-size loops the compiler unrolls (on a
/// Cortex-M4F a pair's vectors stay in its 32 single-precision registers).
#[derive(Clone, Copy)]
pub(super) struct Scalar;

impl<const N: usize> Lanes<N> for Scalar {
    #[inline(always)]
    fn embed(self, a: &[f32; N], b: &[f32; N], w: &[f32], x: &[f32; N_PAIR]) -> [f32; N] {
        let mut hid = *a;
        for (o, &b) in hid.iter_mut().zip(b) {
            *o += b;
        }
        axpy_rows(w, x, &mut hid);
        for v in hid.iter_mut() {
            *v = relu(*v);
        }
        hid
    }

    #[inline(always)]
    fn accumulate(self, h: &[f32; N], s: &mut [f32; N], t: &mut [f32; N]) {
        for ((a, b), &x) in s.iter_mut().zip(t.iter_mut()).zip(h) {
            *a += x;
            *b += x;
        }
    }

    #[inline(always)]
    fn head(
        self,
        h: &[f32; N],
        a: &[f32; N],
        b: &[f32; N],
        w: &[f32],
        out: &[f32; N],
        bias: f32,
    ) -> f32 {
        let mut t = [0.0f32; N];
        for ((t, &a), &b) in t.iter_mut().zip(a).zip(b) {
            *t = a + b;
        }
        axpy_rows(w, h, &mut t);
        let mut acc = bias;
        for (&t, &w) in t.iter().zip(out) {
            acc += w * relu(t);
        }
        acc
    }
}

/// max(x, 0), NaN to 0, as `f32::max` gives it; written as a comparison because
/// on a Cortex-M4F `f32::max` is a call to `fmaxf` (its FPU has no VMAXNM), which
/// cost the network about a sixth of its instructions.
#[inline]
fn relu(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

/// `y += Σ_i x[i] · w_t[i]`, `w_t` input-major rows of `N` weights each: a
/// fixed-size loop the compiler unrolls, `y` kept in registers.
#[inline(always)]
pub(super) fn axpy_rows<const N: usize>(w_t: &[f32], x: &[f32], y: &mut [f32; N]) {
    for (row, &xi) in w_t.chunks_exact(N).zip(x) {
        if let Ok(row) = <&[f32; N]>::try_from(row) {
            for (a, &w) in y.iter_mut().zip(row) {
                *a += xi * w;
            }
        }
    }
}

/// AVX2 through `pulp`'s checked token (no `unsafe` here): the code runs inside
/// [`pulp::x86::V3::vectorize`], which compiles it with the CPU's AVX2.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
pub(super) use avx::Avx;

#[cfg(all(feature = "simd", target_arch = "x86_64"))]
mod avx {
    use super::{Lanes, N_PAIR};
    use pulp::f32x8;
    use pulp::x86::V3;

    const L: usize = 8;

    #[derive(Clone, Copy)]
    pub(in crate::policy::general) struct Avx(pub(in crate::policy::general) V3);

    /// `v` as `K` vectors of 8 lanes (`N = 8·K`).
    #[inline(always)]
    fn load<const N: usize, const K: usize>(v: &[f32; N]) -> [f32x8; K] {
        let mut out: [f32x8; K] = [pulp::cast([0.0f32; L]); K];
        for (o, c) in out.iter_mut().zip(v.chunks_exact(L)) {
            if let Ok(c) = <&[f32; L]>::try_from(c) {
                *o = pulp::cast(*c);
            }
        }
        out
    }

    /// `K` vectors of 8 lanes as `N` values.
    #[inline(always)]
    fn store<const N: usize, const K: usize>(v: &[f32x8; K]) -> [f32; N] {
        let mut out = [0.0f32; N];
        for (c, &v) in out.chunks_exact_mut(L).zip(v) {
            let lanes: [f32; L] = pulp::cast(v);
            c.copy_from_slice(&lanes);
        }
        out
    }

    impl Avx {
        /// `y[k] + x[i]·w_t[i]` over the rows `i` of `w_t` (`N = 8·K` each).
        #[inline(always)]
        fn axpy_rows<const N: usize, const K: usize>(
            self,
            w_t: &[f32],
            x: &[f32],
            y: &mut [f32x8; K],
        ) {
            let simd = self.0;
            for (row, &xi) in w_t.chunks_exact(N).zip(x) {
                let xv = simd.splat_f32x8(xi);
                for (y, w) in y.iter_mut().zip(row.chunks_exact(L)) {
                    if let Ok(w) = <&[f32; L]>::try_from(w) {
                        *y = simd.add_f32x8(*y, simd.mul_f32x8(xv, pulp::cast(*w)));
                    }
                }
            }
        }

        /// The lanes' relu: `_mm256_max_ps(v, 0)` gives 0 for NaN and −0.
        #[inline(always)]
        fn relu(self, v: f32x8) -> f32x8 {
            self.0.max_f32x8(v, self.0.splat_f32x8(0.0))
        }

        #[inline(always)]
        fn embed_k<const N: usize, const K: usize>(
            self,
            a: &[f32; N],
            b: &[f32; N],
            w: &[f32],
            x: &[f32; N_PAIR],
        ) -> [f32; N] {
            let simd = self.0;
            let (a, b) = (load::<N, K>(a), load::<N, K>(b));
            let mut h = [simd.splat_f32x8(0.0); K];
            for ((h, &a), &b) in h.iter_mut().zip(&a).zip(&b) {
                *h = simd.add_f32x8(a, b);
            }
            self.axpy_rows::<N, K>(w, x, &mut h);
            for h in h.iter_mut() {
                *h = self.relu(*h);
            }
            store::<N, K>(&h)
        }

        #[inline(always)]
        fn accumulate_k<const N: usize, const K: usize>(
            self,
            h: &[f32; N],
            s: &mut [f32; N],
            t: &mut [f32; N],
        ) {
            let simd = self.0;
            let (h, mut sv, mut tv) = (load::<N, K>(h), load::<N, K>(s), load::<N, K>(t));
            for ((s, t), &h) in sv.iter_mut().zip(tv.iter_mut()).zip(&h) {
                *s = simd.add_f32x8(*s, h);
                *t = simd.add_f32x8(*t, h);
            }
            *s = store::<N, K>(&sv);
            *t = store::<N, K>(&tv);
        }

        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn head_k<const N: usize, const K: usize>(
            self,
            h: &[f32; N],
            a: &[f32; N],
            b: &[f32; N],
            w: &[f32],
            out: &[f32; N],
            bias: f32,
        ) -> f32 {
            let simd = self.0;
            let (a, b, o) = (load::<N, K>(a), load::<N, K>(b), load::<N, K>(out));
            let mut t = [simd.splat_f32x8(0.0); K];
            for ((t, &a), &b) in t.iter_mut().zip(&a).zip(&b) {
                *t = simd.add_f32x8(a, b);
            }
            self.axpy_rows::<N, K>(w, h, &mut t);
            for (t, &o) in t.iter_mut().zip(&o) {
                *t = simd.mul_f32x8(o, self.relu(*t));
            }
            // The sum in index order, as the scalar code takes it.
            store::<N, K>(&t).iter().fold(bias, |acc, &p| acc + p)
        }
    }

    /// `Lanes<N>` for `N = 8·K`.
    macro_rules! widths {
        ($($n:literal => $k:literal),*) => {$(
            impl Lanes<$n> for Avx {
                #[inline(always)]
                fn embed(
                    self,
                    a: &[f32; $n],
                    b: &[f32; $n],
                    w: &[f32],
                    x: &[f32; N_PAIR],
                ) -> [f32; $n] {
                    self.embed_k::<$n, $k>(a, b, w, x)
                }

                #[inline(always)]
                fn accumulate(self, h: &[f32; $n], s: &mut [f32; $n], t: &mut [f32; $n]) {
                    self.accumulate_k::<$n, $k>(h, s, t)
                }

                #[inline(always)]
                fn head(
                    self,
                    h: &[f32; $n],
                    a: &[f32; $n],
                    b: &[f32; $n],
                    w: &[f32],
                    out: &[f32; $n],
                    bias: f32,
                ) -> f32 {
                    self.head_k::<$n, $k>(h, a, b, w, out, bias)
                }
            }
        )*};
    }
    widths!(16 => 2, 32 => 4, 64 => 8);
}
