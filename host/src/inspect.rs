//! `inspect`: what a component is and asks for, for security review,
//! without instantiating or compiling it; with a host config, also what it
//! was granted and where the two differ.
//!
//! The component is untrusted and its names reach a reviewer's terminal.
//! Declared names are validated when the declaration is parsed (a bad one
//! refuses the component), and as a second line of defence every string
//! the table prints has its control and bidi characters escaped, and the
//! JSON output writes them as `\uXXXX` escapes (the same data, decoded).

use crate::imports::{self, Class};
use crate::{config_file, declaration_section, module};
use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use wasmparser::{Parser, Payload};
use wcp_core::capabilities::{Declaration, Permissions};
use wcp_core::config::{HostConfig, PluginConfig};
use wcp_core::escape::{escape_controls, is_hazardous};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    file: String,
    size: u64,
    sha256: String,
    /// `wcp:credential-provider` version the component targets, if any.
    provider_api: Option<String>,
    exports: Vec<String>,
    imports: Vec<ImportReport>,
    /// Whether the component carries a `wcp-capabilities` section at all:
    /// without one it declares nothing and so can use nothing, which is
    /// almost always a build that forgot `declare_capabilities!`.
    declaration_section: bool,
    declared: DeclaredReport,
    /// What `pull` recorded beside this file, if it was pulled.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<OriginReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plugins: Vec<GrantReport>,
}

/// The pull record beside the file, rechecked against its bytes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OriginReport {
    reference: String,
    manifest_digest: Option<String>,
    /// Whether this file is the manifest's wasm layer (the reason if not).
    layer: String,
    pulled_at: u64,
    registry_signatures: usize,
}

/// A plugin's `source`/`verify` settings and what the host established.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrustReport {
    source: Option<String>,
    /// Fingerprint of `verify.publicKey` (or why it cannot be read).
    required_signer: Option<String>,
    signature: Option<&'static str>,
    /// The provenance the precompiled artifact records: the verification
    /// that let it be compiled.
    verified: Option<wcp_core::provenance::Provenance>,
}

#[derive(Serialize)]
struct ImportReport {
    name: String,
    class: Option<Class>,
    why: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeclaredReport {
    outbound: Vec<String>,
    config: Vec<String>,
    env: Vec<String>,
    service_account_token: bool,
    /// Typed config keys and their shapes (declarations only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    config_types: BTreeMap<String, String>,
    /// Whether the host refuses config keys the plugin does not declare.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict_config: bool,
    /// Service-account annotation keys the plugin reads (declarations only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantReport {
    plugin: String,
    sha256_pinned: Option<bool>,
    granted: DeclaredReport,
    allow_private_networks: Vec<String>,
    declared_not_granted: Vec<String>,
    granted_not_declared: Vec<String>,
    /// The plugin's config against the typed declaration: `ok`, or the
    /// error the host would stop at when it loads the plugin.
    config_check: String,
    provenance: TrustReport,
}

/// Output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Prints the report for `wasm` (and the plugins of `config` that use it).
pub fn run(wasm: &Path, config: Option<&Path>, output: Output) -> Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= module::MAX_MODULE_BYTES,
        "{} is larger than {} bytes",
        wasm.display(),
        module::MAX_MODULE_BYTES
    );
    anyhow::ensure!(
        Parser::is_component(&bytes),
        "{} is not a WebAssembly component",
        wasm.display()
    );
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let (imports, exports) = top_level_names(&bytes)?;
    let declaration = declaration_section::declaration(&bytes)?;
    let has_section = declaration_section::section(&bytes)?.is_some();
    let provider_api = exports
        .iter()
        .find_map(|e| e.strip_prefix(crate::runtime::wit::PROVIDER_EXPORT_PREFIX))
        .map(str::to_string);
    let mut plugins = Vec::new();
    if let Some(config) = config {
        let host = config_file::load(config)?;
        let canonical = wasm.canonicalize().ok();
        let records = artifact_records(&host, &sha256);
        for plugin in &host.plugins {
            if plugin.module.canonicalize().ok() == canonical {
                let mut report = grant_report(&host, plugin, &declaration, &sha256);
                report.provenance = trust_report(plugin, records.clone());
                plugins.push(report);
            }
        }
        anyhow::ensure!(
            !plugins.is_empty(),
            "no plugin in {} uses {}",
            config.display(),
            wasm.display()
        );
    }
    let origin = origin_report(wasm, &sha256);
    let report = Report {
        file: wasm.display().to_string(),
        size: bytes.len() as u64,
        sha256,
        provider_api,
        exports,
        imports: imports
            .into_iter()
            .map(|name| {
                let class = imports::classify(&name);
                ImportReport {
                    why: class.map_or(
                        "not provided by this host: the component will be refused",
                        |c| c.1,
                    ),
                    class: class.map(|c| c.0),
                    name,
                }
            })
            .collect(),
        declaration_section: has_section,
        declared: declared_report(&declaration),
        origin,
        plugins,
    };
    match output {
        Output::Json => println!(
            "{}",
            json_without_hazards(&serde_json::to_string_pretty(&report)?)
        ),
        Output::Table => print_table(&report),
    }
    Ok(())
}

fn declared_report(d: &Declaration) -> DeclaredReport {
    DeclaredReport {
        outbound: d.outbound.iter().map(|o| o.to_string()).collect(),
        config: d.config.iter().cloned().collect(),
        env: d.env.iter().cloned().collect(),
        service_account_token: d.service_account_token,
        config_types: d
            .config_schema
            .types
            .iter()
            .map(|(k, t)| (k.clone(), t.to_string()))
            .collect(),
        strict_config: d.config_schema.strict,
        annotations: d.annotations.iter().cloned().collect(),
    }
}

/// What `plugin` is granted and where that differs from `declaration`, as
/// the sandbox's [`Permissions`] see it. No config value is read: a
/// reviewer may not be able to read the plugin's secrets, and need not;
/// a `config:<key>` destination counts as granted when its key is set.
fn grant_report(
    host: &HostConfig,
    plugin: &PluginConfig,
    declaration: &Declaration,
    sha256: &str,
) -> GrantReport {
    let grant = &plugin.grant;
    let config_check =
        match config_file::check_plugin_config(host, plugin, declaration, &BTreeMap::new()) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:#}"),
        };
    let differences = Permissions::new(declaration, grant, &BTreeMap::new()).differences();
    GrantReport {
        plugin: plugin.name.clone(),
        sha256_pinned: plugin.sha256.as_ref().map(|pin| pin == sha256),
        granted: DeclaredReport {
            outbound: grant
                .outbound
                .destinations
                .iter()
                .map(|d| d.to_string())
                .collect(),
            config: grant.config.iter().cloned().collect(),
            env: grant.env.iter().cloned().collect(),
            service_account_token: grant.service_account_token,
            config_types: BTreeMap::new(),
            strict_config: false,
            annotations: Vec::new(),
        },
        allow_private_networks: grant
            .outbound
            .allow_private_networks
            .iter()
            .map(|c| c.to_string())
            .collect(),
        declared_not_granted: differences.declared_not_granted,
        granted_not_declared: differences.granted_not_declared,
        config_check,
        provenance: TrustReport {
            source: None,
            required_signer: None,
            signature: None,
            verified: None,
        },
    }
}

/// The pull record `pull` wrote beside `wasm`, if any.
fn origin_report(wasm: &Path, sha256: &str) -> Option<OriginReport> {
    let path = wcp_core::provenance::pull_record_path(wasm);
    let text = std::fs::read(&path).ok()?;
    let Ok(record) = serde_json::from_slice::<wcp_core::provenance::PullRecord>(&text) else {
        return Some(OriginReport {
            reference: format!("unreadable pull record {}", path.display()),
            manifest_digest: None,
            layer: "unknown".into(),
            pulled_at: 0,
            registry_signatures: 0,
        });
    };
    let manifest = record.manifest_bytes().ok();
    let layer = match &manifest {
        None => "the record's manifest is not base64".to_string(),
        Some((bytes, _)) => match wcp_core::provenance::wasm_layer(bytes) {
            Ok(layer) if layer.digest.hex() == sha256 => "this file".to_string(),
            Ok(layer) => format!("MISMATCH: the manifest's layer is {}", layer.digest),
            Err(e) => format!("not a Wasm OCI manifest: {e:#}"),
        },
    };
    Some(OriginReport {
        reference: record.reference,
        manifest_digest: manifest.map(|(_, d)| d.to_string()),
        layer,
        pulled_at: record.pulled_at,
        registry_signatures: record.signatures.len(),
    })
}

/// The record of this module's artifact in the host's cache, if the cache
/// and its host key exist and can be read (nothing is created).
fn artifact_records(
    host: &wcp_core::config::HostConfig,
    sha256: &str,
) -> Option<wcp_core::provenance::Provenance> {
    if !host.cache_directory.join("host.key").is_file() {
        return None;
    }
    let cache =
        crate::cache::CacheStore::open(&host.cache_directory, host.cache_max_entries).ok()?;
    let store = crate::artifact::ArtifactStore::open(&cache).ok()?;
    store.record(sha256).ok().flatten()
}

fn trust_report(
    plugin: &PluginConfig,
    verified: Option<wcp_core::provenance::Provenance>,
) -> TrustReport {
    use wcp_core::provenance::SignatureSource;
    let required = crate::trust::requirement(plugin);
    TrustReport {
        source: plugin.source.as_ref().map(|s| s.to_string()),
        required_signer: match &required {
            Ok(r) => r.signer.clone(),
            Err(e) => Some(format!("unreadable: {e:#}")),
        },
        signature: plugin.verify.as_ref().map(|v| match v.signature {
            SignatureSource::Blob(_) => "blob",
            SignatureSource::Registry => "registry",
        }),
        verified: verified.filter(|v| required.as_ref().is_ok_and(|r| r.check(v).is_ok())),
    }
}

/// The component's own imports and exports (not those of nested modules).
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    let mut depth = 0usize;
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("cannot parse the component")? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// JSON text with every control or bidi character written as a `\uXXXX`
/// escape. serde_json escapes C0 controls inside strings but writes C1 and
/// bidi characters raw; outside strings only the layout's newlines occur.
fn json_without_hazards(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && is_hazardous(c) {
            // Every hazardous character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// One value for the table: control and bidi characters escaped.
fn esc(text: &str) -> Cow<'_, str> {
    escape_controls(text)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.iter().map(|i| esc(i)).collect::<Vec<_>>().join(", ")
    }
}

fn print_table(r: &Report) {
    println!("component       {}", esc(&r.file));
    println!("size            {} bytes", r.size);
    println!("sha256          {}", r.sha256);
    println!(
        "provider API    {}",
        r.provider_api.as_deref().map_or(
            "none: not a wcp:credential-provider component".to_string(),
            |v| format!("wcp:credential-provider@{}", esc(v))
        )
    );
    println!("exports         {}", list(&r.exports));
    println!();
    println!("DECLARED (by the component)");
    if !r.declaration_section {
        println!(
            "  MISSING: the component carries no wcp-capabilities section, so it may use nothing \
             (a provider built without wcp_guest_sdk::declare_capabilities!?)"
        );
    }
    println!("  outbound              {}", list(&r.declared.outbound));
    println!("  config keys           {}", list(&r.declared.config));
    println!("  env                   {}", list(&r.declared.env));
    println!(
        "  serviceAccountToken   {}",
        r.declared.service_account_token
    );
    if !r.declared.annotations.is_empty() {
        println!("  annotations           {}", list(&r.declared.annotations));
    }
    if !r.declared.config_types.is_empty() || r.declared.strict_config {
        let types: Vec<String> = r
            .declared
            .config_types
            .iter()
            .map(|(k, t)| format!("{k}={t}"))
            .collect();
        println!("  config types          {}", list(&types));
        println!("  strictConfig          {}", r.declared.strict_config);
    }
    println!();
    println!("IMPORTS");
    let width = r
        .imports
        .iter()
        .map(|i| esc(&i.name).len())
        .max()
        .unwrap_or(0);
    for i in &r.imports {
        let class = match i.class {
            Some(Class::Gated) => "gated",
            Some(Class::Harmless) => "harmless",
            None => "REFUSED",
        };
        println!("  {:width$}  {class:8}  {}", esc(&i.name), i.why);
    }
    for p in &r.plugins {
        println!();
        println!("GRANTED to plugin \"{}\"", esc(&p.plugin));
        println!(
            "  sha256 pin            {}",
            match p.sha256_pinned {
                None => "none (any module at this path runs)",
                Some(true) => "matches",
                Some(false) => "MISMATCH: the host will refuse to run it",
            }
        );
        println!("  outbound              {}", list(&p.granted.outbound));
        println!(
            "  allowPrivateNetworks  {}",
            list(&p.allow_private_networks)
        );
        println!("  config keys set       {}", list(&p.granted.config));
        println!("  env                   {}", list(&p.granted.env));
        println!(
            "  serviceAccountToken   {}",
            p.granted.service_account_token
        );
        println!("  declared, not granted {}", list(&p.declared_not_granted));
        println!("  granted, not declared {}", list(&p.granted_not_declared));
        println!("  config check          {}", esc(&p.config_check));
        let t = &p.provenance;
        println!(
            "  source                {}",
            t.source.as_deref().map_or("(none)".into(), esc)
        );
        println!(
            "  verify                {}",
            match (&t.required_signer, t.signature) {
                (Some(key), Some(kind)) => format!("{kind} signature by key {}", esc(key)),
                _ => "(none: the module is not signature-checked)".into(),
            }
        );
        println!(
            "  verified              {}",
            match &t.verified {
                Some(v) => format!(
                    "module {} signer {} at {} (unix time){}",
                    v.module_digest,
                    v.signer.as_deref().map_or("none".into(), esc),
                    v.verified_at,
                    v.manifest_digest
                        .as_ref()
                        .map_or(String::new(), |m| format!(", manifest {m}"))
                ),
                None => "not yet: no artifact meets these settings (run compile)".into(),
            }
        );
    }
    if let Some(o) = &r.origin {
        println!();
        println!("PULLED (record beside the file)");
        println!("  reference             {}", esc(&o.reference));
        println!(
            "  manifest              {}",
            o.manifest_digest.as_deref().unwrap_or("unknown")
        );
        println!("  layer                 {}", esc(&o.layer));
        println!("  pulled at             {} (unix time)", o.pulled_at);
        println!("  registry signatures   {}", o.registry_signatures);
    }
}
