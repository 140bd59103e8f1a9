//! One server's γ problem: its free users and the scalar pieces of the objective.

use core::cell::Cell;

use crate::params::CostNorm;

use super::real::Real;
use super::MAX_NEWTON;

/// ln cosh(y), stable for large |y|.
#[inline]
pub(super) fn ln_cosh<R: Real>(y: R) -> R {
    let y = y.abs();
    y + (R::lit(-2.0) * y).exp().ln_1p() - R::LN_2
}

/// What one user brings to a server's problem, in the search's precision: its
/// costs at γ = 0 and the coefficients that γ scales (see `Server::add_user`).
#[derive(Clone, Copy, Debug)]
pub(super) struct UserTerms<R> {
    /// Index of the user in the slot.
    pub user: usize,
    /// The user's total cost C and computation cost C_cmp at γ = 0.
    pub total0: R,
    pub cmp0: R,
    /// D̄ at γ = 0 (D_t) and D_{t−1}, in bits.
    pub d: R,
    pub p: R,
    /// Migration and computation energy per bit.
    pub mig_per_bit: R,
    pub cmp_per_bit: R,
    /// Utility exponent v(φ).
    pub v: R,
}

/// The model constants a server's problem needs: α1, α2, α3 and bits per sample.
#[derive(Clone, Copy, Debug)]
pub(super) struct Alpha<R> {
    pub a1: R,
    pub a2: R,
    pub a3: R,
    pub bits_per_sample: R,
}

/// One user with previous data on this server; γ moves its data x = α3·D̄/bps.
#[derive(Clone, Debug)]
pub(super) struct Var<R: Real> {
    /// Index of the user in the slot.
    pub user: usize,
    /// Utility exponent v(φ) ∈ (0, 1].
    pub v: R,
    /// α1 and α2.
    pub a1: R,
    pub a2: R,
    /// Scaled data at γ = 0 and its growth per unit γ.
    pub x0: R,
    pub dx: R,
    /// ln(w·α1·α2·v·dx): with it, ln(d(wρ)/dγ) = ln_k + (v−1)·ln x − α2·x^v.
    pub ln_k: R,
    /// ln of the marginal utility at γ = 0 and γ = 1, and ln x at γ = 1 (price-free).
    pub ln_g0: R,
    pub ln_g1: R,
    pub t1: R,
    /// x^v at γ = 0 and γ = 1 (by-products of `ln_g0` and `ln_g1`).
    xv0: R,
    xv1: R,
    /// w·ρ at γ = 0 and γ = 1 and the marginal utility at γ = 0, each computed on
    /// first use (NaN until then): most samples leave most users at an end.
    ends: Cell<[R; 3]>,
    /// Where the last inverse ended (ln x): the next one starts there, since the
    /// search asks for nearby prices one after another.
    pub warm: Cell<R>,
    /// Cost per unit γ (a), its log, and computation cost per unit γ (b, the C2 row).
    pub a: R,
    pub ln_a: R,
    pub b: R,
    /// Current value and whether the search still has to choose it.
    pub gamma: R,
    pub free: bool,
}

impl<R: Real> Var<R> {
    #[inline]
    pub fn x(&self, gamma: R) -> R {
        self.x0 + gamma * self.dx
    }

    /// ln of the marginal weighted utility d(wρ)/dγ at scaled data x (+∞ at x = 0 when v < 1).
    #[inline]
    pub fn ln_g(&self, x: R) -> R {
        let lx = x.ln();
        self.ln_g_at(lx, (self.v * lx).exp())
    }

    /// [`Var::ln_g`] from ln x and x^v.
    #[inline]
    fn ln_g_at(&self, lx: R, xv: R) -> R {
        let vm1 = if self.v >= R::ONE {
            R::ZERO
        } else {
            (self.v - R::ONE) * lx
        };
        self.ln_k + vm1 - self.a2 * xv
    }

    /// d/dγ of [`Var::ln_g`].
    #[inline]
    pub fn d_ln_g(&self, x: R) -> R {
        ((self.v - R::ONE) / x - self.a2 * self.v * x.pow(self.v - R::ONE)) * self.dx
    }

    /// d²/dγ² of [`Var::ln_g`] (≥ 0: ln ρ' is convex for v ≤ 1).
    #[inline]
    pub fn d2_ln_g(&self, x: R) -> R {
        let one_m_v = R::ONE - self.v;
        (one_m_v / (x * x) + self.a2 * self.v * one_m_v * x.pow(self.v - R::lit(2.0)))
            * self.dx
            * self.dx
    }

    /// Weighted utility w·ρ at scaled data x (w is folded into `w`).
    #[inline]
    pub fn w_rho(&self, w: R, x: R) -> R {
        // x^v as exp(v·ln x): one log and one exp instead of pow's extra-precise path.
        self.w_rho_xv(w, (self.v * x.ln()).exp())
    }

    /// w·ρ from x^v.
    #[inline]
    fn w_rho_xv(&self, w: R, xv: R) -> R {
        w * (self.v - self.a1 * (-self.a2 * xv).exp())
    }

    /// w·ρ at γ = `g` where `t` is what [`Var::inverse_with_slope`] returned with
    /// it: ln x(g) inside (0, 1), NaN at the ends, whose values are cached. Saves
    /// the log of [`Var::w_rho`] inside and all three transcendentals at the ends.
    pub fn w_rho_sampled(&self, w: R, g: R, t: R) -> R {
        if t.is_finite() {
            return self.w_rho_xv(w, (self.v * t).exp());
        }
        let mut ends = self.ends.get();
        let (slot, xv) = if g >= R::ONE {
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
    pub fn g0(&self) -> R {
        let mut ends = self.ends.get();
        match ends.get_mut(2) {
            Some(cached) if cached.is_nan() => {
                *cached = self.ln_g0.exp();
                let value = *cached;
                self.ends.set(ends);
                value
            }
            Some(cached) => *cached,
            None => self.ln_g0.exp(),
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
    pub fn inverse_with_slope(&self, ln_price: R) -> (R, R, R) {
        if self.ln_g1 >= ln_price {
            return (R::ONE, R::ZERO, R::NAN);
        }
        if self.ln_g0 <= ln_price {
            return (R::ZERO, R::ZERO, R::NAN);
        }
        let warm = self.warm.get();
        let mut t = if warm.is_finite() && warm <= self.t1 {
            warm
        } else {
            self.t1
        };
        let mut df = -R::ONE;
        for _ in 0..MAX_NEWTON {
            let e = (self.v * t).exp();
            let f = self.ln_k + (self.v - R::ONE) * t - self.a2 * e - ln_price;
            df = (self.v - R::ONE) - self.a2 * self.v * e;
            let d2f = -self.a2 * self.v * self.v * e;
            let newton = f / df;
            if !newton.is_finite() {
                break;
            }
            let factor = R::ONE - newton * d2f / (R::lit(2.0) * df);
            let halley = factor >= R::lit(0.5) && factor <= R::lit(2.0);
            let step = if halley { newton / factor } else { newton };
            t = (t - step).min(self.t1);
            // With |f″/f′| ≤ v ≤ 1 and |f‴/f′| ≤ v² ≤ 1, the error after a Halley
            // step δ is at most about (1/4 + 1/6)·δ³ < δ³, after a Newton step at
            // most δ²/2: in f64, δ ≤ 1e-6·(1 + |t|), resp. 1e-8·(1 + |t|), leaves under
            // 1e-18·(1 + |t|)³, resp. 5e-17·(1 + |t|)²: stop without paying for a
            // confirming step ([`Real::HALLEY_TOL`], [`Real::NEWTON_TOL`]).
            let tol = if halley { R::HALLEY_TOL } else { R::NEWTON_TOL };
            if step.abs() <= tol * (R::ONE + t.abs()) {
                break;
            }
        }
        self.warm.set(t);
        let x = t.exp();
        let g = ((x - self.x0) / self.dx).clamp(R::ZERO, R::ONE);
        // d ln g/dγ = (df/dt)·(dx/dγ)/x = df·dx/x, so dγ/d ln p = x/(df·dx). ln x(g)
        // is t unless g was clamped to an end (then NaN: the ends are cached).
        let t = if g > R::ZERO && g < R::ONE { t } else { R::NAN };
        (g, x / (df * self.dx), t)
    }
}

/// The γ problem of one server.
#[derive(Clone, Debug)]
pub(super) struct Server<const U: usize, R: Real> {
    pub w: R,
    pub c: R,
    pub four_f0: R,
    /// ln(c / 4f0), the constant part of ln c·Norm'.
    ln_c_4f0: R,
    /// Norm is its tangent at 0 ([`CostNorm::Linear`]): the price of cost is the
    /// constant c / 4f0 and the problem is concave.
    pub linear: bool,
    /// Cost C_s at γ = 0 for the free users plus the fixed users' share.
    pub c0: R,
    /// Remaining C2 budget q − B0 − Σ_fixed b·γ.
    pub cap: R,
    /// C2 budget q − B0 before any user was fixed.
    cap0: R,
    pub vars: heapless::Vec<Var<R>, U>,
    /// (λ, μ) of the last C2-binding sample: the next μ search starts from it.
    pub mu_hint: Cell<(R, R)>,
}

impl<const U: usize, R: Real> Server<U, R> {
    /// The problem of a server with C2 budget `q`; `ln_c_4f0` is ln(c / 4f0), the
    /// same for every server of a slot (computed once by the caller).
    pub fn new(w: R, c: R, f0: R, ln_c_4f0: R, q: R, norm: CostNorm) -> Self {
        Server {
            w,
            c,
            four_f0: R::lit(4.0) * f0,
            ln_c_4f0,
            linear: norm == CostNorm::Linear,
            c0: R::ZERO,
            cap: q,
            cap0: q,
            vars: heapless::Vec::new(),
            mu_hint: Cell::new((R::NAN, R::NAN)),
        }
    }

    /// Empties the problem for the next server, with C2 budget `q` (one `Server`
    /// serves a whole slot: building one per server cost a memset of its
    /// variables' storage).
    pub fn reset(&mut self, q: R) {
        self.c0 = R::ZERO;
        self.cap = q;
        self.cap0 = q;
        self.vars.clear();
        self.mu_hint.set((R::NAN, R::NAN));
    }

    /// Adds a user's constant costs, and a variable if it has previous data.
    pub fn add_user(&mut self, alpha: &Alpha<R>, user: &UserTerms<R>) {
        self.c0 += user.total0;
        self.cap -= user.cmp0;
        self.cap0 = self.cap;
        let p = user.p;
        if p <= R::ZERO {
            return; // no previous data: γ changes nothing, report 0
        }
        let Alpha {
            a1,
            a2,
            a3,
            bits_per_sample,
        } = *alpha;
        let v = user.v;
        let dx = a3 * p / bits_per_sample;
        let a = p * (user.mig_per_bit + user.cmp_per_bit);
        let b = p * user.cmp_per_bit;
        let free = a > R::ZERO;
        let mut var = Var {
            user: user.user,
            v,
            a1,
            a2,
            x0: a3 * user.d / bits_per_sample,
            dx,
            ln_k: (self.w * a1 * a2 * v * dx).ln(),
            a,
            ln_a: a.ln(),
            b,
            // Costless data (a = 0, hence b = 0) only adds utility: take all of it.
            gamma: if free { R::ZERO } else { R::ONE },
            free,
            ln_g0: R::ZERO,
            ln_g1: R::ZERO,
            t1: R::ZERO,
            xv0: R::ZERO,
            xv1: R::ZERO,
            ends: Cell::new([R::NAN; 3]),
            warm: Cell::new(R::ZERO),
        };
        let t0 = var.x0.ln();
        var.xv0 = (v * t0).exp();
        var.ln_g0 = var.ln_g_at(t0, var.xv0);
        var.t1 = var.x(R::ONE).ln();
        var.xv1 = (v * var.t1).exp();
        var.ln_g1 = var.ln_g_at(var.t1, var.xv1);
        var.warm.set(var.t1);
        // Capacity is U and a server never has more users than the slot: cannot fail.
        let _ = self.vars.push(var);
    }

    /// Writes the chosen γ of every variable into the slot-wide vector, by `widen`
    /// (the identity for the exact solver).
    pub fn write<T>(&self, gamma: &mut [T], widen: impl Fn(R) -> T) {
        for var in &self.vars {
            if let Some(g) = gamma.get_mut(var.user) {
                *g = widen(var.gamma);
            }
        }
    }

    /// c·Norm(C), Norm as [`crate::model::norm`] computes it.
    #[inline]
    pub fn h(&self, cost: R) -> R {
        if self.linear {
            self.c * (cost / self.four_f0)
        } else {
            self.c * (cost / self.four_f0).tanh()
        }
    }

    /// ln(c·Norm'(C)), the log of the marginal cost price at cost level C.
    #[inline]
    pub fn ln_price_at(&self, cost: R) -> R {
        if self.linear {
            self.ln_c_4f0
        } else {
            self.ln_c_4f0 - R::lit(2.0) * ln_cosh(cost / self.four_f0)
        }
    }

    /// Fixes users whose optimum is 0 or 1 by the price bounds (module docs, fact 2).
    pub fn prune(&mut self) {
        for _ in 0..=self.vars.len() {
            let (mut sum_a, mut sum_b) = (R::ZERO, R::ZERO);
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
                    var.gamma = R::ZERO;
                    var.free = false;
                    changed = true;
                } else if !face_possible && var.ln_g1 - ln_a >= ln_hi {
                    var.gamma = R::ONE;
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
pub(super) fn bracketed_root<R: Real>(
    f: impl Fn(R) -> (R, R),
    mut lo: R,
    mut hi: R,
    start: R,
) -> R {
    let mut x = start.clamp(lo, hi);
    for _ in 0..MAX_NEWTON {
        let (fx, dfx) = f(x);
        if fx == R::ZERO {
            return x;
        }
        if fx > R::ZERO {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - fx / dfx;
        let next = if newton.is_finite() && newton > lo && newton < hi {
            newton
        } else {
            R::lit(0.5) * (lo + hi)
        };
        if R::root_converged(x, next, lo, hi) {
            return next;
        }
        x = next;
    }
    x
}
