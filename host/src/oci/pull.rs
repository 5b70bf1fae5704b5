//! `pull`: fetch a Wasm OCI artifact, check every digest (and, for a
//! configured plugin, its `source` pin and `verify` signature), then write
//! the module and its pull record atomically. Nothing is written unless
//! every check passed.

use super::{RegistryArgs, auth, block_on, client, client_reference, registry_error};
use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};
use wcp_core::config::PluginConfig;
use wcp_core::provenance::{
    Digest256, MAX_MANIFEST_BYTES, OCI_MANIFEST_MEDIA_TYPE, OciReference, PullRecord,
    RegistrySignature, SignatureSource, cosign_layers, pull_record_path, wasm_layer,
};

/// Manifest media types a signature tag may be served as (cosign writes
/// OCI manifests; older registries convert to Docker's).
const SIGNATURE_MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// At most this many signatures are fetched from a signature manifest.
const MAX_SIGNATURES: usize = 16;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// oci://<registry>/<repository>:<tag> or @sha256:<digest>. With
    /// --plugin, defaults to the plugin's `source`.
    pub reference: Option<String>,
    /// Install the module of this plugin of the host config (--config): its
    /// `source`, `module` path, `sha256` pin and `verify` policy.
    #[arg(long, value_name = "NAME", conflicts_with = "output")]
    pub plugin: Option<String>,
    /// Where to write the module (without --plugin).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `pull`; `config` is the global `--config`, if any.
pub fn pull(args: &PullArgs, config: Option<&Path>) -> Result<()> {
    let host = config.map(crate::config_file::load).transpose()?;
    let plugin = match (&args.plugin, &host) {
        (Some(name), Some(host)) => Some(
            host.plugins
                .iter()
                .find(|p| &p.name == name)
                .with_context(|| format!("the host config has no plugin named {name:?}"))?,
        ),
        (Some(_), None) => bail!("pull --plugin needs --config <FILE>"),
        (None, _) => None,
    };
    let reference = match (&args.reference, plugin) {
        (Some(text), _) => OciReference::parse(text)?,
        (None, Some(plugin)) => plugin
            .source
            .clone()
            .with_context(|| format!("plugin {:?} has no source to pull", plugin.name))?,
        (None, None) => bail!("pull needs a reference (oci://...) or --plugin"),
    };
    if let (Some(plugin), Some(source)) = (plugin, &plugin.and_then(|p| p.source.as_ref())) {
        ensure!(
            reference.registry == source.registry && reference.repository == source.repository,
            "plugin {:?} is installed from {source}, not {reference}",
            plugin.name
        );
    }
    let output = match (plugin, &args.output) {
        (Some(plugin), _) => plugin.module.clone(),
        (None, Some(path)) => path.clone(),
        (None, None) => bail!("pull needs --output <FILE> (or --plugin)"),
    };
    let mut ca_files: Vec<&Path> = args.registry.ca_file.iter().map(PathBuf::as_path).collect();
    if let Some(bundle) = host.as_ref().and_then(|h| h.ca_bundle.as_deref()) {
        ca_files.push(bundle);
    }
    let wants_signatures = plugin
        .and_then(|p| p.verify.as_ref())
        .is_some_and(|v| v.signature == SignatureSource::Registry);
    let auth = auth(&args.registry, &reference)?;
    let fetched = block_on(fetch(&ca_files, &reference, &auth, wants_signatures))
        .with_context(|| format!("cannot pull {reference}"))?;
    let record = PullRecord {
        reference: reference
            .pinned(fetched.manifest_digest.clone())
            .to_string(),
        manifest: base64::engine::general_purpose::STANDARD.encode(&fetched.manifest),
        signatures: fetched.signatures,
        pulled_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let verified = match plugin {
        Some(plugin) => Some(check_for_plugin(plugin, &fetched.module, &record)?),
        None => None,
    };
    write_atomically(&output, &fetched.module)?;
    let record_path = pull_record_path(&output);
    let record_json =
        serde_json::to_vec_pretty(&record).context("cannot encode the pull record")?;
    write_atomically(&record_path, &record_json)?;
    println!(
        "pulled {reference}: manifest {} module {} ({} bytes) -> {}",
        fetched.manifest_digest,
        Digest256::of(&fetched.module),
        fetched.module.len(),
        output.display()
    );
    match verified.and_then(|v| v.signer.map(|s| (s, v.signature))) {
        Some((signer, kind)) => println!(
            "verified: {} signature by key {signer}",
            kind.unwrap_or_default()
        ),
        None if plugin.is_none() => println!(
            "pin it: source: {}",
            reference.pinned(fetched.manifest_digest)
        ),
        None => {}
    }
    Ok(())
}

/// Every check the plugin's config asks for, on the fetched bytes, before
/// anything is written.
fn check_for_plugin(
    plugin: &PluginConfig,
    module: &[u8],
    record: &PullRecord,
) -> Result<wcp_core::provenance::Provenance> {
    if let Some(pinned) = &plugin.sha256 {
        let digest = Digest256::of(module);
        ensure!(
            digest.hex() == pinned,
            "plugin {:?}: the pulled module has digest {digest} but the config pins sha256 {pinned}; nothing was written",
            plugin.name
        );
    }
    crate::trust::verify(plugin, module, Some(record))
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was written"))
}

/// What a pull fetched, every digest checked.
struct Fetched {
    manifest: Vec<u8>,
    manifest_digest: Digest256,
    module: Vec<u8>,
    signatures: Vec<RegistrySignature>,
}

async fn fetch(
    ca_files: &[&Path],
    reference: &OciReference,
    auth: &RegistryAuth,
    signatures: bool,
) -> Result<Fetched> {
    let client = client(ca_files)?;
    let image = client_reference(reference)?;
    let (manifest, _) = client
        .pull_manifest_raw(&image, auth, &[OCI_MANIFEST_MEDIA_TYPE])
        .await
        .map_err(registry_error)
        .context("cannot fetch the manifest")?;
    let manifest = manifest.to_vec();
    let manifest_digest = Digest256::of(&manifest);
    if let Some(pinned) = &reference.digest {
        ensure!(
            *pinned == manifest_digest,
            "the registry sent a manifest with digest {manifest_digest}, not the pinned {pinned}"
        );
    }
    let layer = wasm_layer(&manifest).with_context(|| format!("manifest {manifest_digest}"))?;
    ensure!(
        layer.size <= crate::module::MAX_MODULE_BYTES,
        "the manifest's layer is {} bytes, more than the module limit of {}",
        layer.size,
        crate::module::MAX_MODULE_BYTES
    );
    let module = blob(
        &client,
        &image,
        "application/wasm",
        &layer.digest,
        layer.size,
    )
    .await?;
    ensure!(
        wasmparser::Parser::is_component(&module),
        "the layer {} is not a WebAssembly component",
        layer.digest
    );
    let signatures = if signatures {
        fetch_signatures(&client, reference, auth, &manifest_digest).await?
    } else {
        Vec::new()
    };
    Ok(Fetched {
        manifest,
        manifest_digest,
        module,
        signatures,
    })
}

/// The blob `digest` of `size` bytes, read with that bound and its digest
/// recomputed here.
async fn blob(
    client: &oci_client::Client,
    image: &oci_client::Reference,
    media_type: &str,
    digest: &Digest256,
    size: u64,
) -> Result<Vec<u8>> {
    let descriptor = OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: size as i64,
        ..OciDescriptor::default()
    };
    let mut stream = client
        .pull_blob_stream(image, &descriptor)
        .await
        .map_err(registry_error)
        .with_context(|| format!("cannot fetch blob {digest}"))?
        .stream;
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .with_context(|| format!("blob {digest} does not match its digest or ended early"))?;
        ensure!(
            (bytes.len() + chunk.len()) as u64 <= size,
            "blob {digest} is longer than the {size} bytes its manifest says"
        );
        bytes.extend_from_slice(&chunk);
    }
    let actual = Digest256::of(&bytes);
    ensure!(
        actual == *digest && bytes.len() as u64 == size,
        "blob {digest} has digest {actual} ({} bytes): it was tampered with",
        bytes.len()
    );
    Ok(bytes)
}

/// The cosign signatures attached to `manifest` (tag `sha256-<hex>.sig`);
/// none if the tag does not exist.
async fn fetch_signatures(
    client: &oci_client::Client,
    reference: &OciReference,
    auth: &RegistryAuth,
    manifest: &Digest256,
) -> Result<Vec<RegistrySignature>> {
    let tag = manifest.cosign_signature_tag();
    let sig_ref = OciReference {
        tag: Some(tag.clone()),
        digest: None,
        ..reference.clone()
    };
    let image = client_reference(&sig_ref)?;
    let sig_manifest = match client
        .pull_manifest_raw(&image, auth, SIGNATURE_MANIFEST_TYPES)
        .await
    {
        Ok((bytes, _)) => bytes,
        Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
            return Ok(Vec::new());
        }
        Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
            if envelope
                .errors
                .iter()
                .any(|e| e.code == oci_client::errors::OciErrorCode::ManifestUnknown) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(registry_error(e))
                .with_context(|| format!("cannot fetch signature tag {tag}"));
        }
    };
    ensure!(
        sig_manifest.len() <= MAX_MANIFEST_BYTES,
        "signature manifest {tag} is too large"
    );
    let mut out = Vec::new();
    for layer in cosign_layers(&sig_manifest)?
        .into_iter()
        .take(MAX_SIGNATURES)
    {
        ensure!(
            layer.payload_size <= MAX_MANIFEST_BYTES as u64,
            "a signature payload of {tag} is too large"
        );
        let payload = blob(
            client,
            &image,
            wcp_core::provenance::SIMPLE_SIGNING_MEDIA_TYPE,
            &layer.payload_digest,
            layer.payload_size,
        )
        .await?;
        out.push(RegistrySignature {
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            signature: layer.signature_base64,
        });
    }
    Ok(out)
}

/// Writes `bytes` to `path` by a temporary file in the same directory and a
/// rename, so a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
