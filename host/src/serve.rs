//! The kubelet exec path: stdin request -> cache or plugin -> stdout
//! response. A cache hit is answered before any WebAssembly engine exists.

use crate::audit::AuditLog;
use crate::cache::CacheStore;
use crate::invoke::invoke;
use crate::runtime::Outcome;
use anyhow::{Context, Result};
use serde_json::Map;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wcp_core::answer::response;
use wcp_core::answer_scope::{AnswerScope, Narrowed};
use wcp_core::cache_entry::{Entry, FORMAT};
use wcp_core::cache_key::{ServiceAccountKey, base_key, encode_key, entry_id, lookup_keys};
use wcp_core::config::{ConfigSource, HostConfig, PluginConfig};
use wcp_core::image::registry_of;
use wcp_core::protocol::{CacheKeyType, MAX_REQUEST_BYTES, Request, Response};
use wcp_core::redact::Redactor;
use wcp_core::sa_token;

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
    let config = crate::config_file::load(config_path)?;
    let t_config = Instant::now();
    let response = respond(&config, config_path, &request)?;
    let t_respond = Instant::now();
    write_stdout(&response)?;
    let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
    tracing::debug!(
        request_us = us(t0, t_request),
        config_us = us(t_request, t_config),
        respond_us = us(t_config, t_respond),
        write_us = us(t_respond, Instant::now()),
        "exec phases"
    );
    Ok(())
}

/// The cache partition of a request: empty outside service-account mode;
/// `None` when the token's identity cannot be read (then nothing is cached).
fn sa_key(plugin: &PluginConfig, request: &Request) -> Option<Vec<u8>> {
    let Some(token) = &request.service_account_token else {
        return Some(Vec::new());
    };
    let coordinates = match sa_token::coordinates(token) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(plugin = %plugin.name, "not caching: service-account identity unreadable: {e:#}");
            return None;
        }
    };
    ServiceAccountKey::new(
        &coordinates.namespace,
        &coordinates.name,
        &coordinates.uid,
        &request.service_account_annotations,
        token,
    )
    .encode(plugin.cache.token_cache_type)
    .ok()
}

fn respond(config: &HostConfig, config_path: &Path, request: &Request) -> Result<Response> {
    let Some(plugin) = config.select(&request.image) else {
        tracing::warn!(
            image = %request.image,
            "no plugin's matchImages matches the image; answering with no credentials"
        );
        return Ok(Response::empty(request.api_version));
    };
    let scope = AnswerScope::new(config, &plugin.name)?;
    let audit = AuditLog::open(config.audit_log.as_deref());
    let sa = sa_key(plugin, request);
    let store = match CacheStore::open(&config.cache_directory, config.cache_max_entries) {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::info!("credential cache unavailable, continuing without it: {e:#}");
            None
        }
    };
    let cache = store.as_ref().zip(sa.as_deref());

    if let Some((store, sa)) = cache
        && let Some(hit) = lookup(store, &scope, plugin, request, sa, &audit)?
    {
        return Ok(hit);
    }
    // Miss: one process per (plugin, registry, identity) calls the plugin;
    // the others wait for its answer, then find it in the cache.
    let _flight = match cache {
        Some((store, sa)) => {
            let flight = entry_id(
                &plugin.cache_scope(),
                &encode_key(registry_of(&request.image), sa)?,
            );
            // Never past the exec budget: the call that follows is cut to
            // what remains (`budget::call_deadline`).
            let wait_until = (Instant::now() + plugin.limits.timeout + Duration::from_secs(2))
                .min(crate::budget::started() + crate::budget::EXEC_BUDGET);
            let lock = store.lock(&flight, wait_until);
            if let Some(hit) = lookup(store, &scope, plugin, request, sa, &audit)? {
                return Ok(hit);
            }
            lock
        }
        None => None,
    };
    let answer = match invoke(config, plugin, request, &audit, store.as_ref(), config_path)? {
        Outcome::Answer(answer) => answer,
        Outcome::NoCredentials(why) => {
            tracing::warn!(plugin = %plugin.name, image = %request.image, "plugin has no credentials for the image: {why}");
            return Ok(Response::empty(request.api_version));
        }
    };
    plugin
        .cache
        .check_token_echo(&answer, request.service_account_token.as_deref())
        .with_context(|| format!("plugin {:?}", plugin.name))?;
    let now = unix_now();
    let duration = plugin.cache.duration_secs(answer.expires_at, now);
    let requested = answer.cache_key_type;
    let auth = answer
        .into_auth()
        .with_context(|| format!("plugin {:?} returned an unusable answer", plugin.name))?;
    if scope.check_keys(auth.keys()).is_err() {
        // Again, for an error line that quotes the key (plugin output) with
        // the token and secret config values hidden.
        let secrets = secrets(plugin, request);
        scope.hiding(&secrets).check_keys(auth.keys())?;
    }
    let kind = told(
        plugin,
        requested,
        scope.cache_key_type(requested, &request.image),
    );
    if let Some((store, sa)) = cache
        && duration > 0
    {
        let key = encode_key(base_key(kind, &request.image), sa)?;
        let entry = Entry {
            format: FORMAT.into(),
            plugin: plugin.name.clone(),
            scope: plugin.cache_scope(),
            key: hex::encode(&key),
            key_kind: kind,
            registry: registry_of(&request.image).into(),
            service_account: request
                .service_account_token
                .as_deref()
                .and_then(|t| sa_token::coordinates(t).ok())
                .map(|c| format!("{}/{}", c.namespace, c.name)),
            created_at: now,
            expires_at: now + duration,
            auth: auth.clone(),
        };
        if let Err(e) = store.put(&entry, now) {
            tracing::info!(plugin = %plugin.name, "could not cache the answer: {e:#}");
        }
    }
    Ok(response(request.api_version, kind, duration, auth))
}

/// The `cacheKeyType` the kubelet is told instead of `requested`, logged
/// when it differs (see `wcp_core::answer_scope`).
fn told(plugin: &PluginConfig, requested: CacheKeyType, narrowed: Narrowed) -> CacheKeyType {
    if let Some(why) = &narrowed.reason {
        tracing::info!(
            plugin = %plugin.name,
            "answering with cacheKeyType {:?} instead of {requested:?}: {why}",
            narrowed.kind
        );
    }
    narrowed.kind
}

/// The request's token and the plugin's secret config values, to hide in
/// errors that quote what the plugin returned.
fn secrets(plugin: &PluginConfig, request: &Request) -> Redactor {
    let mut redactor = Redactor::default();
    if let Some(token) = &request.service_account_token {
        redactor.add(token);
    }
    if let Ok(values) = crate::config_file::resolve_values(plugin) {
        for (key, source) in &plugin.config {
            if !matches!(source, ConfigSource::Literal(_))
                && let Some(value) = values.get(key)
            {
                redactor.add(value);
            }
        }
    }
    redactor
}

/// Kubelet's lookup order: image, registry, global. An entry is served only
/// if its auth keys are still within the plugin's images (the config may
/// have changed since it was stored), with its `cacheKeyType` narrowed as a
/// fresh answer's would be.
fn lookup(
    store: &CacheStore,
    scope: &AnswerScope,
    plugin: &PluginConfig,
    request: &Request,
    sa: &[u8],
    audit: &AuditLog,
) -> Result<Option<Response>> {
    let now = unix_now();
    let partition = plugin.cache_scope();
    for (kind, key) in lookup_keys(&request.image, sa)? {
        if let Some(entry) = store.get(&partition, &key, now) {
            let served = match entry.served_kind(scope, &request.image) {
                Ok(narrowed) => told(plugin, entry.key_kind, narrowed),
                Err(_) => {
                    tracing::info!(
                        plugin = %plugin.name,
                        "ignoring a cached answer with an auth key outside the plugin's images (the host config changed since it was stored)"
                    );
                    continue;
                }
            };
            let remaining = entry.remaining(now).unwrap_or(0);
            let mut fields = Map::new();
            fields.insert("plugin".into(), plugin.name.clone().into());
            fields.insert("keyKind".into(), format!("{kind:?}").into());
            fields.insert("registry".into(), registry_of(&request.image).into());
            fields.insert("remainingSeconds".into(), remaining.into());
            audit.record("cache_hit", fields);
            return Ok(Some(response(
                request.api_version,
                served,
                remaining,
                entry.auth,
            )));
        }
    }
    Ok(None)
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .context("cannot read the request from stdin")?;
    Ok(input)
}

fn write_stdout(response: &Response) -> Result<()> {
    let bytes = response.encode();
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .context("cannot write the response to stdout")
}

/// Wall-clock now in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
