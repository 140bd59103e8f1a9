//! Policy signing on the host: the key files, `FILE.sig` and the checks the `diten`
//! commands run before they use a policy file under `--pubkey`.
//!
//! The `.sig` format and the verification are the controller's
//! ([`diten_controller::signature`]), so a file this module accepts is one a
//! gateway accepts. Key files are text: 64 lowercase hexadecimal digits and a
//! newline, the 32-byte Ed25519 public key (`policy-signing.pub`) or the 32-byte
//! RFC 8032 secret seed (`policy-signing.key`, written with mode 0600). Signing is
//! deterministic (RFC 8032): the same key, file and version give the same `.sig`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use diten_controller::signature::{
    self, parse_hex32, sig_file, sig_path, PublicKey, SignedHeader, KEY_LEN,
};
use ed25519_compact::{KeyPair, Seed};

/// File name of the secret key `diten keygen` writes.
pub const SECRET_KEY_FILE: &str = "policy-signing.key";
/// File name of the public key `diten keygen` writes.
pub const PUBLIC_KEY_FILE: &str = "policy-signing.pub";

/// What a command checks before it uses a policy file: the signature by `key`,
/// at a `policy_version` of at least `min_version`.
#[derive(Clone, Copy, Debug)]
pub struct Trust {
    /// The public key the policies must be signed with.
    pub key: PublicKey,
    /// The lowest `policy_version` accepted.
    pub min_version: u32,
}

impl Trust {
    /// Reads the public key file `path`.
    pub fn load(path: &Path, min_version: u32) -> anyhow::Result<Trust> {
        Ok(Trust {
            key: read_public_key(path)?,
            min_version,
        })
    }

    /// Checks `bytes`, the content of the policy file `path`, against `path.sig`;
    /// returns the signed header. The error names both files.
    pub fn check(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<SignedHeader> {
        let sig = sig_path(path);
        let sig_bytes = std::fs::read(&sig).with_context(|| {
            format!(
                "{}: refused, no signature: reading {}",
                path.display(),
                sig.display()
            )
        })?;
        signature::verify(bytes, &sig_bytes, &self.key, self.min_version)
            .with_context(|| format!("{}: refused, {}", path.display(), sig.display()))
    }

    /// Reads the policy file `path` and checks it (see [`check`](Self::check)).
    pub fn read(&self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.check(path, &bytes)?;
        Ok(bytes)
    }
}

/// Reads `path`, checked by `trust` when there is one.
pub fn read_policy_file(path: &Path, trust: Option<&Trust>) -> anyhow::Result<Vec<u8>> {
    match trust {
        Some(trust) => trust.read(path),
        None => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
    }
}

/// 32 bytes from the key file `path`; `what` says which key the file should hold.
fn read_key_file(path: &Path, what: &str) -> anyhow::Result<[u8; KEY_LEN]> {
    let text = std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    parse_hex32(&text).map_err(|_| {
        anyhow::anyhow!(
            "{what} {}: not a diten key file (expected 64 hexadecimal digits, 32 bytes)",
            path.display()
        )
    })
}

/// Reads a public key file (`policy-signing.pub`).
pub fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    read_key_file(path, "public key").map(PublicKey::from_bytes)
}

/// Reads a secret key file (`policy-signing.key`).
pub fn read_secret_key(path: &Path) -> anyhow::Result<KeyPair> {
    let seed = read_key_file(path, "secret key")?;
    KeyPair::try_from_seed(Seed::new(seed))
        .map_err(|e| anyhow::anyhow!("secret key {}: {e}", path.display()))
}

/// Lowercase hexadecimal text of `bytes` and a newline: the key file format.
pub fn key_text(bytes: &[u8]) -> String {
    format!("{}\n", hex(bytes))
}

/// Writes a fresh key pair into `dir` (created if missing): `policy-signing.key`
/// (mode 0600) and `policy-signing.pub`; returns their paths. Refuses to
/// overwrite either file.
pub fn keygen(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = dir.join(SECRET_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&secret, &public] {
        if path.exists() {
            bail!(
                "{} already exists; remove it or choose another --out",
                path.display()
            );
        }
    }
    let pair = KeyPair::from_seed(Seed::generate());
    write_new(&secret, key_text(pair.sk.seed().as_ref()).as_bytes(), 0o600)?;
    write_new(&public, key_text(pair.pk.as_ref()).as_bytes(), 0o644)?;
    Ok((secret, public))
}

/// Creates `path` (never an existing file) with `mode` on Unix and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Signs the file `path` with `pair` at `policy_version`: writes `path.sig`
/// (through a temporary file and a rename) and returns its path and header.
pub fn sign_file(
    pair: &KeyPair,
    path: &Path,
    policy_version: u32,
) -> anyhow::Result<(PathBuf, SignedHeader)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let header = SignedHeader::new(&bytes, policy_version);
    let signature = pair.sk.sign(header.to_bytes(), None);
    let sig = sig_path(path);
    let mut tmp_name = sig.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    std::fs::write(&tmp, sig_file(&header, *signature))
        .and_then(|()| std::fs::rename(&tmp, &sig))
        .with_context(|| format!("writing {}", sig.display()))?;
    Ok((sig, header))
}

/// Lowercase hexadecimal text of `bytes`, without a newline.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
