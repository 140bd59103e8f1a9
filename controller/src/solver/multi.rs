//! Two or more free users on a server: branch and bound along the KKT curve.

use super::real::Real;
use super::var::Server;
use super::{MAX_MU_STEPS, MAX_SAMPLES, MAX_ULP_STEPS};

/// One point of the curve λ ↦ γ(λ): cost level z, utility G(z), slope G'(z) = λ.
#[derive(Clone, Copy, Debug, Default)]
struct Sample<R> {
    lambda: R,
    z: R,
    g: R,
    /// c·Norm(C0 + z).
    h: R,
    f: R,
    /// Upper bound of φ on the interval from the previous sample to this one.
    ub: R,
}

impl<const U: usize, R: Real> Server<U, R> {
    /// Fills `out` with γ(λ, μ) (and `ln_x` with ln x(γ), NaN at the ends) and
    /// returns (Σ b·γ − cap, its derivative in μ).
    fn fill(&self, lambda: R, mu: R, out: &mut Point<U, R>) -> (R, R) {
        let (mut used, mut slope) = (R::ZERO, R::ZERO);
        // Without C2's price, ln(λa) = ln λ + ln a: one log per call, not per user.
        let ln_lambda = lambda.ln();
        for ((v, o), t) in self
            .vars
            .iter()
            .zip(out.gamma.iter_mut())
            .zip(out.ln_x.iter_mut())
        {
            if !v.free {
                continue;
            }
            if lambda.is_infinite() {
                *o = R::ZERO;
                *t = R::NAN;
                continue;
            }
            let price = lambda * v.a + mu * v.b;
            let ln_price = if mu == R::ZERO {
                ln_lambda + v.ln_a
            } else {
                price.ln()
            };
            let (g, dg_dlnp, ln_x) = v.inverse_with_slope(ln_price);
            *o = g;
            *t = ln_x;
            used += v.b * g;
            slope += v.b * dg_dlnp * v.b / price;
        }
        (used - self.cap, slope)
    }

    /// Fills `out` with γ(λ): the maximiser of w·Σρ − λ·Σ a γ under C2 (μ ≥ 0 found
    /// by a monotone search when C2 binds). Returns (z, G).
    fn sample_into(&self, lambda: R, out: &mut Point<U, R>) -> (R, R) {
        let (h0, dh0) = self.fill(lambda, R::ZERO, out);
        if h0 > R::ZERO {
            self.solve_mu(lambda, -h0 / dh0, out);
        }
        let (mut z, mut gsum) = (R::ZERO, R::ZERO);
        for ((v, &g), &t) in self.vars.iter().zip(out.gamma.iter()).zip(out.ln_x.iter()) {
            if v.free {
                z += v.a * g;
                gsum += v.w_rho_sampled(self.w, g, t);
            }
        }
        (z, gsum)
    }

    /// C2 binds at μ = 0: finds μ > 0 with Σ b·γ(λ, μ) = cap (decreasing in μ) by
    /// safeguarded Newton inside a bracket; leaves `out` at the feasible end.
    fn solve_mu(&self, lambda: R, guess: R, out: &mut Point<U, R>) {
        if self.cap <= R::ZERO {
            for ((v, o), t) in self
                .vars
                .iter()
                .zip(out.gamma.iter_mut())
                .zip(out.ln_x.iter_mut())
            {
                if v.free && v.b > R::ZERO {
                    *o = R::ZERO;
                    *t = R::NAN;
                }
            }
            return;
        }
        // Above μ_max every user with b > 0 prices itself out (γ = 0, h = −cap < 0).
        let mut hi = R::NEG_INFINITY;
        for v in self.vars.iter().filter(|v| v.free && v.b > R::ZERO) {
            hi = hi.max((v.g0() - lambda * v.a) / v.b);
        }
        let mut steps = 0;
        let mut lo = R::ZERO;
        if !hi.is_finite() {
            // Some user has no current data (infinite marginal utility at γ = 0): grow.
            hi = R::lit(1e-9);
            while self.fill(lambda, hi, out).0 > R::ZERO && steps < MAX_MU_STEPS / 2 {
                lo = hi;
                hi = hi * R::lit(16.0);
                steps += 1;
            }
        }
        // Warm start: on the C2 face, a price change dλ is offset by about
        // dμ = −dλ·Σa/Σb; the previous binding sample is usually close.
        let (lam_prev, mu_prev) = self.mu_hint.get();
        let (mut sum_a, mut sum_b) = (R::ZERO, R::ZERO);
        for v in self.vars.iter().filter(|v| v.free && v.b > R::ZERO) {
            sum_a += v.a;
            sum_b += v.b;
        }
        let hint = mu_prev + (lam_prev - lambda) * sum_a / sum_b;
        let inside = |m: R| m.is_finite() && m > lo && m < hi;
        let mut mu = if inside(hint) {
            hint
        } else if inside(guess) {
            guess
        } else {
            R::lit(0.5) * (lo + hi)
        };
        let mut at_hi = false;
        let mut newton_gap = R::ZERO;
        while steps < MAX_MU_STEPS {
            let (h, dh) = self.fill(lambda, mu, out);
            steps += 1;
            if h > R::ZERO {
                lo = mu;
                at_hi = false;
                newton_gap = -h / dh;
            } else {
                hi = mu;
                at_hi = true;
                if h == R::ZERO {
                    break;
                }
            }
            let newton = mu - h / dh;
            let next = if newton.is_finite() && newton > lo && newton < hi {
                newton
            } else {
                R::lit(0.5) * (lo + hi)
            };
            if (next - mu).abs() <= R::MU_TOL * mu || hi - lo <= R::MU_WIDTH * hi {
                break;
            }
            mu = next;
        }
        if at_hi {
            self.mu_hint.set((lambda, mu));
            return;
        }
        // Newton stopped on the infeasible side (`out` holds γ at `lo`, where
        // Σ b·γ exceeds cap by a few ulps): step up from `lo` by twice the last
        // Newton step (at least an ulp), doubling the increment to the nearest feasible μ; `hi`, feasible but possibly far, is
        // only the last resort.
        let mut step = fmax(R::lit(2.0) * newton_gap, lo * R::EPSILON);
        if !(step.is_finite() && step > R::ZERO) {
            step = fmax(lo * R::EPSILON, R::MIN_POSITIVE);
        }
        for _ in 0..MAX_ULP_STEPS {
            let mu = lo + step;
            if mu >= hi {
                break;
            }
            if self.fill(lambda, mu, out).0 <= R::ZERO {
                self.mu_hint.set((lambda, mu));
                return;
            }
            lo = mu;
            step = step * R::lit(2.0);
        }
        self.fill(lambda, hi, out);
    }

    /// Upper bound of φ between two samples: tangents of the concave G from above,
    /// the chord of the concave H from below.
    fn upper_bound(&self, i: &Sample<R>, j: &Sample<R>) -> R {
        let width = j.z - i.z;
        if width <= R::POINT_WIDTH * (R::ONE + j.z.abs()) {
            return i.f.max(j.f) + (j.lambda + self.c / self.four_f0) * width.max(R::ZERO);
        }
        let (hi, hj) = (i.h, j.h);
        let bound_at = |z: R| {
            let tj = j.g + j.lambda * (z - j.z);
            let t = if i.lambda.is_finite() {
                tj.min(i.g + i.lambda * (z - i.z))
            } else {
                tj
            };
            t - (hi + (hj - hi) * (z - i.z) / width)
        };
        let mut ub = bound_at(i.z).max(bound_at(j.z));
        if i.lambda.is_finite() && i.lambda > j.lambda {
            let zx = (j.g - i.g + i.lambda * i.z - j.lambda * j.z) / (i.lambda - j.lambda);
            if zx > i.z && zx < j.z {
                ub = ub.max(bound_at(zx));
            }
        }
        ub
    }

    /// The concave case ([`crate::CostNorm::Linear`]): the price of cost is the
    /// constant λ = c / 4f0, so the optimum is the single point γ(λ) of the curve
    /// (KKT is sufficient for a concave problem). One sample, certified.
    pub(super) fn solve_linear(&mut self) {
        let mut point = Point {
            gamma: [R::ZERO; U],
            ln_x: [R::NAN; U],
        };
        let lambda = self.ln_price_at(self.c0).exp();
        self.sample_into(lambda, &mut point);
        for (v, &g) in self.vars.iter_mut().zip(point.gamma.iter()) {
            if v.free {
                v.gamma = g;
            }
        }
    }

    /// Branch and bound; returns (samples used, certified within `R::SERVER_TOL`, which is
    /// [`SERVER_TOL`](super::SERVER_TOL) in f64).
    ///
    /// The search starts on the price range that must contain λ* = c·Norm'(C*) and
    /// shrinks it by iterating the monotone map λ ↦ c·Norm'(C0 + z(λ)) from both
    /// ends (its extreme fixed points bound every stationary point).
    pub(super) fn solve_multi(&mut self) -> (usize, bool) {
        let mut bb = Bb::<U, R> {
            samples: heapless::Vec::new(),
            taken: 0,
            scratch: Point {
                gamma: [R::ZERO; U],
                ln_x: [R::NAN; U],
            },
            best_gamma: [R::ZERO; U],
            best_f: R::NEG_INFINITY,
        };
        // Summed from 0 in order (what f64's `Sum` does).
        let mut sum_a = R::ZERO;
        for v in self.vars.iter().filter(|v| v.free) {
            sum_a += v.a;
        }
        let price = |cost: R| self.ln_price_at(cost).exp();
        let (mut lam_hi, mut lam_lo) = (price(self.c0), price(self.c0 + sum_a));
        let mut top = bb.sample(self, lam_hi);
        let mut bottom = bb.sample(self, lam_lo);
        for _ in 0..TIGHTEN_STEPS {
            let (new_hi, new_lo) = (price(self.c0 + top.z), price(self.c0 + bottom.z));
            let moved = |old: R, new: R| (new - old).abs() > R::PRICE_MOVE * old;
            if new_lo >= new_hi {
                break; // a single fixed point: nothing left between the ends
            }
            if moved(lam_hi, new_hi) {
                lam_hi = new_hi;
                top = bb.sample(self, lam_hi);
            }
            if moved(lam_lo, new_lo) {
                lam_lo = new_lo;
                bottom = bb.sample(self, lam_lo);
            }
            if !moved(lam_hi, new_hi) && !moved(lam_lo, new_lo) {
                break;
            }
        }
        bb.insert(self, top);
        bb.insert(self, bottom);
        let mut certified = false;
        while bb.taken < MAX_SAMPLES {
            let mut worst = (R::NEG_INFINITY, 0usize);
            for k in 1..bb.samples.len() {
                if let Some(s) = bb.samples.get(k) {
                    if s.ub > worst.0 {
                        worst = (s.ub, k);
                    }
                }
            }
            if worst.0 <= bb.best_f + R::SERVER_TOL {
                certified = true;
                break;
            }
            let (Some(a), Some(b)) = (
                bb.samples.get(worst.1.wrapping_sub(1)),
                bb.samples.get(worst.1),
            ) else {
                break;
            };
            let slope = (b.g - a.g) / (b.z - a.z);
            let lambda = if slope.is_finite() && slope >= b.lambda && slope <= a.lambda {
                slope
            } else {
                R::lit(0.5) * (a.lambda + b.lambda)
            };
            let s = bb.sample(self, lambda);
            bb.insert(self, s);
        }
        for (v, &g) in self.vars.iter_mut().zip(bb.best_gamma.iter()) {
            if v.free {
                v.gamma = g;
            }
        }
        (bb.taken, certified)
    }
}

/// Iterations of the price-range contraction before branch and bound.
const TIGHTEN_STEPS: usize = 1;

/// One point of the curve: γ per variable and ln x(γ) (NaN at the ends of [0, 1]).
struct Point<const U: usize, R> {
    gamma: [R; U],
    ln_x: [R; U],
}

/// Branch-and-bound state: samples sorted by z and the best point so far.
struct Bb<const U: usize, R> {
    samples: heapless::Vec<Sample<R>, MAX_SAMPLES>,
    taken: usize,
    scratch: Point<U, R>,
    best_gamma: [R; U],
    best_f: R,
}

impl<const U: usize, R: Real> Bb<U, R> {
    /// Evaluates the curve at λ and keeps the best point.
    fn sample(&mut self, server: &Server<U, R>, lambda: R) -> Sample<R> {
        let (z, g) = server.sample_into(lambda, &mut self.scratch);
        let h = server.h(server.c0 + z);
        let f = g - h;
        self.taken += 1;
        if f > self.best_f {
            self.best_f = f;
            self.best_gamma = self.scratch.gamma;
        }
        Sample {
            lambda,
            z,
            g,
            h,
            f,
            ub: R::NEG_INFINITY,
        }
    }

    /// Inserts a sample keeping z order and refreshes the bounds of its two intervals.
    fn insert(&mut self, server: &Server<U, R>, s: Sample<R>) {
        let pos = self
            .samples
            .iter()
            .position(|t| t.z > s.z)
            .unwrap_or(self.samples.len());
        if self.samples.insert(pos, s).is_err() {
            return; // full: the loop stops at MAX_SAMPLES anyway
        }
        for k in [pos, pos + 1] {
            if k == 0 {
                continue;
            }
            if let (Some(&a), Some(&b)) = (self.samples.get(k - 1), self.samples.get(k)) {
                if let Some(t) = self.samples.get_mut(k) {
                    t.ub = server.upper_bound(&a, &b);
                }
            }
        }
    }
}

/// libm's fmax for either precision: the larger of two numbers, the other one if
/// either is NaN.
#[inline]
fn fmax<R: Real>(x: R, y: R) -> R {
    if x.is_nan() || x < y {
        y
    } else {
        x
    }
}
