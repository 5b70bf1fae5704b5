//! `compile`: precompile the configured plugins at install time, so that
//! even the first kubelet exec loads native code instead of compiling.
//!
//! An exec that finds no artifact runs this same subcommand for its one
//! plugin in the background (`--plugin NAME`, with the hidden
//! `--time-limit`: see `runtime::compile`). Every compile is recorded in
//! the audit log as a `compile` event.

use anyhow::Result;
use std::path::Path;
use std::time::Duration;
#[cfg(feature = "compiler")]
use {
    crate::artifact::ArtifactStore,
    crate::audit::AuditLog,
    crate::cache::CacheStore,
    crate::events::{CompileOutcome, Record},
    crate::{module, runtime},
    anyhow::{Context, bail},
    std::sync::{Arc, Mutex},
    std::time::Instant,
};

#[cfg(not(feature = "compiler"))]
pub fn run(_config: &Path, _plugin: Option<&str>, _time_limit: Option<Duration>) -> Result<()> {
    anyhow::bail!(
        "this runtime-only build has no compiler: run `wasm-credential-provider-compile --config <file> compile`"
    )
}

/// Compiles every plugin of `config` (only `plugin` if given) that has no
/// valid artifact. With `time_limit`, the process ends (status 3) once that
/// much wall clock has passed, whatever it is doing.
#[cfg(feature = "compiler")]
pub fn run(config_path: &Path, plugin: Option<&str>, time_limit: Option<Duration>) -> Result<()> {
    let current = Current::default();
    if let Some(limit) = time_limit {
        watchdog(limit, current.clone());
    }
    let config = crate::config_file::load(config_path)?;
    let plugins: Vec<_> = match plugin {
        None => config.plugins.iter().collect(),
        Some(name) => {
            let Some(found) = config.plugins.iter().find(|p| p.name == name) else {
                bail!("{} has no plugin named {name:?}", config_path.display());
            };
            vec![found]
        }
    };
    compile(&config, &plugins, time_limit.is_some(), &current)
}

/// Compiles every plugin of `config` (no other) in `plugins`; see [`run`].
/// `install` calls it with a config read below its `--root`.
#[cfg(not(feature = "compiler"))]
pub fn compile_config(_config: &wcp_core::config::HostConfig) -> Result<()> {
    anyhow::bail!("this runtime-only build has no compiler: run install from the default build")
}

/// Compiles every plugin of `config` that has no valid artifact.
#[cfg(feature = "compiler")]
pub fn compile_config(config: &wcp_core::config::HostConfig) -> Result<()> {
    let plugins: Vec<_> = config.plugins.iter().collect();
    compile(config, &plugins, false, &Current::default())
}

#[cfg(feature = "compiler")]
fn compile(
    config: &wcp_core::config::HostConfig,
    plugins: &[&wcp_core::config::PluginConfig],
    background: bool,
    current: &Current,
) -> Result<()> {
    let audit = Arc::new(AuditLog::open(config.audit_log.as_deref()));
    let cache = CacheStore::open(&config.cache_directory, config.cache_max_entries)?;
    let engine = runtime::engine::new()?;
    let store = ArtifactStore::open(&cache)?;
    for &plugin in plugins {
        let module = module::load_stamped(plugin, None)?;
        // Install time is when a typed config's mistakes should show.
        let declaration = module.declaration()?;
        let bytes = module.bytes()?;
        crate::config_file::check_plugin_config(config, plugin, &declaration, &Default::default())?;
        let required = crate::trust::requirement(plugin)?;
        match store.load(&engine, &module.sha256, &required) {
            Ok(Some(_)) => {
                println!("{}: up to date ({})", plugin.name, module.sha256);
                store.clear_compile_log(&module.sha256);
                continue;
            }
            Ok(None) => {}
            Err(e) => println!("{}: replacing unusable artifact: {e:#}", plugin.name),
        }
        let started = Instant::now();
        let record = |outcome, provenance| {
            audit.record(&Record::Compile {
                plugin: &plugin.name,
                sha256: &module.sha256,
                background,
                outcome,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                provenance,
            });
        };
        // The only way to an artifact: a module that passed its checks.
        let verified = crate::trust::verify_installed(plugin, bytes)
            .inspect_err(|_| record(CompileOutcome::Refused, None))?;
        let verify_ms = started.elapsed().as_secs_f64() * 1000.0;
        *current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((audit.clone(), plugin.name.clone(), module.sha256.clone()));
        let code = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {:?}: cannot compile {}",
                    plugin.name,
                    plugin.module.display()
                )
            })
            .inspect_err(|_| record(CompileOutcome::Failed, Some(&verified)))?;
        store
            .store(&verified, &code)
            .with_context(|| format!("plugin {:?}: cannot store the artifact", plugin.name))
            .inspect_err(|_| record(CompileOutcome::Failed, Some(&verified)))?;
        store.clear_compile_log(&module.sha256);
        record(CompileOutcome::Compiled, Some(&verified));
        println!(
            "{}: compiled {} ({} bytes of wasm -> {} bytes) in {:.0} ms{}",
            plugin.name,
            module.sha256,
            bytes.len(),
            code.len(),
            started.elapsed().as_secs_f64() * 1000.0,
            match &verified.signer {
                Some(signer) => format!("; signature by {signer} verified in {verify_ms:.1} ms"),
                None => String::new(),
            }
        );
    }
    Ok(())
}

/// What a background compile is compiling, for its watchdog's audit event.
#[cfg(feature = "compiler")]
type Current = Arc<Mutex<Option<(Arc<AuditLog>, String, String)>>>;

/// Ends the process `limit` after it started, with a line on stderr (the
/// compile log) and a `compile` audit event saying so.
#[cfg(feature = "compiler")]
fn watchdog(limit: Duration, current: Current) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let what = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let name = match what {
            Some((audit, plugin, sha256)) => {
                audit.record(&Record::Compile {
                    plugin: &plugin,
                    sha256: &sha256,
                    background: true,
                    outcome: CompileOutcome::TimeLimit,
                    duration_ms: limit.as_secs_f64() * 1000.0,
                    provenance: None,
                });
                format!("plugin {plugin:?}")
            }
            None => "the plugins".to_string(),
        };
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "wasm-credential-provider: error: compiling {name} did not finish within the {}s limit of a background compile; compile it at install time",
            limit.as_secs()
        );
        // SAFETY: _exit ends the process at once; nothing runs after it.
        unsafe { libc::_exit(3) }
    });
}
