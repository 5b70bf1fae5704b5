//! OCI distribution of plugins, install-time only: `pull` fetches a
//! component published in the Wasm OCI artifact layout (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and
//! `push` publishes one, with the maintained `oci-client` crate.
//!
//! The kubelet's exec path never reaches this module (the runtime-only
//! build does not even link it): it loads the local file `pull` wrote, and
//! only through an artifact whose record names the pinned manifest.
//!
//! Registry answers are untrusted: every digest is recomputed here (the
//! manifest against the pin, the layer against the manifest), sizes are
//! bounded before anything is buffered, and nothing is written until every
//! check (signatures included) has passed.

mod pull;
mod push;

pub use pull::{PullArgs, pull};
pub use push::push;

use anyhow::{Context, Result, bail};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wcp_core::provenance::OciReference;

/// How to reach and authenticate to a registry.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RegistryArgs {
    /// PEM CA certificates to trust beside the OS store (the host config's
    /// tls.caBundle is trusted too when --config is given).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Docker config file with registry credentials (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, if present).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
    /// User name for HTTP Basic auth (with --password-file).
    #[arg(long, value_name = "NAME", requires = "password_file")]
    pub username: Option<String>,
    /// File holding the password (never given on the command line).
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
}

/// The longest a registry may take to accept a connection, and to send
/// the next bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An `oci-client` client over HTTPS only, trusting the OS store plus the
/// given CA files.
pub(crate) fn client(ca_files: &[&Path]) -> Result<oci_client::Client> {
    // reqwest is built without a default TLS provider: use the ring one the
    // host's own TLS client uses (a second install attempt is harmless).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra_root_certificates = Vec::new();
    for path in ca_files {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read CA file {}", path.display()))?;
        let before = extra_root_certificates.len();
        for block in pem.split_inclusive("-----END CERTIFICATE-----") {
            if let Some(start) = block.find("-----BEGIN CERTIFICATE-----") {
                extra_root_certificates.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: block.as_bytes()[start..].to_vec(),
                });
            }
        }
        if extra_root_certificates.len() == before {
            bail!("CA file {} holds no PEM certificate", path.display());
        }
    }
    let config = ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates,
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("wasm-credential-provider/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config).context("cannot set up the registry client")
}

/// The credentials for `reference`'s registry: explicit ones, else the
/// docker config's, else anonymous. A password read is registered as a
/// secret, so no log line can carry it.
pub(crate) fn auth(args: &RegistryArgs, reference: &OciReference) -> Result<RegistryAuth> {
    if let (Some(user), Some(file)) = (&args.username, &args.password_file) {
        let password = crate::signature::read_small(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        crate::secrets::register(&password);
        return Ok(RegistryAuth::Basic(user.clone(), password));
    }
    let path = match &args.docker_config {
        Some(path) => path.clone(),
        None => {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
            match dir.map(|d| d.join("config.json")) {
                Some(path) if path.exists() => path,
                _ => return Ok(RegistryAuth::Anonymous),
            }
        }
    };
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read docker config {}", path.display()))?;
    match docker_credential::get_credential_from_reader(
        std::io::BufReader::new(file),
        &reference.registry,
    ) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            crate::secrets::register(&password);
            Ok(RegistryAuth::Basic(user, password))
        }
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            crate::secrets::register(&token);
            Ok(RegistryAuth::Bearer(token))
        }
        Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured) => {
            Ok(RegistryAuth::Anonymous)
        }
        // A helper's output may hold a credential: name the helper only.
        Err(docker_credential::CredentialRetrievalError::HelperFailure { helper, .. }) => {
            Err(anyhow::anyhow!("credential helper {helper:?} failed"))
                .with_context(|| format!("docker config {}", path.display()))
        }
        Err(e) => Err(anyhow::anyhow!("{e}")).with_context(|| {
            format!(
                "docker config {}: no usable credentials for {}",
                path.display(),
                reference.registry
            )
        }),
    }
}

/// `reference` in the form `oci-client` parses.
pub(crate) fn client_reference(reference: &OciReference) -> Result<oci_client::Reference> {
    reference
        .without_scheme()
        .parse()
        .with_context(|| format!("{reference} is not a reference the registry client accepts"))
}

/// A single-threaded runtime for one command's registry traffic.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// One line for a registry client error: oci-client's own text, which can
/// carry a registry's answer (escaped by the stderr writer).
pub(crate) fn registry_error(e: oci_client::errors::OciDistributionError) -> anyhow::Error {
    anyhow::Error::new(e)
}
