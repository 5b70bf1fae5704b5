//! Resolving, checking and connecting one allowed request.

use super::body::GuardedBody;
use super::{IoFuture, Timeouts};
use crate::runtime::events::{Event, Events};
use crate::tls::TlsPolicy;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};
use wcp_core::capabilities::Effective;
use wcp_core::destination::Scheme;
use wcp_core::proxy::ProxyPolicy;

/// Where an allowed request goes and under which rules.
pub struct Target {
    pub plugin: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub policy: Arc<Effective>,
    pub tls: Arc<TlsPolicy>,
    pub timeouts: Timeouts,
    pub max_response_bytes: u64,
    pub events: Events,
    /// `scheme://host:port`, for events.
    pub destination: String,
    pub proxy: Arc<ProxyPolicy>,
}

/// Sends `request` to `target`: resolve, check every address, connect to
/// the first that passed, TLS, HTTP/1.1.
pub async fn send(
    target: Target,
    mut request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let stream = match target
        .proxy
        .proxy_for(target.scheme == Scheme::Https, &target.host)
    {
        // The operator's proxy resolves and connects; the target was
        // already checked against the plugin's declaration and grant.
        Some((proxy_host, proxy_port)) => tunnel(&target, proxy_host, *proxy_port).await?,
        None => {
            let addresses = resolve(&target).await?;
            connect(&target, &addresses).await?
        }
    };
    let io: Box<dyn IoStream> = match target.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => Box::new(target.tls.connect(&target.host, stream).await.map_err(|e| {
            target.events.push(Event {
                kind: "tls_error",
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
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let conn_task = tokio::spawn(conn);

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
    let limit = target.max_response_bytes;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        target.events.push(Event {
            kind: "response_too_large",
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

/// Resolves the host in the host process and keeps only addresses the
/// policy allows.
async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, HttpError> {
    let candidates: Vec<SocketAddr> = match target.host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
            match tokio::time::timeout(target.timeouts.connect, lookup).await {
                Err(_) => {
                    target.events.push(Event {
                        kind: "dns_error",
                        destination: target.destination.clone(),
                        address: None,
                        detail: format!("name lookup of {} timed out", target.host),
                    });
                    return Err(HttpError::DnsTimeout);
                }
                Ok(Err(e)) => {
                    target.events.push(Event {
                        kind: "dns_error",
                        destination: target.destination.clone(),
                        address: None,
                        detail: format!("name lookup of {} failed: {e}", target.host),
                    });
                    return Err(HttpError::DnsError {
                        rcode: Some("lookup failed".into()),
                        info_code: None,
                    });
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    let mut allowed = Vec::new();
    for addr in candidates {
        match target.policy.check_address(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(range) => target.events.push(Event {
                kind: "destination_ip_prohibited",
                destination: target.destination.clone(),
                address: Some(addr.ip().to_string()),
                detail: format!(
                    "{} resolves to a {range} address; allowing it takes a grant naming that IP or a range under grants.allowPrivateNetworks",
                    target.host
                ),
            }),
        }
    }
    if allowed.is_empty() {
        return Err(HttpError::DestinationIpProhibited);
    }
    Ok(allowed)
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

/// Opens a CONNECT tunnel to the target through an HTTP proxy.
async fn tunnel(
    target: &Target,
    proxy_host: &str,
    proxy_port: u16,
) -> Result<TcpStream, HttpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = TcpStream::connect((proxy_host, proxy_port));
    let mut stream = match tokio::time::timeout(target.timeouts.connect, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(HttpError::Connect(e)),
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let authority = if target.host.contains(':') {
        format!("[{}]:{}", target.host.trim_matches(['[', ']']), target.port)
    } else {
        format!("{}:{}", target.host, target.port)
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
