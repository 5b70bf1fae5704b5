//! One plugin call on a cache miss: verify the module, resolve its sandbox,
//! run it, and record what happened in the audit log.

use crate::audit::AuditLog;
use crate::events::{self, CallOutcome, Record};
use crate::module;
use crate::runtime::{self, CallReport, Outcome};
use crate::runtime::{Artifacts, Traced};
use crate::sandbox::Sandbox;
use crate::tls::TlsClient;
use anyhow::{Context, Result};
use std::time::Instant;
use wcp_core::config::{HostConfig, PluginConfig};
use wcp_core::image::registry_of;
use wcp_core::protocol::Request;
use wcp_core::proxy::ProxyPolicy;

/// A plugin call's outcome and every outbound request it made (what
/// `run` prints; the exec path needs only the outcome).
pub struct Invocation {
    pub outcome: Result<Outcome>,
    pub outbound: Vec<Traced>,
}

/// Runs `plugin` for `request`. Denials raised during the call explain a
/// failure in its error line and are always written to the audit log.
pub fn invoke(
    config: &HostConfig,
    plugin: &PluginConfig,
    request: &Request,
    audit: &AuditLog,
    artifacts: &Artifacts<'_>,
) -> Result<Outcome> {
    invoke_traced(config, plugin, request, audit, artifacts)?.outcome
}

/// [`invoke`], keeping the outbound trace. An error here means the call
/// never started (config values, module, declaration, proxy settings).
pub fn invoke_traced(
    config: &HostConfig,
    plugin: &PluginConfig,
    request: &Request,
    audit: &AuditLog,
    artifacts: &Artifacts<'_>,
) -> Result<Invocation> {
    let values = crate::config_file::resolve_values(plugin)?;
    crate::secrets::register_config_values(plugin, &values);
    let stamps = artifacts
        .cache
        .and_then(|c| crate::stamp::Stamps::open(c).ok());
    let module = module::load_stamped(plugin, stamps.as_ref())?;
    tracing::debug!(plugin = %plugin.name, sha256 = %module.sha256, "module verified");
    let declaration = module.declaration().with_context(|| {
        format!(
            "plugin {:?}: module {}",
            plugin.name,
            plugin.module.display()
        )
    })?;
    crate::config_file::check_plugin_config(config, plugin, &declaration, &values)?;
    let sandbox = Sandbox::resolve(plugin, &declaration, values, request, |name| {
        std::env::var(name).ok()
    });
    let token_note = sandbox.token_note.clone();
    let tls = TlsClient::new(config.ca_bundle.clone()).with_snapshot_in(artifacts.cache);
    let proxy = ProxyPolicy::from_env(|name| std::env::var(name).ok())
        .context("invalid proxy settings in the environment")?;
    let started = Instant::now();
    let call = runtime::Call {
        plugin,
        module: &module,
        request,
        sandbox,
        tls,
        proxy,
        proxy_resolution: config.proxy_resolution,
        artifacts,
    };
    let CallReport {
        outcome,
        provenance,
        origin,
        events: raised,
        outbound,
    } = runtime::run_plugin(call);
    crate::metrics::observe_outbound(&plugin.name, &outbound);
    let component = provenance.as_ref().map(|p| p.as_str());
    for event in &raised {
        audit.record(&Record::security(&plugin.name, event));
    }
    audit.record(&Record::PluginCall {
        plugin: &plugin.name,
        sha256: &module.sha256,
        registry: registry_of(&request.image),
        service_account_token: request.service_account_token.is_some(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        outcome: match &outcome {
            Ok(Outcome::Answer(_)) => CallOutcome::Credentials,
            Ok(Outcome::NoCredentials(_)) => CallOutcome::NoCredentials,
            Err(_) => CallOutcome::Error,
        },
        component: component.as_deref(),
        provenance: origin
            .as_ref()
            .filter(|o| o.source.is_some() || o.signer.is_some()),
    });
    let outcome = match outcome {
        Ok(outcome) => {
            for event in &raised {
                tracing::warn!(plugin = %plugin.name, error.type = event.kind.as_str(), destination = %event.destination, "{}", event.detail);
            }
            Ok(outcome)
        }
        Err(err) => {
            let line = events::explain(err, &raised, token_note.as_deref());
            // Marked shareable only once the component was obtained.
            Err(match provenance {
                Some(_) => anyhow::Error::new(crate::exec::PluginFailed(line)),
                None => line,
            })
        }
    };
    Ok(Invocation { outcome, outbound })
}
