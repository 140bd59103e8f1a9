//! The transcendental functions the model needs, in one place.
//!
//! By default they come from the `libm` crate (a port of musl's libm, the same
//! on every target, firmware included). With the feature `host-math` they come
//! from the platform's math library through `f64`'s methods, which on x86-64 glibc is about twice as
//! fast; the two agree to within a few ulps, far inside every tolerance of the
//! model (1e-6 on e). Bit-for-bit determinism holds per build, not across the two.

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
}

pub(crate) use imp::{exp, ln, ln_1p, log2, pow, tanh};
