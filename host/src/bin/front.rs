//! `wasm-credential-provider`: the binary the kubelet execs as an image
//! credential provider. It answers cache hits itself and hands every other
//! exec to `wasm-credential-provider-runtime` (see
//! `wasm_credential_provider::front`).
//!
//! Contract with the kubelet: stdout carries exactly one JSON response or
//! nothing; every diagnostic goes to stderr; any failure exits non-zero with
//! one line on stderr.
//!
//! `no_main`: the process starts in `process_start` (it says why).
#![no_main]

wasm_credential_provider::c_main!(wasm_credential_provider::front::main);

/// The node's static musl build allocates with dlmalloc, not musl's
/// mallocng (host/Cargo.toml has the measurements), over heap segments
/// mapped populated (`wasm_credential_provider::heap` says why).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: wasm_credential_provider::heap::Heap =
    wasm_credential_provider::heap::Heap::new();
