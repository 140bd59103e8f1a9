//! The learnt policy on the gateway: the firmware blob it ships in ([`blob`], SPEC
//! §3.3) and the engine that evaluates it ([`Policy`]).
//!
//! The policy is an actor network from the observation of [`crate::obs`] (layout
//! [`OBS_LAYOUT`](crate::obs::OBS_LAYOUT), [`obs_dim`](crate::obs::obs_dim)`(U, S)`
//! values) to `U·S` logits, user-major (`logits[u·S + s]`):
//!
//! 1. normalisation per feature, `x' = clamp((x − mean)·inv_std, −CLIP, CLIP)`
//!    with [`CLIP`] = 10;
//! 2. 1 to [`MAX_LAYERS`] dense layers `y = W·x + b` (`W` row-major
//!    `outputs × inputs`, torch's layout), `tanh` after every layer but the last,
//!    hidden widths 1 to [`MAX_WIDTH`];
//! 3. optionally a linear skip layer from `x'` straight to the output, added to the
//!    last layer's output;
//! 4. optionally a prior: `logits[k] += w_k · x'[i_k]`, one gathered input per
//!    logit (see [`PriorRef`]).
//!
//! Parsing a blob borrows the weights from it (a `&'static [u8]` in flash on the
//! firmware) and allocates nothing; evaluation needs a caller-provided scratch
//! buffer of [`Policy::scratch_len`] values (at most
//! [`max_scratch_len`]`(obs_dim)`). [`Policy::parse_signed`] parses a blob only
//! when its detached signature verifies (see [`crate::signature`]).
//!
//! ```
//! use diten_controller::policy::{encode, encoded_len, F32Le, LayerRef, ModelRef, Policy};
//! use diten_controller::CostNorm;
//!
//! // One user, one server: 11 observation values, one linear layer 11 → 1.
//! let zeros = [0u8; 4 * 11];
//! let ones: [u8; 4 * 11] = core::array::from_fn(|i| 1.0f32.to_le_bytes()[i % 4]);
//! let bias = 0.5f32.to_le_bytes();
//! let layer = LayerRef {
//!     inputs: 11,
//!     outputs: 1,
//!     weight: F32Le::new(&ones),
//!     bias: F32Le::new(&bias),
//! };
//! let model = ModelRef {
//!     users: 1,
//!     servers: 1,
//!     norm_mean: F32Le::new(&zeros),
//!     norm_inv_std: F32Le::new(&ones),
//!     layers: &[layer],
//!     skip: None,
//!     prior: None,
//!     cost_norm: CostNorm::Paper,
//! };
//! let mut blob = [0u8; 512];
//! let len = encode(&model, &mut blob)?;
//! assert_eq!(len, encoded_len(&model)?);
//!
//! let policy = Policy::parse(&blob[..len])?;
//! let obs = [0.25f32; 11];
//! let mut scratch = [0.0f32; 11];
//! assert_eq!(policy.scratch_len(), scratch.len());
//! let mut logits = [0.0f32; 1];
//! policy.logits(&obs, &mut scratch, &mut logits)?;
//! assert_eq!(logits, [11.0 * 0.25 + 0.5]);
//! # Ok::<(), diten_controller::Error>(())
//! ```

pub mod blob;
mod engine;
pub mod general;
mod signed;

pub use blob::{
    crc32, encode, encoded_len, BlobError, BlobField, F32Le, LayerRef, ModelRef, PriorRef, U32Le,
    FORMAT_VERSION, HEADER_LEN, LAYOUT_ID, MAGIC,
};
pub use engine::{max_scratch_len, Policy};
pub use general::{GeneralPolicy, GeneralRef};
#[cfg(feature = "onnx")]
pub use onnx::{OnnxError, OnnxPolicy};
#[cfg(feature = "onnx")]
pub use onnx_general::OnnxGeneralPolicy;

#[cfg(feature = "onnx")]
mod onnx;
#[cfg(feature = "onnx")]
pub mod onnx_general;

/// What the [`Controller`](crate::Controller) needs of a policy: its shape and a
/// way to compute its logits. [`Policy`] and [`GeneralPolicy`] (the blob engines,
/// `no_std`) implement it, and with the `onnx` feature `OnnxPolicy` and
/// `OnnxGeneralPolicy` (ONNX files run by tract-onnx).
pub trait Engine {
    /// Users U the policy decides for.
    fn users(&self) -> usize;
    /// Servers S the policy chooses among.
    fn servers(&self) -> usize;
    /// The objective the policy was trained for (SPEC §2.1b); the
    /// [`Controller`](crate::Controller) refuses to run it for another one unless
    /// told to.
    fn cost_norm(&self) -> CostNorm;
    /// Values of the observation: `obs_dim(U, S)`.
    fn obs_dim(&self) -> usize {
        crate::obs::obs_dim(self.users(), self.servers())
    }
    /// Logits the policy gives: U·S.
    fn logits_len(&self) -> usize {
        self.users() * self.servers()
    }
    /// Scratch values [`logits`](Self::logits) needs.
    fn scratch_len(&self) -> usize;
    /// `out[u·S + s]`: the logit of user `u` on server `s`, for an observation of
    /// [`obs_dim`](Self::obs_dim) values (see [`Policy::logits`] for the errors).
    fn logits(&self, obs: &[f32], scratch: &mut [f32], out: &mut [f32]) -> Result<(), Error>;
    /// Whether the policy serves every slot of at most [`users`](Self::users) ×
    /// [`servers`](Self::servers) (`policy-v2`, [`GeneralPolicy`]) instead of
    /// exactly that size (`policy-v1`).
    fn size_agnostic(&self) -> bool {
        false
    }
    /// Workspace values [`slot_logits`](Self::slot_logits) needs besides the
    /// logits for a slot of `users` × `servers`: by default the observation and
    /// the scratch.
    fn work_len(&self, users: usize, servers: usize) -> usize {
        let _ = (users, servers);
        self.obs_dim() + self.scratch_len()
    }
    /// The logits of `slot`, user-major into `out[..U·S]`, with `work` of
    /// [`work_len`](Self::work_len) values: by default the observation of
    /// [`crate::obs`] and [`logits`](Self::logits).
    fn slot_logits<const U: usize, const S: usize>(
        &self,
        params: &crate::Params,
        slot: &crate::Slot<U, S>,
        work: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let _ = params;
        let short = Error::WorkspaceLength {
            expected: self.obs_dim() + self.scratch_len(),
            got: work.len(),
        };
        let (obs, scratch) = work.split_at_mut_checked(self.obs_dim()).ok_or(short)?;
        crate::obs::observe(slot, obs)?;
        self.logits(obs, scratch, out)
    }
}

/// A `policy-v2` network serves any slot up to [`general::MAX_GENERAL_USERS`] ×
/// [`general::MAX_GENERAL_SERVERS`]; it reads the slot itself (pair features and
/// sequential decoding), not `policy-v1`'s flat observation.
impl Engine for GeneralPolicy<'_> {
    fn users(&self) -> usize {
        general::MAX_GENERAL_USERS
    }
    fn servers(&self) -> usize {
        general::MAX_GENERAL_SERVERS
    }
    fn cost_norm(&self) -> CostNorm {
        self.model().cost_norm
    }
    fn obs_dim(&self) -> usize {
        0
    }
    fn scratch_len(&self) -> usize {
        GeneralPolicy::scratch_len(self, self.users(), self.servers())
    }
    /// A `policy-v2` network has no flat observation: always
    /// [`Error::ObservationLength`] (use [`slot_logits`](Engine::slot_logits)).
    fn logits(&self, obs: &[f32], _scratch: &mut [f32], _out: &mut [f32]) -> Result<(), Error> {
        Err(Error::ObservationLength {
            expected: 0,
            got: obs.len(),
        })
    }
    fn size_agnostic(&self) -> bool {
        true
    }
    fn work_len(&self, users: usize, servers: usize) -> usize {
        GeneralPolicy::scratch_len(self, users, servers)
    }
    fn slot_logits<const U: usize, const S: usize>(
        &self,
        params: &crate::Params,
        slot: &crate::Slot<U, S>,
        work: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        GeneralPolicy::logits(self, params, slot, work, out)
    }
}

impl Engine for Policy<'_> {
    fn users(&self) -> usize {
        Policy::users(self)
    }
    fn servers(&self) -> usize {
        Policy::servers(self)
    }
    fn cost_norm(&self) -> CostNorm {
        self.model().cost_norm
    }
    fn obs_dim(&self) -> usize {
        Policy::obs_dim(self)
    }
    fn logits_len(&self) -> usize {
        Policy::logits_len(self)
    }
    fn scratch_len(&self) -> usize {
        Policy::scratch_len(self)
    }
    fn logits(&self, obs: &[f32], scratch: &mut [f32], out: &mut [f32]) -> Result<(), Error> {
        Policy::logits(self, obs, scratch, out)
    }
}

use crate::{CostNorm, Error};

/// Most dense layers a policy may have (the skip layer not counted).
pub const MAX_LAYERS: usize = 8;

/// Widest hidden layer a policy may have.
pub const MAX_WIDTH: usize = 512;

/// Normalised observation values are clipped to ±`CLIP`.
pub const CLIP: f32 = 10.0;

#[cfg(test)]
mod tests;
