//! `wasm-credential-provider`: the binary the kubelet execs as an image
//! credential provider. It answers cache hits itself and hands every other
//! exec to `wasm-credential-provider-runtime` (see
//! `wasm_credential_provider::front`).
//!
//! Contract with the kubelet: stdout carries exactly one JSON response or
//! nothing; every diagnostic goes to stderr; any failure exits non-zero with
//! one line on stderr.

fn main() -> std::process::ExitCode {
    wasm_credential_provider::front::main()
}
