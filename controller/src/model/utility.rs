//! Data utility ρ of eq. (11)–(12).

use crate::params::Params;

/// Exponent v(φ) = α4·exp(−((α5 + φ)/α6)²) of eq. (12).
#[inline]
pub fn exponent(params: &Params, emd: f64) -> f64 {
    let [_, _, _, a4, a5, a6] = params.alpha;
    let z = (a5 + emd) / a6;
    a4 * crate::math::exp(-z * z)
}

/// Utility ρ = v(φ) − α1·exp(−α2·(α3·D̄/bits_per_sample)^v(φ)) of eq. (11), with
/// α3 per image (SPEC §2's deliberate difference) and D̄ in bits.
#[inline]
pub fn utility(params: &Params, emd: f64, total_bits: f64) -> f64 {
    let [a1, a2, a3, ..] = params.alpha;
    let v = exponent(params, emd);
    let x = a3 * total_bits / params.bits_per_sample;
    // x^v as exp(v·ln x) (x ≥ 0; ln 0 = −∞ gives 0), as the γ solver computes it:
    // within a few ulps of pow and about half its cost with the firmware's libm.
    v - a1 * crate::math::exp(-a2 * crate::math::exp(v * crate::math::ln(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(images: f64, emd: f64, expected: f64) {
        let got = utility(&Params::default(), emd, images * 784.0);
        assert!(
            (got - expected).abs() < 5e-6,
            "ρ({images} images, φ={emd}) = {got}, want {expected}"
        );
    }

    // Expected values: hand calculation (see SPEC §1 issue text and ARCHITECTURE.md),
    // e.g. v(0) = 0.9172·e^{−(0.0231/0.8366)²} = 0.916501, x = 0.12,
    // x^v = 0.143249, ρ = 0.916501 − 0.8862·e^{−0.979570} = 0.58374.
    #[test]
    fn hand_checked_values() {
        check(200.0, 0.0, 0.58374);
        check(2000.0, 0.0, 0.91623);
        check(1000.0, 0.2, 0.865869);
    }
}
