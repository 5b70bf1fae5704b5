//! Absolute paths of the WebAssembly components the integration tests run.
//!
//! The build script compiles the `plugins/` and `tests/components/`
//! workspaces for `wasm32-wasip2` from the current sources (into
//! `<target>/wasm32-artifacts`, shared by every profile) and generates one
//! constant per component, e.g. [`STATIC_PLUGIN`]; hostile components no
//! toolchain emits (e.g. [`SLOW_COMPILE`], [`MULTI_MEMORY`]) are derived
//! from built ones by appending core modules. Depending on this crate is
//! what makes `cargo test` rebuild a plugin after its source changed.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
