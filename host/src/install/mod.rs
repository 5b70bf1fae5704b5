//! `install`: lays down everything a node needs, idempotently, below a root
//! prefix (`/` on the node; the host's filesystem mounted in an installer
//! container): the exec binary (the front), the runtime-only build it
//! hands misses to and the compiler beside them in the kubelet's provider
//! bin dir, the plugins and the host config in the
//! config dir, the provider entry merged into the kubelet's
//! `CredentialProviderConfig` (other providers stay), precompiled
//! artifacts; then it runs `check` over the result and prints the kubelet
//! flags to set and whether the kubelet must restart.
//!
//! Rerunning changes nothing; a file changed since the installer wrote it
//! is refused without `--force` ([`files`]); `--dry-run` shows the plan
//! and writes nothing. Plugins come from the host config given, one
//! [`source::PluginSource`] each.

mod files;
mod source;

use crate::check_cli::{self, under_root};
use anyhow::{Context, Result, bail};
use files::{Action, Content, Manifest, Planned};
use source::PluginSource;
use std::path::{Path, PathBuf};
use wcp_core::cache_key::TokenCacheType;
use wcp_core::config::HostConfig;
use wcp_core::install::{Merge, ProviderEntry, TokenSettings, merge_kubelet_config};

/// The name of the compiler installed beside the exec binary (the name
/// the runtime-only build runs on an artifact miss).
pub const COMPILER_NAME: &str = "wasm-credential-provider-compile";
/// The name of the runtime installed beside the exec binary (the name the
/// front hands misses to).
pub const RUNTIME_NAME: &str = crate::front::RUNTIME_NAME;
/// The host config's name in the config dir.
const HOST_CONFIG_NAME: &str = "host.yaml";
/// What the installer wrote, in the config dir.
const MANIFEST_NAME: &str = ".install-manifest.json";

#[derive(clap::Args)]
pub struct Options {
    /// The host config to install; its plugins' modules are read from the
    /// paths it gives (relative to it) and installed beside it.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the node's root filesystem is.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The kubelet's --image-credential-provider-bin-dir, on the node.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/libexec/kubernetes/credential-providers"
    )]
    pub bin_dir: PathBuf,
    /// Where the host config and plugins go, on the node.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/kubernetes/wasm-credential-provider"
    )]
    pub config_dir: PathBuf,
    /// The kubelet's --image-credential-provider-config file, on the node
    /// (merged: its other providers stay).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kubernetes/image-credential-provider-config.yaml"
    )]
    pub kubelet_config: PathBuf,
    /// The provider entry's name: the exec binary's name in the bin dir.
    #[arg(long, value_name = "NAME", default_value = "wasm-credential-provider")]
    pub name: String,
    /// The front the kubelet execs (`wasm-credential-provider` of a
    /// build), installed as --name; the one beside this binary if not
    /// given.
    #[arg(long, value_name = "FILE")]
    pub exec_binary: Option<PathBuf>,
    /// The runtime-only build (no compiler) the front hands misses to,
    /// installed as wasm-credential-provider-runtime; this binary if not
    /// given.
    #[arg(long, value_name = "FILE")]
    pub runtime_binary: Option<PathBuf>,
    /// The default build (with the compiler), installed as
    /// wasm-credential-provider-compile; this binary if not given.
    #[arg(long, value_name = "FILE")]
    pub compiler_binary: Option<PathBuf>,
    /// The provider entry's defaultCacheDuration.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub default_cache_duration: String,
    /// tokenAttributes.serviceAccountTokenAudience; required when a plugin
    /// is granted the service-account token.
    #[arg(long, value_name = "AUDIENCE")]
    pub token_audience: Option<String>,
    /// A service-account annotation key the kubelet must find (repeat).
    #[arg(long, value_name = "KEY")]
    pub required_annotation_key: Vec<String>,
    /// A service-account annotation key the kubelet forwards when present (repeat).
    #[arg(long, value_name = "KEY")]
    pub optional_annotation_key: Vec<String>,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite files changed since they were installed.
    #[arg(long)]
    pub force: bool,
}

/// Runs the installer.
pub fn run(options: &Options) -> Result<()> {
    let root = options.root.as_path();
    for (flag, path) in [
        ("--bin-dir", &options.bin_dir),
        ("--config-dir", &options.config_dir),
        ("--kubelet-config", &options.kubelet_config),
    ] {
        if !path.is_absolute() {
            bail!(
                "{flag} {} must be an absolute path on the node",
                path.display()
            );
        }
    }
    // The name becomes a file in the bin dir: the kubelet's own rules.
    let name = &options.name;
    if name.is_empty() || name.contains(['/', ' ']) || name == "." || name == ".." {
        bail!(
            "--name {name:?}: a provider name is not empty and has no '/' or space and is not '.' or '..'"
        );
    }
    if name == COMPILER_NAME || name == RUNTIME_NAME {
        bail!("--name {name:?} is the name of the binary installed beside the provider");
    }
    let manifest_node = options.config_dir.join(MANIFEST_NAME);
    let manifest = Manifest::load(&under_root(root, &manifest_node))?;
    let (planned, kubelet_changed) = plan(options, &manifest)?;
    println!(
        "{}install below {}:",
        if options.dry_run { "dry run: " } else { "" },
        root.display()
    );
    for p in &planned {
        match &p.action {
            Action::Refuse(why) => println!("  REFUSED    {}: {why}", p.node_path.display()),
            action => println!(
                "  {:<10} {} ({:o}, {} bytes)",
                action.word(),
                p.node_path.display(),
                p.mode,
                p.content.size()
            ),
        }
    }
    let refused = planned
        .iter()
        .filter(|p| matches!(p.action, Action::Refuse(_)))
        .count();
    if refused > 0 {
        bail!("install refused {refused} file(s); nothing was written");
    }
    let changes = planned
        .iter()
        .filter(|p| p.action != Action::Unchanged)
        .count();
    if options.dry_run {
        if kubelet_changed {
            // The one change to a file the installer shares with others.
            let entry = provider_entry_for(
                options,
                &given_config(options)?,
                &declared_annotations(options)?,
            )?;
            println!(
                "provider entry for {}:\n{}",
                options.kubelet_config.display(),
                wcp_core::install::to_yaml(&entry.to_value())?.trim_end()
            );
        }
        println!("dry run: {changes} file(s) would change; then precompile the plugins and check");
        print_flags(options, kubelet_changed);
        return Ok(());
    }
    // The manifest records what was written, for the next run.
    let mut next = manifest;
    for p in &planned {
        files::apply(p)?;
        next.files.insert(p.record.0.clone(), p.record.1.clone());
    }
    if changes > 0 {
        files::write_atomically(
            &under_root(root, &manifest_node),
            &Content::Bytes(next.to_bytes()),
            0o600,
        )?;
    }
    println!("{changes} file(s) changed");
    let host_config = under_root(root, &options.config_dir.join(HOST_CONFIG_NAME));
    println!("precompile:");
    let installed = check_cli::load_below(&host_config, root)?;
    crate::compile_cli::compile_config(&installed).context("precompiling the installed plugins")?;
    println!("check:");
    check_cli::run(&check_cli::Inputs {
        kubelet_config: &under_root(root, &options.kubelet_config),
        host_config: &host_config,
        bin_dir: Some(&options.bin_dir),
        root,
    })?;
    print_flags(options, kubelet_changed);
    Ok(())
}

fn print_flags(options: &Options, kubelet_changed: bool) {
    println!("kubelet flags:");
    println!(
        "  --image-credential-provider-config={}",
        options.kubelet_config.display()
    );
    println!(
        "  --image-credential-provider-bin-dir={}",
        options.bin_dir.display()
    );
    if kubelet_changed {
        println!(
            "kubelet restart: needed (the kubelet reads its credential provider config only at startup)"
        );
    } else {
        println!(
            "kubelet restart: not needed (its credential provider config is unchanged; binaries, plugins and the host config are read at every exec)"
        );
    }
}

/// Every file to lay down, and whether the kubelet config changes.
fn plan(options: &Options, manifest: &Manifest) -> Result<(Vec<Planned>, bool)> {
    let root = options.root.as_path();
    let force = options.force;
    let given_text = read_config(&options.config, "host config")?
        .with_context(|| format!("cannot read host config {}", options.config.display()))?;
    let given_dir = options
        .config
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."));
    let given = HostConfig::parse(&given_text, given_dir)
        .with_context(|| format!("invalid host config {}", options.config.display()))?;
    let raw_modules = raw_modules(&given_text)?;
    let mut planned = Vec::new();
    let mut at = |node_path: PathBuf, content: Content, mode: u32| {
        let target = under_root(root, &node_path);
        planned.push(files::plan(
            node_path, target, content, mode, manifest, force,
        ));
    };
    // Plugins: config dir/plugins/<plugin name>.wasm, pinned.
    let (mut modules, mut digests) = (Vec::new(), Vec::new());
    // What the token plugins read, for the entry's optional keys.
    let mut annotations = std::collections::BTreeSet::new();
    for (plugin, raw) in given.plugins.iter().zip(&raw_modules) {
        let source = PluginSource::parse(raw, given_dir)?;
        let bytes = source
            .fetch()
            .with_context(|| format!("plugin {:?}", plugin.name))?;
        let sha256 = files::digest(&bytes);
        if let Some(pin) = &plugin.sha256
            && *pin != sha256
        {
            bail!(
                "plugin {:?}: {source} has sha256 {sha256} but the config pins {pin}",
                plugin.name
            );
        }
        if plugin.grant.service_account_token {
            let declaration = crate::declaration_section::declaration(&bytes)
                .with_context(|| format!("plugin {:?}: {source}", plugin.name))?;
            annotations.extend(declaration.annotations);
        }
        let relative = format!("plugins/{}.wasm", plugin.name);
        at(
            options.config_dir.join(&relative),
            Content::Bytes(bytes),
            0o644,
        );
        modules.push(relative);
        digests.push(sha256);
    }
    let host_text = wcp_core::install::rewrite_host_config(&given_text, &modules, &digests)?;
    at(
        options.config_dir.join(HOST_CONFIG_NAME),
        Content::Bytes(host_text.into_bytes()),
        0o600,
    );
    let this = std::env::current_exe().context("cannot find this binary")?;
    let compiler = options
        .compiler_binary
        .clone()
        .unwrap_or_else(|| this.clone());
    let front = options
        .exec_binary
        .clone()
        .unwrap_or_else(|| this.with_file_name("wasm-credential-provider"));
    let runtime = options.runtime_binary.clone().unwrap_or(this);
    for (name, binary) in [
        (COMPILER_NAME, &compiler),
        (RUNTIME_NAME, &runtime),
        (options.name.as_str(), &front),
    ] {
        let content = Content::copy_of(binary)
            .with_context(|| format!("cannot read binary {}", binary.display()))?;
        at(options.bin_dir.join(name), content, 0o755);
    }
    // The kubelet config, merged.
    let entry = provider_entry_for(options, &given, &annotations)?;
    let kubelet_target = under_root(root, &options.kubelet_config);
    files::refuse_symlink(&kubelet_target)?;
    let existing = read_config(&kubelet_target, "kubelet config")?;
    let as_json = options
        .kubelet_config
        .extension()
        .is_some_and(|e| e == "json");
    // The manifest keeps the digest of the entry, not of the whole file:
    // the other providers are not the installer's.
    let entry_key = format!(
        "{}#providers[{}]",
        options.kubelet_config.display(),
        options.name
    );
    let entry_digest = files::digest(entry.to_value().to_string().as_bytes());
    let merged = merge_kubelet_config(existing.as_deref(), &entry, as_json)
        .with_context(|| format!("cannot merge into {}", kubelet_target.display()))?;
    let kubelet_changed = matches!(merged, Merge::Changed { .. });
    let mut p = match merged {
        Merge::Unchanged => {
            let mut p = files::plan(
                options.kubelet_config.clone(),
                kubelet_target,
                Content::Bytes(existing.unwrap_or_default().into_bytes()),
                0o644,
                manifest,
                true,
            );
            p.action = Action::Unchanged;
            p
        }
        Merge::Changed { text, previous } => {
            let mut p = files::plan(
                options.kubelet_config.clone(),
                kubelet_target,
                Content::Bytes(text.into_bytes()),
                0o644,
                manifest,
                true,
            );
            let previous = previous.map(|v| files::digest(v.to_string().as_bytes()));
            let recorded = manifest.files.get(&entry_key);
            let why = match (previous, recorded) {
                (None, _) => None,
                (Some(previous), Some(recorded)) if previous == *recorded => None,
                _ if force => None,
                (Some(_), Some(_)) => Some("changed since it was installed"),
                (Some(_), None) => Some("exists and was not written by this installer"),
            };
            if let Some(why) = why {
                p.action = Action::Refuse(format!(
                    "provider {:?} {why}; rerun with --force to replace it",
                    options.name
                ));
            }
            p
        }
    };
    p.record = (entry_key, entry_digest);
    planned.push(p);
    Ok((planned, kubelet_changed))
}

fn given_text(options: &Options) -> Result<String> {
    read_config(&options.config, "host config")?
        .with_context(|| format!("cannot read host config {}", options.config.display()))
}

fn given_dir(options: &Options) -> &Path {
    match options.config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The host config given to install, validated.
fn given_config(options: &Options) -> Result<HostConfig> {
    HostConfig::parse(&given_text(options)?, given_dir(options))
        .with_context(|| format!("invalid host config {}", options.config.display()))
}

/// A config file's text, bounded like every config the host reads;
/// `None` if there is none.
fn read_config(path: &Path, what: &str) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {what} {}", path.display())),
        Ok(meta) if meta.len() > wcp_core::config::MAX_CONFIG_BYTES => bail!(
            "{what} {} is larger than {} bytes",
            path.display(),
            wcp_core::config::MAX_CONFIG_BYTES
        ),
        Ok(_) => {}
    }
    std::fs::read_to_string(path)
        .map(Some)
        .with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The annotations the given config's token plugins declare (for the dry
/// run's printout; `plan` collects them while it reads the plugins).
fn declared_annotations(options: &Options) -> Result<std::collections::BTreeSet<String>> {
    let given = given_config(options)?;
    let mut out = std::collections::BTreeSet::new();
    for (plugin, raw) in given
        .plugins
        .iter()
        .zip(raw_modules(&given_text(options)?)?)
    {
        if plugin.grant.service_account_token {
            let bytes = PluginSource::parse(&raw, given_dir(options))?.fetch()?;
            out.extend(crate::declaration_section::declaration(&bytes)?.annotations);
        }
    }
    Ok(out)
}

/// The `module` values as written (before path resolution).
fn raw_modules(text: &str) -> Result<Vec<String>> {
    let value = wcp_core::install::yaml_value(text)?;
    Ok(value["plugins"]
        .as_array()
        .map(|plugins| {
            plugins
                .iter()
                .map(|p| p["module"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default())
}

/// The entry that runs the installed host config: every plugin's
/// `matchImages`, and `tokenAttributes` when a plugin is granted the token.
fn provider_entry_for(
    options: &Options,
    host: &HostConfig,
    declared_annotations: &std::collections::BTreeSet<String>,
) -> Result<ProviderEntry> {
    let mut match_images: Vec<String> = Vec::new();
    for plugin in &host.plugins {
        for pattern in &plugin.match_images {
            if !match_images.iter().any(|m| m == pattern.as_str()) {
                match_images.push(pattern.as_str().to_string());
            }
        }
    }
    let token_plugins: Vec<_> = host
        .plugins
        .iter()
        .filter(|p| p.grant.service_account_token)
        .collect();
    let token = if token_plugins.is_empty() {
        None
    } else {
        let Some(audience) = options.token_audience.clone() else {
            bail!(
                "plugin {:?} is granted the service-account token: pass --token-audience (the audience its upstream expects)",
                token_plugins[0].name
            );
        };
        let per_token = token_plugins
            .iter()
            .any(|p| p.cache.token_cache_type == TokenCacheType::Token);
        Some(TokenSettings {
            audience,
            cache_type: if per_token { "Token" } else { "ServiceAccount" }.into(),
            require_service_account: true,
            required_annotation_keys: options.required_annotation_key.clone(),
            // The flags', then every key a token plugin declares it reads.
            optional_annotation_keys: {
                let mut keys = options.optional_annotation_key.clone();
                for key in declared_annotations {
                    if !keys.contains(key) && !options.required_annotation_key.contains(key) {
                        keys.push(key.clone());
                    }
                }
                keys
            },
        })
    };
    Ok(ProviderEntry {
        name: options.name.clone(),
        match_images,
        default_cache_duration: options.default_cache_duration.clone(),
        host_config: options
            .config_dir
            .join(HOST_CONFIG_NAME)
            .display()
            .to_string(),
        token,
    })
}
