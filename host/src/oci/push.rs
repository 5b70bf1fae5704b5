//! `push`: publish a component in the Wasm OCI artifact layout, for
//! vendors. The manifest is serialized here, so the digest printed is the
//! digest of the exact bytes the registry stores: the one operators pin.

use super::{RegistryArgs, auth, block_on, client, client_reference, registry_error};
use anyhow::{Context, Result, ensure};
use oci_client::RegistryOperation;
use std::path::{Path, PathBuf};
use wcp_core::provenance::{
    Digest256, OCI_MANIFEST_MEDIA_TYPE, OciReference, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};

/// Pushes `wasm` to `reference` (a tag) and prints the manifest digest.
pub fn push(wasm: &Path, reference: &str, registry: &RegistryArgs) -> Result<()> {
    let reference = OciReference::parse(reference)?;
    ensure!(
        reference.tag.is_some() && reference.digest.is_none(),
        "push needs a tag (oci://<registry>/<repository>:<tag>)"
    );
    let module = crate::module::read_bounded(wasm)
        .with_context(|| format!("cannot read {}", wasm.display()))?;
    ensure!(
        wasmparser::Parser::is_component(&module),
        "{} is not a WebAssembly component",
        wasm.display()
    );
    let layer_digest = Digest256::of(&module);
    // The config of the CNCF wasm OCI artifact layout.
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest.as_str()],
    }))
    .expect("a JSON value serializes");
    let config_digest = Digest256::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": WASM_CONFIG_MEDIA_TYPE,
        "config": {
            "mediaType": WASM_CONFIG_MEDIA_TYPE,
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": WASM_LAYER_MEDIA_TYPE,
            "digest": layer_digest.as_str(),
            "size": module.len(),
        }],
    }))
    .expect("a JSON value serializes");
    let manifest_digest = Digest256::of(&manifest);
    let ca_files: Vec<&Path> = registry.ca_file.iter().map(PathBuf::as_path).collect();
    let auth = auth(registry, &reference)?;
    block_on(async {
        let client = client(&ca_files)?;
        let image = client_reference(&reference)?;
        client
            .auth(&image, &auth, RegistryOperation::Push)
            .await
            .map_err(registry_error)
            .context("cannot authenticate")?;
        client
            .push_blob(&image, config, config_digest.as_str())
            .await
            .map_err(registry_error)
            .context("cannot upload the config blob")?;
        client
            .push_blob(&image, module.clone(), layer_digest.as_str())
            .await
            .map_err(registry_error)
            .context("cannot upload the module")?;
        client
            .push_manifest_raw(
                &image,
                manifest,
                http::HeaderValue::from_static(OCI_MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(registry_error)
            .context("cannot upload the manifest")?;
        Ok(())
    })
    .with_context(|| format!("cannot push {} to {reference}", wasm.display()))?;
    println!(
        "pushed {} ({} bytes, module {layer_digest}) to {reference}: manifest {manifest_digest}",
        wasm.display(),
        module.len()
    );
    println!("pin it: source: {}", reference.pinned(manifest_digest));
    Ok(())
}
