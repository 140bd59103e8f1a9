//! `onnx` only: a size-agnostic ONNX policy (SPEC §3.2a, `policy-v2`) loaded at
//! run time and run by tract-onnx, as an [`Engine`] for the same
//! [`Controller`](crate::Controller) decision code the blob engine
//! ([`GeneralPolicy`](super::GeneralPolicy)) drives.
//!
//! The graph takes the three inputs [`general_inputs`] builds, float32 with the
//! symbolic dimensions `U` and `S`: `users [U, 5]`, `servers [S, 1]`,
//! `pairs [U, S, 6]`, and gives one output `logits [U, S]`: the network's base
//! scores, normalisation folded in. The sequential decoding is controller code,
//! not part of the graph: [`decode`] with the decoder weights of the metadata
//! `keys::DECODER`, exactly as the blob engine decodes.
//!
//! [`OnnxGeneralPolicy::load`] checks the metadata (`diten.format` =
//! [`FORMAT_V2`], `diten.obs_layout` = [`OBS_LAYOUT_V2`], `diten.decoder`,
//! `diten.cost_norm`) and the graph's inputs and output (names, ranks, feature
//! widths), then lets tract optimise the graph once with U and S symbolic; each
//! slot runs it at its own U and S (allocating: `std` only).

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::general::{
    check_capacity, decode, general_inputs, DYN_FEATURES, MAX_GENERAL_SERVERS, MAX_GENERAL_USERS,
    OBS_LAYOUT_V2, PAIR_COLUMNS, SERVER_COLUMNS, USER_COLUMNS,
};
use super::onnx::{keys, model_error, read_file, read_signed, Meta, OnnxError};
use super::Engine;
use crate::signature::PublicKey;
use crate::{CostNorm, Error, Params, Slot};

/// Value of the `diten.format` metadata of a size-agnostic policy.
pub const FORMAT_V2: &str = "policy-v2";

/// The graph's inputs, in order, with their dimensions (`U`, `S` symbolic) and
/// feature widths.
pub const GENERAL_INPUTS: [(&str, &[&str], usize); 3] = [
    ("users", &["U"], USER_COLUMNS.len()),
    ("servers", &["S"], SERVER_COLUMNS.len()),
    ("pairs", &["U", "S"], PAIR_COLUMNS.len()),
];

/// The graph's output, `[U, S]`.
pub const GENERAL_OUTPUT: &str = "logits";

/// A `policy-v2` ONNX policy run by tract (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct OnnxGeneralPolicy {
    plan: Arc<TypedRunnableModel>,
    decoder: [f32; DYN_FEATURES],
    cost_norm: CostNorm,
}

impl OnnxGeneralPolicy {
    /// Reads and checks the ONNX file `path` (see the [module docs](self)).
    pub fn load(path: &Path) -> Result<OnnxGeneralPolicy, OnnxError> {
        Self::load_bytes(&read_file(path)?, path)
    }

    /// [`load`](Self::load) once `sig_path` verifies, as
    /// [`OnnxPolicy::load_signed`](super::OnnxPolicy::load_signed).
    pub fn load_signed(
        path: &Path,
        sig_path: &Path,
        public_key: &PublicKey,
        min_version: u32,
    ) -> Result<OnnxGeneralPolicy, OnnxError> {
        Self::load_bytes(&read_signed(path, sig_path, public_key, min_version)?, path)
    }

    /// [`load`](Self::load) from the bytes of a model; `path` names it in errors.
    pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<OnnxGeneralPolicy, OnnxError> {
        let model_error = |e| model_error(path, e);
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(model_error)?;
        let meta = Meta {
            proto: &proto,
            path,
        };
        meta.expect(keys::FORMAT, FORMAT_V2, "this engine reads")?;
        meta.expect(
            keys::OBS_LAYOUT,
            OBS_LAYOUT_V2,
            "this controller builds features",
        )?;
        let cost_norm = meta.cost_norm()?;
        let decoder = read_decoder(meta.get(keys::DECODER)?)
            .map_err(|problem| meta.fail(keys::DECODER, problem))?;
        check_io(&proto).map_err(|message| OnnxError::Model {
            path: path.to_owned(),
            message,
        })?;
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(model_error)?;
        Ok(OnnxGeneralPolicy {
            plan,
            decoder,
            cost_norm,
        })
    }

    /// The decoder weights of the metadata.
    pub fn decoder(&self) -> [f32; DYN_FEATURES] {
        self.decoder
    }

    /// The graph's base logits of `slot` (before decoding), user-major into
    /// `out[..U·S]`: tract run on [`general_inputs`]. Errors: more users or
    /// servers than a `policy-v2` model serves ([`Error::PolicyCapacity`]), `out`
    /// shorter than U·S ([`Error::WorkspaceLength`]), a feature that is not finite
    /// ([`Error::ObservationValue`]), a failure inside tract ([`Error::PolicyRun`]).
    pub fn base_logits<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let (n, m) = (slot.users().len(), slot.servers().len());
        check_capacity(n, m)?;
        let got = out.len();
        let out = out.get_mut(..n * m).ok_or(Error::WorkspaceLength {
            expected: n * m,
            got,
        })?;
        let mut users = vec![0.0f32; n * USER_COLUMNS.len()];
        let mut servers = vec![0.0f32; m * SERVER_COLUMNS.len()];
        let mut pairs = vec![0.0f32; n * m * PAIR_COLUMNS.len()];
        general_inputs(params, slot, &mut users, &mut servers, &mut pairs)?;
        let tensor = |shape: &[usize], values: &[f32]| {
            Tensor::from_shape(shape, values)
                .map(IntoTValue::into_tvalue)
                .map_err(|_| Error::PolicyRun)
        };
        let inputs = tvec!(
            tensor(&[n, USER_COLUMNS.len()], &users)?,
            tensor(&[m, SERVER_COLUMNS.len()], &servers)?,
            tensor(&[n, m, PAIR_COLUMNS.len()], &pairs)?,
        );
        let result = self.plan.run(inputs).map_err(|_| Error::PolicyRun)?;
        let logits = result
            .first()
            .and_then(|t| t.to_plain_array_view::<f32>().ok())
            .filter(|l| l.shape() == [n, m])
            .ok_or(Error::PolicyRun)?;
        for (o, &l) in out.iter_mut().zip(logits.iter()) {
            *o = l;
        }
        Ok(())
    }
}

/// `diten.decoder`: exactly [`DYN_FEATURES`] finite f32, comma-separated.
fn read_decoder(text: &str) -> Result<[f32; DYN_FEATURES], String> {
    let mut v = [0.0f32; DYN_FEATURES];
    let mut parts = text.split(',');
    for o in v.iter_mut() {
        let part = parts.next().unwrap_or("").trim();
        *o = part
            .parse::<f32>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`{text}` is not {DYN_FEATURES} comma-separated f32"))?;
    }
    match parts.next() {
        None => Ok(v),
        Some(_) => Err(format!("`{text}` has more than {DYN_FEATURES} values")),
    }
}

/// The graph's declared inputs are [`GENERAL_INPUTS`] (names, order, float32,
/// ranks, widths) and its one output is [`GENERAL_OUTPUT`] of rank 2, checked on
/// the file before tract analyses it, so a wrong shape is named as such.
fn check_io(proto: &pb::ModelProto) -> Result<(), String> {
    let graph = proto.graph.as_ref().ok_or("the model has no graph")?;
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|v| !graph.initializer.iter().any(|t| t.name == v.name))
        .collect();
    if inputs.len() != GENERAL_INPUTS.len() {
        return Err(format!(
            "the graph has {} inputs, expected 3 (`users`, `servers`, `pairs`)",
            inputs.len()
        ));
    }
    for (i, (v, (name, dims, width))) in inputs.iter().zip(GENERAL_INPUTS).enumerate() {
        if v.name != name {
            return Err(format!(
                "graph input {i} is `{}`, expected `{name}`",
                v.name
            ));
        }
        let (float, shape) = tensor_type(v);
        let width_ok = shape.last().map(String::as_str) == Some(width.to_string().as_str());
        if !float || shape.len() != dims.len() + 1 || !width_ok {
            return Err(format!(
                "graph input `{name}`: {} of shape [{}], expected float32 [{}, {width}]",
                if float { "float32" } else { "not float32" },
                shape.join(", "),
                dims.join(", ")
            ));
        }
    }
    match &graph.output[..] {
        [o] if o.name == GENERAL_OUTPUT && tensor_type(o).1.len() == 2 => Ok(()),
        outputs => Err(format!(
            "the graph's outputs are {}; expected one, `{GENERAL_OUTPUT}` [U, S]",
            outputs
                .iter()
                .map(|o| format!("`{}` [{}]", o.name, tensor_type(o).1.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether a value is a float32 tensor, and its dimensions as text (`U`, `6`, `?`).
fn tensor_type(v: &pb::ValueInfoProto) -> (bool, Vec<String>) {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return (false, Vec::new());
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(Value::DimValue(n)) => n.to_string(),
                    Some(Value::DimParam(p)) => p.clone(),
                    None => "?".to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    (
        t.elem_type == pb::tensor_proto::DataType::Float as i32,
        dims,
    )
}

/// A `policy-v2` ONNX model serves any slot up to [`MAX_GENERAL_USERS`] ×
/// [`MAX_GENERAL_SERVERS`] and reads the slot itself, as
/// [`GeneralPolicy`](super::GeneralPolicy) does.
impl Engine for OnnxGeneralPolicy {
    fn users(&self) -> usize {
        MAX_GENERAL_USERS
    }
    fn servers(&self) -> usize {
        MAX_GENERAL_SERVERS
    }
    fn cost_norm(&self) -> CostNorm {
        self.cost_norm
    }
    fn obs_dim(&self) -> usize {
        0
    }
    /// tract keeps its own buffers: no scratch.
    fn scratch_len(&self) -> usize {
        0
    }
    /// No flat observation: always [`Error::ObservationLength`] (use
    /// [`slot_logits`](Engine::slot_logits)).
    fn logits(&self, obs: &[f32], _scratch: &mut [f32], _out: &mut [f32]) -> Result<(), Error> {
        Err(Error::ObservationLength {
            expected: 0,
            got: obs.len(),
        })
    }
    fn size_agnostic(&self) -> bool {
        true
    }
    fn work_len(&self, _users: usize, _servers: usize) -> usize {
        0
    }
    /// [`base_logits`](OnnxGeneralPolicy::base_logits), then [`decode`].
    fn slot_logits<const U: usize, const S: usize>(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        _work: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.base_logits(params, slot, out)?;
        let n = slot.users().len() * slot.servers().len();
        if let Some(out) = out.get_mut(..n) {
            decode(params, slot, &self.decoder, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_metadata_is_read_exactly() {
        let v = [0.1f32, -2.5e-7, 3.0, f32::MIN_POSITIVE, -1.0];
        let text = v.map(|x| x.to_string()).join(",");
        assert_eq!(read_decoder(&text), Ok(v));
        assert!(read_decoder("1,2,3,4").unwrap_err().contains("not 5"));
        assert!(read_decoder("1,2,3,4,5,6")
            .unwrap_err()
            .contains("more than 5"));
        assert!(read_decoder("1,2,3,4,inf").is_err());
        assert!(read_decoder("1,2,x,4,5").is_err());
    }
}
