//! Resolving, checking and connecting one allowed request.

use super::body::GuardedBody;
use super::flights::Slot;
use super::{IoFuture, Timeouts};
use crate::events::{Event, EventKind, Events};
use crate::tls::TlsClient;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};
use wcp_core::capabilities::Permissions;
use wcp_core::destination::Scheme;
use wcp_core::proxy::{ProxyPolicy, ProxyResolution};

/// hyper's read buffer per connection, which also bounds a response's
/// headers (and so the host-side `fields` the plugin can clone from them).
const MAX_BUF_BYTES: usize = 16 * 1024;

/// Where an allowed request goes and under which rules.
pub struct Target {
    pub plugin: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub policy: Arc<Permissions>,
    pub tls: Arc<TlsClient>,
    pub timeouts: Timeouts,
    pub max_response_bytes: u64,
    pub events: Events,
    /// `scheme://host:port`, for events.
    pub destination: String,
    pub proxy: Arc<ProxyPolicy>,
    pub proxy_resolution: ProxyResolution,
}

/// Sends `request` to `target`: resolve, check every address, connect to
/// the first that passed (directly, or through a CONNECT tunnel to that
/// address), TLS, HTTP/1.1.
pub async fn send(
    target: Target,
    mut request: http::Request<WasiBody>,
    slot: Slot,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let t0 = std::time::Instant::now();
    let stream = match target
        .proxy
        .proxy_for(target.scheme == Scheme::Https, &target.host)
    {
        Some((proxy_host, proxy_port)) => {
            let via = (proxy_host.as_str(), *proxy_port);
            match tunnel_target(&target).await? {
                TunnelTo::Addresses(addresses) => tunnel_to_first(&target, via, &addresses).await?,
                TunnelTo::Name => {
                    let authority = authority(&target.host, target.port);
                    tunnel(&target, via, &authority).await?
                }
            }
        }
        None => {
            let addresses = match resolve(&target).await? {
                Resolved::Allowed(addresses, _) => addresses,
                Resolved::Unresolvable(error) => return Err(error),
            };
            connect(&target, &addresses).await?
        }
    };
    let t_connected = std::time::Instant::now();
    let io: Box<dyn IoStream> = match target.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => Box::new(target.tls.connect(&target.host, stream).await.map_err(|e| {
            target.events.push(Event {
                kind: EventKind::TlsError,
                destination: target.destination.clone(),
                address: None,
                detail: format!("TLS handshake failed: {e}; is the server's CA in the OS store or tls.caBundle?"),
            });
            HttpError::TlsCertificateError
        })?),
    };
    let (mut sender, conn) = tokio::time::timeout(
        target.timeouts.connect,
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_BUF_BYTES)
            .handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let t_secured = std::time::Instant::now();
    // The slot is held for as long as the connection is open.
    let conn_task = tokio::spawn(async move {
        let _slot = slot;
        conn.await
    });

    // Origin-form on the wire; the authority travels in the Host header.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let response = tokio::time::timeout(target.timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let us = |a: std::time::Instant, b: std::time::Instant| {
        b.saturating_duration_since(a).as_micros() as u64
    };
    tracing::debug!(
        destination = %target.destination,
        connect_us = us(t0, t_connected),
        tls_us = us(t_connected, t_secured),
        first_byte_us = us(t_secured, std::time::Instant::now()),
        "outbound request phases (tls_us: TLS and HTTP handshakes, trust roots on first use)"
    );
    let limit = target.max_response_bytes;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        target.events.push(Event {
            kind: EventKind::ResponseTooLarge,
            destination: target.destination.clone(),
            address: None,
            detail: format!(
                "upstream announced {length} bytes, over the limit of {limit} (limits.maxHttpResponseBytes)"
            ),
        });
        conn_task.abort();
        return Err(HttpError::HttpResponseBodySize(Some(limit)));
    }
    let between_bytes = target.timeouts.between_bytes;
    let events = target.events.clone();
    let destination = target.destination.clone();
    let response = response.map(|incoming| {
        GuardedBody::new(incoming, limit, between_bytes, events, destination).boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match conn_task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Ok(()),
        }
    });
    Ok((response, io))
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> IoStream for T {}

/// What a name lookup in the host gave.
enum Resolved {
    /// Addresses that passed the policy (never empty), and how many others
    /// the name also resolved to were refused.
    Allowed(Vec<SocketAddr>, usize),
    /// The host could not resolve the name (the event is already raised).
    Unresolvable(HttpError),
}

/// Resolves the host in the host process and keeps only addresses the
/// policy allows for this request. Every refused address raises an event;
/// a name with no allowed address is refused. The lookup is bounded by the
/// request's DNS timeout (within the connect timeout, itself capped by the
/// call's deadline), and the lookup thread is never waited for past it
/// (see `run_plugin`).
async fn resolve(target: &Target) -> Result<Resolved, HttpError> {
    let candidates: Vec<SocketAddr> = match target.host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
            match tokio::time::timeout(target.timeouts.dns, lookup).await {
                Err(_) => {
                    return Ok(Resolved::Unresolvable(dns_failure(
                        target,
                        format!("name lookup of {} timed out", target.host),
                        HttpError::DnsTimeout,
                    )));
                }
                Ok(Err(e)) => {
                    return Ok(Resolved::Unresolvable(dns_failure(
                        target,
                        format!("name lookup of {} failed: {e}", target.host),
                        HttpError::DnsError {
                            rcode: Some("lookup failed".into()),
                            info_code: None,
                        },
                    )));
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    let mut allowed = Vec::new();
    let mut refused = 0;
    for addr in candidates {
        match target
            .policy
            .check_address(target.scheme, &target.host, target.port, addr.ip())
        {
            Ok(()) => allowed.push(addr),
            Err(range) => {
                refused += 1;
                target.events.push(Event {
                    kind: EventKind::DestinationIpProhibited,
                    destination: target.destination.clone(),
                    address: Some(addr.ip().to_string()),
                    detail: format!(
                        "{} resolves to a {range} address; allowing it takes a grant naming that IP (requested as that literal) or a range under grants.allowPrivateNetworks",
                        target.host
                    ),
                });
            }
        }
    }
    if allowed.is_empty() {
        return Err(HttpError::DestinationIpProhibited);
    }
    Ok(Resolved::Allowed(allowed, refused))
}

/// Raises the `dns_error` event and returns `error`.
fn dns_failure(target: &Target, detail: String, error: HttpError) -> HttpError {
    target.events.push(Event {
        kind: EventKind::DnsError,
        destination: target.destination.clone(),
        address: None,
        detail,
    });
    error
}

/// Where a CONNECT tunnel should lead.
enum TunnelTo {
    /// Checked addresses, tried in order (the name stays for SNI and Host).
    Addresses(Vec<SocketAddr>),
    /// The name itself: `proxy.nameResolution: proxy` and the host could
    /// not resolve it.
    Name,
}

/// Applies the address policy before anything reaches the proxy.
async fn tunnel_target(target: &Target) -> Result<TunnelTo, HttpError> {
    match (resolve(target).await?, target.proxy_resolution) {
        (Resolved::Allowed(addresses, _), ProxyResolution::Host) => {
            Ok(TunnelTo::Addresses(addresses))
        }
        // Tunnelling by name lets the proxy pick the address, so every
        // address this host sees must pass, not just one.
        (Resolved::Allowed(_, 0), ProxyResolution::Proxy) => Ok(TunnelTo::Name),
        (Resolved::Allowed(..), ProxyResolution::Proxy) => Err(HttpError::DestinationIpProhibited),
        (Resolved::Unresolvable(_), ProxyResolution::Proxy) => {
            tracing::info!(plugin = %target.plugin, destination = %target.destination, "name not resolvable on this node; tunnelling by name (proxy.nameResolution: proxy)");
            Ok(TunnelTo::Name)
        }
        (Resolved::Unresolvable(error), ProxyResolution::Host) => {
            target.events.push(Event {
                kind: EventKind::DnsError,
                destination: target.destination.clone(),
                address: None,
                detail: format!(
                    "behind the proxy the host still resolves and checks {} itself and could not; if only the proxy can resolve public names on this node, set proxy.nameResolution: proxy in the host config (the proxy's DNS then decides where the name lands)",
                    target.host
                ),
            });
            Err(error)
        }
    }
}

/// `host:port` as a CONNECT authority (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{}]:{port}", host.trim_matches(['[', ']']))
    } else {
        format!("{host}:{port}")
    }
}

/// Tunnels to the first checked address the proxy connects to.
async fn tunnel_to_first(
    target: &Target,
    via: (&str, u16),
    addresses: &[SocketAddr],
) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::ConnectionRefused;
    for addr in addresses {
        match tunnel(target, via, &addr.to_string()).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect(target: &Target, addresses: &[SocketAddr]) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::ConnectionRefused;
    for addr in addresses {
        match tokio::time::timeout(target.timeouts.connect, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = HttpError::Connect(e),
            Err(_) => last = HttpError::ConnectionTimeout,
        }
    }
    Err(last)
}

/// Opens a CONNECT tunnel to `authority` (a checked address, or the name
/// under `proxy.nameResolution: proxy`) through the HTTP proxy `via`.
async fn tunnel(
    target: &Target,
    (proxy_host, proxy_port): (&str, u16),
    authority: &str,
) -> Result<TcpStream, HttpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = TcpStream::connect((proxy_host, proxy_port));
    let mut stream = match tokio::time::timeout(target.timeouts.connect, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(HttpError::Connect(e)),
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let handshake = async {
        stream
            .write_all(
                format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 || stream.read(&mut byte).await? == 0 {
                return Err(std::io::Error::other(
                    "proxy closed or sent an oversized response to CONNECT",
                ));
            }
            head.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&head);
        let ok = status
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code == "200");
        if !ok {
            let line = status.lines().next().unwrap_or_default().to_string();
            return Err(std::io::Error::other(format!(
                "proxy refused CONNECT: {line}"
            )));
        }
        Ok(())
    };
    match tokio::time::timeout(target.timeouts.connect, handshake).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => {
            tracing::info!(plugin = %target.plugin, proxy = %format!("{proxy_host}:{proxy_port}"), "proxy tunnel failed: {e}");
            Err(HttpError::Connect(e))
        }
        Err(_) => Err(HttpError::ConnectionTimeout),
    }
}
