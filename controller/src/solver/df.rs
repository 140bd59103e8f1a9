//! Double-f32 arithmetic (a value as an unevaluated sum hi + lo of two f32, about
//! 44 bits of precision) for the f32 solver's C2 check, and the exact split of an
//! f64 input into such a pair by integer operations: no f64 arithmetic.
//!
//! Why: C2's room q − Σ C_cmp at γ = 0 is often a small difference of two large
//! numbers. In plain f32 the check must keep a margin of a few f32 ulps of q
//! (≈ 1e-3 of a typical q), which on a server where C2 binds and utility is steep
//! (a user with no current data) costs up to 1e-5 on e. In double-f32 the margin
//! is ≈ 1e-11 of q. The error-free transformations are Knuth's TwoSum and
//! Dekker's TwoProduct (with Veltkamp's split, no fused multiply-add needed).

/// hi + lo with |lo| ≤ ulp(hi)/2 (normalised by every operation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Df {
    pub hi: f32,
    pub lo: f32,
}

/// s + e = a + b exactly (|a| ≥ |b| not required).
#[inline]
fn two_sum(a: f32, b: f32) -> (f32, f32) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// s + e = a + b exactly, for |a| ≥ |b|.
#[inline]
fn quick_two_sum(a: f32, b: f32) -> (f32, f32) {
    let s = a + b;
    (s, b - (s - a))
}

/// hi + lo = a with hi holding the top 12 bits (Veltkamp, 2^12 + 1).
#[inline]
fn split(a: f32) -> (f32, f32) {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    (hi, a - hi)
}

/// p + e = a·b exactly (Dekker; no overflow for |a|, |b| < 2^100).
#[inline]
fn two_prod(a: f32, b: f32) -> (f32, f32) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

impl Df {
    /// The f32 `x`, exactly.
    #[inline]
    pub fn from_f32(x: f32) -> Df {
        Df { hi: x, lo: 0.0 }
    }

    /// `x` to within 2^-48 relative: hi is `x` rounded to f32, lo the rest
    /// (computed exactly with integers, then rounded to f32). Values beyond f32's
    /// range give hi = ±∞ or 0 (with lo = 0).
    pub fn from_f64(x: f64) -> Df {
        let hi = x as f32;
        if !hi.is_finite() || hi == 0.0 {
            return Df { hi, lo: 0.0 };
        }
        let (mx, ex) = decompose64(x.to_bits());
        let (mh, eh) = decompose32(hi.to_bits());
        // x − hi = mx·2^ex − mh·2^eh; hi is x rounded to 24 bits, so eh ≥ ex and
        // eh − ex ≤ 30 + (subnormal shift): mh·2^(eh−ex) fits in i64 when it is ≤ 39.
        let shift = eh - ex;
        if !(0..=39).contains(&shift) {
            return Df { hi, lo: 0.0 };
        }
        let r = mx - (mh << shift);
        let lo = libm::scalbnf(r as f32, ex);
        let (hi, lo) = quick_two_sum(hi, lo);
        Df { hi, lo }
    }

    /// The nearest f32.
    #[inline]
    pub fn to_f32(self) -> f32 {
        self.hi + self.lo
    }

    /// Whether the value is ≤ `other` (false if either is NaN).
    #[inline]
    pub fn le(self, other: Df) -> bool {
        let d = self.sub(other);
        d.hi < 0.0 || (d.hi == 0.0 && d.lo <= 0.0)
    }

    /// self + other (relative error ≤ a few 2^-48 when both have the same sign).
    #[inline]
    pub fn add(self, other: Df) -> Df {
        let (s, e) = two_sum(self.hi, other.hi);
        let (t, f) = two_sum(self.lo, other.lo);
        let (s, e) = quick_two_sum(s, e + t);
        let (hi, lo) = quick_two_sum(s, e + f);
        Df { hi, lo }
    }

    /// self − other.
    #[inline]
    pub fn sub(self, other: Df) -> Df {
        self.add(Df {
            hi: -other.hi,
            lo: -other.lo,
        })
    }

    /// self·other (relative error ≤ a few 2^-48).
    #[inline]
    pub fn mul(self, other: Df) -> Df {
        let (p, e) = two_prod(self.hi, other.hi);
        let e = e + (self.hi * other.lo + self.lo * other.hi);
        let (hi, lo) = quick_two_sum(p, e);
        Df { hi, lo }
    }
}

/// f64 bits as (signed integer mantissa, exponent): value = m·2^e.
fn decompose64(bits: u64) -> (i64, i32) {
    let sign = if bits >> 63 == 0 { 1 } else { -1 };
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1u64 << 52) - 1)) as i64;
    let (m, e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1i64 << 52), biased - 1075)
    };
    (sign * m, e)
}

/// f32 bits as (signed integer mantissa, exponent): value = m·2^e.
fn decompose32(bits: u32) -> (i64, i32) {
    let sign = if bits >> 31 == 0 { 1 } else { -1 };
    let biased = ((bits >> 23) & 0xff) as i32;
    let frac = i64::from(bits & ((1u32 << 23) - 1));
    let (m, e) = if biased == 0 {
        (frac, -149)
    } else {
        (frac | (1i64 << 23), biased - 150)
    };
    (sign * m, e)
}

#[cfg(test)]
mod tests {
    use super::Df;

    #[track_caller]
    fn check(x: f64) {
        let d = Df::from_f64(x);
        let back = f64::from(d.hi) + f64::from(d.lo);
        assert!(
            (back - x).abs() <= x.abs() * 2f64.powi(-47),
            "{x:e}: {d:?} sums to {back:e}"
        );
    }

    #[test]
    fn splits_f64_to_48_bits() {
        for x in [
            1.0,
            0.1,
            -0.1,
            1450.123456789,
            3.3e-4,
            1e-7,
            784_000.0 * 1.000_000_1,
            core::f64::consts::PI * 1e30,
            1e-30,
        ] {
            check(x);
        }
        assert_eq!(Df::from_f64(0.0), Df::default());
    }

    #[test]
    fn sums_and_products_keep_44_bits() {
        let (a, b) = (1450.123456789f64, 3.3e-4 * 55.123);
        let (da, db) = (Df::from_f64(a), Df::from_f64(b));
        let near = |d: Df, x: f64| {
            let v = f64::from(d.hi) + f64::from(d.lo);
            assert!((v - x).abs() <= x.abs() * 2f64.powi(-43), "{v:e} vs {x:e}");
        };
        near(da.add(db), a + b);
        near(da.sub(db), a - b);
        near(da.mul(db), a * b);
        assert!(da.le(da) && db.le(da) && !da.le(db));
    }
}
