//! `wasm-credential-provider-runtime`: the host with the WebAssembly
//! runtime. The front (`wasm-credential-provider`, the binary the kubelet
//! execs) hands it every exec it cannot answer from the cache: it reads one
//! `CredentialProviderRequest` on stdin, runs the configured WebAssembly
//! provider in a sandbox and writes one `CredentialProviderResponse` on
//! stdout. It also runs every operator subcommand.
//!
//! Contract with the kubelet: stdout carries exactly one JSON response or
//! nothing; every diagnostic goes to stderr; any failure exits non-zero with
//! one line on stderr.
//!
//! `no_main`: the process starts in `process_start` (it says why).
#![no_main]

wasm_credential_provider::c_main!(wasm_credential_provider::cli::main);

/// The node's static musl build allocates with dlmalloc, not musl's
/// mallocng (host/Cargo.toml has the measurements), over heap segments
/// mapped populated (`wasm_credential_provider::heap` says why).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: wasm_credential_provider::heap::Heap =
    wasm_credential_provider::heap::Heap::new();
