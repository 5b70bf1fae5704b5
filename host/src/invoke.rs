//! One plugin call on a cache miss: verify the module, resolve its sandbox,
//! run it, and record what happened in the audit log.

use crate::audit::AuditLog;
use crate::cache::CacheStore;
use crate::runtime::events::{self, Events};
use crate::runtime::{self, Outcome};
use crate::sandbox::Sandbox;
use crate::tls::TlsPolicy;
use crate::{manifest, module};
use anyhow::{Context, Result};
use serde_json::Map;
use std::time::Instant;
use wcp_core::config::{HostConfig, PluginConfig};
use wcp_core::image::registry_of;
use wcp_core::protocol::Request;
use wcp_core::proxy::ProxyPolicy;

/// Runs `plugin` for `request`. Denials raised during the call explain a
/// failure in its error line and are always written to the audit log.
pub fn invoke(
    config: &HostConfig,
    plugin: &PluginConfig,
    request: &Request,
    audit: &AuditLog,
    cache: Option<&CacheStore>,
    config_path: &std::path::Path,
) -> Result<Outcome> {
    let values = crate::config_file::resolve_values(plugin)?;
    crate::secrets::register_config_values(plugin, &values);
    let module = module::load(plugin)?;
    tracing::debug!(plugin = %plugin.name, sha256 = %module.sha256, "module verified");
    let declaration = manifest::declaration(&module.bytes).with_context(|| {
        format!(
            "plugin {:?}: module {}",
            plugin.name,
            plugin.module.display()
        )
    })?;
    let sandbox = Sandbox::resolve(plugin, &declaration, values, request, |name| {
        std::env::var(name).ok()
    });
    let tls = TlsPolicy::new(config.ca_bundle.clone());
    let proxy = ProxyPolicy::from_env(|name| std::env::var(name).ok())
        .context("invalid proxy settings in the environment")?;
    let events = Events::default();
    let started = Instant::now();
    let mut provenance = None;
    let call = runtime::Call {
        plugin,
        module: &module,
        request,
        sandbox,
        tls,
        proxy,
        proxy_resolution: config.proxy_resolution,
        events: events.clone(),
        cache,
        config_path,
    };
    let outcome = runtime::run_plugin(call, &mut provenance);
    let raised = events.take();
    for event in &raised {
        let mut fields = Map::new();
        fields.insert("plugin".into(), plugin.name.clone().into());
        fields.insert("destination".into(), event.destination.clone().into());
        if let Some(address) = &event.address {
            fields.insert("address".into(), address.clone().into());
        }
        fields.insert("detail".into(), event.detail.clone().into());
        audit.record(event.kind, fields);
    }
    let mut call = Map::new();
    call.insert("plugin".into(), plugin.name.clone().into());
    call.insert("sha256".into(), module.sha256.clone().into());
    call.insert("registry".into(), registry_of(&request.image).into());
    call.insert(
        "serviceAccountToken".into(),
        request.service_account_token.is_some().into(),
    );
    call.insert(
        "durationMs".into(),
        (started.elapsed().as_secs_f64() * 1000.0).into(),
    );
    call.insert(
        "outcome".into(),
        match &outcome {
            Ok(Outcome::Answer(_)) => "credentials",
            Ok(Outcome::NoCredentials(_)) => "no_credentials",
            Err(_) => "error",
        }
        .into(),
    );
    if let Some(provenance) = &provenance {
        call.insert("component".into(), provenance.as_str().into());
    }
    audit.record("plugin_call", call);
    match outcome {
        Ok(outcome) => {
            for event in &raised {
                tracing::warn!(plugin = %plugin.name, error.type = event.kind, destination = %event.destination, "{}", event.detail);
            }
            Ok(outcome)
        }
        Err(err) => Err(match events::summary(&raised) {
            Some(summary) => anyhow::anyhow!("{err:#} {summary}"),
            None => err,
        }),
    }
}
