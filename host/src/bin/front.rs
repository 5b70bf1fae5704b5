//! `wasm-credential-provider`: the binary the kubelet execs as an image
//! credential provider. It answers cache hits itself and hands every other
//! exec to `wasm-credential-provider-runtime` (see
//! `wasm_credential_provider::front`).
//!
//! Contract with the kubelet: stdout carries exactly one JSON response or
//! nothing; every diagnostic goes to stderr; any failure exits non-zero with
//! one line on stderr.
//!
//! Why `no_main`: Rust's own entry point, before `main`, asks glibc for the
//! main thread's stack bounds to install its stack-overflow guard, and for
//! the main thread glibc answers by reading and parsing `/proc/self/maps`:
//! on a cache hit that was a sixth of the front's instructions
//! (callgrind). The front keeps the two parts of that start-up that matter
//! to it, done in `front::main`: stdin, stdout and stderr are open (or
//! `/dev/null`) before anything can open a file onto them, and SIGPIPE is
//! ignored so that a closed pipe is an error, not a silent death. Its
//! stack use is shallow and bounded (no recursion over input), so it does
//! without the guard's friendlier message on an overflow (the kernel's
//! guard page still stops one).
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
