//! Getting a `Component` for a verified module: from the host's own
//! precompiled artifact when there is a valid one, else by compiling it and
//! storing the artifact for the next exec.
//!
//! A first-use compile must neither make the exec outlive the kubelet (which
//! SIGKILLs it at 60 s) nor be lost when it takes longer: a component that
//! never compiles within one exec would otherwise be compiled, and fail, on
//! every exec. So, with a usable cache directory, the compile always runs in
//! a child process: the compiler binary beside a runtime-only build, or this
//! executable's own `compile --plugin <name>` in a build with the compiler.
//! The child
//!
//! * runs in its own session, so a SIGKILL of the exec (or of its process
//!   group) does not reach it; its stdin and stdout are `/dev/null` (stdout
//!   belongs to the kubelet protocol) and its stderr goes to
//!   `<artifact>.compile.log` in the cache directory, so that no pipe of the
//!   kubelet's stays open after the exec ends;
//! * is bounded: [`COMPILE_TIME_LIMIT`] of wall clock (a watchdog in the
//!   `compile` subcommand), [`COMPILE_MEMORY_LIMIT`] of data segment and
//!   private writable mappings (`RLIMIT_DATA`), no core dump;
//! * is the only compile of its artifact: the exec takes the artifact's
//!   compile lock (`flock` on `<artifact>.compile.lock`) before starting it
//!   and hands the locked file to the child, which holds it until it exits,
//!   however it exits. Execs that find the lock held wait for that compile
//!   instead of starting their own.
//!
//! The exec waits for the compile until [`budget::compile_deadline`]: at most
//! the plugin's `limits.timeout`, and no later than leaves that timeout for
//! the plugin call within the exec budget. If the compile has not finished
//! by then, the exec fails with one line that says so (and how to compile at
//! install time); the compile goes on, and the first exec after it ends
//! loads the artifact. A compile that failed (its log remains) is not
//! retried for [`RETRY_AFTER`]: each exec in that time fails at once with
//! the reason, instead of spending the compile's bounds again.
//!
//! With no usable cache directory there is nowhere to keep an artifact, so
//! nothing can outlive the exec usefully: a build with the compiler
//! compiles in process on every exec, within the same deadline; a
//! runtime-only build refuses to run.

use crate::artifact::{ArtifactStore, Provenance};
use crate::budget;
use crate::cache::CacheStore;
use crate::module::VerifiedModule;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;
use wcp_core::config::PluginConfig;
use wcp_core::provenance::{Provenance as ModuleProvenance, Requirement};

/// A component, how it was obtained, and the provenance of its module as
/// verified before it was compiled (from the artifact's record).
pub type Obtained = (Component, Provenance, ModuleProvenance);

/// Wall clock a background compile may take before its watchdog ends it.
/// Generous: a componentize-py component (tens of MB) compiles in well
/// under a minute on a node; anything slower must be compiled at install
/// time, where `compile` has no limit.
pub const COMPILE_TIME_LIMIT: Duration = Duration::from_secs(300);
/// `RLIMIT_DATA` of a background compile (heap, thread stacks and every
/// other private writable mapping). `RLIMIT_AS` would be the wrong bound:
/// malloc arenas reserve (but do not use) 64 MiB of address space per
/// thread of the parallel compiler.
pub const COMPILE_MEMORY_LIMIT: u64 = 2 << 30;
/// How long after a failed background compile execs report that failure
/// instead of starting another.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);
/// How often an exec checks a concurrent exec's compile.
const POLL: Duration = Duration::from_millis(20);

/// Where a plugin's precompiled artifact is found, or made by the compile
/// step of the runtime: the cache directory (if usable) and the host config
/// the compiler child is run with.
#[derive(Clone, Copy)]
pub struct Artifacts<'a> {
    pub cache: Option<&'a CacheStore>,
    pub config_path: &'a std::path::Path,
}

/// The component for `module` of `plugin`, and how it was obtained.
pub fn component(
    engine: &Engine,
    module: &VerifiedModule,
    plugin: &PluginConfig,
    artifacts: &Artifacts<'_>,
) -> Result<Obtained> {
    let Artifacts { cache, config_path } = *artifacts;
    let required = crate::trust::requirement(plugin)?;
    let now = Instant::now();
    let deadline = budget::compile_deadline(plugin.limits.timeout, now);
    let store = match cache.map(ArtifactStore::open) {
        None => {
            let why = "no cache directory".to_string();
            return uncached(engine, module, plugin, why, deadline, config_path);
        }
        Some(Err(e)) => {
            return uncached(
                engine,
                module,
                plugin,
                format!("{e:#}"),
                deadline,
                config_path,
            );
        }
        Some(Ok(store)) => store,
    };
    let how = match store.load(engine, &module.sha256, &required) {
        Ok(Some((component, origin))) => return Ok((component, Provenance::Loaded, origin)),
        Ok(None) => Provenance::Compiled,
        Err(e) => {
            tracing::info!(sha256 = %module.sha256, "refusing precompiled artifact: {e:#}");
            Provenance::Recompiled(format!("{e:#}"))
        }
    };
    let first = FirstUse {
        engine,
        module,
        plugin: &plugin.name,
        store: &store,
        required: &required,
        config_path,
        started: now,
        deadline,
    };
    first.compile(how)
}

/// A first-use compile through the compile child.
struct FirstUse<'a> {
    engine: &'a Engine,
    module: &'a VerifiedModule,
    plugin: &'a str,
    store: &'a ArtifactStore<'a>,
    required: &'a Requirement,
    config_path: &'a Path,
    started: Instant,
    deadline: Instant,
}

impl FirstUse<'_> {
    fn compile(&self, how: Provenance) -> Result<Obtained> {
        let sha = &self.module.sha256;
        let compiler = compiler();
        let lock = self.store.compile_lock(sha)?;
        let mut waited = false;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= self.deadline {
                        return Err(self.unfinished(compiler.as_deref().ok(), true));
                    }
                    waited = true;
                    std::thread::sleep(POLL);
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).context("cannot take the compile lock");
                }
            }
        }
        // No compile of this artifact is running now. One may have ended
        // between the first look and the lock.
        if let Ok(Some((component, origin))) = self.store.load(self.engine, sha, self.required) {
            return Ok((component, Provenance::Waited, origin));
        }
        if waited {
            tracing::info!(sha256 = %sha, "a concurrent exec's compile ended without an artifact");
        }
        if let Some((when, why)) = self.store.last_compile_failure(sha) {
            let age = SystemTime::now().duration_since(when).unwrap_or_default();
            if age < RETRY_AFTER {
                bail!(
                    "the first-use compile of plugin {:?} failed {}s ago ({}); execs retry it {}s after a failure; run `{}` at install time",
                    self.plugin,
                    age.as_secs(),
                    if why.is_empty() { "killed" } else { &why },
                    RETRY_AFTER.as_secs(),
                    self.command(compiler.as_deref().ok())
                );
            }
        }
        let compiler = compiler?;
        let log = self.store.compile_log(sha)?;
        let child = spawn(&compiler, self.config_path, self.plugin, &lock, log)
            .inspect_err(|_| self.store.clear_compile_log(sha))
            .with_context(|| format!("cannot run the compiler {}", compiler.display()))?;
        tracing::info!(plugin = self.plugin, pid = child.id(), compiler = %compiler.display(), "first-use compile started");
        // The child holds the lock (its inherited descriptor of the same
        // open file) until it exits; closing ours does not release it.
        drop(lock);
        let status = match wait(child, self.deadline) {
            Some(status) => status.context("cannot wait for the compiler")?,
            None => return Err(self.unfinished(Some(&compiler), false)),
        };
        if !status.success() {
            let why = self
                .store
                .last_compile_failure(sha)
                .map(|(_, why)| why)
                .filter(|why| !why.is_empty())
                .unwrap_or_else(|| {
                    format!("the compiler {} ended with {status}", compiler.display())
                });
            bail!(
                "the first-use compile of plugin {:?} failed: {why}",
                self.plugin
            );
        }
        let (component, origin) = self
            .store
            .load(self.engine, sha, self.required)?
            .context("the compiler wrote no artifact this runtime can load")?;
        Ok((component, how, origin))
    }

    fn unfinished(&self, compiler: Option<&Path>, concurrent: bool) -> anyhow::Error {
        let waited = self.deadline.saturating_duration_since(self.started);
        anyhow!(
            "the first-use compile of plugin {:?} did not finish within {:.1}s; it continues in the background{} and a later exec loads its result; run `{}` at install time",
            self.plugin,
            waited.as_secs_f64(),
            if concurrent {
                " (started by a concurrent exec)"
            } else {
                ""
            },
            self.command(compiler)
        )
    }

    /// The install-time command for this host config.
    fn command(&self, compiler: Option<&Path>) -> String {
        format!(
            "{} --config {} compile",
            compiler.map_or_else(
                || "wasm-credential-provider-compile".to_string(),
                |c| c.display().to_string()
            ),
            self.config_path.display()
        )
    }
}

/// The binary whose `compile` subcommand compiles plugins: this one.
#[cfg(feature = "compiler")]
fn compiler() -> Result<PathBuf> {
    std::env::current_exe().context("cannot locate this executable to run its compile subcommand")
}

/// The binary whose `compile` subcommand compiles plugins: the build with
/// the compiler, installed beside this one (or named by `WCP_COMPILER`).
#[cfg(not(feature = "compiler"))]
fn compiler() -> Result<PathBuf> {
    std::env::var_os("WCP_COMPILER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .map(|exe| exe.with_file_name("wasm-credential-provider-compile"))
        })
        .context("cannot locate the compiler binary")
}

/// Starts `compiler --config <config> compile --plugin <plugin>` detached
/// and bounded (see the module docs), holding `lock`.
fn spawn(
    compiler: &Path,
    config_path: &Path,
    plugin: &str,
    lock: &std::fs::File,
    log: std::fs::File,
) -> std::io::Result<Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let lock_fd = lock.as_raw_fd();
    let mut command = Command::new(compiler);
    command
        .arg("--config")
        .arg(config_path)
        .arg("compile")
        .arg("--plugin")
        .arg(plugin)
        .arg("--time-limit")
        .arg(COMPILE_TIME_LIMIT.as_secs().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setsid, fcntl, getrlimit, setrlimit)
    // on values copied into it; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == -1 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(rc)
                }
            };
            check(libc::setsid())?;
            // The child inherits the locked open file, so the lock lasts
            // exactly as long as the compile.
            let flags = check(libc::fcntl(lock_fd, libc::F_GETFD))?;
            check(libc::fcntl(
                lock_fd,
                libc::F_SETFD,
                flags & !libc::FD_CLOEXEC,
            ))?;
            lower_limit(libc::RLIMIT_DATA, COMPILE_MEMORY_LIMIT)?;
            lower_limit(libc::RLIMIT_CORE, 0)?;
            // A kernel-side backstop to the watchdog thread (which could
            // stall, e.g. writing its audit record to a hung filesystem):
            // a pending alarm survives exec and SIGALRM ends the process.
            libc::alarm(COMPILE_TIME_LIMIT.as_secs() as libc::c_uint + 30);
            Ok(())
        });
    }
    command.spawn()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Lowers the soft and hard `resource` limit to at most `max`. Async-signal-safe.
fn lower_limit(resource: Resource, max: u64) -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(resource, &mut limit) == -1 {
            return Err(std::io::Error::last_os_error());
        }
        let max = max as libc::rlim_t;
        limit.rlim_cur = limit.rlim_cur.min(max);
        limit.rlim_max = limit.rlim_max.min(max);
        if libc::setrlimit(resource, &limit) == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for `child` until `deadline`; `None` if it is still running then
/// (it is neither killed nor waited for: the exec ends without it).
fn wait(mut child: Child, deadline: Instant) -> Option<std::io::Result<std::process::ExitStatus>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// No usable cache directory: compile in process within `deadline`.
#[cfg(feature = "compiler")]
fn uncached(
    engine: &Engine,
    module: &VerifiedModule,
    plugin: &PluginConfig,
    why: String,
    deadline: Instant,
    config_path: &Path,
) -> Result<Obtained> {
    // No artifact is made from an unverified module, kept or not.
    let bytes = module.bytes()?;
    let origin = crate::trust::verify_installed(plugin, bytes)?;
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let (worker, bytes) = (engine.clone(), bytes.to_vec());
    std::thread::spawn(move || {
        let _ = tx.send(worker.precompile_component(&bytes));
    });
    let code = match rx.recv_timeout(deadline.saturating_duration_since(started)) {
        Ok(code) => code
            .map_err(anyhow::Error::from)
            .context("cannot compile module")?,
        Err(_) => bail!(
            "compiling plugin {:?} did not finish within {:.1}s, and with no usable cache directory ({why}) nothing can keep the result, so every exec compiles it again; make the cache directory usable and run `{} --config {} compile` at install time",
            plugin.name,
            deadline.saturating_duration_since(started).as_secs_f64(),
            compiler().map_or_else(
                |_| "wasm-credential-provider".to_string(),
                |c| c.display().to_string()
            ),
            config_path.display()
        ),
    };
    // SAFETY: `code` was produced a moment ago by this engine in this
    // process, from a module whose digest was verified.
    let component = unsafe { Component::deserialize(engine, &code) }
        .map_err(anyhow::Error::from)
        .context("cannot load the compiled module")?;
    Ok((component, Provenance::Uncached(why), origin))
}

/// No usable cache directory in a runtime-only build: nothing to load.
#[cfg(not(feature = "compiler"))]
fn uncached(
    _engine: &Engine,
    _module: &VerifiedModule,
    _plugin: &PluginConfig,
    why: String,
    _deadline: Instant,
    _config_path: &Path,
) -> Result<Obtained> {
    bail!(
        "this runtime-only build loads precompiled plugins from the cache directory, which is unusable ({})",
        Provenance::Uncached(why).as_str()
    )
}
