//! [`CostNorm`]: how the objective e prices a server's energy (SPEC §2.1b).
//!
//! A leaf module (it imports nothing from the crate): the parameters hold it
//! ([`Params::cost_norm`](crate::Params::cost_norm)) and [`Error`](crate::Error)
//! names it, and `params` imports the error vocabulary.

use serde::{Deserialize, Serialize};

/// How the objective e of eq. (22) turns a server's energy C_s into its cost term
/// (SPEC §2.1b).
///
/// The paper's Norm saturates: one migration (≈ 5 000 energy units) already puts a
/// server near Norm = 1, so e is blind to further energy on that server and rewards
/// piling costs onto a few servers. `Linear` is Norm's tangent at 0, C / (4 f0):
/// energy is priced linearly at a rate 1/(4 f0) per unit, so f0 is the exchange rate
/// between utility and energy, and the γ sub-problem becomes concave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostNorm {
    /// Norm(C) = 2 / (1 + e^{−C/(2 f0)}) − 1 = tanh(C / (4 f0)), eq. (22).
    #[default]
    Paper,
    /// C / (4 f0), Norm's tangent at 0.
    Linear,
}

impl CostNorm {
    /// The name `diten solve`'s `params` and the scenario TOML use (`"paper"`).
    pub const fn name(self) -> &'static str {
        match self {
            CostNorm::Paper => "paper",
            CostNorm::Linear => "linear",
        }
    }

    /// The one-byte code of the policy blob and the trace (0 = paper, 1 = linear).
    pub const fn code(self) -> u8 {
        match self {
            CostNorm::Paper => 0,
            CostNorm::Linear => 1,
        }
    }

    /// The inverse of [`CostNorm::code`].
    pub const fn from_code(code: u8) -> Option<CostNorm> {
        match code {
            0 => Some(CostNorm::Paper),
            1 => Some(CostNorm::Linear),
            _ => None,
        }
    }

    /// The inverse of [`CostNorm::name`].
    pub fn from_name(name: &str) -> Option<CostNorm> {
        match name {
            "paper" => Some(CostNorm::Paper),
            "linear" => Some(CostNorm::Linear),
            _ => None,
        }
    }
}

impl core::fmt::Display for CostNorm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
