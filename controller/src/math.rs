//! The transcendental functions the model needs, in one place.
//!
//! By default they come from the `libm` crate (a port of musl's libm, the same
//! on every target, firmware included). With the feature `host-math` they come
//! from the platform's math library through `f64`'s methods, faster on the host
//! (RESULTS.md has the measurement); the two agree to within a few ulps, far
//! inside every tolerance of the model (1e-6 on e). Bit-for-bit determinism holds per build, not across the two.
//! The f32 versions (`expf`, …) serve the γ solver's single-precision path
//! (`solver::solve_gamma_f32`), the firmware's: they are the `libm` crate's in
//! every build, so a host replays the firmware's f32 decisions bit for bit.

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
    // The f32 functions stay the `libm` crate's: the f32 path exists for the
    // firmware, and the host checks it (`diten replay --solver f32`) bit for bit.
    pub use libm::{expf, log1pf as ln_1pf, log2f, logf as lnf, powf, tanhf};
}

pub(crate) use imp::{exp, expf, ln, ln_1p, ln_1pf, lnf, log2, log2f, pow, powf, tanh, tanhf};
