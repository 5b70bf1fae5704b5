//! Whether a module may become native code: its OCI origin (`source:`, the
//! layer of the pinned manifest) and its signature (`verify:`).
//!
//! [`verify`] runs wherever a module is turned into an artifact (`compile`,
//! the first-use compile child, the in-process compile) and in `pull`,
//! before anything is written; its [`Provenance`] goes into the artifact
//! under the host's HMAC. The exec path only computes the plugin's
//! [`requirement`] (a key fingerprint and a digest, no signature
//! arithmetic) and loads an artifact only if what it records meets it.

#[cfg(feature = "compiler")]
use anyhow::bail;
use anyhow::{Context, Result};
use std::path::Path;
use wcp_core::config::PluginConfig;
#[cfg(feature = "compiler")]
use wcp_core::provenance::{Digest256, Provenance, PullRecord, SignatureSource, pull_record_path};
use wcp_core::provenance::{Requirement, key_fingerprint, pem_public_key_der};

/// What the plugin's config demands of a module's recorded provenance.
pub fn requirement(plugin: &PluginConfig) -> Result<Requirement> {
    let signer = match &plugin.verify {
        None => None,
        Some(policy) => Some(
            fingerprint(&policy.public_key)
                .with_context(|| format!("plugin {:?}: verify.publicKey", plugin.name))?,
        ),
    };
    Ok(Requirement {
        signer,
        manifest_digest: plugin.source.as_ref().and_then(|s| s.digest.clone()),
    })
}

fn fingerprint(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut pem = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(16 * 1024).read_to_string(&mut pem))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let der = pem_public_key_der(&pem).with_context(|| path.display().to_string())?;
    Ok(key_fingerprint(&der))
}

/// Seconds since the epoch.
#[cfg(feature = "compiler")]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the pull record `pull` left beside an installed module.
#[cfg(feature = "compiler")]
pub fn read_pull_record(module: &Path) -> Result<PullRecord> {
    use std::io::Read;
    let path = pull_record_path(module);
    let mut text = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| {
            f.take(wcp_core::provenance::MAX_PULL_RECORD_BYTES + 1)
                .read_to_end(&mut text)
        })
        .with_context(|| {
            format!(
                "cannot read its pull record {} (run `pull --plugin`)",
                path.display()
            )
        })?;
    anyhow::ensure!(
        text.len() as u64 <= wcp_core::provenance::MAX_PULL_RECORD_BYTES,
        "pull record {} is too large",
        path.display()
    );
    serde_json::from_slice(&text)
        .with_context(|| format!("pull record {} is malformed", path.display()))
}

/// Verifies the installed module of `plugin` (`bytes`, already checked
/// against any `sha256:` pin), reading its pull record when the config
/// names a `source`.
#[cfg(feature = "compiler")]
pub fn verify_installed(plugin: &PluginConfig, bytes: &[u8]) -> Result<Provenance> {
    let record = match &plugin.source {
        Some(_) => Some(read_pull_record(&plugin.module).with_context(|| {
            format!(
                "plugin {:?}: module {} has no provenance",
                plugin.name,
                plugin.module.display()
            )
        })?),
        None => None,
    };
    verify(plugin, bytes, record.as_ref())
}

/// Checks `bytes` against the plugin's `source` (via `record`) and
/// `verify`, and says what was established. Every failure names the
/// plugin, the digest and (for a signature) the key's fingerprint.
#[cfg(feature = "compiler")]
pub fn verify(
    plugin: &PluginConfig,
    bytes: &[u8],
    record: Option<&PullRecord>,
) -> Result<Provenance> {
    let module_digest = Digest256::of(bytes);
    let name = &plugin.name;
    let mut provenance = Provenance {
        module_digest: module_digest.clone(),
        source: None,
        manifest_digest: None,
        signer: None,
        signature: None,
        verified_at: now(),
    };
    if let Some(source) = &plugin.source {
        let record = record.context("no pull record")?;
        let (manifest, digest) = record.manifest_bytes()?;
        if source.digest.as_ref() != Some(&digest) {
            bail!(
                "plugin {name:?}: the pulled manifest has digest {digest} but the config pins {}; refusing the plugin",
                source.digest.as_ref().map_or("none", Digest256::as_str)
            );
        }
        let layer = wcp_core::provenance::wasm_layer(&manifest)
            .with_context(|| format!("plugin {name:?}: manifest {digest}"))?;
        if layer.digest != module_digest {
            bail!(
                "plugin {name:?}: module {} has digest {module_digest}, not the layer {} of manifest {digest}; refusing the plugin",
                plugin.module.display(),
                layer.digest
            );
        }
        provenance.source = Some(source.pinned(digest.clone()).to_string());
        provenance.manifest_digest = Some(digest);
    }
    let Some(policy) = &plugin.verify else {
        return Ok(provenance);
    };
    let key = crate::signature::PublicKey::read(&policy.public_key)
        .with_context(|| format!("plugin {name:?}: verify.publicKey"))?;
    let refuse = |why: anyhow::Error, over: &str| {
        anyhow::anyhow!(
            "plugin {name:?}: signature check failed for {over} with key {} ({}): {why:#}; refusing the plugin",
            key.fingerprint,
            policy.public_key.display()
        )
    };
    match &policy.signature {
        SignatureSource::Blob(path) => {
            let over = format!("module {module_digest}");
            let signature = crate::signature::read_small(path)
                .with_context(|| format!("cannot read signature {}", path.display()))
                .map_err(|e| refuse(e, &over))?;
            key.verify(bytes, &signature)
                .map_err(|e| refuse(e, &over))?;
            provenance.signature = Some("blob".into());
        }
        SignatureSource::Registry => {
            let manifest = provenance
                .manifest_digest
                .clone()
                .context("a registry signature needs the plugin's source")?;
            let over = format!("manifest {manifest} (module {module_digest})");
            let record = record.context("no pull record")?;
            registry_signature(&key, &manifest, record).map_err(|e| refuse(e, &over))?;
            provenance.signature = Some("registry".into());
        }
    }
    provenance.signer = Some(key.fingerprint.clone());
    Ok(provenance)
}

/// One of the record's cosign signatures is by `key` over a payload that
/// names `manifest`.
#[cfg(feature = "compiler")]
fn registry_signature(
    key: &crate::signature::PublicKey,
    manifest: &Digest256,
    record: &PullRecord,
) -> Result<()> {
    use base64::Engine as _;
    if record.signatures.is_empty() {
        bail!(
            "the registry has no cosign signature for it (tag {})",
            manifest.cosign_signature_tag()
        );
    }
    let mut last = None;
    for entry in &record.signatures {
        let checked = base64::engine::general_purpose::STANDARD
            .decode(&entry.payload)
            .context("a signature payload is not base64")
            .and_then(|payload| {
                key.verify(&payload, &entry.signature)?;
                let named = wcp_core::provenance::simple_signing_digest(&payload)?;
                anyhow::ensure!(
                    named == *manifest,
                    "the signed payload names manifest {named}, not this one"
                );
                Ok(())
            });
        match checked {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one signature was checked"))
}
