//! `run`: one request through the host with the plugin always called, for a
//! vendor trying a component and an operator asking "why did this pull go
//! anonymous?". It runs the exec path itself ([`crate::exec::respond`]:
//! selection, the plugin call, the answer's checks) with the credential
//! cache bypassed, and prints what the kubelet would get (passwords masked
//! unless `--show-secrets`) after every outbound request the plugin made:
//! method, URL (query elided), refused or the status, and time. A failure
//! still prints the trace, then ends with its one stderr line.

use crate::events::Record;
use crate::exec::{self, Deps, SystemClock};
use crate::invoke::invoke_traced;
use crate::runtime::{Artifacts, Outcome, Traced, Verdict};
use crate::serve::Host;
use anyhow::{Context, Result};
use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::time::Instant;
use wcp_core::cache_entry::Entry;
use wcp_core::config::PluginConfig;
use wcp_core::protocol::{MAX_REQUEST_BYTES, Request};
use wcp_core::shared_failure::SharedFailure;

/// Runs the request in `request_file` (stdin if `None`) against the host
/// config at `config_path` and prints the report on stdout.
pub fn run(config_path: &Path, request_file: Option<&Path>, show_secrets: bool) -> Result<()> {
    let input = match request_file {
        Some(path) => read_bounded(path)?,
        None => crate::serve::read_stdin()?,
    };
    let request = Request::decode(&input)?;
    if let Some(token) = &request.service_account_token {
        crate::secrets::register(token);
    }
    let config = crate::config_file::load(config_path)?;
    let host = Host::new(&config, config_path);
    let tracer = Tracer {
        host: &host,
        config_path,
        outbound: RefCell::default(),
    };
    let deps = Deps {
        plugin: &tracer,
        cache: &Bypass,
        clock: &SystemClock,
        audit: &tracer,
    };
    let started = Instant::now();
    let result = exec::respond(&config, &request, &deps);
    let elapsed = started.elapsed();
    println!("image     {}", clean(&request.image));
    match config.select(&request.image) {
        Some(plugin) => println!("plugin    {}", plugin.name),
        None => println!(
            "plugin    none: no plugin's matchImages matches the image, so the kubelet gets an empty answer"
        ),
    }
    println!("OUTBOUND");
    let outbound = tracer.outbound.take();
    if outbound.is_empty() {
        println!("  (none)");
    }
    for traced in &outbound {
        println!("  {}", line(traced));
    }
    let response = result?;
    let mut json: serde_json::Value = serde_json::from_slice(&response.encode())
        .context("cannot re-read the response for printing")?;
    if !show_secrets {
        mask_passwords(&mut json);
    }
    println!("RESPONSE ({} ms)", elapsed.as_millis());
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// One trace line: `POST https://sts.example.com:443/token  200  41 ms`.
fn line(traced: &Traced) -> String {
    let verdict = match &traced.verdict {
        Verdict::Answered(status) => status.to_string(),
        Verdict::Refused(kind) => format!("REFUSED {kind} (see the failure line or the audit log)"),
        Verdict::Failed(error) => format!("FAILED {error}"),
    };
    format!(
        "{} {}  {verdict}  {} ms",
        clean(&traced.method),
        clean(&traced.url),
        traced.elapsed.as_millis()
    )
}

/// Registered secrets redacted, control characters escaped.
fn clean(text: &str) -> String {
    crate::secrets::scrub(text).into_owned()
}

fn mask_passwords(response: &mut serde_json::Value) {
    if let Some(auth) = response.get_mut("auth").and_then(|a| a.as_object_mut()) {
        for entry in auth.values_mut() {
            if let Some(password) = entry.get_mut("password") {
                *password = "**** (--show-secrets to print it)".into();
            }
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_REQUEST_BYTES as u64 + 1).read_to_end(&mut input))
        .with_context(|| format!("cannot read the request {}", path.display()))?;
    Ok(input)
}

/// The real plugin call and audit log, keeping each call's trace.
struct Tracer<'a> {
    host: &'a Host<'a>,
    config_path: &'a Path,
    outbound: RefCell<Vec<Traced>>,
}

impl exec::PluginCall for Tracer<'_> {
    fn call(&self, plugin: &PluginConfig, request: &Request) -> Result<Outcome> {
        let artifacts = Artifacts {
            cache: self.host.store(),
            config_path: self.config_path,
        };
        let invocation = invoke_traced(
            self.host.config(),
            plugin,
            request,
            self.host.audit(),
            &artifacts,
        )?;
        self.outbound.borrow_mut().extend(invocation.outbound);
        invocation.outcome
    }
}

impl exec::Audit for Tracer<'_> {
    fn record(&self, record: &Record<'_>) {
        exec::Audit::record(self.host, record);
    }
}

/// A credential cache that holds nothing: a run always calls the plugin
/// and never changes what the kubelet's execs find.
struct Bypass;

impl exec::CredentialCache for Bypass {
    fn get(&self, _scope: &str, _key: &[u8], _now: u64) -> Option<Entry> {
        None
    }

    fn put(&self, _entry: &Entry, _now: u64) -> Result<()> {
        Ok(())
    }

    fn lock(&self, _flight: &str, _deadline: Instant) -> Option<exec::Flight> {
        None
    }

    fn failure(&self, _flight: &str) -> Option<SharedFailure> {
        None
    }

    fn put_failure(&self, _flight: &str, _failure: &SharedFailure) {}
}
