//! The wasmtime glue: compile, link, instantiate and call one plugin under
//! its limits. It uses the pure core for everything protocol-related and
//! keeps only what needs wasmtime.

mod compile;
mod deadline;
pub use compile::Artifacts;
pub mod engine;
mod failure;
mod guest_log;
mod limiter;
mod link;
mod outbound;
mod request_strings;
mod state;
pub mod wit;

use crate::artifact::Provenance;
use crate::events::{Event, Events};
use crate::module::VerifiedModule;
use crate::sandbox::Sandbox;
use crate::tls::TlsClient;
use anyhow::{Context, Result, bail};
use failure::{deadline_text, describe_failure};
use guest_log::{GuestLog, clean};
use limiter::CallLimiter;
use outbound::OutboundHooks;
use outbound::trace::Trace;
pub use outbound::trace::{Traced, Verdict};
use state::PluginState;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpCtx;
use wcp_core::answer::Answer;
use wcp_core::config::PluginConfig;
use wcp_core::protocol::Request;
use wcp_core::proxy::{ProxyPolicy, ProxyResolution};
use wit::{ApiVersion, PluginRequest, Refusal};

/// Bytes of stdout and of stderr kept from a plugin.
const CAPTURE_BYTES: usize = 64 * 1024;

/// Host-side state a plugin can create lives in the resource table (HTTP
/// fields, requests, responses, bodies, streams, pollables), outside its
/// linear memory. Together these bound it: at most `TABLE_ENTRIES` live
/// resources, a header map the plugin builds holds at most
/// `FIELD_BYTES`, one copied from a response at most hyper's 16 KiB read
/// buffer, an unsent body 32 KiB. A real provider has a few dozen live
/// resources at a time.
pub const TABLE_ENTRIES: usize = 512;
pub const FIELD_BYTES: usize = 16 * 1024;
/// Largest `get-random-bytes` answer the host builds.
pub const RANDOM_BYTES: u64 = 64 * 1024;

/// What a plugin call produced.
pub enum Outcome {
    Answer(Answer),
    /// The plugin has nothing for this image (message already redacted).
    NoCredentials(String),
}

/// Everything one plugin call needs.
pub struct Call<'a> {
    pub plugin: &'a PluginConfig,
    pub module: &'a VerifiedModule,
    pub request: &'a Request,
    pub sandbox: Sandbox,
    pub tls: TlsClient,
    pub proxy: ProxyPolicy,
    pub proxy_resolution: ProxyResolution,
    /// Where the precompiled artifact is found or made.
    pub artifacts: &'a Artifacts<'a>,
}

/// What one call produced, returned whole (the caller audits all of it,
/// also when the call failed).
pub struct CallReport {
    pub outcome: Result<Outcome>,
    /// How the component was obtained, if it got that far.
    pub provenance: Option<Provenance>,
    /// Where its module came from and who signed it (from the artifact).
    pub origin: Option<wcp_core::provenance::Provenance>,
    /// Denials and cut-offs raised during the call, in order.
    pub events: Vec<Event>,
    /// Every outbound request of the call and what became of it.
    pub outbound: Vec<Traced>,
}

/// Runs the call within its deadline and memory limit.
pub fn run_plugin(call: Call<'_>) -> CallReport {
    let events = Events::default();
    let trace = Trace::default();
    let mut provenance = None;
    let mut origin = None;
    let outcome = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let outcome = runtime.block_on(run_async(
                call,
                events.clone(),
                trace.clone(),
                &mut provenance,
                &mut origin,
            ));
            // A name lookup that never answers sits in a blocking thread;
            // dropping the runtime would wait for it, past the deadline.
            // Leave it behind: the process exits right after the response.
            runtime.shutdown_background();
            outcome
        }
        Err(e) => Err(anyhow::Error::from(e).context("cannot start the async runtime")),
    };
    CallReport {
        outcome,
        provenance,
        origin,
        events: events.take(),
        outbound: trace.take(),
    }
}

async fn run_async(
    call: Call<'_>,
    events: Events,
    trace: Trace,
    provenance: &mut Option<Provenance>,
    origin: &mut Option<wcp_core::provenance::Provenance>,
) -> Result<Outcome> {
    let Call {
        plugin,
        module,
        request,
        sandbox,
        tls,
        proxy,
        proxy_resolution,
        artifacts,
    } = call;
    let limits = &plugin.limits;
    let name = plugin.name.as_str();
    let tls = Arc::new(tls);
    if sandbox.policy.outbound.may_use_tls() {
        tls.warm_up();
    }
    let t0 = Instant::now();
    let engine = engine::new()?;
    let t_engine = Instant::now();
    let (component, how, verified) = compile::component(&engine, module, plugin, artifacts)
        .with_context(|| format!("plugin {name:?}: module {}", plugin.module.display()))?;
    *provenance = Some(how);
    *origin = Some(verified);
    let version = ApiVersion::of(&engine, &component).with_context(|| {
        format!(
            "plugin {name:?}: module {} is not a provider",
            plugin.module.display()
        )
    })?;
    let component_type = component.component_type();
    let mut imports = std::collections::BTreeSet::new();
    for (import, _) in component_type.imports(&engine) {
        if crate::imports::classify(import).is_none() {
            bail!(
                "plugin {name:?}: module {} imports {import}, which this host never gives a provider",
                plugin.module.display()
            );
        }
        imports.insert(link::unversioned(import));
    }
    let t_component = Instant::now();
    let linker = link::linker(&engine, version, &imports)?;
    let t_linker = Instant::now();
    // The budget covers the plugin's own work (instantiate and call, host
    // I/O included). A first-use compile before it had its own bound, short
    // enough that both fit the exec budget (`budget::compile_deadline`);
    // time already spent (waiting for a concurrent exec) shortens the call
    // rather than pushing the exec past the kubelet's kill.
    let deadline = crate::budget::call_deadline(limits.timeout, t_linker);

    let Sandbox {
        config,
        env,
        token,
        policy,
        redactor,
        token_note: _,
    } = sandbox;
    let stdout = MemoryOutputPipe::new(CAPTURE_BYTES);
    let stderr = MemoryOutputPipe::new(CAPTURE_BYTES);
    // No preopens, no stdin, no inherited environment or args; sockets and
    // name lookup explicitly off (defaults have changed across releases).
    let wasi = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .envs(&env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(RANDOM_BYTES)
        .build();
    let mut http = WasiHttpCtx::new();
    http.set_field_size_limit(FIELD_BYTES);
    let mut table = ResourceTable::new();
    table.set_max_capacity(TABLE_ENTRIES);
    let state = PluginState {
        wasi,
        http,
        table,
        hooks: OutboundHooks {
            plugin: name.to_string(),
            policy: Arc::new(policy),
            tls,
            deadline,
            max_response_bytes: limits.max_http_response_bytes,
            events,
            proxy: Arc::new(proxy),
            proxy_resolution,
            flights: outbound::Flights::default(),
            trace,
        },
        limits: CallLimiter::new(limits.memory_bytes),
        config,
        log: GuestLog::new(name, redactor),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    // Held until the call has returned.
    let interrupt = deadline::start(&engine, deadline.saturating_duration_since(Instant::now()));
    tracing::debug!(
        by = if interrupt.is_timer() {
            "timer"
        } else {
            "thread"
        },
        "guest deadline armed"
    );

    let plugin_request = PluginRequest {
        image: &request.image,
        service_account_token: token.as_deref(),
        service_account_annotations: &request.service_account_annotations,
    };
    let mut t_instance = None;
    let call = async {
        let provider = version.instantiate(&mut store, &component, &linker).await?;
        t_instance = Some(Instant::now());
        provider.get_credentials(&mut store, &plugin_request).await
    };
    let result = tokio::time::timeout_at(deadline.into(), call).await;
    let t_call = Instant::now();
    let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
    tracing::debug!(
        plugin = name,
        engine_us = us(t0, t_engine),
        component_us = us(t_engine, t_component),
        linker_us = us(t_component, t_linker),
        store_us = us(t_linker, t_instance.unwrap_or(t_call)),
        call_us = us(t_instance.unwrap_or(t_call), t_call),
        memory_peak_bytes = store.data().limits.peak_bytes(),
        "plugin call phases (store_us covers store setup and instantiation)"
    );

    let log = &mut store.data_mut().log;
    log.emit_captured("stdout", &stdout.contents());
    log.emit_captured("stderr", &stderr.contents());
    log.finish();
    let redactor = store.data().log.redactor().clone();
    let memory_refused = store.data().limits.refused();
    // The process ends right after the response is written: tearing down
    // the instance and its memory would only delay that.
    std::mem::forget(store);

    let returned = match result {
        Err(_elapsed) => bail!(
            "plugin {name:?} did not answer within {}",
            deadline_text(limits.timeout, deadline - t_linker)
        ),
        Ok(Err(err)) => {
            return Err(describe_failure(
                name,
                limits,
                deadline - t_linker,
                err,
                memory_refused,
                &redactor,
            ));
        }
        Ok(Ok(returned)) => returned,
    };
    match returned {
        Ok(answer) => Ok(Outcome::Answer(answer)),
        Err(Refusal::NoCredentials(why)) => Ok(Outcome::NoCredentials(clean(&redactor, &why))),
        Err(Refusal::Config(why)) => bail!(
            "plugin {name:?}: configuration error: {}",
            clean(&redactor, &why)
        ),
        Err(Refusal::Unauthorized(why)) => {
            bail!("plugin {name:?}: unauthorized: {}", clean(&redactor, &why))
        }
        Err(Refusal::Upstream(why)) => bail!(
            "plugin {name:?}: upstream failure: {}",
            clean(&redactor, &why)
        ),
    }
}
