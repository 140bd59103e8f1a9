//! `diten keygen`, `diten sign` and `diten verify`: the operator's side of signed
//! policies (see [`crate::signing`] for the files and
//! [`diten_controller::signature`] for the `.sig` format and what it proves).

use std::path::PathBuf;

use clap::Args;

use crate::signing::{self, Trust};

/// Arguments of `diten keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Folder for `policy-signing.key` (the secret key, mode 0600) and
    /// `policy-signing.pub`; created if missing. Existing key files are never
    /// overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `diten sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key file (`policy-signing.key`, from `diten keygen`).
    #[arg(long, value_name = "SECRET")]
    pub key: PathBuf,
    /// The policy's version, signed with it: gateways refuse versions below the
    /// lowest they accept (`--min-policy-version`), so an old policy cannot be
    /// rolled back in. Give each new policy for the same gateways a higher one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub policy_version: u32,
    /// The file to sign (a blob or an ONNX policy); the signature goes to FILE.sig.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Arguments of `diten verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The public key file (`policy-signing.pub`).
    #[arg(long, value_name = "PUBLIC")]
    pub pubkey: PathBuf,
    /// Refuse signatures with a lower `policy_version` (default 0: any).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_policy_version: u32,
    /// The signed file; its signature is read from FILE.sig.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `--pubkey` and `--min-policy-version` of the commands that use policy files.
#[derive(Debug, Args, Clone, Default)]
pub struct TrustArgs {
    /// Use a policy file only when FILE.sig beside it is a valid signature of it
    /// by this public key (`policy-signing.pub`); without it, policy files are
    /// used unchecked.
    #[arg(long, value_name = "PUBLIC")]
    pub pubkey: Option<PathBuf>,
    /// With --pubkey: refuse policies signed with a lower `policy_version`.
    #[arg(long, value_name = "N", requires = "pubkey", default_value_t = 0)]
    pub min_policy_version: u32,
}

impl TrustArgs {
    /// The key to check policy files with, if --pubkey was given.
    pub fn load(&self) -> anyhow::Result<Option<Trust>> {
        self.pubkey
            .as_deref()
            .map(|path| Trust::load(path, self.min_policy_version))
            .transpose()
            .map_err(|e| e.context("--pubkey"))
    }
}

/// Runs `diten keygen`.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let (secret, public) = signing::keygen(&args.out)?;
    eprintln!(
        "keygen: wrote {} (secret, keep it off the gateways) and {}",
        secret.display(),
        public.display()
    );
    Ok(())
}

/// Runs `diten sign`.
pub fn sign(args: &SignArgs) -> anyhow::Result<()> {
    let pair = signing::read_secret_key(&args.key).map_err(|e| e.context("--key"))?;
    let (sig, header) = signing::sign_file(&pair, &args.file, args.policy_version)?;
    eprintln!(
        "sign: wrote {} (policy_version {}, {} bytes, SHA-256 {})",
        sig.display(),
        header.policy_version,
        header.file_len,
        signing::hex(&header.sha256)
    );
    Ok(())
}

/// Runs `diten verify`: one line on stdout when the signature is good; an error
/// (one line, non-zero exit) when it is not.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let trust =
        Trust::load(&args.pubkey, args.min_policy_version).map_err(|e| e.context("--pubkey"))?;
    let bytes = std::fs::read(&args.file)
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context(format!("reading {}", args.file.display())))?;
    let header = trust.check(&args.file, &bytes)?;
    super::print_line(&format!(
        "{}: good signature by {} (policy_version {}, {} bytes, SHA-256 {})",
        args.file.display(),
        args.pubkey.display(),
        header.policy_version,
        header.file_len,
        signing::hex(&header.sha256)
    ))
}
