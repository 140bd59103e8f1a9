//! `diten infer`: one observation through a policy, with the controller's own
//! engine (SPEC §3.4). An ONNX model is converted to a blob in memory first, so
//! both kinds of file run the code the firmware runs.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use diten_controller::policy::{Policy, MAGIC};
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

/// Runs `diten infer`.
pub fn run(args: &InferArgs) -> anyhow::Result<()> {
    let blob = read_blob(&args.model, None)?;
    let policy =
        Policy::parse(&blob).map_err(|e| anyhow!("model {}: {e}", args.model.display()))?;
    let origin = Origin::of(&args.obs);
    let text = read_text(&args.obs, "observation")?;
    let obs = read_obs(&text, policy.obs_dim()).with_context(|| format!("observation {origin}"))?;
    let mut scratch = vec![0.0; policy.scratch_len()];
    let mut logits = vec![0.0; policy.logits_len()];
    policy
        .logits(&obs, &mut scratch, &mut logits)
        .map_err(|e| anyhow!("observation {origin}: {e}"))?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        bail!("the model overflowed: logits[{i}] is {}", logits[i]);
    }
    super::print_line(&serde_json::to_string(&Logits { logits: &logits })?)
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
