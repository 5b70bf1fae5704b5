//! The kubelet exec, wired for real: stdin request -> [`crate::exec`] ->
//! stdout response, with the plugin run by wasmtime, the cache in its
//! directory, the system clock and the audit file. A cache hit is answered
//! before any WebAssembly engine exists.

use crate::audit::AuditLog;
use crate::cache::CacheStore;
use crate::events::Record;
use crate::exec::{self, Clock, SystemClock};
use crate::invoke::invoke;
use crate::runtime::Artifacts;
use crate::runtime::Outcome;
use anyhow::{Context, Result};
use std::cell::OnceCell;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;
use wcp_core::cache_entry::Entry;
use wcp_core::config::{HostConfig, PluginConfig};
use wcp_core::protocol::{MAX_REQUEST_BYTES, Request, Response};
use wcp_core::redact::Redactor;
use wcp_core::shared_failure::SharedFailure;

/// Serves one kubelet request. Nothing is written to stdout unless a
/// complete response exists.
pub fn serve(config_path: &Path) -> Result<()> {
    let t0 = Instant::now();
    let input = read_stdin()?;
    let request = Request::decode(&input)?;
    if let Some(token) = &request.service_account_token {
        crate::secrets::register(token);
    }
    let t_request = Instant::now();
    let (config, config_from) =
        if crate::budget::handoff_reason().as_deref() == Some(crate::front::NO_SNAPSHOT) {
            // The front found no usable snapshot: the next exec's hit will.
            let config = crate::config_file::load(config_path)?;
            crate::config_snapshot::save(config_path);
            (config, crate::config_file::Source::File)
        } else {
            crate::config_file::load_for_exec(config_path)?
        };
    let t_config = Instant::now();
    let response = respond(&config, config_path, &request);
    observe(&config, &request, response.as_ref().ok());
    let response = response?;
    let t_respond = Instant::now();
    write_stdout(&response)?;
    let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
    tracing::debug!(
        request_us = us(t0, t_request),
        config_us = us(t_request, t_config),
        config_from = config_from.as_str(),
        respond_us = us(t_config, t_respond),
        write_us = us(t_respond, Instant::now()),
        "exec phases"
    );
    Ok(())
}

/// Counts the exec in the metrics textfile, if the config has one
/// (`response`: `None` for a failed exec).
pub fn observe(config: &HostConfig, request: &Request, response: Option<&Response>) {
    if let Some(dir) = &config.metrics_textfile_directory {
        let plugin = config.select(&request.image).map(|p| p.name.as_str());
        crate::metrics::observe_exec(plugin, response.map(|r| !r.auth.is_empty()));
        crate::metrics::flush(dir);
    }
}

/// The real dependencies of one exec, opened on first use: an exec whose
/// image no plugin matches creates no cache directory and no audit file.
pub struct Host<'a> {
    config: &'a HostConfig,
    config_path: &'a Path,
    audit: OnceCell<AuditLog>,
    store: OnceCell<Option<CacheStore>>,
}

impl<'a> Host<'a> {
    pub fn new(config: &'a HostConfig, config_path: &'a Path) -> Self {
        // What this exec records is counted only if `observe` will flush it.
        crate::metrics::keep_counts(config.metrics_textfile_directory.is_some());
        Self {
            config,
            config_path,
            audit: OnceCell::new(),
            store: OnceCell::new(),
        }
    }

    pub fn config(&self) -> &HostConfig {
        self.config
    }

    pub fn audit(&self) -> &AuditLog {
        self.audit
            .get_or_init(|| AuditLog::open(self.config.audit_log.as_deref()))
    }

    /// The cache directory; `None` (logged once) if it is unusable.
    pub fn store(&self) -> Option<&CacheStore> {
        self.store
            .get_or_init(|| {
                CacheStore::open(&self.config.cache_directory, self.config.cache_max_entries)
                    .inspect_err(|e| {
                        tracing::info!("credential cache unavailable, continuing without it: {e:#}")
                    })
                    .ok()
            })
            .as_ref()
    }
}

impl exec::PluginCall for Host<'_> {
    fn call(&self, plugin: &PluginConfig, request: &Request) -> Result<Outcome> {
        let artifacts = Artifacts {
            cache: self.store(),
            config_path: self.config_path,
        };
        invoke(self.config, plugin, request, self.audit(), &artifacts)
    }
}

impl exec::CredentialCache for Host<'_> {
    fn get(&self, scope: &str, key: &[u8], now: u64) -> Option<Entry> {
        self.store()?.get(scope, key, now)
    }

    fn put(&self, entry: &Entry, now: u64) -> Result<()> {
        match self.store() {
            Some(store) => store.put(entry, now),
            None => Ok(()),
        }
    }

    fn lock(&self, flight: &str, deadline: Instant) -> Option<exec::Flight> {
        let lock = self.store()?.lock(flight, deadline)?;
        Some(Box::new(lock))
    }

    fn failure(&self, flight: &str) -> Option<SharedFailure> {
        self.store()?.failure(flight)
    }

    fn put_failure(&self, flight: &str, failure: &SharedFailure) {
        if let Some(store) = self.store()
            && let Err(e) = store.put_failure(flight, failure, SystemClock.now())
        {
            tracing::info!("could not record the failure for concurrent execs: {e:#}");
        }
    }
}

impl exec::Audit for Host<'_> {
    fn record(&self, record: &Record<'_>) {
        self.audit().record(record);
    }
}

fn respond(config: &HostConfig, config_path: &Path, request: &Request) -> Result<Response> {
    let host = Host::new(config, config_path);
    let deps = exec::Deps {
        plugin: &host,
        cache: &host,
        clock: &SystemClock,
        audit: &host,
    };
    exec::respond(config, request, &deps)
}

/// The request's token and the plugin's secret config values, to hide in
/// errors that quote what the plugin returned.
pub fn secrets(plugin: &PluginConfig, request: &Request) -> Redactor {
    let mut redactor = Redactor::default();
    if let Some(token) = &request.service_account_token {
        redactor.add(token);
    }
    if let Ok(values) = crate::config_file::resolve_values(plugin) {
        plugin.secret_values(&values).for_each(|v| redactor.add(v));
    }
    redactor
}

pub fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .context("cannot read the request from stdin")?;
    Ok(input)
}

pub fn write_stdout(response: &Response) -> Result<()> {
    let bytes = response.encode();
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .context("cannot write the response to stdout")
}

/// Wall-clock now in Unix seconds.
pub fn unix_now() -> u64 {
    SystemClock.now()
}
