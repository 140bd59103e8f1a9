//! One free user on a server: the exact analysis of fact 3 in the module docs.

use super::var::{bracketed_root, Server, Var};

impl<const U: usize> Server<U> {
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
    fn phi1(&self, var: &Var, g: f64) -> f64 {
        var.w_rho(self.w, var.x(g)) - self.h(self.c0 + var.a * g)
    }

    /// r(γ) = ln(marginal utility) − ln(marginal cost): sign φ' = sign r, r convex.
    fn r(&self, var: &Var, g: f64) -> f64 {
        var.ln_g(var.x(g)) - var.ln_a - self.ln_price_at(self.c0 + var.a * g)
    }

    /// (r', r'') at γ.
    fn dr(&self, var: &Var, g: f64) -> (f64, f64) {
        let x = var.x(g);
        if self.linear {
            // The price is constant: only the utility part of r moves.
            return (var.d_ln_g(x), var.d2_ln_g(x));
        }
        let y = (self.c0 + var.a * g) / self.four_f0;
        let s = var.a / self.four_f0;
        let th = crate::math::tanh(y);
        let sech2 = 1.0 - th * th;
        (
            var.d_ln_g(x) + 2.0 * th * s,
            var.d2_ln_g(x) + 2.0 * sech2 * s * s,
        )
    }

    fn best_single(&self, var: &Var) -> f64 {
        let gmax = if var.b > 0.0 {
            (self.cap / var.b).min(1.0)
        } else {
            1.0
        };
        if gmax <= 0.0 {
            return 0.0;
        }
        if self.c <= 0.0 {
            return gmax; // no cost term: utility only grows
        }
        let pick = |a: f64, b: f64| {
            if self.phi1(var, a) >= self.phi1(var, b) {
                a
            } else {
                b
            }
        };
        let r0 = self.r(var, 0.0);
        let r1 = self.r(var, gmax);
        if r0 <= 0.0 {
            // φ falls at 0; r convex so at most one up-crossing: an end is best.
            return pick(0.0, gmax);
        }
        let root_below =
            |hi: f64| bracketed_root(|g| (self.r(var, g), self.dr(var, g).0), 0.0, hi, 0.5 * hi);
        if r1 < 0.0 {
            // + then −: exactly one crossing, the unique maximum (check the ends anyway).
            let root = root_below(gmax);
            return pick(root, pick(0.0, gmax));
        }
        // r ≥ 0 at both ends: a dip below zero (a local max, then a local min) or none.
        let (d1, _) = self.dr(var, gmax);
        let (d0, _) = self.dr(var, 0.0);
        if d1 <= 0.0 || d0 >= 0.0 {
            return gmax; // r monotone on [0, gmax], so r ≥ 0 throughout: φ increasing
        }
        // Minimum of r: the root of the increasing r'.
        let m = bracketed_root(
            |g| {
                let (d, dd) = self.dr(var, g);
                (-d, -dd)
            },
            0.0,
            gmax,
            0.5 * gmax,
        );
        if self.r(var, m) >= 0.0 {
            return gmax;
        }
        let root = root_below(m);
        pick(root, gmax)
    }
}
