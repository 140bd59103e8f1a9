//! `diten export`: a training checkpoint as an ONNX policy (SPEC §3.2).

use std::path::Path;

use anyhow::Context;

use super::ExportArgs;

/// Runs `diten export`.
#[cfg(feature = "torch")]
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let mut extra = Vec::new();
    if let Some(path) = &args.evaluation {
        let text = super::input::read_text(path, "--evaluation")?;
        let summary: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("--evaluation {}: not JSON", path.display()))?;
        extra.push((
            crate::onnx::keys::EVALUATION.to_owned(),
            summary.to_string(),
        ));
    }
    prepare_out(&args.out)?;
    crate::onnx::export(&args.checkpoint, &args.out, &extra)?;
    eprintln!(
        "export: {} -> {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}

/// Runs `diten export` in a build without libtorch, which cannot read checkpoints.
#[cfg(not(feature = "torch"))]
pub fn run(_args: &ExportArgs) -> anyhow::Result<()> {
    Err(anyhow::anyhow!(
        "this diten was built without the `torch` feature, which reading checkpoints needs; \
         build with default features"
    ))
    .context("export")
}

/// Creates the folder of the output file `out` if missing; `out` must not be a folder.
pub(crate) fn prepare_out(out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !out.is_dir(),
        "--out {}: is a folder; give the file to write",
        out.display()
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out: creating {}", dir.display()))?;
    }
    Ok(())
}
