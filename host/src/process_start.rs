//! The start of a process without Rust's own runtime start: both binaries
//! are `no_main` (`src/bin/*.rs`) and begin here.
//!
//! Why: before `main`, Rust's runtime asks glibc for the main thread's
//! stack bounds to install its stack-overflow guard, and for the main
//! thread glibc answers by reading and parsing `/proc/self/maps`. On the
//! front's cache hit that was a sixth of all its instructions (callgrind),
//! and every exec the kubelet makes pays it once or, handed over to the
//! runtime, twice. What that start did that these binaries rely on is done
//! here instead: stdin, stdout and stderr are open (or `/dev/null`) before
//! anything can open a file onto them, SIGPIPE is ignored so that a closed
//! pipe is an error rather than a silent death, and stdout is flushed when
//! `main` returns. Without the guard, a stack overflow on the main thread
//! still stops at the kernel's guard page (a SIGSEGV, not the guard's
//! message); nothing here recurses over its input.

use anyhow::{Result, bail};
use std::io::Write;

/// Defines a binary's C entry point, `main` (the C library's start calls
/// it), running `$main` with the command line; `$main` returns the exit
/// status. For a `#![no_main]` binary. The command line comes from `argv`,
/// not `std::env::args`: only glibc hands std the arguments before `main`
/// (through `.init_array`); under musl, which the runtime is linked with
/// (`scripts/build-node`), std's copy stays empty without Rust's start.
#[macro_export]
macro_rules! c_main {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn main(
            argc: ::std::ffi::c_int,
            argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: the C library calls `main` with its argc and argv.
            let args = unsafe { $crate::__command_line(argc, argv) };
            ::std::ffi::c_int::from($main(args))
        }
    };
}

/// The command line `main` was given, as `std::env::args_os` would give it.
///
/// # Safety
/// `argv` must point to `argc` NUL-terminated strings, as the C library's
/// start passes them to `main`.
pub unsafe fn command_line(
    argc: std::ffi::c_int,
    argv: *const *const std::ffi::c_char,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let count = usize::try_from(argc).unwrap_or(0);
    (0..count)
        .map(|i| {
            // SAFETY: i < argc, and each of the first argc entries is a
            // NUL-terminated string (the caller's contract).
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_os_string()
        })
        .collect()
}

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;

/// Prepares the process, runs `body` and returns its exit status, stdout
/// flushed (nothing else would flush it: no Rust runtime start, no
/// runtime cleanup).
pub fn run(args: Vec<std::ffi::OsString>, body: impl FnOnce(Vec<std::ffi::OsString>) -> u8) -> u8 {
    if let Err(err) = prepare() {
        crate::logging::report_failure(&err);
        return FAILURE;
    }
    let status = body(args);
    match std::io::stdout().flush() {
        Ok(()) => status,
        Err(_) => FAILURE,
    }
}

/// What Rust's runtime start would have done that these binaries need:
/// fds 0, 1 and 2 open, so that no file opened later becomes stdout or
/// stderr by taking a free low descriptor; SIGPIPE ignored, so that writing
/// to a closed pipe fails as an error.
fn prepare() -> Result<()> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD on any descriptor number is defined; it only
        // asks whether it is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        {
            // SAFETY: a NUL-terminated literal path; flags are valid. The
            // lowest free descriptor is `fd` (every one below it is open,
            // and nothing else runs yet), so the new descriptor fills it.
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != fd {
                bail!("descriptor {fd} is closed and /dev/null cannot fill it");
            }
        }
    }
    // SAFETY: setting a signal's disposition to ignore has no memory effects.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        bail!("cannot ignore SIGPIPE: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
