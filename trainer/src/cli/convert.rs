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
        blob_to_onnx(&bytes).with_context(|| format!("{}", path.display()))?
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

/// A `policy-v2` blob as ONNX; the blob knows nothing of its training, so the
/// algorithm, scenario and seed are `unknown` and the evaluation `none`, as
/// `diten export` writes them for a checkpoint without its run's config.
#[cfg(feature = "onnx")]
fn blob_to_onnx(blob: &[u8]) -> anyhow::Result<Vec<u8>> {
    use crate::onnx::keys;
    let metadata: Vec<(String, String)> = [
        (keys::ALGO, "unknown"),
        (keys::SCENARIO, "unknown"),
        (keys::SEED, "unknown"),
        (keys::EVALUATION, "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    crate::onnx::general::blob_to_onnx(blob, &metadata)
}

#[cfg(not(feature = "onnx"))]
fn blob_to_onnx(_blob: &[u8]) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!("{}", crate::onnx::NO_ONNX)
}
