//! Every integration test, in one test binary (as wasmtime's `tests/all`):
//! one link of the test support instead of one per file, and `cargo test`
//! schedules all of them across the same test threads. Each module execs
//! the real host binary, as the kubelet does, against servers on loopback.
//!
//! Run one area with a filter: `cargo test -p wasm-credential-provider
//! --test all -- cache::`.

mod support;

mod acr;
mod answers;
mod aot;
mod cache;
mod check;
mod deploy;
mod ecr;
mod exec;
mod front;
mod gcp;
mod host_limits;
mod hostile_text;
mod inspect;
mod install;
mod metrics;
mod oci;
mod passthrough;
mod python;
mod run_cmd;
mod sandbox;
mod stamps;
mod template;
mod token_exchange;
mod trust_roots;
mod vault;
