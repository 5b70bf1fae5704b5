//! The pure half of `install`: the kubelet provider entry that runs the
//! host, merged into an existing `CredentialProviderConfig` without
//! touching the other providers, and the host config rewritten to point at
//! the plugins where they are installed. The host does the file I/O.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The provider entry `install` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEntry {
    pub name: String,
    pub match_images: Vec<String>,
    pub default_cache_duration: String,
    /// The host config, as the node sees it.
    pub host_config: String,
    pub token: Option<TokenSettings>,
}

/// `tokenAttributes` of the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub audience: String,
    /// `Token` or `ServiceAccount`.
    pub cache_type: String,
    pub require_service_account: bool,
    pub required_annotation_keys: Vec<String>,
    pub optional_annotation_keys: Vec<String>,
}

impl ProviderEntry {
    /// The entry as the kubelet config's JSON/YAML value.
    pub fn to_value(&self) -> Value {
        let mut entry = json!({
            "name": self.name,
            "apiVersion": crate::check::kubelet_config::PROVIDER_V1,
            "matchImages": self.match_images,
            "defaultCacheDuration": self.default_cache_duration,
            "args": ["--config", self.host_config],
        });
        if let Some(token) = &self.token {
            let mut attributes = json!({
                "serviceAccountTokenAudience": token.audience,
                "cacheType": token.cache_type,
                "requireServiceAccount": token.require_service_account,
            });
            if !token.required_annotation_keys.is_empty() {
                attributes["requiredServiceAccountAnnotationKeys"] =
                    json!(token.required_annotation_keys);
            }
            if !token.optional_annotation_keys.is_empty() {
                attributes["optionalServiceAccountAnnotationKeys"] =
                    json!(token.optional_annotation_keys);
            }
            entry["tokenAttributes"] = attributes;
        }
        entry
    }
}

/// What merging did to the kubelet config.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// The entry is there as it should be: leave the file alone.
    Unchanged,
    /// The new text; `previous` is the entry it replaces, if any.
    Changed {
        text: String,
        previous: Option<Value>,
    },
}

/// `existing` (a kubelet config, YAML or JSON; `None` when there is none)
/// with `entry` added, or replacing the provider of the same name. The
/// other providers and fields stay as they were (comments do not: the
/// file is rewritten), written as JSON when `as_json`.
pub fn merge_kubelet_config(
    existing: Option<&str>,
    entry: &ProviderEntry,
    as_json: bool,
) -> Result<Merge> {
    let wanted = entry.to_value();
    let mut config: Value = match existing {
        Some(text) if !text.trim().is_empty() => serde_yaml_ng::from_str(text)
            .context("the existing kubelet config is not YAML or JSON")?,
        _ => json!({
            "apiVersion": format!("{}/v1", crate::check::kubelet_config::GROUP),
            "kind": crate::check::kubelet_config::KIND,
            "providers": [],
        }),
    };
    let Some(object) = config.as_object_mut() else {
        bail!("the existing kubelet config is not a mapping");
    };
    let providers = object
        .entry("providers")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(providers) = providers.as_array_mut() else {
        bail!("providers of the existing kubelet config is not a list");
    };
    let previous = match providers
        .iter_mut()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(entry.name.as_str()))
    {
        Some(found) if *found == wanted => return Ok(Merge::Unchanged),
        Some(found) => Some(std::mem::replace(found, wanted)),
        None => {
            providers.push(wanted);
            None
        }
    };
    let text = if as_json {
        let mut text = serde_json::to_string_pretty(&config)?;
        text.push('\n');
        text
    } else {
        serde_yaml_ng::to_string(&config)?
    };
    Ok(Merge::Changed { text, previous })
}

/// `value` as YAML text.
pub fn to_yaml(value: &Value) -> Result<String> {
    Ok(serde_yaml_ng::to_string(value)?)
}

/// A YAML (or JSON) text as a JSON value.
pub fn yaml_value(text: &str) -> Result<Value> {
    serde_yaml_ng::from_str(text).context("not YAML")
}

/// The provider entry named `name` in a kubelet config text, if any.
pub fn provider_entry(text: &str, name: &str) -> Option<Value> {
    let config: Value = serde_yaml_ng::from_str(text).ok()?;
    config
        .get("providers")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .cloned()
}

/// The host config text with plugin `i`'s `module` replaced by
/// `modules[i]` and pinned to `digests[i]`; every other field stays.
pub fn rewrite_host_config(text: &str, modules: &[String], digests: &[String]) -> Result<String> {
    let mut config: Value = serde_yaml_ng::from_str(text).context("the host config is not YAML")?;
    let Some(plugins) = config.get_mut("plugins").and_then(Value::as_array_mut) else {
        bail!("the host config has no plugins list");
    };
    if plugins.len() != modules.len() || plugins.len() != digests.len() {
        bail!(
            "the host config has {} plugins, not {}",
            plugins.len(),
            modules.len()
        );
    }
    for ((plugin, module), digest) in plugins.iter_mut().zip(modules).zip(digests) {
        let Some(plugin) = plugin.as_object_mut() else {
            bail!("a plugin of the host config is not a mapping");
        };
        plugin.insert("module".into(), Value::String(module.clone()));
        plugin.insert("sha256".into(), Value::String(digest.clone()));
    }
    Ok(serde_yaml_ng::to_string(&config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ProviderEntry {
        ProviderEntry {
            name: "wasm-credential-provider".into(),
            match_images: vec!["*.registry.io".into()],
            default_cache_duration: "10m".into(),
            host_config: "/etc/wcp/host.yaml".into(),
            token: None,
        }
    }

    const OTHER: &str = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ecr-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    defaultCacheDuration: 12h\n";

    #[test]
    fn merging_keeps_other_providers_and_is_idempotent() {
        let Merge::Changed { text, previous } =
            merge_kubelet_config(Some(OTHER), &entry(), false).unwrap()
        else {
            panic!("a new entry changes the file");
        };
        assert_eq!(previous, None);
        let config = crate::check::kubelet_config::parse(&text).unwrap();
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["ecr-credential-provider", "wasm-credential-provider"]
        );
        assert_eq!(config.providers[1].config_arg(), Some("/etc/wcp/host.yaml"));
        assert_eq!(
            merge_kubelet_config(Some(&text), &entry(), false).unwrap(),
            Merge::Unchanged
        );
        // A changed entry replaces ours in place.
        let mut changed = entry();
        changed.token = Some(TokenSettings {
            audience: "aud".into(),
            cache_type: "ServiceAccount".into(),
            require_service_account: true,
            required_annotation_keys: vec![],
            optional_annotation_keys: vec!["example.com/role".into()],
        });
        let Merge::Changed {
            text: again,
            previous,
        } = merge_kubelet_config(Some(&text), &changed, false).unwrap()
        else {
            panic!("changed");
        };
        assert_eq!(previous, Some(entry().to_value()));
        let config = crate::check::kubelet_config::parse(&again).unwrap();
        assert_eq!(config.providers.len(), 2);
        let attributes = config.providers[1].token_attributes.as_ref().unwrap();
        assert_eq!(
            attributes.optional_service_account_annotation_keys,
            ["example.com/role"]
        );
        assert_eq!(
            provider_entry(&again, "wasm-credential-provider"),
            Some(changed.to_value())
        );
    }

    #[test]
    fn a_new_file_and_json() {
        let Merge::Changed { text, .. } = merge_kubelet_config(None, &entry(), true).unwrap()
        else {
            panic!("changed");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "CredentialProviderConfig");
        assert_eq!(value["providers"][0]["name"], "wasm-credential-provider");
        assert!(merge_kubelet_config(Some("[1]"), &entry(), false).is_err());
        assert!(merge_kubelet_config(Some("providers: 3"), &entry(), false).is_err());
    }

    #[test]
    fn the_host_config_points_at_the_installed_plugins() {
        let text = "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - name: a\n    module: /opt/a.wasm\n    matchImages: [x.io]\n    config: {username: u}\n";
        let out =
            rewrite_host_config(text, &["plugins/a.wasm".into()], &["ab".repeat(32)]).unwrap();
        let config =
            crate::config::HostConfig::parse(&out, std::path::Path::new("/etc/wcp")).unwrap();
        assert_eq!(
            config.plugins[0].module,
            std::path::Path::new("/etc/wcp/plugins/a.wasm")
        );
        assert_eq!(
            config.plugins[0].sha256.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        assert!(rewrite_host_config(text, &[], &[]).is_err());
    }
}
