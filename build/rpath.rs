// Shared by trainer/build.rs and tests/build.rs (each package's link args apply to
// its own binaries only). Needs a direct dependency on torch-sys, whose
// `links = "tch"` metadata arrives here as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
