//! `wasm-credential-provider`, the binary the kubelet execs: a small front
//! that answers what needs no plugin (a cache hit, an image no plugin
//! matches) and hands every other exec to the runtime beside it
//! (`wasm-credential-provider-runtime`), by `execve`: the same process,
//! the request on its stdin, the same budget.
//!
//! Why two binaries: a cache hit is most execs on a busy node, and since
//! KEP-2535 the kubelet also asks for images already present. The runtime
//! links wasmtime, rustls, tokio and a YAML parser, and starting it costs
//! more than the hit itself (dynamic relocations, faulting in megabytes).
//! Linked statically (`scripts/build-node`), the runtime alone answers a
//! warm hit nearly as fast (0.93 ms against the front's 0.72 in one bench
//! run), but not a hit after a long idle: with the page cache cold it
//! faults in pages of an 8.7 MB binary, 14.5 ms against the front's 3.4
//! (native 2.5). One binary calling the runtime in process on a miss would
//! save a miss its second exec (about 0.3 ms warm) and cost every cold hit
//! that, so the two stay apart.
//! This binary links none of them (`cargo tree`/`nm` say so; the startup
//! benchmark measures both), reads the host config from its JSON snapshot
//! (`crate::config_snapshot`) and the answer from the credential cache,
//! with the same code as the runtime (`crate::exec`).
//!
//! Anything the front is unsure of goes to the runtime, which decides
//! exactly as it does when run directly: a malformed request, no usable
//! snapshot, a cache miss, any error, any other command line. So the
//! front can make an exec faster, never different.

use crate::exec::{self, Deps, PluginCall, SystemClock};
use crate::process_start::{FAILURE, SUCCESS};
use crate::runtime::Outcome;
use crate::serve::Host;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::io::{Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wcp_core::config::PluginConfig;
use wcp_core::protocol::{Request, Response};

/// The runtime's file name, beside this binary.
pub const RUNTIME_NAME: &str = "wasm-credential-provider-runtime";
/// Overrides where the runtime is (tests of a build tree; the installer
/// puts it beside the front).
pub const RUNTIME_ENV: &str = "WCP_RUNTIME";
/// Handoff reason: the front had no usable config snapshot; the runtime
/// writes one.
pub const NO_SNAPSHOT: &str = "no-snapshot";

/// Why the front hands an exec over (the reason part of
/// `crate::budget::HANDOFF_ENV`).
#[derive(Debug, Clone, Copy)]
enum Handoff {
    /// Not `--config FILE` alone: a subcommand, or help.
    Command,
    /// The request does not decode; the runtime reports it.
    Request,
    /// No usable config snapshot.
    NoSnapshot,
    /// The plugin must be called.
    Miss,
    /// Something failed on the way; the runtime decides.
    Error,
}

impl Handoff {
    fn reason(self) -> &'static str {
        match self {
            Handoff::Command => "command",
            Handoff::Request => "request",
            Handoff::NoSnapshot => NO_SNAPSHOT,
            Handoff::Miss => "miss",
            Handoff::Error => "error",
        }
    }
}

/// The front's `main`: its exit status (0 or 1) when it answers or fails;
/// it does not return when it hands over.
///
/// The binary has no Rust runtime start (`crate::process_start` says
/// why), so this does the parts of it the front relies on first.
pub fn main(args: Vec<OsString>) -> u8 {
    crate::process_start::run(args, serve)
}

/// Serves one exec: answers it or hands it over.
fn serve(args: Vec<OsString>) -> u8 {
    let started_ns = crate::budget::monotonic_ns();
    let started = crate::budget::start();
    let Some(config_path) = serve_config(&args) else {
        return hand_over(&args, None, started_ns, Handoff::Command);
    };
    crate::logging::init();
    let input = match crate::serve::read_stdin() {
        Ok(input) => input,
        Err(err) => {
            crate::logging::report_failure(&err);
            return FAILURE;
        }
    };
    match answer(&config_path, &input) {
        Ok(response) => {
            let result = crate::serve::write_stdout(&response);
            tracing::debug!(
                total_us = started.elapsed().as_micros() as u64,
                "answered by the front"
            );
            match result {
                Ok(()) => SUCCESS,
                Err(err) => {
                    crate::logging::report_failure(&err);
                    FAILURE
                }
            }
        }
        Err(handoff) => hand_over(&args, Some(&input), started_ns, handoff),
    }
}

/// The config path when the command line is the kubelet's: `--config
/// FILE` (or `--config=FILE`) and nothing else: a subset of the command
/// lines the runtime's argument parser reads as "serve with this config".
/// A separate value that starts with `-` is left to that parser (to it,
/// `-h` is a flag; `-` alone a value).
pub(crate) fn serve_config(args: &[OsString]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    match args.get(1..)? {
        [flag, path]
            if flag == "--config" && !path.is_empty() && !path.as_bytes().starts_with(b"-") =>
        {
            Some(PathBuf::from(path))
        }
        [flag] => {
            let path = flag.as_bytes().strip_prefix(b"--config=")?;
            (!path.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        }
        _ => None,
    }
}

/// The answer to the request in `input` if the front can give it.
fn answer(config_path: &Path, input: &[u8]) -> std::result::Result<Response, Handoff> {
    let t0 = Instant::now();
    let request = Request::decode(input).map_err(|_| Handoff::Request)?;
    if let Some(token) = &request.service_account_token {
        crate::secrets::register(token);
    }
    let config = crate::config_snapshot::load(config_path).map_err(|e| {
        tracing::debug!(error = %format!("{e:#}"), "no usable config snapshot; handing over to the runtime");
        Handoff::NoSnapshot
    })?;
    let t_config = Instant::now();
    let host = Host::new(&config, config_path);
    let deps = Deps {
        plugin: &NoPluginCall,
        cache: &host,
        clock: &SystemClock,
        audit: &host,
    };
    let response = match exec::respond_without_plugin(&config, &request, &deps) {
        Ok(Some(response)) => response,
        Ok(None) => return Err(Handoff::Miss),
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "handing over to the runtime");
            return Err(Handoff::Error);
        }
    };
    crate::serve::observe(&config, &request, Some(&response));
    let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
    tracing::debug!(
        snapshot_us = us(t0, t_config),
        lookup_us = us(t_config, Instant::now()),
        "front phases"
    );
    Ok(response)
}

/// Replaces this process with the runtime, given the same arguments and
/// `input` (the request already read) as its stdin. Returns only if that
/// fails.
fn hand_over(args: &[OsString], input: Option<&[u8]>, started_ns: u64, handoff: Handoff) -> u8 {
    let err = match exec_runtime(args, input, started_ns, handoff) {
        Err(err) => err,
        Ok(never) => match never {},
    };
    crate::logging::report_failure(&err);
    FAILURE
}

fn exec_runtime(
    args: &[OsString],
    input: Option<&[u8]>,
    started_ns: u64,
    handoff: Handoff,
) -> Result<std::convert::Infallible> {
    let runtime = runtime_path()?;
    let mut command = std::process::Command::new(&runtime);
    command.args(args.get(1..).unwrap_or_default()).env(
        crate::budget::HANDOFF_ENV,
        crate::budget::handoff_value(started_ns, handoff.reason()),
    );
    if let Some(arg0) = args.first() {
        command.arg0(arg0);
    }
    if let Some(input) = input {
        command.stdin(request_file(input)?);
    }
    fill_page_cache(&runtime);
    tracing::debug!(reason = handoff.reason(), "handing over to the runtime");
    let err = command.exec();
    bail!(
        "cannot run the runtime {} (installed beside this binary): {err}",
        runtime.display()
    )
}

/// Reads what an exec of the runtime touches into the page cache if the
/// runtime was evicted (`crate::page_cache`, `crate::startup_extent`): after
/// a long idle, `execve` would otherwise fault its megabytes in piece by
/// piece. A warm exec pays one probe.
fn fill_page_cache(runtime: &Path) {
    let started = Instant::now();
    // Non-blocking: a FIFO in the runtime's place must not hold the exec
    // at `open` (the exec then refuses it).
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(runtime)
    else {
        return; // The exec reports it.
    };
    let fill = crate::page_cache::fill_startup_extent_if_evicted(&file);
    if let crate::page_cache::Fill::Read(bytes) = fill {
        tracing::debug!(
            bytes,
            of = file.metadata().map(|m| m.len()).unwrap_or(0),
            us = started.elapsed().as_micros() as u64,
            "runtime was not in the page cache; read what an exec of it touches"
        );
    }
}

/// Where the runtime is: `$WCP_RUNTIME`, else beside this binary.
fn runtime_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(RUNTIME_ENV) {
        return Ok(PathBuf::from(path));
    }
    let this = std::env::current_exe().context("cannot locate this binary")?;
    Ok(this.with_file_name(RUNTIME_NAME))
}

/// An anonymous in-memory file holding `input`, read from its start: the
/// runtime's stdin, as the kubelet's pipe was (already drained here).
fn request_file(input: &[u8]) -> Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a NUL-terminated literal; flags are valid.
    let fd = unsafe { libc::memfd_create(c"wcp-request".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot hand the request over");
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(input)
        .and_then(|()| file.rewind())
        .context("cannot hand the request over")?;
    Ok(file)
}

/// The front's plugin call: none. A miss is handed over before a plugin
/// would be called; the runtime's cache and audit log (`Host`) serve the
/// rest, and `Host`'s own plugin call (wasmtime) is never linked here.
struct NoPluginCall;

impl PluginCall for NoPluginCall {
    fn call(&self, plugin: &PluginConfig, _: &Request) -> Result<Outcome> {
        bail!("the front does not run plugin {:?}", plugin.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_kubelets_command_line_is_served_here() {
        let served = |list: &[&str]| serve_config(&args(list));
        assert_eq!(
            served(&["wcp", "--config", "/h.yaml"]),
            Some("/h.yaml".into())
        );
        assert_eq!(served(&["wcp", "--config=/h.yaml"]), Some("/h.yaml".into()));
        assert_eq!(served(&["wcp", "--config", ""]), None);
        assert_eq!(served(&["wcp", "--config", "-h"]), None);
        assert_eq!(served(&["wcp", "--config=-h"]), Some("-h".into()));
        assert_eq!(served(&["wcp", "--config="]), None);
        assert_eq!(served(&["wcp", "--config", "/h.yaml", "compile"]), None);
        assert_eq!(served(&["wcp", "inspect", "x.wasm"]), None);
        assert_eq!(served(&["wcp", "--help"]), None);
        assert_eq!(served(&["wcp"]), None);
        assert_eq!(served(&[]), None);
    }

    #[test]
    fn the_request_file_reads_from_its_start() {
        use std::io::Read;
        let mut file = request_file(b"{\"kind\":1}").unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"kind\":1}");
    }
}
