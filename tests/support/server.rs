//! Real HTTP and HTTPS servers on 127.0.0.1 for the tests, with TLS
//! certificates generated at test time. Each counts the connections it
//! accepted, so a test can prove a forbidden server was never reached.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use wasmtime_wasi_http::io::TokioIo;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the server answers.
#[derive(Clone)]
pub enum Reply {
    /// Status, headers, body.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// 302 to the given location.
    Redirect(String),
    /// Headers at once, then `chunk` every `interval`, forever.
    Drip { chunk: Vec<u8>, interval: Duration },
    /// A body of `bytes` bytes streamed in 64 KiB chunks; with or without a
    /// content-length header.
    Huge { bytes: u64, announce_length: bool },
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Self {
        Reply::Full(
            status,
            vec![("content-type".into(), "text/plain".into())],
            body.as_bytes().to_vec(),
        )
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running server; it stops when the test process ends.
pub struct TestServer {
    pub addr: SocketAddr,
    pub tls: bool,
    connections: Arc<AtomicUsize>,
    open: Arc<OpenConnections>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Connections open now, and the most that were open at once.
#[derive(Default)]
struct OpenConnections {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts one open connection until dropped.
struct Open(Arc<OpenConnections>);

impl Open {
    fn new(open: Arc<OpenConnections>) -> Self {
        let now = open.now.fetch_add(1, Ordering::SeqCst) + 1;
        open.most.fetch_max(now, Ordering::SeqCst);
        Self(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A CA generated for one test, and a server certificate it signed for
/// `localhost` and `127.0.0.1`.
pub struct TestCa {
    pub ca_pem: String,
    /// The server certificate and its key as PEM, for servers the tests
    /// run as processes (the OCI registry).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wcp test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
        Self {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_chain: vec![server_cert.der().clone()],
            server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        }
    }

    /// Writes the CA certificate as PEM for the host's `tls.caBundle`.
    pub fn write_bundle(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl TestServer {
    /// A plain-HTTP server.
    pub fn http(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(None, Arc::new(handler))
    }

    /// An HTTPS server presenting a certificate from `ca`.
    pub fn https(ca: &TestCa, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(Some(ca.acceptor()), Arc::new(handler))
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>, handler: Arc<Handler>) -> Self {
        let is_tls = tls.is_some();
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(OpenConnections::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (counter, recorded, opened) = (connections.clone(), seen.clone(), open.clone());
        let addr = accept_loop(move |stream| {
            counter.fetch_add(1, Ordering::SeqCst);
            let guard = Open::new(opened.clone());
            let (handler, seen, tls) = (handler.clone(), recorded.clone(), tls.clone());
            async move {
                let _guard = guard;
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_connection(TokioIo::new(stream), handler, seen).await;
                        }
                    }
                    None => serve_connection(TokioIo::new(stream), handler, seen).await,
                }
            }
        });
        TestServer {
            addr,
            tls: is_tls,
            connections,
            open,
            seen,
        }
    }

    /// The most connections that were open at the same time.
    pub fn most_open_at_once(&self) -> usize {
        self.open.most.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (TCP level, before TLS).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests served so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `scheme://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{path}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// `scheme://localhost:port` + `path`: a name that resolves to loopback.
    pub fn localhost_url(&self, path: &str) -> String {
        format!(
            "{}://localhost:{}{path}",
            if self.tls { "https" } else { "http" },
            self.addr.port()
        )
    }
}

type ReplyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn serve_connection<I>(io: I, handler: Arc<Handler>, seen: Arc<Mutex<Vec<Seen>>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let handler = handler.clone();
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                let request = Seen {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body,
                };
                let reply = handler(&request);
                seen.lock().unwrap().push(request);
                Ok::<_, Infallible>(respond(reply))
            }
        });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

fn respond(reply: Reply) -> hyper::Response<ReplyBody> {
    match reply {
        Reply::Full(status, headers, body) => {
            let mut builder = hyper::Response::builder().status(status);
            for (k, v) in headers {
                builder = builder.header(k, v);
            }
            builder.body(Full::new(Bytes::from(body)).boxed()).unwrap()
        }
        Reply::Redirect(location) => hyper::Response::builder()
            .status(302)
            .header("location", location)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap(),
        Reply::Drip { chunk, interval } => {
            let stream = futures_stream(move |_| {
                let chunk = chunk.clone();
                async move {
                    tokio::time::sleep(interval).await;
                    Some(Bytes::from(chunk))
                }
            });
            hyper::Response::builder()
                .status(200)
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        Reply::Huge {
            bytes,
            announce_length,
        } => {
            const CHUNK: u64 = 64 * 1024;
            let stream = futures_stream(move |i: u64| async move {
                let sent = i * CHUNK;
                (sent < bytes).then(|| Bytes::from(vec![b'z'; CHUNK.min(bytes - sent) as usize]))
            });
            let mut builder = hyper::Response::builder().status(200);
            if announce_length {
                builder = builder.header("content-length", bytes.to_string());
            }
            builder.body(StreamBody::new(stream).boxed()).unwrap()
        }
    }
}

/// A stream of body frames produced by `next(i)` for i = 0, 1, ... until it
/// returns `None`.
fn futures_stream<F, Fut>(
    next: F,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + Sync + 'static,
{
    futures_util::stream::unfold((next, 0u64), |(next, i)| async move {
        let bytes = next(i).await?;
        Some((Ok(Frame::data(bytes)), (next, i + 1)))
    })
}

/// An HTTP CONNECT proxy on 127.0.0.1 that records the targets it tunnels to.
pub struct TestProxy {
    pub addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub fn start() -> Self {
        Self::with_names(Vec::new())
    }

    /// A proxy that resolves each `(name, address)` itself, as a corporate
    /// proxy resolves public names the node cannot.
    pub fn with_names(names: Vec<(String, SocketAddr)>) -> Self {
        let targets = Arc::new(Mutex::new(Vec::new()));
        let recorded = targets.clone();
        let names = Arc::new(names);
        let addr = accept_loop(move |stream| {
            let recorded = recorded.clone();
            let names = names.clone();
            async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let target = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                recorded.lock().unwrap().push(target.clone());
                let mut client = reader.into_inner();
                let resolved = names
                    .iter()
                    .find(|(name, addr)| format!("{name}:{}", addr.port()) == target)
                    .map_or(target.clone(), |(_, addr)| addr.to_string());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&resolved).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        Self { addr, targets }
    }

    /// `host:port` targets tunnelled so far.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// Listens on 127.0.0.1 (a free port) in a thread of its own with a tokio
/// runtime, and serves each accepted connection with `serve` on its own
/// task. Runs until the test process ends.
fn accept_loop<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    // As production servers do: without it, Nagle on a
                    // response written in two parts meets the client's
                    // delayed ACK and every request waits ~40 ms.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream));
                }
            }
        });
    });
    addr
}
