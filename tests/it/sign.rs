//! Signed policies end to end: `diten keygen`, `sign`, `verify`, `--pubkey` on the
//! commands that use policy files, the shipped `.sig` files, and the controller's
//! verification on the shipped blobs.
//!
//! Expectations are what the issue asks (refused or not, one line naming the
//! file), and the shipped signatures are also checked by an independent
//! implementation: Python's `cryptography` package (Ed25519) and `hashlib`.

use std::path::{Path, PathBuf};
use std::process::Command;

use diten_controller::policy::general::is_general_blob;
use diten_controller::policy::{Engine, GeneralPolicy, OnnxPolicy, Policy};
use diten_controller::signature::{self, PublicKey, SignatureError, SIG_FILE_LEN};
use diten_controller::Error;

use crate::{diten, ok, one_line_error, scratch_dir};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn test_pubkey() -> PathBuf {
    root().join("keys/test/policy-signing.pub")
}

fn test_secret() -> PathBuf {
    root().join("keys/test/policy-signing.key")
}

fn sig_of(path: &Path) -> PathBuf {
    signature::sig_path(path)
}

/// Every shipped policy file: the blobs and the ONNX models.
fn shipped() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("onnx-models")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            // Every folder ships a blob, and each an ONNX model too.
            files.push(dir.join("policy.bin"));
            let onnx = dir.join("policy.onnx");
            if onnx.is_file() {
                files.push(onnx);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 2, "no shipped models found");
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn shipped_signatures_verify_with_the_test_key() {
    let key = PublicKey::parse(&read(&test_pubkey())).unwrap();
    for file in shipped() {
        let bytes = read(&file);
        let sig = read(&sig_of(&file));
        let header = signature::verify(&bytes, &sig, &key, 1)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(header.file_len, bytes.len() as u64);
        let out = ok(diten()
            .args(["verify", "--pubkey"])
            .arg(test_pubkey())
            .arg(&file)
            .output()
            .unwrap());
        assert!(
            out.starts_with(&format!("{}: good signature", file.display())),
            "{out}"
        );
        if file.extension().is_some_and(|e| e == "bin") {
            if is_general_blob(&bytes) {
                // policy-v2 (SPEC §3.2a): serves any size up to its capacity.
                let policy = GeneralPolicy::parse(&bytes).unwrap();
                assert_eq!(Engine::users(&policy), 64);
            } else {
                let policy = Policy::parse_signed(&bytes, &sig, &key, 1).unwrap();
                assert_eq!(policy.users(), 20);
            }
        }
    }
    // Signing is deterministic (RFC 8032): the committed test key and the
    // documented command (`make sign-models`) reproduce a shipped .sig exactly.
    let dir = scratch_dir("sign", "resign");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("policy.bin");
    let original = root().join("onnx-models/u20-s15/policy.bin");
    std::fs::copy(&original, &copy).unwrap();
    ok(diten()
        .args(["sign", "--policy-version", "1", "--key"])
        .arg(test_secret())
        .arg(&copy)
        .output()
        .unwrap());
    assert_eq!(read(&sig_of(&copy)), read(&sig_of(&original)));
    // The ONNX path of the controller, on the smallest model.
    let onnx = root().join("onnx-models/u20-s15/policy.onnx");
    OnnxPolicy::load_signed(&onnx, &sig_of(&onnx), &key, 1).unwrap();
}

/// The shipped signatures checked without diten's code: SHA-256 by `hashlib`,
/// Ed25519 by `cryptography` (skipped, with a note, where Python or the package
/// is missing).
#[test]
fn shipped_signatures_verify_with_python_cryptography() {
    let script = r#"
import hashlib, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(open(sys.argv[1]).read().strip()))
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    sig = open(path + ".sig", "rb").read()
    assert len(sig) == 114 and sig[:4] == b"DTNS", path
    version, policy_version, file_len = struct.unpack("<HIQ", sig[4:18])
    assert version == 1 and file_len == len(data), path
    assert sig[18:50] == hashlib.sha256(data).digest(), path
    key.verify(sig[50:], sig[:50])  # raises InvalidSignature
    # A flipped bit in the signed header is refused too.
    bad = bytearray(sig[:50]); bad[6] ^= 1
    try:
        key.verify(sig[50:], bytes(bad)); sys.exit(path + ": altered header verified")
    except Exception as e:
        assert type(e).__name__ == "InvalidSignature", e
print("ok")
"#;
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: python3 with the `cryptography` package is not available");
        return;
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(test_pubkey())
        .args(shipped())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bit flips at positions spread over a whole shipped blob (1 MB), and every
/// truncation of its signature, are refused by the controller without a panic.
#[test]
fn altered_shipped_blob_or_signature_is_refused() {
    let key = PublicKey::parse(&read(&test_pubkey())).unwrap();
    let file = root().join("onnx-models/u20-s15/policy.bin");
    let blob = read(&file);
    let sig = read(&sig_of(&file));
    // 61 positions: the header, the last byte and a stride through the payload
    // (a prime, so the bit within the byte varies).
    let mut positions: Vec<usize> = (0..40).map(|i| i * 8 + i % 8).collect();
    positions.extend((1..20).map(|i| i * (blob.len() * 8 / 20) + i % 8));
    positions.push(blob.len() * 8 - 1);
    let mut bad = blob.clone();
    for bit in positions {
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            Policy::parse_signed(&bad, &sig, &key, 0).err(),
            Some(Error::Signature(SignatureError::Digest)),
            "bit {bit}"
        );
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    for len in [0, 1, 49, 50, 113] {
        assert_eq!(
            signature::verify(&blob, &sig[..len], &key, 0),
            Err(SignatureError::Length {
                expected: SIG_FILE_LEN,
                got: len
            })
        );
    }
    // Another shipped blob's signature.
    let other = read(&sig_of(&root().join("onnx-models/general/policy.bin")));
    assert!(matches!(
        signature::verify(&blob, &other, &key, 0),
        Err(SignatureError::FileLength { .. } | SignatureError::Digest)
    ));
}

#[test]
fn keygen_sign_verify_round_trip() {
    let dir = scratch_dir("sign", "round-trip");
    std::fs::create_dir_all(&dir).unwrap();
    ok(diten()
        .args(["keygen", "--out"])
        .arg(dir.join("keys"))
        .output()
        .unwrap());
    let secret = dir.join("keys/policy-signing.key");
    let public = dir.join("keys/policy-signing.pub");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key must be private");
    }
    for key in [&secret, &public] {
        let text = String::from_utf8(read(key)).unwrap();
        assert!(
            text.len() == 65
                && text.ends_with('\n')
                && text[..64].bytes().all(|b| b.is_ascii_hexdigit()),
            "{text:?}"
        );
    }
    // keygen never overwrites a key.
    one_line_error(
        diten()
            .args(["keygen", "--out"])
            .arg(dir.join("keys"))
            .output()
            .unwrap(),
        "already exists",
    );

    let file = dir.join("policy.bin");
    std::fs::copy(root().join("onnx-models/u20-s15/policy.bin"), &file).unwrap();
    ok(diten()
        .args(["sign", "--policy-version", "5", "--key"])
        .arg(&secret)
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(read(&sig_of(&file)).len(), SIG_FILE_LEN);
    let verify = |min: &str| {
        diten()
            .args(["verify", "--min-policy-version", min, "--pubkey"])
            .arg(&public)
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = ok(verify("5"));
    assert!(
        out.contains("good signature") && out.contains("policy_version 5"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
    one_line_error(verify("6"), "5 is older than the lowest accepted, 6");

    // The test key did not sign it.
    let other = diten()
        .args(["verify", "--pubkey"])
        .arg(test_pubkey())
        .arg(&file)
        .output()
        .unwrap();
    one_line_error(other, "does not verify with this public key");

    // A flipped bit in the file, then in the signature, then a truncated
    // signature, a missing one and another file's.
    let name = file.display().to_string();
    let pristine = read(&file);
    let mut bad = pristine.clone();
    bad[pristine.len() / 2] ^= 0x10;
    std::fs::write(&file, &bad).unwrap();
    one_line_error(verify("0"), &format!("{name}: refused"));
    one_line_error(verify("0"), "not the one signed");
    std::fs::write(&file, &pristine).unwrap();
    let sig = read(&sig_of(&file));
    let mut bad = sig.clone();
    bad[80] ^= 1;
    std::fs::write(sig_of(&file), &bad).unwrap();
    one_line_error(verify("0"), "does not verify");
    std::fs::write(sig_of(&file), &sig[..100]).unwrap();
    one_line_error(verify("0"), "100 bytes, a diten signature file has 114");
    std::fs::remove_file(sig_of(&file)).unwrap();
    one_line_error(verify("0"), "no signature");
    std::fs::copy(
        sig_of(&root().join("onnx-models/general/policy.bin")),
        sig_of(&file),
    )
    .unwrap();
    one_line_error(verify("0"), &format!("{name}: refused"));
}

#[test]
fn bad_key_files_are_one_line_errors_naming_the_file() {
    let dir = scratch_dir("sign", "bad-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    let file = root().join("onnx-models/u20-s15/policy.bin");
    let name = bad.display().to_string();
    let out = diten()
        .args(["sign", "--key"])
        .arg(&bad)
        .arg(dir.join("nothing.bin"))
        .output()
        .unwrap();
    one_line_error(
        out,
        &format!("--key: secret key {name}: not a diten key file"),
    );
    let out = diten()
        .args(["verify", "--pubkey"])
        .arg(&bad)
        .arg(&file)
        .output()
        .unwrap();
    one_line_error(
        out,
        &format!("--pubkey: public key {name}: not a diten key file"),
    );
    let missing = dir.join("missing.pub");
    let out = diten()
        .args([
            "replay",
            "--trace",
            "firmware-example/trace.bin",
            "--pubkey",
        ])
        .arg(&missing)
        .arg("--policy")
        .arg(&file)
        .current_dir(root())
        .output()
        .unwrap();
    one_line_error(out, &format!("reading public key {}", missing.display()));
}

#[test]
fn commands_check_policy_signatures_under_pubkey() {
    let dir = scratch_dir("sign", "commands");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = root().join("onnx-models/u20-s15/policy.bin");
    // A churn-free trace of 20 users (the firmware's has churn, which a flat
    // 20-user policy cannot decide).
    let trace = dir.join("trace.bin");
    ok(diten()
        .args([
            "trace",
            "--servers",
            "15",
            "--slots",
            "5",
            "--seed",
            "1",
            "--out",
        ])
        .arg(&trace)
        .output()
        .unwrap());
    let replay = |policy: &Path, pubkey: bool| {
        let mut cmd = diten();
        cmd.args(["replay", "--improve-budget", "0", "--policy"])
            .arg(policy)
            .arg("--trace")
            .arg(&trace);
        if pubkey {
            cmd.arg("--pubkey").arg(test_pubkey());
        }
        cmd.output().unwrap()
    };
    // The shipped blob runs with its signature checked, with the same lines.
    assert_eq!(ok(replay(&shipped, true)), ok(replay(&shipped, false)));
    // An unsigned copy runs without --pubkey and is refused with it.
    let unsigned = dir.join("unsigned.bin");
    std::fs::copy(&shipped, &unsigned).unwrap();
    ok(replay(&unsigned, false));
    let name = unsigned.display().to_string();
    one_line_error(
        replay(&unsigned, true),
        &format!("--policy: {name}: refused, no signature"),
    );
    // The ONNX model is checked as the file it is, before its conversion.
    let onnx = dir.join("policy.onnx");
    std::fs::copy(root().join("onnx-models/u20-s15/policy.onnx"), &onnx).unwrap();
    std::fs::copy(
        root().join("onnx-models/u20-s15/policy.bin.sig"),
        sig_of(&onnx),
    )
    .unwrap();
    one_line_error(replay(&onnx, true), "refused");

    // solve: refused before the instance is read.
    let out = diten()
        .args(["solve", "--instance", "examples/spec-slot.json", "--policy"])
        .arg(&unsigned)
        .arg("--pubkey")
        .arg(test_pubkey())
        .current_dir(root())
        .output()
        .unwrap();
    one_line_error(out, &format!("{name}: refused, no signature"));

    // compare: every blob is checked before any episode runs; an old version is
    // refused too.
    let compare = |policy: &str, min: &str| {
        diten()
            .args(["compare", "--servers", "15", "--slots", "2", "--seeds", "1"])
            .args(["--policy", policy, "--min-policy-version", min, "--pubkey"])
            .arg(test_pubkey())
            .arg("--out")
            .arg(dir.join(format!("compare-{min}")))
            .current_dir(root())
            .output()
            .unwrap()
    };
    ok(compare(
        "sticky,unimproved:onnx-models/u20-s{S}/policy.bin",
        "1",
    ));
    one_line_error(
        compare("sticky,onnx-models/u20-s{S}/policy.bin", "2"),
        "1 is older than the lowest accepted, 2",
    );
    one_line_error(
        compare(&format!("sticky,{}", unsigned.display()), "0"),
        "refused",
    );
}

#[test]
fn a_public_key_without_a_policy_file_is_an_error() {
    // `solve` with an association uses no policy file: a --pubkey there would check
    // nothing, so it is refused rather than silently ignored.
    one_line_error(
        diten()
            .args(["solve", "--instance"])
            .arg(root().join("examples/spec-slot.json"))
            .arg("--pubkey")
            .arg(root().join("keys/test/policy-signing.pub"))
            .output()
            .unwrap(),
        "--pubkey: checks the signature of a --policy file, and none was given",
    );
}
