//! One server's γ problem: its free users and the scalar pieces of the objective.

use core::cell::Cell;

use crate::model::{total_bits, UserCost};
use crate::params::{CostNorm, Params};
use crate::slot::User;

use super::MAX_NEWTON;

/// ln cosh(y), stable for large |y|.
#[inline]
pub(super) fn ln_cosh(y: f64) -> f64 {
    let y = libm::fabs(y);
    y + crate::math::ln_1p(crate::math::exp(-2.0 * y)) - core::f64::consts::LN_2
}

/// One user with previous data on this server; γ moves its data x = α3·D̄/bps.
#[derive(Clone, Debug)]
pub(super) struct Var {
    /// Index of the user in the slot.
    pub user: usize,
    /// Utility exponent v(φ) ∈ (0, 1].
    pub v: f64,
    /// α1 and α2.
    pub a1: f64,
    pub a2: f64,
    /// Scaled data at γ = 0 and its growth per unit γ.
    pub x0: f64,
    pub dx: f64,
    /// ln(w·α1·α2·v·dx): with it, ln(d(wρ)/dγ) = ln_k + (v−1)·ln x − α2·x^v.
    pub ln_k: f64,
    /// ln of the marginal utility at γ = 0 and γ = 1, and ln x at γ = 1 (price-free).
    pub ln_g0: f64,
    pub ln_g1: f64,
    pub t1: f64,
    /// x^v at γ = 0 and γ = 1 (by-products of `ln_g0` and `ln_g1`).
    xv0: f64,
    xv1: f64,
    /// w·ρ at γ = 0 and γ = 1 and the marginal utility at γ = 0, each computed on
    /// first use (NaN until then): most samples leave most users at an end.
    ends: Cell<[f64; 3]>,
    /// Where the last inverse ended (ln x): the next one starts there, since the
    /// search asks for nearby prices one after another.
    pub warm: Cell<f64>,
    /// Cost per unit γ (a), its log, and computation cost per unit γ (b, the C2 row).
    pub a: f64,
    pub ln_a: f64,
    pub b: f64,
    /// Current value and whether the search still has to choose it.
    pub gamma: f64,
    pub free: bool,
}

impl Var {
    #[inline]
    pub fn x(&self, gamma: f64) -> f64 {
        self.x0 + gamma * self.dx
    }

    /// ln of the marginal weighted utility d(wρ)/dγ at scaled data x (+∞ at x = 0 when v < 1).
    #[inline]
    pub fn ln_g(&self, x: f64) -> f64 {
        let lx = crate::math::ln(x);
        self.ln_g_at(lx, crate::math::exp(self.v * lx))
    }

    /// [`Var::ln_g`] from ln x and x^v.
    #[inline]
    fn ln_g_at(&self, lx: f64, xv: f64) -> f64 {
        let vm1 = if self.v >= 1.0 {
            0.0
        } else {
            (self.v - 1.0) * lx
        };
        self.ln_k + vm1 - self.a2 * xv
    }

    /// d/dγ of [`Var::ln_g`].
    #[inline]
    pub fn d_ln_g(&self, x: f64) -> f64 {
        ((self.v - 1.0) / x - self.a2 * self.v * crate::math::pow(x, self.v - 1.0)) * self.dx
    }

    /// d²/dγ² of [`Var::ln_g`] (≥ 0: ln ρ' is convex for v ≤ 1).
    #[inline]
    pub fn d2_ln_g(&self, x: f64) -> f64 {
        let one_m_v = 1.0 - self.v;
        (one_m_v / (x * x) + self.a2 * self.v * one_m_v * crate::math::pow(x, self.v - 2.0))
            * self.dx
            * self.dx
    }

    /// Weighted utility w·ρ at scaled data x (w is folded into `w`).
    #[inline]
    pub fn w_rho(&self, w: f64, x: f64) -> f64 {
        // x^v as exp(v·ln x): one log and one exp instead of pow's extra-precise path.
        self.w_rho_xv(w, crate::math::exp(self.v * crate::math::ln(x)))
    }

    /// w·ρ from x^v.
    #[inline]
    fn w_rho_xv(&self, w: f64, xv: f64) -> f64 {
        w * (self.v - self.a1 * crate::math::exp(-self.a2 * xv))
    }

    /// w·ρ at γ = `g` where `t` is what [`Var::inverse_with_slope`] returned with
    /// it: ln x(g) inside (0, 1), NaN at the ends, whose values are cached. Saves
    /// the log of [`Var::w_rho`] inside and all three transcendentals at the ends.
    pub fn w_rho_sampled(&self, w: f64, g: f64, t: f64) -> f64 {
        if t.is_finite() {
            return self.w_rho_xv(w, crate::math::exp(self.v * t));
        }
        let mut ends = self.ends.get();
        let (slot, xv) = if g >= 1.0 {
            (1, self.xv1)
        } else {
            (0, self.xv0)
        };
        match ends.get_mut(slot) {
            Some(cached) if cached.is_nan() => {
                *cached = self.w_rho_xv(w, xv);
                let value = *cached;
                self.ends.set(ends);
                value
            }
            Some(cached) => *cached,
            None => self.w_rho(w, self.x(g)),
        }
    }

    /// The marginal weighted utility at γ = 0, exp(`ln_g0`), cached.
    pub fn g0(&self) -> f64 {
        let mut ends = self.ends.get();
        match ends.get_mut(2) {
            Some(cached) if cached.is_nan() => {
                *cached = crate::math::exp(self.ln_g0);
                let value = *cached;
                self.ends.set(ends);
                value
            }
            Some(cached) => *cached,
            None => crate::math::exp(self.ln_g0),
        }
    }

    /// The γ ∈ [0, 1] whose marginal weighted utility equals `exp(ln_price)`
    /// (clamped): the maximiser of w·ρ(γ) − price·γ; and dγ/d(ln price) there (0 where
    /// γ is clamped). Halley's method on the concave, decreasing f(t) = ln_g(e^t) −
    /// ln price, whose second derivative comes free with the first: Newton's step
    /// δ = f/f′ divided by 1 − δ·f″/(2f′). Newton alone converges from anywhere
    /// (from the right of the root monotonically; from the left its first step
    /// lands right of it, the tangent of a concave function lying above it),
    /// clamped to the right end t1; Halley's factor is ≥ 1 left of the root and
    /// ≤ 1 right of it, and is only used within [1/2, 2] (else the step is plain
    /// Newton). So it may start anywhere: it starts where the previous inverse
    /// ended. The third value is ln x at the root (NaN at the ends), for
    /// [`Var::w_rho_sampled`].
    pub fn inverse_with_slope(&self, ln_price: f64) -> (f64, f64, f64) {
        if self.ln_g1 >= ln_price {
            return (1.0, 0.0, f64::NAN);
        }
        if self.ln_g0 <= ln_price {
            return (0.0, 0.0, f64::NAN);
        }
        let warm = self.warm.get();
        let mut t = if warm.is_finite() && warm <= self.t1 {
            warm
        } else {
            self.t1
        };
        let mut df = -1.0;
        for _ in 0..MAX_NEWTON {
            let e = crate::math::exp(self.v * t);
            let f = self.ln_k + (self.v - 1.0) * t - self.a2 * e - ln_price;
            df = (self.v - 1.0) - self.a2 * self.v * e;
            let d2f = -self.a2 * self.v * self.v * e;
            let newton = f / df;
            if !newton.is_finite() {
                break;
            }
            let factor = 1.0 - newton * d2f / (2.0 * df);
            let halley = (0.5..=2.0).contains(&factor);
            let step = if halley { newton / factor } else { newton };
            t = (t - step).min(self.t1);
            // With |f″/f′| ≤ v ≤ 1 and |f‴/f′| ≤ v² ≤ 1, the error after a Halley
            // step δ is at most about (1/4 + 1/6)·δ³ < δ³, after a Newton step at
            // most δ²/2: δ ≤ 1e-6·(1 + |t|), resp. 1e-8·(1 + |t|), leaves under
            // 1e-18·(1 + |t|)³, resp. 5e-17·(1 + |t|)²: stop without paying for a
            // confirming step.
            let tol = if halley { 1e-6 } else { 1e-8 };
            if libm::fabs(step) <= tol * (1.0 + libm::fabs(t)) {
                break;
            }
        }
        self.warm.set(t);
        let x = crate::math::exp(t);
        let g = ((x - self.x0) / self.dx).clamp(0.0, 1.0);
        // d ln g/dγ = (df/dt)·(dx/dγ)/x = df·dx/x, so dγ/d ln p = x/(df·dx). ln x(g)
        // is t unless g was clamped to an end (then NaN: the ends are cached).
        let t = if g > 0.0 && g < 1.0 { t } else { f64::NAN };
        (g, x / (df * self.dx), t)
    }
}

/// The γ problem of one server.
#[derive(Clone, Debug)]
pub(super) struct Server<const U: usize> {
    pub w: f64,
    pub c: f64,
    pub four_f0: f64,
    /// ln(c / 4f0), the constant part of ln c·Norm'.
    ln_c_4f0: f64,
    /// Norm is its tangent at 0 ([`CostNorm::Linear`]): the price of cost is the
    /// constant c / 4f0 and the problem is concave.
    pub linear: bool,
    /// Cost C_s at γ = 0 for the free users plus the fixed users' share.
    pub c0: f64,
    /// Remaining C2 budget q − B0 − Σ_fixed b·γ.
    pub cap: f64,
    /// C2 budget q − B0 before any user was fixed.
    cap0: f64,
    pub vars: heapless::Vec<Var, U>,
    /// (λ, μ) of the last C2-binding sample: the next μ search starts from it.
    pub mu_hint: Cell<(f64, f64)>,
}

impl<const U: usize> Server<U> {
    /// The problem of a server with C2 budget `q`; `ln_c_4f0` is ln(c / 4f0), the
    /// same for every server of a slot (computed once by the caller).
    pub fn new(w: f64, c: f64, f0: f64, ln_c_4f0: f64, q: f64, norm: CostNorm) -> Self {
        Server {
            w,
            c,
            four_f0: 4.0 * f0,
            ln_c_4f0,
            linear: norm == CostNorm::Linear,
            c0: 0.0,
            cap: q,
            cap0: q,
            vars: heapless::Vec::new(),
            mu_hint: Cell::new((f64::NAN, f64::NAN)),
        }
    }

    /// Empties the problem for the next server, with C2 budget `q` (one `Server`
    /// serves a whole slot: building one per server cost a memset of its
    /// variables' storage).
    pub fn reset(&mut self, q: f64) {
        self.c0 = 0.0;
        self.cap = q;
        self.cap0 = q;
        self.vars.clear();
        self.mu_hint.set((f64::NAN, f64::NAN));
    }

    /// Adds user `k`'s constant costs, and a variable if it has previous data.
    pub fn add_user(&mut self, params: &Params, k: usize, u: &User, uc: &UserCost, v: f64) {
        let d = total_bits(u, 0.0);
        let at_zero = uc.load(u, d);
        self.c0 += at_zero.total;
        self.cap -= at_zero.cmp;
        self.cap0 = self.cap;
        let p = u.prev_data_bits;
        if p <= 0.0 {
            return; // no previous data: γ changes nothing, report 0
        }
        let [a1, a2, a3, ..] = params.alpha;
        let dx = a3 * p / params.bits_per_sample;
        let a = p * (uc.mig_per_bit + uc.cmp_per_bit);
        let b = p * uc.cmp_per_bit;
        let free = a > 0.0;
        let mut var = Var {
            user: k,
            v,
            a1,
            a2,
            x0: a3 * d / params.bits_per_sample,
            dx,
            ln_k: crate::math::ln(self.w * a1 * a2 * v * dx),
            a,
            ln_a: crate::math::ln(a),
            b,
            // Costless data (a = 0, hence b = 0) only adds utility: take all of it.
            gamma: if free { 0.0 } else { 1.0 },
            free,
            ln_g0: 0.0,
            ln_g1: 0.0,
            t1: 0.0,
            xv0: 0.0,
            xv1: 0.0,
            ends: Cell::new([f64::NAN; 3]),
            warm: Cell::new(0.0),
        };
        let t0 = crate::math::ln(var.x0);
        var.xv0 = crate::math::exp(v * t0);
        var.ln_g0 = var.ln_g_at(t0, var.xv0);
        var.t1 = crate::math::ln(var.x(1.0));
        var.xv1 = crate::math::exp(v * var.t1);
        var.ln_g1 = var.ln_g_at(var.t1, var.xv1);
        var.warm.set(var.t1);
        // Capacity is U and a server never has more users than the slot: cannot fail.
        let _ = self.vars.push(var);
    }

    /// Writes the chosen γ of every variable into the slot-wide vector.
    pub fn write(&self, gamma: &mut [f64]) {
        for var in &self.vars {
            if let Some(g) = gamma.get_mut(var.user) {
                *g = var.gamma;
            }
        }
    }

    /// c·Norm(C), Norm as [`crate::model::norm`] computes it.
    #[inline]
    pub fn h(&self, cost: f64) -> f64 {
        if self.linear {
            self.c * (cost / self.four_f0)
        } else {
            self.c * crate::math::tanh(cost / self.four_f0)
        }
    }

    /// ln(c·Norm'(C)), the log of the marginal cost price at cost level C.
    #[inline]
    pub fn ln_price_at(&self, cost: f64) -> f64 {
        if self.linear {
            self.ln_c_4f0
        } else {
            self.ln_c_4f0 - 2.0 * ln_cosh(cost / self.four_f0)
        }
    }

    /// Fixes users whose optimum is 0 or 1 by the price bounds (module docs, fact 2).
    pub fn prune(&mut self) {
        for _ in 0..=self.vars.len() {
            let (mut sum_a, mut sum_b) = (0.0, 0.0);
            for v in self.vars.iter().filter(|v| v.free) {
                sum_a += v.a;
                sum_b += v.b;
            }
            let face_possible = sum_b > self.cap;
            let ln_lo = self.ln_price_at(self.c0 + sum_a);
            let ln_hi = self.ln_price_at(self.c0);
            let mut changed = false;
            for var in self.vars.iter_mut().filter(|v| v.free) {
                let ln_a = var.ln_a;
                if var.ln_g0 - ln_a <= ln_lo {
                    var.gamma = 0.0;
                    var.free = false;
                    changed = true;
                } else if !face_possible && var.ln_g1 - ln_a >= ln_hi {
                    var.gamma = 1.0;
                    var.free = false;
                    self.c0 += var.a;
                    self.cap -= var.b;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
}

/// Safeguarded Newton for a root of `f` in [lo, hi] where f(lo) > 0 > f(hi) (after
/// orienting by `positive_at_lo`); `f` returns (value, derivative). At most
/// [`MAX_NEWTON`] steps; falls back to bisection whenever Newton leaves the bracket.
pub(super) fn bracketed_root(
    f: impl Fn(f64) -> (f64, f64),
    mut lo: f64,
    mut hi: f64,
    start: f64,
) -> f64 {
    let mut x = start.clamp(lo, hi);
    for _ in 0..MAX_NEWTON {
        let (fx, dfx) = f(x);
        if fx == 0.0 {
            return x;
        }
        if fx > 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - fx / dfx;
        let next = if newton.is_finite() && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if libm::fabs(next - x) <= 1e-15 * (1.0 + libm::fabs(x)) || hi - lo <= 1e-16 {
            return next;
        }
        x = next;
    }
    x
}
