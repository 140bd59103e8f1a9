//! `diten convert`: an exported ONNX policy as the controller's firmware blob
//! (SPEC §3.3), either format (`policy-v1`, §3.2; `policy-v2`, §3.2a); and a
//! `policy-v2` blob back as ONNX (§3.2a), bit for bit the same weights.

use anyhow::Context;
use diten_controller::policy::general::is_general_blob;
use diten_controller::policy::MAGIC;

use super::ConvertArgs;
use crate::util::fs::write_atomic;

/// Runs `diten convert`: in a build without the `onnx` feature, the one-line
/// error [`NO_ONNX`](crate::onnx::NO_ONNX) before anything is read. A file that
/// starts with the blob's magic bytes is a blob and becomes ONNX; anything else
/// is read as ONNX and becomes a blob.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    anyhow::ensure!(cfg!(feature = "onnx"), "convert: {}", crate::onnx::NO_ONNX);
    let path = &args.model;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let out = if bytes.starts_with(&MAGIC) {
        anyhow::ensure!(
            is_general_blob(&bytes),
            "{}: a policy-v1 blob; only policy-v2 blobs convert to ONNX (a policy-v1 ONNX \
             comes from `diten export` of its checkpoint)",
            path.display()
        );
        let training = training_metadata(path)?;
        blob_to_onnx(&bytes, &training).with_context(|| format!("{}", path.display()))?
    } else {
        crate::onnx::onnx_to_blob(&bytes).with_context(|| format!("{}", path.display()))?
    };
    super::export::prepare_out(&args.out)?;
    write_atomic(&args.out, &out)?;
    eprintln!(
        "convert: {} -> {} ({} bytes)",
        path.display(),
        args.out.display(),
        out.len()
    );
    Ok(())
}

/// What the ONNX metadata says of a `policy-v2` blob's training: the blob itself
/// knows nothing of it, so it comes from the `config.toml` that `diten
/// train-general` writes beside `policy.bin` in its run folder. Algorithm
/// `general-imitation` or `general-rl` (a `--fine-tune` run), the seed of the
/// episodes' draw, and the whole config as the scenario (the mix of sizes, φ
/// and churn it drew from); `unknown` for each without that file, as `diten
/// export` writes them for a checkpoint without its run's config. A config that
/// is there but unreadable is an error naming it.
fn training_metadata(blob: &std::path::Path) -> anyhow::Result<[(&'static str, String); 3]> {
    use crate::onnx::keys;
    let config = blob
        .parent()
        .map(|d| d.join("config.toml"))
        .filter(|p| p.is_file());
    let Some(config) = config else {
        let unknown = || "unknown".to_owned();
        return Ok([
            (keys::ALGO, unknown()),
            (keys::SCENARIO, unknown()),
            (keys::SEED, unknown()),
        ]);
    };
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let value: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", config.display()))?;
    // A fine-tuning run records its draw under `episodes`.
    let (algo, draw) = match value.get("episodes").and_then(toml::Value::as_table) {
        Some(draw) if value.contains_key("fine_tune") => ("general-rl", draw),
        _ => ("general-imitation", &value),
    };
    let seed = draw
        .get("seed")
        .and_then(toml::Value::as_integer)
        .with_context(|| format!("{}: no integer `seed`", config.display()))?;
    Ok([
        (keys::ALGO, algo.to_owned()),
        (keys::SCENARIO, text),
        (keys::SEED, seed.to_string()),
    ])
}

/// A `policy-v2` blob as ONNX, with `training` ([`training_metadata`]) and the
/// evaluation `none` as metadata.
#[cfg(feature = "onnx")]
fn blob_to_onnx(blob: &[u8], training: &[(&'static str, String); 3]) -> anyhow::Result<Vec<u8>> {
    let mut metadata: Vec<(String, String)> = training
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    metadata.push((crate::onnx::keys::EVALUATION.to_owned(), "none".to_owned()));
    crate::onnx::general::blob_to_onnx(blob, &metadata)
}

#[cfg(not(feature = "onnx"))]
fn blob_to_onnx(_blob: &[u8], _training: &[(&'static str, String); 3]) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!("{}", crate::onnx::NO_ONNX)
}
