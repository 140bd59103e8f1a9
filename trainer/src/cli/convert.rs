//! `diten convert`: an exported ONNX policy as the controller's firmware blob
//! (SPEC §3.3).

use anyhow::Context;

use super::ConvertArgs;
use crate::util::fs::write_atomic;

/// Runs `diten convert`: in a build without the `onnx` feature, the one-line
/// error [`NO_ONNX`](crate::onnx::NO_ONNX) before anything is read.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    anyhow::ensure!(cfg!(feature = "onnx"), "convert: {}", crate::onnx::NO_ONNX);
    let path = &args.model;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let blob = crate::onnx::onnx_to_blob(&bytes).with_context(|| format!("{}", path.display()))?;
    super::export::prepare_out(&args.out)?;
    write_atomic(&args.out, &blob)?;
    eprintln!(
        "convert: {} -> {} ({} bytes)",
        path.display(),
        args.out.display(),
        blob.len()
    );
    Ok(())
}
