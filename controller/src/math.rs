//! The transcendental functions the model needs, in one place.
//!
//! By default they come from the `libm` crate (a port of musl's libm, the same
//! on every target, firmware included). With the feature `host-math` they come
//! from the platform's math library through `f64`'s methods, which on x86-64 glibc is about twice as
//! fast; the two agree to within a few ulps, far inside every tolerance of the
//! model (1e-6 on e). Bit-for-bit determinism holds per build, not across the two.
//! The f32 versions (`expf`, …) serve the γ solver's single-precision path
//! (`solver::solve_gamma_f32`) the same way: the `libm` crate's f32 functions, or
//! `f32`'s methods with `host-math`.

#[cfg(not(feature = "host-math"))]
mod imp {
    pub fn exp(x: f64) -> f64 {
        libm::exp(x)
    }
    pub fn ln(x: f64) -> f64 {
        libm::log(x)
    }
    pub fn ln_1p(x: f64) -> f64 {
        libm::log1p(x)
    }
    pub fn log2(x: f64) -> f64 {
        libm::log2(x)
    }
    pub fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }
    pub fn tanh(x: f64) -> f64 {
        libm::tanh(x)
    }
    pub fn expf(x: f32) -> f32 {
        libm::expf(x)
    }
    pub fn lnf(x: f32) -> f32 {
        libm::logf(x)
    }
    pub fn ln_1pf(x: f32) -> f32 {
        libm::log1pf(x)
    }
    pub fn powf(x: f32, y: f32) -> f32 {
        libm::powf(x, y)
    }
    pub fn tanhf(x: f32) -> f32 {
        libm::tanhf(x)
    }
    pub fn log2f(x: f32) -> f32 {
        libm::log2f(x)
    }
}

#[cfg(feature = "host-math")]
mod imp {
    pub fn exp(x: f64) -> f64 {
        x.exp()
    }
    pub fn ln(x: f64) -> f64 {
        x.ln()
    }
    pub fn ln_1p(x: f64) -> f64 {
        x.ln_1p()
    }
    pub fn log2(x: f64) -> f64 {
        x.log2()
    }
    pub fn pow(x: f64, y: f64) -> f64 {
        x.powf(y)
    }
    pub fn tanh(x: f64) -> f64 {
        x.tanh()
    }
    pub fn expf(x: f32) -> f32 {
        x.exp()
    }
    pub fn lnf(x: f32) -> f32 {
        x.ln()
    }
    pub fn ln_1pf(x: f32) -> f32 {
        x.ln_1p()
    }
    pub fn powf(x: f32, y: f32) -> f32 {
        x.powf(y)
    }
    pub fn tanhf(x: f32) -> f32 {
        x.tanh()
    }
    pub fn log2f(x: f32) -> f32 {
        x.log2()
    }
}

pub(crate) use imp::{exp, expf, ln, ln_1p, ln_1pf, lnf, log2, log2f, pow, powf, tanh, tanhf};
