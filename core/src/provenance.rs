//! Where a plugin's module came from and who vouched for it: OCI references
//! (`oci://<registry>/<repository>[:<tag>][@sha256:<digest>]`), the Wasm OCI
//! artifact layout a pulled manifest must follow, cosign's simple-signing
//! payload, public-key fingerprints, and the provenance record that the
//! precompiled artifact, `inspect` and the audit log carry.
//!
//! Pure: parsing and checking bytes the host read or fetched. The network
//! (`oci-client`) and the signature arithmetic (RustCrypto) are the host's.

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// Media type of the config blob of a Wasm OCI artifact (CNCF wasm TAG).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the one layer of a Wasm OCI artifact: the component itself.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Layer media type of a cosign signature (the simple-signing payload).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding cosign's base64 signature of that payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign simple-signing payload.
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// Largest manifest the host accepts from a registry or a provenance file.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// `sha256:<64 lowercase hex>`, checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest256(String);

impl Digest256 {
    pub fn parse(text: &str) -> Result<Self> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            bail!("digest {text:?} is not of the form sha256:<64 hex digits>");
        };
        ensure!(
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "digest {text:?} is not of the form sha256:<64 lowercase hex digits>"
        );
        Ok(Self(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag cosign attaches this manifest's signature under.
    pub fn cosign_signature_tag(&self) -> String {
        format!("sha256-{}.sig", self.hex())
    }
}

impl TryFrom<String> for Digest256 {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<Self> {
        Self::parse(&text)
    }
}

impl From<Digest256> for String {
    fn from(d: Digest256) -> String {
        d.0
    }
}

impl fmt::Display for Digest256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `oci://<registry>/<repository>[:<tag>][@sha256:<digest>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// `host[:port]`, as written (lowercase).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest256>,
}

impl OciReference {
    /// Parses a reference with the `oci://` scheme. A registry is required
    /// (no Docker Hub default: the operator names where code comes from).
    pub fn parse(text: &str) -> Result<Self> {
        let Some(rest) = text.strip_prefix("oci://") else {
            bail!(
                "{text:?} is not an oci://<registry>/<repository>[:<tag>|@sha256:<digest>] reference"
            );
        };
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(Digest256::parse(digest)?)),
            None => (rest, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            bail!("{text:?} names no repository after the registry");
        };
        ensure!(
            !registry.is_empty()
                && registry
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b)),
            "{text:?}: registry {registry:?} must be a lowercase host[:port]"
        );
        // A tag follows the last ':' of the last path segment.
        let last = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last..].rfind(':') {
            Some(i) => (&path[..last + i], Some(&path[last + i + 1..])),
            None => (path, None),
        };
        ensure!(
            !repository.is_empty()
                && repository.split('/').all(|c| {
                    !c.is_empty()
                        && c.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        })
                        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                }),
            "{text:?}: repository {repository:?} must be lowercase path components of letters, digits, '.', '_' and '-'"
        );
        if let Some(tag) = tag {
            ensure!(
                !tag.is_empty()
                    && tag.len() <= 128
                    && tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    && !tag.starts_with(['.', '-']),
                "{text:?}: tag {tag:?} is not a valid OCI tag"
            );
        }
        ensure!(
            tag.is_some() || digest.is_some(),
            "{text:?} names neither a tag nor a digest"
        );
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The same repository at `digest` (tag dropped): what a pull resolved.
    pub fn pinned(&self, digest: Digest256) -> Self {
        Self {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository[:tag][@digest]`, the form registry clients parse.
    pub fn without_scheme(&self) -> String {
        let mut out = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
        out
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}", self.without_scheme())
    }
}

/// The one `application/wasm` layer of a Wasm OCI artifact manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmLayer {
    pub digest: Digest256,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Checks that `manifest` (the exact bytes whose digest was verified) is a
/// Wasm OCI artifact: an OCI image manifest with the wasm config media type
/// and exactly one `application/wasm` layer, which it returns.
pub fn wasm_layer(manifest: &[u8]) -> Result<WasmLayer> {
    ensure!(
        manifest.len() <= MAX_MANIFEST_BYTES,
        "the manifest is {} bytes, more than {MAX_MANIFEST_BYTES}",
        manifest.len()
    );
    let raw: RawManifest =
        serde_json::from_slice(manifest).context("the manifest is not an OCI image manifest")?;
    ensure!(
        raw.schema_version == 2,
        "the manifest has schemaVersion {}",
        raw.schema_version
    );
    if let Some(media_type) = &raw.media_type {
        ensure!(
            media_type == OCI_MANIFEST_MEDIA_TYPE,
            "the manifest has media type {media_type:?}, not an OCI image manifest"
        );
    }
    ensure!(
        raw.config.media_type == WASM_CONFIG_MEDIA_TYPE,
        "the manifest's config has media type {:?}, not {WASM_CONFIG_MEDIA_TYPE:?}: not a Wasm OCI artifact",
        raw.config.media_type
    );
    Digest256::parse(&raw.config.digest).context("the manifest's config digest")?;
    let [layer] = raw.layers.as_slice() else {
        bail!(
            "the manifest has {} layers; a Wasm OCI artifact has exactly one {WASM_LAYER_MEDIA_TYPE:?} layer",
            raw.layers.len()
        );
    };
    ensure!(
        layer.media_type == WASM_LAYER_MEDIA_TYPE,
        "the manifest's layer has media type {:?}, not {WASM_LAYER_MEDIA_TYPE:?}",
        layer.media_type
    );
    Ok(WasmLayer {
        digest: Digest256::parse(&layer.digest).context("the manifest's layer digest")?,
        size: layer.size,
    })
}

/// One cosign signature found in a registry: its payload layer's digest
/// and the base64 signature annotated on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignLayer {
    pub payload_digest: Digest256,
    pub payload_size: u64,
    pub signature_base64: String,
}

/// The simple-signing layers of a cosign signature manifest (the
/// `sha256-<digest>.sig` tag); layers of another type are ignored.
pub fn cosign_layers(manifest: &[u8]) -> Result<Vec<CosignLayer>> {
    ensure!(
        manifest.len() <= MAX_MANIFEST_BYTES,
        "the signature manifest is {} bytes, more than {MAX_MANIFEST_BYTES}",
        manifest.len()
    );
    let raw: RawManifest = serde_json::from_slice(manifest)
        .context("the signature manifest is not an OCI image manifest")?;
    raw.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|l| {
            let signature = l.annotations.get(COSIGN_SIGNATURE_ANNOTATION)?.clone();
            Some((l, signature))
        })
        .map(|(l, signature_base64)| {
            Ok(CosignLayer {
                payload_digest: Digest256::parse(&l.digest)
                    .context("a signature layer's digest")?,
                payload_size: l.size,
                signature_base64,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: CriticalImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The manifest digest a cosign simple-signing payload vouches for.
pub fn simple_signing_digest(payload: &[u8]) -> Result<Digest256> {
    ensure!(
        payload.len() <= MAX_MANIFEST_BYTES,
        "the signed payload is too large"
    );
    let parsed: SimpleSigning = serde_json::from_slice(payload)
        .context("the signed payload is not a cosign simple-signing document")?;
    ensure!(
        parsed.critical.kind == SIMPLE_SIGNING_TYPE,
        "the signed payload has type {:?}, not {SIMPLE_SIGNING_TYPE:?}",
        parsed.critical.kind
    );
    Digest256::parse(&parsed.critical.image.docker_manifest_digest)
        .context("the signed payload's docker-manifest-digest")
}

/// A cosign simple-signing payload for `manifest` of `reference` (the
/// document `cosign sign` signs), for `push --sign`-style tooling and tests.
pub fn simple_signing_payload(reference: &OciReference, manifest: &Digest256) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{}", reference.registry, reference.repository)},
            "image": {"docker-manifest-digest": manifest.as_str()},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": null,
    }))
    .expect("a JSON value serializes")
}

/// The DER `SubjectPublicKeyInfo` inside a PEM `PUBLIC KEY` block (cosign's
/// `cosign.pub`, `openssl pkey -pubout`).
pub fn pem_public_key_der(pem: &str) -> Result<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let start = pem
        .find(BEGIN)
        .context("no -----BEGIN PUBLIC KEY----- block")?;
    let body = &pem[start + BEGIN.len()..];
    let end = body.find(END).context("no -----END PUBLIC KEY----- line")?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the PUBLIC KEY block is not base64")
}

/// A key's fingerprint: `sha256:<hex>` of its DER `SubjectPublicKeyInfo`
/// (what `openssl pkey -pubin -outform DER | sha256sum` prints), so an
/// operator can check it against the vendor's published key.
pub fn key_fingerprint(spki_der: &[u8]) -> String {
    Digest256::of(spki_der).0
}

/// Where a plugin's signature comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureSource {
    /// A detached `cosign sign-blob` signature file: base64 of the DER
    /// ECDSA signature over the module bytes.
    Blob(PathBuf),
    /// cosign's signature attached in the registry the module was pulled
    /// from (`sha256-<manifest digest>.sig`), kept by `pull` beside the module.
    Registry,
}

/// A plugin's `verify:` setting: the module is used only if signed by this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// PEM ECDSA P-256 public key.
    pub public_key: PathBuf,
    pub signature: SignatureSource,
}

/// What the host knows of a module it was allowed to compile: recorded in
/// the precompiled artifact (under its HMAC), shown by `inspect` and written
/// to the audit log. Made only by the host's verification step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    /// `sha256:<hex>` of the module bytes.
    pub module_digest: Digest256,
    /// The OCI reference it was pulled from, pinned to its manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<Digest256>,
    /// Fingerprint of the key whose signature was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// `blob` or `registry`: which signature was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Seconds since the epoch when it was verified.
    pub verified_at: u64,
}

/// What `pull` keeps beside a module ([`pull_record_path`]): the exact
/// manifest bytes and the registry's signatures, so that every compile can
/// check offline that the module is the layer of the pinned manifest and
/// that a signature vouches for that manifest. Not trusted: each check is
/// redone from these bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullRecord {
    /// The reference pulled, pinned to the manifest digest it resolved to.
    pub reference: String,
    /// Base64 of the manifest exactly as the registry served it.
    pub manifest: String,
    /// cosign signatures found under `sha256-<digest>.sig`.
    #[serde(default)]
    pub signatures: Vec<RegistrySignature>,
    /// Seconds since the epoch.
    pub pulled_at: u64,
}

/// One cosign simple-signing payload and its signature, both as fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySignature {
    /// Base64 of the payload blob.
    pub payload: String,
    /// The layer's `dev.cosignproject.cosign/signature` annotation.
    pub signature: String,
}

/// Largest pull record the host reads.
pub const MAX_PULL_RECORD_BYTES: u64 = 1024 * 1024;

/// Where `pull` keeps the [`PullRecord`] of `module`: beside it.
pub fn pull_record_path(module: &std::path::Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".oci.json");
    PathBuf::from(name)
}

impl PullRecord {
    /// The manifest bytes, checked against `pinned` when given.
    pub fn manifest_bytes(&self) -> Result<(Vec<u8>, Digest256)> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.manifest)
            .context("the pull record's manifest is not base64")?;
        let digest = Digest256::of(&bytes);
        Ok((bytes, digest))
    }
}

/// What a plugin's config requires of a module's provenance; compared on
/// the exec path with what the artifact records, so that a changed key or
/// pinned manifest makes the host verify again before it compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub signer: Option<String>,
    pub manifest_digest: Option<Digest256>,
}

impl Requirement {
    /// `Err` with the difference if `provenance` does not meet it.
    pub fn check(&self, provenance: &Provenance) -> Result<()> {
        if let Some(signer) = &self.signer {
            ensure!(
                provenance.signer.as_deref() == Some(signer),
                "it was verified for signer {} but the config requires key {signer}",
                provenance.signer.as_deref().unwrap_or("none")
            );
        }
        if let Some(digest) = &self.manifest_digest {
            ensure!(
                provenance.manifest_digest.as_ref() == Some(digest),
                "it was recorded for manifest {} but the config pins {digest}",
                provenance
                    .manifest_digest
                    .as_ref()
                    .map_or("none", Digest256::as_str)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_and_print() {
        let r = OciReference::parse("oci://127.0.0.1:5000/team/static:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/static");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/team/static:v1");
        let r = OciReference::parse(&format!("oci://reg.io/static@{D}")).unwrap();
        assert_eq!((r.tag, r.digest.unwrap().as_str()), (None, D));
        let r = OciReference::parse(&format!("oci://reg.io:443/a/b:v2@{D}")).unwrap();
        assert_eq!(r.repository, "a/b");
        assert_eq!(
            r.pinned(Digest256::parse(D).unwrap()).without_scheme(),
            format!("reg.io:443/a/b@{D}")
        );
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "reg.io/static:v1",
            "oci://reg.io",
            "oci://reg.io/static",
            "oci://Reg.io/static:v1",
            "oci://reg.io/Static:v1",
            "oci://reg.io//static:v1",
            "oci://reg.io/static:",
            "oci://reg.io/static:-x",
            "oci://reg.io/static@sha256:abc",
            "oci://reg.io/static@md5:0123",
            "oci://reg.io/st\natic:v1",
            "oci://reg.io/static:v1\u{202e}",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn manifest(config_type: &str, layers: &[(&str, &str)]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|(t, d)| serde_json::json!({"mediaType": t, "digest": d, "size": 3}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": config_type, "digest": D, "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn wasm_manifests_have_one_wasm_layer() {
        let good = manifest(WASM_CONFIG_MEDIA_TYPE, &[(WASM_LAYER_MEDIA_TYPE, D)]);
        assert_eq!(wasm_layer(&good).unwrap().digest.as_str(), D);
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &[(WASM_LAYER_MEDIA_TYPE, D)],
        );
        assert!(
            format!("{:#}", wasm_layer(&image).unwrap_err()).contains("not a Wasm OCI artifact")
        );
        let two = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, D), (WASM_LAYER_MEDIA_TYPE, D)],
        );
        assert!(format!("{:#}", wasm_layer(&two).unwrap_err()).contains("2 layers"));
        let tar = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[("application/vnd.oci.image.layer.v1.tar", D)],
        );
        assert!(wasm_layer(&tar).is_err());
        let bad_digest = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, "sha256:../../x")],
        );
        assert!(wasm_layer(&bad_digest).is_err());
        assert!(wasm_layer(&vec![b' '; MAX_MANIFEST_BYTES + 1]).is_err());
    }

    #[test]
    fn simple_signing_round_trips_and_checks_its_type() {
        let r = OciReference::parse("oci://reg.io/static:v1").unwrap();
        let d = Digest256::parse(D).unwrap();
        let payload = simple_signing_payload(&r, &d);
        assert_eq!(simple_signing_digest(&payload).unwrap(), d);
        let other = String::from_utf8(payload)
            .unwrap()
            .replace("cosign container image signature", "x");
        assert!(simple_signing_digest(other.as_bytes()).is_err());
    }

    #[test]
    fn cosign_layers_keep_only_annotated_simple_signing_layers() {
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2},
            "layers": [
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": D, "size": 9,
                 "annotations": {COSIGN_SIGNATURE_ANNOTATION: "c2ln"}},
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": D, "size": 9},
                {"mediaType": "text/plain", "digest": D, "size": 9,
                 "annotations": {COSIGN_SIGNATURE_ANNOTATION: "c2ln"}},
            ],
        }))
        .unwrap();
        let layers = cosign_layers(&m).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].signature_base64, "c2ln");
    }

    #[test]
    fn pem_keys_decode_and_fingerprint() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        let der = pem_public_key_der(pem).unwrap();
        assert_eq!(der, [0, 1, 2, 3]);
        assert!(key_fingerprint(&der).starts_with("sha256:"));
        assert!(pem_public_key_der("-----BEGIN PRIVATE KEY-----\nAA==\n").is_err());
    }

    #[test]
    fn requirements_compare_signer_and_manifest() {
        let d = Digest256::parse(D).unwrap();
        let p = Provenance {
            module_digest: d.clone(),
            source: None,
            manifest_digest: Some(d.clone()),
            signer: Some("sha256:k1".into()),
            signature: Some("blob".into()),
            verified_at: 1,
        };
        assert!(Requirement::default().check(&p).is_ok());
        let want = Requirement {
            signer: Some("sha256:k1".into()),
            manifest_digest: Some(d),
        };
        assert!(want.check(&p).is_ok());
        let other = Requirement {
            signer: Some("sha256:k2".into()),
            ..Default::default()
        };
        assert!(format!("{:#}", other.check(&p).unwrap_err()).contains("sha256:k2"));
        let unsigned = Provenance { signer: None, ..p };
        assert!(want.check(&unsigned).is_err());
        let json = serde_json::to_string(&unsigned).unwrap();
        assert_eq!(serde_json::from_str::<Provenance>(&json).unwrap(), unsigned);
    }
}
