//! The floating-point type the γ search runs in: `f64` (the exact solver) or
//! `f32` (the single-precision path for targets without a double-precision FPU).
//!
//! One implementation of the search (`var`, `single`, `multi`) is generic over
//! [`Real`]; what differs between the two precisions is here and nowhere else: the
//! transcendental functions (f64's from `crate::math`, f32's from the `libm`
//! crate's f32 functions or, with `host-math`, `f32`'s methods) and the stopping
//! tolerances, which for f64 are the exact solver's own constants (so its numbers
//! are unchanged to the last bit) and for f32 are set a few ulps of f32 above its
//! rounding, where the f64 ones could never be met.

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// A floating-point type the γ search can run in.
pub(crate) trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    const NEG_INFINITY: Self;
    const EPSILON: Self;
    const MIN_POSITIVE: Self;
    const LN_2: Self;

    /// Relative step below which a Halley, resp. Newton, step of the inverse of
    /// ρ' ends the iteration (its error is then below the type's rounding).
    const HALLEY_TOL: Self;
    const NEWTON_TOL: Self;
    /// Relative step, and relative bracket width, that end the search for μ.
    const MU_TOL: Self;
    const MU_WIDTH: Self;
    /// Relative width of a branch-and-bound interval treated as a point.
    const POINT_WIDTH: Self;
    /// Relative change of a price bound that counts as a move.
    const PRICE_MOVE: Self;
    /// Optimality tolerance per server on e (absolute) that certifies a search.
    const SERVER_TOL: Self;

    /// Whether a bracketed root of γ (`var::bracketed_root`) is found: the last
    /// step from `x` to `next`, inside the bracket [`lo`, `hi`].
    fn root_converged(x: Self, next: Self, lo: Self, hi: Self) -> bool;

    /// The literal `x` in this type (constants of the algorithm: 0.5, 2, 16, …).
    fn lit(x: f64) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn pow(self, y: Self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn clamp(self, lo: Self, hi: Self) -> Self;
    fn is_finite(self) -> bool;
    fn is_infinite(self) -> bool;
    fn is_nan(self) -> bool;
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const NAN: f64 = f64::NAN;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    const EPSILON: f64 = f64::EPSILON;
    const MIN_POSITIVE: f64 = f64::MIN_POSITIVE;
    const LN_2: f64 = core::f64::consts::LN_2;

    const HALLEY_TOL: f64 = 1e-6;
    const NEWTON_TOL: f64 = 1e-8;
    const MU_TOL: f64 = 1e-13;
    const MU_WIDTH: f64 = 1e-15;
    const POINT_WIDTH: f64 = 1e-12;
    const PRICE_MOVE: f64 = 1e-9;
    const SERVER_TOL: f64 = super::SERVER_TOL;

    /// Absolute on γ ∈ [0, 1]: a step below 1e-15·(1 + |x|) or a bracket below 1e-16.
    #[inline]
    fn root_converged(x: f64, next: f64, lo: f64, hi: f64) -> bool {
        libm::fabs(next - x) <= 1e-15 * (1.0 + libm::fabs(x)) || hi - lo <= 1e-16
    }

    #[inline(always)]
    fn lit(x: f64) -> f64 {
        x
    }
    #[inline]
    fn exp(self) -> f64 {
        crate::math::exp(self)
    }
    #[inline]
    fn ln(self) -> f64 {
        crate::math::ln(self)
    }
    #[inline]
    fn ln_1p(self) -> f64 {
        crate::math::ln_1p(self)
    }
    #[inline]
    fn pow(self, y: f64) -> f64 {
        crate::math::pow(self, y)
    }
    #[inline]
    fn tanh(self) -> f64 {
        crate::math::tanh(self)
    }
    #[inline]
    fn abs(self) -> f64 {
        libm::fabs(self)
    }
    #[inline]
    fn max(self, other: f64) -> f64 {
        f64::max(self, other)
    }
    #[inline]
    fn min(self, other: f64) -> f64 {
        f64::min(self, other)
    }
    #[inline]
    fn clamp(self, lo: f64, hi: f64) -> f64 {
        // `f64::clamp`'s result for lo ≤ hi (a NaN stays NaN), without its
        // panic for lo > hi, whose message would link core's float formatting.
        if self < lo {
            lo
        } else if self > hi {
            hi
        } else {
            self
        }
    }
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline]
    fn is_infinite(self) -> bool {
        f64::is_infinite(self)
    }
    #[inline]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// f32: the tolerances sit a few ulps (f32::EPSILON ≈ 1.2e-7) above the rounding
/// of the quantities they compare. The inverse of ρ' stops when a Halley step is
/// below 2e-3·(1 + |t|) (error ≤ δ³ < 1e-8·(1 + |t|)³) or a Newton step below
/// 2e-4·(1 + |t|) (error ≤ δ²/2 = 2e-8·(1 + |t|)²). The per-server certificate
/// is 2e-7 on e, a little above the rounding of a server's share of e (≤ β1 ≤ 1).
impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const NAN: f32 = f32::NAN;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    const EPSILON: f32 = f32::EPSILON;
    const MIN_POSITIVE: f32 = f32::MIN_POSITIVE;
    const LN_2: f32 = core::f32::consts::LN_2;

    const HALLEY_TOL: f32 = 2e-3;
    const NEWTON_TOL: f32 = 2e-4;
    const MU_TOL: f32 = 4.0 * f32::EPSILON;
    const MU_WIDTH: f32 = 2.0 * f32::EPSILON;
    const POINT_WIDTH: f32 = 1e-6;
    const PRICE_MOVE: f32 = 1e-6;
    const SERVER_TOL: f32 = 2e-7;

    /// Only ever called with literal constants, which inline and fold at compile
    /// time: no f64 arithmetic is left at run time (checked in the firmware's
    /// disassembly).
    /// Relative, since an absolute test at f32's resolution of 1 would stop far
    /// from a root at small γ, where utility can be steep (a user with no current
    /// data and a small exponent v): a step below 2 ulps of |x| or a bracket below
    /// 2 ulps of |hi| (or below the smallest normal number).
    #[inline]
    fn root_converged(x: f32, next: f32, lo: f32, hi: f32) -> bool {
        let tol = 2.0 * f32::EPSILON;
        libm::fabsf(next - x) <= tol * libm::fabsf(x)
            || hi - lo <= tol * libm::fabsf(hi)
            || hi - lo <= f32::MIN_POSITIVE
    }

    #[inline(always)]
    fn lit(x: f64) -> f32 {
        x as f32
    }
    #[inline]
    fn exp(self) -> f32 {
        crate::math::expf(self)
    }
    #[inline]
    fn ln(self) -> f32 {
        crate::math::lnf(self)
    }
    #[inline]
    fn ln_1p(self) -> f32 {
        crate::math::ln_1pf(self)
    }
    #[inline]
    fn pow(self, y: f32) -> f32 {
        crate::math::powf(self, y)
    }
    #[inline]
    fn tanh(self) -> f32 {
        crate::math::tanhf(self)
    }
    #[inline]
    fn abs(self) -> f32 {
        libm::fabsf(self)
    }
    #[inline]
    fn max(self, other: f32) -> f32 {
        f32::max(self, other)
    }
    #[inline]
    fn min(self, other: f32) -> f32 {
        f32::min(self, other)
    }
    #[inline]
    fn clamp(self, lo: f32, hi: f32) -> f32 {
        // `f32::clamp`'s result for lo ≤ hi (a NaN stays NaN), without its
        // panic for lo > hi, whose message would link core's float formatting.
        if self < lo {
            lo
        } else if self > hi {
            hi
        } else {
            self
        }
    }
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline]
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
    #[inline]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}
