//! One free user on a server: the exact analysis of fact 3 in the module docs.

use super::real::Real;
use super::var::{bracketed_root, Server, Var};

impl<const U: usize, R: Real> Server<U, R> {
    /// Solves the server's single free variable exactly.
    pub(super) fn solve_single(&mut self) {
        let Some(idx) = self.vars.iter().position(|v| v.free) else {
            return;
        };
        let Some(var) = self.vars.get(idx).cloned() else {
            return;
        };
        let g = self.best_single(&var);
        if let Some(v) = self.vars.get_mut(idx) {
            v.gamma = g;
        }
    }

    /// φ along the single variable.
    fn phi1(&self, var: &Var<R>, g: R) -> R {
        var.w_rho(self.w, var.x(g)) - self.h(self.c0 + var.a * g)
    }

    /// r(γ) = ln(marginal utility) − ln(marginal cost): sign φ' = sign r, r convex.
    fn r(&self, var: &Var<R>, g: R) -> R {
        var.ln_g(var.x(g)) - var.ln_a - self.ln_price_at(self.c0 + var.a * g)
    }

    /// (r', r'') at γ.
    fn dr(&self, var: &Var<R>, g: R) -> (R, R) {
        let x = var.x(g);
        if self.linear {
            // The price is constant: only the utility part of r moves.
            return (var.d_ln_g(x), var.d2_ln_g(x));
        }
        let y = (self.c0 + var.a * g) / self.four_f0;
        let s = var.a / self.four_f0;
        let th = y.tanh();
        let sech2 = R::ONE - th * th;
        (
            var.d_ln_g(x) + R::lit(2.0) * th * s,
            var.d2_ln_g(x) + R::lit(2.0) * sech2 * s * s,
        )
    }

    fn best_single(&self, var: &Var<R>) -> R {
        let gmax = if var.b > R::ZERO {
            (self.cap / var.b).min(R::ONE)
        } else {
            R::ONE
        };
        if gmax <= R::ZERO {
            return R::ZERO;
        }
        if self.c <= R::ZERO {
            return gmax; // no cost term: utility only grows
        }
        let pick = |a: R, b: R| {
            if self.phi1(var, a) >= self.phi1(var, b) {
                a
            } else {
                b
            }
        };
        let r0 = self.r(var, R::ZERO);
        let r1 = self.r(var, gmax);
        if r0 <= R::ZERO {
            // φ falls at 0; r convex so at most one up-crossing: an end is best.
            return pick(R::ZERO, gmax);
        }
        let root_below = |hi: R| {
            bracketed_root(
                |g| (self.r(var, g), self.dr(var, g).0),
                R::ZERO,
                hi,
                R::lit(0.5) * hi,
            )
        };
        if r1 < R::ZERO {
            // + then −: exactly one crossing, the unique maximum (check the ends anyway).
            let root = root_below(gmax);
            return pick(root, pick(R::ZERO, gmax));
        }
        // r ≥ 0 at both ends: a dip below zero (a local max, then a local min) or none.
        let (d1, _) = self.dr(var, gmax);
        let (d0, _) = self.dr(var, R::ZERO);
        if d1 <= R::ZERO || d0 >= R::ZERO {
            return gmax; // r monotone on [0, gmax], so r ≥ 0 throughout: φ increasing
        }
        // Minimum of r: the root of the increasing r'.
        let m = bracketed_root(
            |g| {
                let (d, dd) = self.dr(var, g);
                (-d, -dd)
            },
            R::ZERO,
            gmax,
            R::lit(0.5) * gmax,
        );
        if self.r(var, m) >= R::ZERO {
            return gmax;
        }
        let root = root_below(m);
        pick(root, gmax)
    }
}
