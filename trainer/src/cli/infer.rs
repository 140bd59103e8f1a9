//! `diten infer`: a policy run by the controller's own engine. An ONNX model is
//! converted to a blob in memory first, so both kinds of file run the code the
//! firmware runs.
//!
//! `--obs` (SPEC §3.4): one observation through a `policy-v1` policy; prints
//! `{"logits": [U·S values]}`.
//!
//! `--instance` (SPEC §3.2a): one slot (§3.1's instance JSON) through a
//! size-agnostic `policy-v2` policy; prints
//! `{"inputs": {"users": [[…]], "servers": [[…]], "pairs": [[[…]]]}, "logits": [[…]], "decoded": [[…]]}`:
//! the graph's inputs as `general_inputs` builds them (`[U][5]`, `[S][1]`,
//! `[U][S][6]`), `logits` the network's base scores `[U][S]` (what the ONNX
//! graph computes from those inputs, so any ONNX runtime can be checked against
//! them), and `decoded` the logits after the controller's sequential decoding
//! (not part of the graph; `null` where a server is masked: unavailable), whose
//! row argmax is the decoder's server for each user. Values are f32 printed in
//! their shortest round-trip decimal.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context};
use diten_controller::policy::general::{
    decode, general_inputs, is_general_blob, PAIR_COLUMNS, SERVER_COLUMNS, USER_COLUMNS,
};
use diten_controller::policy::{GeneralPolicy, Policy, MAGIC};
use serde::{Deserialize, Serialize};

use super::input::{parse_json, read_text, Origin};
use super::InferArgs;
use crate::signing::Trust;

/// The input: one observation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Observation {
    /// Read as f64 so that values beyond the f32 range are reported, not turned into ∞.
    obs: Vec<f64>,
}

/// The output.
#[derive(Debug, Serialize)]
struct Logits<'a> {
    logits: &'a [f32],
}

/// The output of `--instance` (module docs).
#[derive(Debug, Serialize)]
struct SlotLogits<'a> {
    inputs: Inputs<'a>,
    logits: Vec<&'a [f32]>,
    decoded: Vec<&'a [f32]>,
}

/// The graph's inputs, nested.
#[derive(Debug, Serialize)]
struct Inputs<'a> {
    users: Vec<&'a [f32]>,
    servers: Vec<&'a [f32]>,
    pairs: Vec<Vec<&'a [f32]>>,
}

/// Runs `diten infer`.
pub fn run(args: &InferArgs) -> anyhow::Result<()> {
    let blob = read_blob(&args.model, None)?;
    let model = args.model.display();
    let (path, line) = match (&args.obs, &args.instance) {
        (Some(path), None) => {
            let policy = Policy::parse(&blob).map_err(|e| anyhow!("model {model}: {e}"))?;
            let text = read_text(path, "observation")?;
            (path, obs_text(&policy, &text))
        }
        (None, Some(path)) => {
            ensure!(
                is_general_blob(&blob),
                "--instance: model {model} is a policy-v1 model (fixed users and servers); \
                 give it --obs"
            );
            let policy = GeneralPolicy::parse(&blob).map_err(|e| anyhow!("model {model}: {e}"))?;
            let text = read_text(path, "instance")?;
            (path, instance_text(&policy, &text))
        }
        _ => bail!("give --obs FILE or --instance FILE"),
    };
    let what = if args.obs.is_some() {
        "observation"
    } else {
        "instance"
    };
    let line = line.with_context(|| format!("{what} {}", Origin::of(path)))?;
    super::print_line(&line)
}

/// `--obs`: the logits of the observation `text`, as one line of JSON.
fn obs_text(policy: &Policy<'_>, text: &str) -> anyhow::Result<String> {
    let obs = read_obs(text, policy.obs_dim())?;
    let mut scratch = vec![0.0; policy.scratch_len()];
    let mut logits = vec![0.0; policy.logits_len()];
    policy.logits(&obs, &mut scratch, &mut logits)?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        bail!("the model overflowed: logits[{i}] is {}", logits[i]);
    }
    Ok(serde_json::to_string(&Logits { logits: &logits })?)
}

/// `--instance`: the graph's inputs, base logits and decoded logits of the slot
/// `text` (module docs), as one line of JSON.
pub fn instance_text(policy: &GeneralPolicy<'_>, text: &str) -> anyhow::Result<String> {
    let (params, slot, _) = super::solve::read_instance(text)?;
    let (n, m) = (slot.users().len(), slot.servers().len());
    let mut users = vec![0.0; n * USER_COLUMNS.len()];
    let mut servers = vec![0.0; m * SERVER_COLUMNS.len()];
    let mut pairs = vec![0.0; n * m * PAIR_COLUMNS.len()];
    general_inputs(&params, &slot, &mut users, &mut servers, &mut pairs)?;
    let mut scratch = vec![0.0; policy.scratch_len(n, m)];
    let mut base = vec![0.0; n * m];
    policy.base_logits(&params, &slot, &mut scratch, &mut base)?;
    if let Some(i) = base.iter().position(|v| !v.is_finite()) {
        bail!(
            "the model overflowed: logits[{}][{}] is {}",
            i / m,
            i % m,
            base[i]
        );
    }
    let mut decoded = base.clone();
    decode(
        &params,
        &slot,
        &policy.model().decoder_weights(),
        &mut decoded,
    );
    let out = SlotLogits {
        inputs: Inputs {
            users: rows(&users, USER_COLUMNS.len()),
            servers: rows(&servers, SERVER_COLUMNS.len()),
            pairs: pairs
                .chunks(m * PAIR_COLUMNS.len())
                .map(|u| rows(u, PAIR_COLUMNS.len()))
                .collect(),
        },
        logits: rows(&base, m),
        decoded: rows(&decoded, m),
    };
    Ok(serde_json::to_string(&out)?)
}

/// `v` as rows of `width` values.
fn rows(v: &[f32], width: usize) -> Vec<&[f32]> {
    v.chunks(width).collect()
}

/// The blob of `path`: a `.onnx` file converted, a `.bin` file as it is; any other
/// name is a blob when it starts with the blob's magic bytes. With `trust`, the
/// file's bytes (ONNX or blob, before any conversion) must be signed (`path.sig`).
pub fn read_blob(path: &Path, trust: Option<&Trust>) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    if let Some(trust) = trust {
        trust.check(path, &bytes)?;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let onnx = match ext.as_deref() {
        Some("onnx") => true,
        Some("bin") => false,
        _ => !bytes.starts_with(&MAGIC),
    };
    if onnx {
        crate::onnx::onnx_to_blob(&bytes).with_context(|| format!("model {}", path.display()))
    } else {
        Ok(bytes)
    }
}

/// The observation of `text`: exactly `dim` values, each within the f32 range.
fn read_obs(text: &str, dim: usize) -> anyhow::Result<Vec<f32>> {
    let input: Observation = parse_json(text)?;
    if input.obs.len() != dim {
        bail!("obs: {} values, the model takes {dim}", input.obs.len());
    }
    input
        .obs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let x = v as f32;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(anyhow!("obs[{i}]: {v:e} is outside the f32 range"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_checked() {
        assert_eq!(read_obs(r#"{"obs": [1, 2.5]}"#, 2).unwrap(), [1.0, 2.5]);
        let err = |text: &str| format!("{:#}", read_obs(text, 2).unwrap_err());
        assert_eq!(err(r#"{"obs": [1]}"#), "obs: 1 values, the model takes 2");
        assert!(err(r#"{"obs": [1, 1e39]}"#).starts_with("obs[1]: "));
        assert!(err(r#"{"obs": [1, "a"]}"#).starts_with("obs[1]: "));
        assert!(err(r#"{"obs": [1, 2], "x": 1}"#).contains("unknown field `x`"));
    }
}
