//! Outbound TLS: the OS trust store plus an optional operator CA bundle
//! (private registries and test fixtures), never a bundled root list.

use crate::trust_roots;
use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The TLS client (connector and trust roots) shared by all of a plugin's requests. Built
/// on first use: reading the OS store costs milliseconds that a plugin
/// without HTTPS (or a cache hit) should not pay.
pub struct TlsClient {
    ca_bundle: Option<PathBuf>,
    /// Where the parsed OS roots are kept between execs (`trust_roots`).
    snapshot: Option<trust_roots::CacheStore>,
    connector: OnceLock<Result<TlsConnector, String>>,
}

impl TlsClient {
    pub fn new(ca_bundle: Option<PathBuf>) -> Self {
        Self {
            ca_bundle,
            snapshot: None,
            connector: OnceLock::new(),
        }
    }

    /// Reads and keeps the parsed OS roots in the cache directory.
    pub fn with_snapshot_in(mut self, cache: Option<&crate::cache::CacheStore>) -> Self {
        self.snapshot = cache.and_then(trust_roots::CacheStore::of);
        self
    }

    /// Starts building the connector (reading the OS trust roots: a
    /// fingerprint of every file in the store, then the snapshot or a
    /// parse, milliseconds on a real node) on a thread of its own, so that
    /// it overlaps loading and instantiating the component instead of
    /// delaying the plugin's first HTTPS request. The first request waits
    /// for it if it is not done (`OnceLock` runs the build once); if no
    /// thread can be started, that request builds it as before.
    pub fn warm_up(self: &Arc<Self>) {
        tracing::debug!("trust roots warm-up started");
        let client = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("wcp-trust-roots".into())
            .spawn(move || {
                let _ = client.connector();
            });
    }

    fn connector(&self) -> std::io::Result<&TlsConnector> {
        self.connector
            .get_or_init(|| {
                build(self.ca_bundle.as_deref(), self.snapshot.as_ref())
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| std::io::Error::other(e.clone()))
    }

    /// Performs the handshake, verifying the certificate for `host`.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = self.connector()?;
        let name = host.trim_matches(['[', ']']);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        connector.connect(server_name, stream).await
    }
}

/// Trusts the OS roots and, if given, every certificate in `ca_bundle`.
fn build(
    ca_bundle: Option<&Path>,
    snapshot: Option<&trust_roots::CacheStore>,
) -> Result<TlsConnector> {
    {
        let started = std::time::Instant::now();
        let (anchors, source) = trust_roots::os_roots(snapshot);
        tracing::debug!(
            ?source,
            roots = anchors.len(),
            us = started.elapsed().as_micros() as u64,
            "OS trust roots"
        );
        let mut roots = RootCertStore { roots: anchors };
        if let Some(path) = ca_bundle {
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read CA bundle {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("invalid PEM in CA bundle {}", path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("unusable certificate in CA bundle {}", path.display())
                })?;
                added += 1;
            }
            anyhow::ensure!(
                added > 0,
                "CA bundle {} holds no certificates",
                path.display()
            );
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("cannot configure TLS")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}
