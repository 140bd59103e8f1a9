//! Gives every binary of this package an rpath to libtorch's `lib/` (from
//! torch-sys's `links` metadata), so `diten` runs without LD_LIBRARY_PATH.
include!("../build/rpath.rs");
