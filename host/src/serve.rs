//! The kubelet exec path: stdin request -> plugin -> stdout response.

use crate::audit::AuditLog;
use crate::runtime::events::{self, Events};
use crate::sandbox::Sandbox;
use crate::tls::TlsPolicy;
use crate::{manifest, module, runtime};
use anyhow::{Context, Result};
use serde_json::Map;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wcp_core::config::HostConfig;
use wcp_core::image::registry_of;
use wcp_core::protocol::{MAX_REQUEST_BYTES, Request, Response};

/// Serves one kubelet request. Nothing is written to stdout unless a
/// complete response exists.
pub fn serve(config_path: &Path) -> Result<()> {
    let input = read_stdin()?;
    let request = Request::decode(&input)?;
    let config = HostConfig::load(config_path)?;
    let response = respond(&config, &request)?;
    write_stdout(&response)
}

fn respond(config: &HostConfig, request: &Request) -> Result<Response> {
    let Some(plugin) = config.select(&request.image) else {
        tracing::warn!(
            image = %request.image,
            "no plugin's matchImages matches the image; answering with no credentials"
        );
        return Ok(Response::empty(request.api_version));
    };
    let values = plugin.resolve_values(|name| std::env::var(name).ok())?;
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
    let audit = AuditLog::open(config.audit_log.as_deref());
    let events = Events::default();
    let started = Instant::now();
    let outcome = runtime::run_plugin(plugin, &module, request, sandbox, tls, &events);
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
            Ok(runtime::Outcome::Answer(_)) => "credentials",
            Ok(runtime::Outcome::NoCredentials(_)) => "no_credentials",
            Err(_) => "error",
        }
        .into(),
    );
    audit.record("plugin_call", call);
    let outcome = match outcome {
        Ok(outcome) => {
            for event in &raised {
                tracing::warn!(plugin = %plugin.name, error.type = event.kind, destination = %event.destination, "{}", event.detail);
            }
            outcome
        }
        Err(err) => {
            return Err(match events::summary(&raised) {
                Some(summary) => anyhow::anyhow!("{err:#} {summary}"),
                None => err,
            });
        }
    };
    match outcome {
        runtime::Outcome::Answer(answer) => answer
            .into_response(request.api_version, unix_now())
            .with_context(|| format!("plugin {:?} returned an unusable answer", plugin.name)),
        runtime::Outcome::NoCredentials(why) => {
            tracing::warn!(plugin = %plugin.name, image = %request.image, "plugin has no credentials for the image: {why}");
            Ok(Response::empty(request.api_version))
        }
    }
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
