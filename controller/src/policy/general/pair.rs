//! The per-pair arithmetic of [`GeneralPolicy`](super::GeneralPolicy)'s
//! portable forward pass (the firmware's) on hidden vectors `N` wide: fixed-size
//! loops the compiler unrolls (on a Cortex-M4F a pair's vectors stay in its 32
//! single-precision registers).
//!
//! Every output element gets a multiply, then an add (no fused multiply-add),
//! and the output layer's sum is taken in index order: the AVX2 pass (`avx`)
//! does the same operations in the same order, so the two give the same logits
//! bit for bit and a host replays the firmware's decisions exactly.

use super::N_PAIR;

/// `relu(a + b + Σ_i x[i]·w[i])`, `w` input-major rows of `N` (the pair's
/// embedding from its user's and server's terms and its own columns).
#[inline(always)]
pub(super) fn embed<const N: usize>(
    a: &[f32; N],
    b: &[f32; N],
    w: &[f32],
    x: &[f32; N_PAIR],
) -> [f32; N] {
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

/// `s += h` and `t += h` (the server's and the user's sums of embeddings).
#[inline(always)]
pub(super) fn accumulate<const N: usize>(h: &[f32; N], s: &mut [f32; N], t: &mut [f32; N]) {
    for ((a, b), &x) in s.iter_mut().zip(t.iter_mut()).zip(h) {
        *a += x;
        *b += x;
    }
}

/// `bias + Σ_o out[o]·relu(a[o] + b[o] + Σ_j h[j]·w[j][o])`, `w` input-major
/// rows of `N`, the sum over `o` in index order (the mix and out layers of one
/// pair).
#[inline(always)]
pub(super) fn head<const N: usize>(
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
