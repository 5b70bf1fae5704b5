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

/// The C entry point (glibc's `__libc_start_main` calls it); std's
/// `env::args` still works, glibc hands it argv through `.init_array`.
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    std::ffi::c_int::from(wasm_credential_provider::front::main())
}
