//! Files written whole or not at all: every file diten writes (results, plots,
//! checkpoints, blobs, cards) goes through [`write_atomic_with`].

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

/// Creates `path` by `write`-ing to a temporary file beside it (same folder, same
/// extension, so writers that infer the format from the name still work), then
/// renaming it over `path`: a reader sees the old file or the whole new one, never
/// a part, even when the process is killed midway. The temporary file is flushed
/// to disk before the rename (so a crash of the machine cannot leave a renamed but
/// empty file either) and removed when `write` fails; one left by a killed process
/// starts with `.tmp-`.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp_name = format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        name.to_string_lossy()
    );
    let tmp = path.with_file_name(tmp_name);
    let result = write(&tmp).and_then(|()| {
        // Whatever `write` did (plotters and libtorch write through their own
        // handles), flush the data before the rename publishes it.
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]), flushed to disk
/// before the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))
    })
    .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diten-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("a.csv");
        write_atomic(&path, b"one\n").unwrap();
        write_atomic(&path, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(entries(&dir), ["a.csv"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("plot.png");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            // The temporary file keeps the extension and lies beside the target.
            assert_eq!(tmp.parent(), Some(dir.as_path()));
            assert_eq!(tmp.extension().unwrap(), "png");
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("renderer failed")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "renderer failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), ["plot.png"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_atomic_write_into_a_missing_folder_fails_with_the_path() {
        let dir = scratch("missing");
        let path = dir.join("no/such/folder/x.csv");
        let err = format!("{:#}", write_atomic(&path, b"x").unwrap_err());
        assert!(err.contains("x.csv"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
