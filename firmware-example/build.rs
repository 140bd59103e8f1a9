//! Puts `memory.x` where the linker finds it, links with cortex-m-rt's `link.x`
//! (here rather than in `.cargo/config.toml`'s rustflags, which a `RUSTFLAGS`
//! variable would replace) and rebuilds when `memory.x` or an embedded file changes.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets no OUT_DIR")?);
    std::fs::copy("memory.x", out.join("memory.x"))?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=trace.bin");
    Ok(())
}
