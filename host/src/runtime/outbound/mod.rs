//! The only network path a plugin has: `wasi:http/outgoing-handler`.
//!
//! wasmtime-wasi-http is built without its default sender, so the crate does
//! not compile unless this hook decides every request. Each request's final
//! URI is checked against what the plugin declared *and* the operator
//! granted; the host then resolves the name itself, checks every address,
//! and connects only to addresses that passed (no DNS rebinding window).
//! Redirects are never followed here: a plugin that follows one makes a new
//! request, which is checked again.

mod body;
mod connect;
mod flights;
pub mod trace;

use crate::events::{Event, EventKind, Events};
use crate::tls::TlsClient;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};
use wcp_core::capabilities::Permissions;
use wcp_core::destination::Scheme;
use wcp_core::proxy::{ProxyPolicy, ProxyResolution};

pub use flights::Flights;
use trace::{Trace, Verdict};

/// Largest write the plugin may make to an outgoing body at once, and how
/// many such chunks wait in the host for the connection: an unsent body
/// holds at most `(BUFFER_CHUNKS + 1) * CHUNK_BYTES` of host memory.
pub const OUTGOING_BODY_CHUNK_BYTES: usize = 16 * 1024;
pub const OUTGOING_BODY_BUFFER_CHUNKS: usize = 1;

/// What one plugin's requests are checked against.
pub struct OutboundHooks {
    pub plugin: String,
    pub policy: Arc<Permissions>,
    pub tls: Arc<TlsClient>,
    /// When the plugin call must be over; network timeouts never exceed it.
    pub deadline: Instant,
    pub max_response_bytes: u64,
    pub events: Events,
    pub proxy: Arc<ProxyPolicy>,
    pub proxy_resolution: ProxyResolution,
    /// The call's bound on requests in flight and in total.
    pub flights: Flights,
    /// Every request and what became of it.
    pub trace: Trace,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// The timeouts of one request, each capped by the call's remaining time.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The host's own name lookup: nine tenths of the connect timeout, so
    /// that a lookup that never answers is reported as such (a `dns_error`
    /// in the failure line) rather than as a bare deadline.
    pub dns: Duration,
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Timeouts {
    fn new(options: Option<RequestOptions>, deadline: Instant) -> Self {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let pick = |asked: Option<Duration>| asked.map_or(remaining, |d| d.min(remaining));
        let connect = pick(options.and_then(|o| o.connect_timeout));
        Self {
            dns: connect.mul_f64(0.9),
            connect,
            first_byte: pick(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: pick(options.and_then(|o| o.between_bytes_timeout)),
        }
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> ResponseFuture {
        let uri = request.uri().clone();
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => return Box::new(async { Err(HttpError::HttpProtocolError) }),
        };
        let Some(host) = uri.host().map(str::to_string) else {
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        };
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let destination = format!("{}://{}:{port}", scheme.as_str(), host);
        let started = Instant::now();
        let method = request.method().to_string();
        let url = trace::url_of(&destination, &uri);
        // Every attempt counts, denied ones included: they raise events.
        let slot = match self.flights.start() {
            Ok(slot) => slot,
            Err(limit) => {
                self.events.push(Event {
                    kind: EventKind::OutboundLimit,
                    destination,
                    address: None,
                    detail: limit.describe(),
                });
                let refused = Verdict::Refused(EventKind::OutboundLimit);
                self.trace.push(&method, &url, refused, started);
                return Box::new(async { Err(HttpError::ConnectionLimitReached) });
            }
        };
        if let Err(denial) = self.policy.check_request(scheme, &host, port) {
            let entry = format!(
                "{}://{}{}",
                scheme.as_str(),
                host,
                if port == scheme.default_port() {
                    String::new()
                } else {
                    format!(":{port}")
                }
            );
            self.events.push(Event {
                kind: EventKind::DestinationNotAllowed,
                destination: destination.clone(),
                address: None,
                detail: format!(
                    "{}; allowing it takes both the plugin's declaration and \"{entry}\" under grants.outbound of plugin {:?}",
                    denial.describe(),
                    self.plugin
                ),
            });
            let refused = Verdict::Refused(EventKind::DestinationNotAllowed);
            self.trace.push(&method, &url, refused, started);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // `Host` names exactly what was checked: never the authority's
        // user info, which wasi-http would otherwise copy into it.
        let checked = match uri.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        match http::HeaderValue::from_str(&checked) {
            Ok(value) => {
                request.headers_mut().insert(http::header::HOST, value);
            }
            Err(_) => return Box::new(async { Err(HttpError::HttpRequestUriInvalid) }),
        }
        // Vendors' audit logs (CloudTrail and the like) should see who
        // called; a plugin that names itself keeps its own.
        if !request.headers().contains_key(http::header::USER_AGENT)
            && let Ok(value) = http::HeaderValue::from_str(&user_agent(&self.plugin))
        {
            request
                .headers_mut()
                .insert(http::header::USER_AGENT, value);
        }
        tracing::debug!(plugin = %self.plugin, destination = %destination, "outbound request allowed");
        let target = connect::Target {
            plugin: self.plugin.clone(),
            scheme,
            host,
            port,
            policy: self.policy.clone(),
            tls: self.tls.clone(),
            timeouts: Timeouts::new(options, self.deadline),
            max_response_bytes: self.max_response_bytes,
            events: self.events.clone(),
            destination,
            proxy: self.proxy.clone(),
            proxy_resolution: self.proxy_resolution,
        };
        let trace = self.trace.clone();
        Box::new(async move {
            let result = connect::send(target, request, slot).await;
            let verdict = match &result {
                Ok((response, _)) => Verdict::Answered(response.status().as_u16()),
                Err(error) => Verdict::Failed(format!("{error:?}")),
            };
            trace.push(&method, &url, verdict, started);
            result
        })
    }
}

/// `wasm-credential-provider/<version> (plugin <name>)`. Plugin names are
/// letters, digits, `-`, `_` and `.` (validated with the host config), so
/// the value is always a valid header.
fn user_agent(plugin: &str) -> String {
    format!(
        "wasm-credential-provider/{} (plugin {plugin})",
        env!("CARGO_PKG_VERSION")
    )
}
