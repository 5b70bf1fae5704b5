//! `check`: reads the kubelet's `CredentialProviderConfig`, the host config,
//! the plugin modules, the bin dir and the artifact cache, and reports every
//! finding at once (`wcp_core::check` decides; this module only reads).
//!
//! Each finding is one line `FILE:LINE: error|warning: FIELD: what` and a
//! `fix:` line under it, on stdout; an error makes the command fail with a
//! one-line summary on stderr. Under `--root PREFIX` (a node's filesystem
//! mounted elsewhere, as the installer sees it) the absolute paths inside
//! both files are read below PREFIX.

use crate::{artifact::ArtifactStore, cache::CacheStore, module};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use wcp_core::capabilities::{Declaration, Permissions};
use wcp_core::check::{
    self, File, Finding, Findings, PluginFacts, kubelet_config, locate::Locator,
};
use wcp_core::config::{ConfigError, HostConfig, MAX_CONFIG_BYTES};
use wcp_core::escape::escape_controls;

/// What to check.
pub struct Inputs<'a> {
    /// The kubelet config, as this process reaches it.
    pub kubelet_config: &'a Path,
    /// The host config, as this process reaches it.
    pub host_config: &'a Path,
    /// The kubelet's `--image-credential-provider-bin-dir`, as the node
    /// sees it (below `root`).
    pub bin_dir: Option<&'a Path>,
    /// Where the node's `/` is; `/` on the node itself.
    pub root: &'a Path,
}

/// The counts of a check that ran.
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
}

/// Runs the check, prints the report; fails when there is an error.
pub fn run(inputs: &Inputs<'_>) -> Result<()> {
    let summary = report(inputs)?;
    if summary.errors > 0 {
        bail!(
            "check found {} error(s) and {} warning(s) in {} and {}",
            summary.errors,
            summary.warnings,
            inputs.kubelet_config.display(),
            inputs.host_config.display()
        );
    }
    Ok(())
}

/// Prints every finding and the closing line; `Err` only when a file
/// cannot be read at all.
pub fn report(inputs: &Inputs<'_>) -> Result<Summary> {
    let kubelet_text = read(inputs.kubelet_config, "kubelet config")?;
    let host_text = read(inputs.host_config, "host config")?;
    let findings = findings(inputs, &kubelet_text, &host_text);
    let (kubelet_at, host_at) = (Locator::new(&kubelet_text), Locator::new(&host_text));
    let mut summary = Summary {
        errors: 0,
        warnings: 0,
    };
    for finding in findings.as_slice() {
        let (file, at) = match finding.file {
            File::Kubelet => (inputs.kubelet_config, &kubelet_at),
            File::Host => (inputs.host_config, &host_at),
        };
        match finding.severity {
            check::Severity::Error => summary.errors += 1,
            check::Severity::Warning => summary.warnings += 1,
        }
        println!("{}", escape_controls(&line(file, at, finding)));
        println!("    fix: {}", escape_controls(&finding.fix));
    }
    println!(
        "check: {} error(s), {} warning(s)",
        summary.errors, summary.warnings
    );
    Ok(summary)
}

fn line(file: &Path, at: &Locator, finding: &Finding) -> String {
    let line = at
        .line(&finding.path)
        .map_or(String::new(), |l| format!("{l}:"));
    let field = if finding.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", finding.path)
    };
    format!(
        "{}:{line} {}: {field}{}",
        file.display(),
        finding.severity,
        finding.message
    )
}

fn read(path: &Path, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        bail!(
            "{what} {} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// `path` (absolute, as the node sees it) as this process reaches it.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) => root.join(relative),
        Err(_) => path.to_path_buf(),
    }
}

/// Reads and validates the host config at `path` (below `root`) as the
/// host will on the node, with the files it names read below `root`.
pub fn load_below(path: &Path, root: &Path) -> Result<HostConfig> {
    let text = read(path, "host config")?;
    let node = on_node(root, path);
    let mut host = HostConfig::parse(&text, node.parent().unwrap_or(Path::new("/")))
        .with_context(|| format!("invalid host config {}", path.display()))?;
    remap(&mut host, root);
    Ok(host)
}

/// The paths of a host config parsed as on the node, below `root`.
fn remap(host: &mut HostConfig, root: &Path) {
    for plugin in &mut host.plugins {
        plugin.module = under_root(root, &plugin.module);
    }
    host.cache_directory = under_root(root, &host.cache_directory);
    host.audit_log = host.audit_log.as_deref().map(|p| under_root(root, p));
}

/// `path` (as this process reaches it) as the node sees it.
fn on_node(root: &Path, path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match absolute.strip_prefix(root) {
        Ok(rest) if root != Path::new("/") => Path::new("/").join(rest),
        _ => absolute,
    }
}

fn findings(inputs: &Inputs<'_>, kubelet_text: &str, host_text: &str) -> Findings {
    let mut findings = Findings::default();
    let root = inputs.root;
    let kubelet = match kubelet_config::parse(kubelet_text) {
        Ok(config) => {
            let lookup = |name: &str| {
                executable(&under_root(
                    root,
                    &inputs.bin_dir.unwrap_or(Path::new("/")).join(name),
                ))
            };
            let bin_dir: Option<kubelet_config::BinDir<'_>> = inputs
                .bin_dir
                .map(|_| &lookup as kubelet_config::BinDir<'_>);
            kubelet_config::validate(&config, bin_dir, &mut findings);
            Some(config)
        }
        Err(e) => {
            findings.error(
                File::Kubelet,
                "",
                e,
                "the kubelet refuses the whole file and exits: fix the field named",
            );
            None
        }
    };
    // Parsed as on the node, so that its relative paths resolve as the
    // host will resolve them there; then read below the root.
    let host_on_node = on_node(root, inputs.host_config);
    let base = host_on_node.parent().unwrap_or(Path::new("/"));
    let host = match HostConfig::parse(host_text, base) {
        Ok(mut host) => {
            remap(&mut host, root);
            Some(host)
        }
        Err(ConfigError::Syntax(text)) => {
            findings.error(
                File::Host,
                "",
                text,
                "the host refuses the file: fix the field named",
            );
            None
        }
        Err(ConfigError::Invalid(problems)) => {
            for problem in problems {
                findings.error(
                    File::Host,
                    problem.path(),
                    problem.message(),
                    "see \"Host config reference\" in the README",
                );
            }
            None
        }
    };
    let Some(host) = host else { return findings };
    let declarations: Vec<Option<Declaration>> = host
        .plugins
        .iter()
        .enumerate()
        .map(|(i, plugin)| module_findings(i, plugin, &host, host_text, &mut findings))
        .collect();
    if let Some(kubelet) = &kubelet {
        let facts: Vec<PluginFacts<'_>> = host
            .plugins
            .iter()
            .zip(&declarations)
            .map(|(plugin, declaration)| PluginFacts {
                plugin,
                declaration: declaration.as_ref(),
            })
            .collect();
        let runs_this_host = |arg: &str| {
            let arg = Path::new(arg);
            let arg = if arg.is_absolute() {
                arg.to_path_buf()
            } else {
                // The kubelet's working directory is not known: a relative
                // --config can only be compared as written.
                return arg == host_on_node;
            };
            arg == host_on_node
                || under_root(root, &arg).canonicalize().ok()
                    == inputs.host_config.canonicalize().ok()
        };
        check::pairing::check(
            kubelet,
            &runs_this_host,
            &host_on_node.display().to_string(),
            &facts,
            &mut findings,
        );
        if let Some(bin_dir) = inputs.bin_dir {
            runtime_beside(kubelet, &runs_this_host, root, bin_dir, &mut findings);
        }
    }
    findings
}

/// The front each provider entry of this host names hands every miss to
/// the runtime in the same bin dir: without it, every miss fails.
fn runtime_beside(
    kubelet: &kubelet_config::CredentialProviderConfig,
    runs_this_host: &dyn Fn(&str) -> bool,
    root: &Path,
    bin_dir: &Path,
    findings: &mut Findings,
) {
    let runs = kubelet
        .providers
        .iter()
        .position(|p| p.config_arg().is_some_and(runs_this_host));
    let Some(k) = runs else {
        return;
    };
    let runtime = bin_dir.join(crate::front::RUNTIME_NAME);
    if let Err(why) = executable(&under_root(root, &runtime)) {
        findings.error(
            File::Kubelet,
            format!("providers[{k}].name"),
            format!("the provider hands every cache miss to {} beside it, which is not usable: {why}; every exec that is not a cache hit fails", crate::front::RUNTIME_NAME),
            format!("install the runtime-only build as {} (mode 0755), or run `wasm-credential-provider install`", runtime.display()),
        );
    }
}

/// Go's `exec.LookPath` on one path: exists, not a directory, executable.
fn executable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
            Err(format!("{} is not executable", path.display()))
        }
        Ok(_) => Ok(()),
    }
}

/// The module of plugin `i`: present, matching its pin, a component with a
/// valid declaration that agrees with the grants, and precompiled.
fn module_findings(
    i: usize,
    plugin: &wcp_core::config::PluginConfig,
    host: &HostConfig,
    host_text: &str,
    findings: &mut Findings,
) -> Option<Declaration> {
    const H: File = File::Host;
    let name = &plugin.name;
    let module = match module::load_stamped(plugin, None) {
        Ok(module) => module,
        Err(e) => {
            let (path, fix) = if plugin.module.exists() && plugin.sha256.is_some() {
                (
                    format!("plugins[{i}].sha256"),
                    "pin the digest of the module you reviewed (`sha256sum`), or install the module that has this digest",
                )
            } else {
                (
                    format!("plugins[{i}].module"),
                    "install the plugin's .wasm component at this path (relative paths are relative to the host config)",
                )
            };
            findings.error(H, path, format!("{e:#}"), fix);
            return None;
        }
    };
    let declaration = match module.declaration() {
        Ok(declaration) => declaration,
        Err(e) => {
            findings.error(
                H,
                format!("plugins[{i}].module"),
                format!("plugin {name:?}: the host refuses the component: {e:#}"),
                "rebuild the plugin with a valid capabilities.json",
            );
            return None;
        }
    };
    if !module.has_section() {
        findings.warning(
            H,
            format!("plugins[{i}].module"),
            format!("plugin {name:?}: the component declares nothing (no wcp-capabilities section), so it may use nothing"),
            "build it with wcp_guest_sdk::declare_capabilities!",
        );
    }
    // The plugin's config as its typed declaration wants it.
    if let Err(e) = wcp_core::config::plugin_values::check_plugin_config(host_text, i, &declaration)
    {
        // The parser's error starts with the field it stood on.
        let (path, what) = match e.split_once(": ") {
            Some((path, what)) if path.starts_with(&format!("plugins[{i}].")) => {
                (path.to_string(), what)
            }
            _ => (format!("plugins[{i}].config"), e.as_str()),
        };
        findings.error(
            H,
            path,
            format!("plugin {name:?}: {what}"),
            "set the keys the plugin declares, with values of their declared types (`inspect` shows them)",
        );
    }
    // What the operator narrowed (a declared wildcard granted for one
    // region, an optional variable or endpoint left out) is no finding:
    // `inspect` lists it. Reported: a plugin that can reach nothing, a token
    // it asks for and is not given, and grants it never uses.
    let differences = Permissions::new(&declaration, &plugin.grant, &BTreeMap::new()).differences();
    if !declaration.outbound.is_empty() && plugin.grant.outbound.destinations.is_empty() {
        findings.warning(
            H,
            format!("plugins[{i}].grants"),
            format!("plugin {name:?} declares outbound destinations but is granted none: every request it makes is denied"),
            format!("grant the destinations it needs under plugins[{i}].grants.outbound (`inspect --config` lists what it declares)"),
        );
    }
    if declaration.service_account_token && !plugin.grant.service_account_token {
        findings.warning(
            H,
            format!("plugins[{i}].grants"),
            format!("plugin {name:?} declares the service-account token but is not granted it: the host withholds it"),
            format!("set plugins[{i}].grants.serviceAccountToken: true if the plugin should act as the pod"),
        );
    }
    if !differences.granted_not_declared.is_empty() {
        findings.warning(
            H,
            format!("plugins[{i}].grants"),
            format!(
                "plugin {name:?} is granted what it does not declare (withheld): {}",
                differences.granted_not_declared.join(", ")
            ),
            "remove those grants: a grant the component does not declare is never usable",
        );
    }
    artifact_findings(i, plugin, host, &module.sha256, findings);
    Some(declaration)
}

/// A verified precompiled artifact for the module, so that no exec has to
/// compile. Looked up without creating anything.
fn artifact_findings(
    i: usize,
    plugin: &wcp_core::config::PluginConfig,
    host: &HostConfig,
    sha256: &str,
    findings: &mut Findings,
) {
    let fix =
        "run `wasm-credential-provider-compile --config <host config> compile` at install time";
    let at = format!("plugins[{i}].module");
    let why = if !host.cache_directory.join("host.key").exists() {
        Some(format!(
            "no precompiled artifact (cache directory {} has none yet)",
            host.cache_directory.display()
        ))
    } else {
        let store = CacheStore::open(&host.cache_directory, host.cache_max_entries);
        match store.and_then(|cache| {
            let engine = crate::runtime::engine::new()?;
            let store = ArtifactStore::open(&cache)?;
            // An artifact that does not meet the plugin's verify/source
            // settings is as good as none: the exec would verify again.
            let required = crate::trust::requirement(plugin)?;
            Ok(store.load(&engine, sha256, &required)?.is_some())
        }) {
            Ok(true) => None,
            Ok(false) => Some("no precompiled artifact".to_string()),
            Err(e) => Some(format!("the precompiled artifact is not usable: {e:#}")),
        }
    };
    if let Some(why) = why {
        findings.warning(
            File::Host,
            at,
            format!(
                "plugin {:?}: {why}: the first exec compiles it in the background and fails if that takes longer than the plugin's timeout",
                plugin.name
            ),
            fix,
        );
    }
}
