//! `std` only: an exported ONNX policy (SPEC §3.2) loaded at run time and run by
//! tract-onnx, as an [`Engine`] for the same [`Controller`](crate::Controller)
//! decision code the blob engine drives.
//!
//! [`OnnxPolicy::load`] checks the metadata diten writes (`diten.format` =
//! [`FORMAT`], `diten.obs_layout` = [`OBS_LAYOUT`], `diten.users`,
//! `diten.servers`), the graph's one input `obs` `[batch, obs_dim]` and one output
//! `logits` `[batch, U·S]`, then lets tract optimise the graph for a batch of one.
//! Any ONNX operator tract supports is accepted: this is the path for models the
//! firmware converter (`diten convert`) does not take.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::Engine;
use crate::obs::{obs_dim, OBS_LAYOUT};
use crate::signature::{self, PublicKey, SignatureError};
use crate::{CostNorm, Error, MAX_SERVERS, MAX_USERS};

/// Value of the `diten.format` metadata of a policy.
pub const FORMAT: &str = "policy-v1";

/// The `metadata_props` keys the controller reads.
pub mod keys {
    /// The model format, [`FORMAT`](super::FORMAT).
    pub const FORMAT: &str = "diten.format";
    /// The observation layout id.
    pub const OBS_LAYOUT: &str = "diten.obs_layout";
    /// Users U, decimal.
    pub const USERS: &str = "diten.users";
    /// Servers S, decimal.
    pub const SERVERS: &str = "diten.servers";
    /// The objective the policy was trained for, [`CostNorm::name`](crate::CostNorm::name)
    /// (`paper` or `linear`); absent in files exported before it existed: `paper`.
    pub const COST_NORM: &str = "diten.cost_norm";
    /// `policy-v2` only: the [`DYN_FEATURES`](crate::policy::general::DYN_FEATURES)
    /// decoder weights, comma-separated f32 in Rust's shortest round-trip decimal
    /// (so they read back bit for bit); the graph gives the base logits, the
    /// controller decodes with these.
    pub const DECODER: &str = "diten.decoder";
}

/// Why an ONNX policy could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model, or tract cannot run it.
    Model {
        /// The file (`<bytes>` when loaded from memory).
        path: PathBuf,
        /// What tract said (its whole cause chain, on one line).
        message: String,
    },
    /// A `diten.*` metadata entry is missing or wrong.
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The model's signature file was refused (see [`crate::signature`]).
    Signature {
        /// The model file.
        path: PathBuf,
        /// Its signature file.
        signature: PathBuf,
        /// Why.
        error: SignatureError,
    },
}

impl core::fmt::Display for OnnxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OnnxError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            OnnxError::Model { path, message } => write!(f, "{}: {message}", path.display()),
            OnnxError::Metadata { path, key, problem } => {
                write!(f, "{}: metadata {key}: {problem}", path.display())
            }
            OnnxError::Signature {
                path,
                signature,
                error,
            } => write!(
                f,
                "{}: refused, {}: {error}",
                path.display(),
                signature.display()
            ),
        }
    }
}

impl std::error::Error for OnnxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OnnxError::Read { source, .. } => Some(source),
            OnnxError::Signature { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// An ONNX policy run by tract: an [`Engine`] for the [`Controller`](crate::Controller).
#[derive(Debug, Clone)]
pub struct OnnxPolicy {
    plan: Arc<TypedRunnableModel>,
    users: usize,
    servers: usize,
    cost_norm: CostNorm,
}

impl OnnxPolicy {
    /// Reads and checks the ONNX file `path` (see the module docs).
    pub fn load(path: &Path) -> Result<OnnxPolicy, OnnxError> {
        Self::load_bytes(&read_file(path)?, path)
    }

    /// [`load`](Self::load), but only after checking that `sig_path` (the `.sig`
    /// file, see [`crate::signature`]; usually [`signature::sig_path`]`(path)`)
    /// is `public_key`'s signature of exactly the bytes of `path` at a
    /// `policy_version` of at least `min_version`. A model that is unsigned,
    /// signed by another key, altered or too old is refused with
    /// [`OnnxError::Signature`] before tract reads it.
    pub fn load_signed(
        path: &Path,
        sig_path: &Path,
        public_key: &PublicKey,
        min_version: u32,
    ) -> Result<OnnxPolicy, OnnxError> {
        Self::load_bytes(&read_signed(path, sig_path, public_key, min_version)?, path)
    }

    /// [`load`](Self::load) from the bytes of a model; `path` names it in errors.
    pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<OnnxPolicy, OnnxError> {
        let model_error = |e| model_error(path, e);
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(model_error)?;
        let (users, servers, cost_norm) = read_metadata(&proto, path)?;
        let dim = obs_dim(users, servers);
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, dim]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| {
                let outputs = m.output_outlets()?.len();
                let shape = m.output_fact(0)?.shape.as_concrete().map(<[usize]>::to_vec);
                if outputs != 1 || shape.as_deref() != Some(&[1, users * servers]) {
                    return Err(TractError::msg(format!(
                        "the graph gives {outputs} outputs, the first of shape {shape:?}; \
                         expected one output `logits` of shape [1, {}] for {users} users and \
                         {servers} servers",
                        users * servers
                    )));
                }
                m.into_runnable()
            })
            .map_err(model_error)?;
        Ok(OnnxPolicy {
            plan,
            users,
            servers,
            cost_norm,
        })
    }
}

/// Checks `diten.format` and `diten.obs_layout`; returns U, S and the objective.
fn read_metadata(
    proto: &pb::ModelProto,
    path: &Path,
) -> Result<(usize, usize, CostNorm), OnnxError> {
    let meta = Meta { proto, path };
    meta.expect(keys::FORMAT, FORMAT, "this controller reads")?;
    meta.expect(
        keys::OBS_LAYOUT,
        OBS_LAYOUT,
        "this controller builds observations",
    )?;
    let count = |key: &'static str, max: usize| {
        let text = meta.get(key)?;
        match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(meta.fail(key, format!("`{text}` is not a count in 1..={max}"))),
        }
    };
    Ok((
        count(keys::USERS, MAX_USERS)?,
        count(keys::SERVERS, MAX_SERVERS)?,
        meta.cost_norm()?,
    ))
}

/// The `diten.*` metadata of a model, read for the engines of both formats.
pub(super) struct Meta<'a> {
    pub(super) proto: &'a pb::ModelProto,
    pub(super) path: &'a Path,
}

impl<'a> Meta<'a> {
    /// [`OnnxError::Metadata`] for `key`.
    pub(super) fn fail(&self, key: &'static str, problem: String) -> OnnxError {
        OnnxError::Metadata {
            path: self.path.to_owned(),
            key,
            problem,
        }
    }

    /// The value of `key`, if present.
    pub(super) fn find(&self, key: &str) -> Option<&'a str> {
        self.proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// The value of `key`; missing is an error.
    pub(super) fn get(&self, key: &'static str) -> Result<&'a str, OnnxError> {
        self.find(key)
            .ok_or_else(|| self.fail(key, "missing (not a policy exported by diten)".to_owned()))
    }

    /// `key` must be `want`; `reads` says what this controller does with it.
    pub(super) fn expect(
        &self,
        key: &'static str,
        want: &str,
        reads: &str,
    ) -> Result<(), OnnxError> {
        let got = self.get(key)?;
        if got == want {
            Ok(())
        } else {
            Err(self.fail(key, format!("`{got}`, {reads} `{want}`")))
        }
    }

    /// `diten.cost_norm`; `paper` when absent (files exported before it existed).
    pub(super) fn cost_norm(&self) -> Result<CostNorm, OnnxError> {
        match self.find(keys::COST_NORM) {
            None => Ok(CostNorm::Paper),
            Some(name) => CostNorm::from_name(name).ok_or_else(|| {
                self.fail(
                    keys::COST_NORM,
                    format!("`{name}` is no objective (expected `paper` or `linear`)"),
                )
            }),
        }
    }
}

/// tract's error as [`OnnxError::Model`]: its whole cause chain, on one line.
pub(super) fn model_error(path: &Path, e: TractError) -> OnnxError {
    OnnxError::Model {
        path: path.to_owned(),
        message: format!("{e:#}").replace('\n', " "),
    }
}

/// The bytes of `path`.
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, OnnxError> {
    std::fs::read(path).map_err(|source| OnnxError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The bytes of `path`, once `sig_path` is `public_key`'s signature of them at
/// a `policy_version` of at least `min_version` ([`OnnxError::Signature`] if not).
pub(super) fn read_signed(
    path: &Path,
    sig_path: &Path,
    public_key: &PublicKey,
    min_version: u32,
) -> Result<Vec<u8>, OnnxError> {
    let bytes = read_file(path)?;
    let sig = read_file(sig_path)?;
    signature::verify(&bytes, &sig, public_key, min_version).map_err(|error| {
        OnnxError::Signature {
            path: path.to_owned(),
            signature: sig_path.to_owned(),
            error,
        }
    })?;
    Ok(bytes)
}

impl Engine for OnnxPolicy {
    fn users(&self) -> usize {
        self.users
    }

    fn servers(&self) -> usize {
        self.servers
    }

    fn cost_norm(&self) -> CostNorm {
        self.cost_norm
    }

    /// tract keeps its own buffers: no scratch.
    fn scratch_len(&self) -> usize {
        0
    }

    /// Runs the graph on one observation (allocates: `std` only). Errors as
    /// [`Policy::logits`](super::Policy::logits); a failure inside tract (never
    /// seen once the plan is built) is [`Error::PolicyRun`].
    fn logits(&self, obs: &[f32], _scratch: &mut [f32], out: &mut [f32]) -> Result<(), Error> {
        let buffer = |buffer, expected: usize, got: usize| Error::PolicyBuffer {
            buffer,
            expected,
            got,
        };
        if obs.len() != self.obs_dim() {
            return Err(buffer("policy.obs", self.obs_dim(), obs.len()));
        }
        if out.len() != self.logits_len() {
            return Err(buffer("policy.logits", self.logits_len(), out.len()));
        }
        if let Some(index) = obs.iter().position(|v| !v.is_finite()) {
            return Err(Error::ObservationValue { index });
        }
        let input = Tensor::from_shape(&[1, obs.len()], obs).map_err(|_| Error::PolicyRun)?;
        let result = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|_| Error::PolicyRun)?;
        let logits = result
            .first()
            .and_then(|t| t.to_plain_array_view::<f32>().ok())
            .filter(|l| l.len() == out.len())
            .ok_or(Error::PolicyRun)?;
        for (o, &l) in out.iter_mut().zip(logits.iter()) {
            *o = l;
        }
        Ok(())
    }
}
