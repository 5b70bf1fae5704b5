//! The provider entry that runs this host against the host config: which
//! images the kubelet execs the host for versus which images the plugins
//! serve, and what the kubelet sends (token, annotations, cache mode)
//! versus what the plugins need. Each mismatch here is a pull that
//! silently goes anonymous or an answer the kubelet refuses.

use super::kubelet_config::{CredentialProviderConfig, PROVIDER_V1, Provider};
use super::{File, Findings};
use crate::cache_key::TokenCacheType;
use crate::capabilities::Declaration;
use crate::config::PluginConfig;
use crate::coverage::{covers, may_overlap};
use crate::matching::parse_schemeless;

/// What the host found about one plugin of the host config.
pub struct PluginFacts<'a> {
    pub plugin: &'a PluginConfig,
    /// The component's declaration, when its module could be read.
    pub declaration: Option<&'a Declaration>,
}

impl PluginFacts<'_> {
    /// Whether the operator gave the plugin the token: then the kubelet
    /// must send one.
    fn granted_token(&self) -> bool {
        self.plugin.grant.service_account_token
    }

    /// Whether the component asks for the token.
    fn declares_token(&self) -> bool {
        self.declaration.is_some_and(|d| d.service_account_token)
    }
}

/// Checks every provider whose `--config` is this host config
/// (`runs_this_host` compares a `--config` value with it; `shown` is how
/// to write its path in a fix).
pub fn check(
    kubelet: &CredentialProviderConfig,
    runs_this_host: &dyn Fn(&str) -> bool,
    shown: &str,
    plugins: &[PluginFacts<'_>],
    findings: &mut Findings,
) {
    let ours: Vec<(usize, &Provider)> = kubelet
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.config_arg().is_some_and(runs_this_host))
        .collect();
    if ours.is_empty() {
        findings.error(
            File::Kubelet,
            "providers",
            format!("no provider entry runs this host with --config {shown}: the kubelet never execs it"),
            format!("add a provider named after the binary with `args: [\"--config\", \"{shown}\"]`, or run `wasm-credential-provider install`"),
        );
        return;
    }
    for (k, provider) in ours {
        coverage(k, provider, plugins, findings);
        tokens(k, provider, plugins, findings);
    }
}

/// Plugin patterns the provider's `matchImages` do not cover (the kubelet
/// never execs the host for those images), and provider patterns no
/// plugin serves (the host is execed and answers with no credentials).
fn coverage(k: usize, provider: &Provider, plugins: &[PluginFacts<'_>], findings: &mut Findings) {
    let outer: Vec<_> = provider
        .match_images
        .iter()
        .filter_map(|p| parse_schemeless(p).ok())
        .collect();
    for (i, facts) in plugins.iter().enumerate() {
        for (j, pattern) in facts.plugin.match_images.iter().enumerate() {
            let inner = pattern.parts();
            if outer.iter().any(|o| covers(o, inner)) {
                continue;
            }
            let path = format!("plugins[{i}].matchImages[{j}]");
            let fix = format!(
                "add {:?} to providers[{k}].matchImages of the kubelet config",
                pattern.as_str()
            );
            if outer.iter().any(|o| may_overlap(o, inner)) {
                findings.warning(
                    File::Host,
                    path,
                    format!(
                        "plugin {:?}: only some images of {:?} match providers[{k}] ({}): the kubelet never execs the host for the others, and their pulls go without credentials",
                        facts.plugin.name,
                        pattern.as_str(),
                        provider.name
                    ),
                    fix,
                );
            } else {
                findings.error(
                    File::Host,
                    path,
                    format!(
                        "plugin {:?}: no image of {:?} matches providers[{k}] ({}): the kubelet never execs the host for them, and their pulls go without credentials",
                        facts.plugin.name,
                        pattern.as_str(),
                        provider.name
                    ),
                    fix,
                );
            }
        }
    }
    let served: Vec<_> = plugins
        .iter()
        .flat_map(|f| f.plugin.match_images.iter().map(|m| m.parts()))
        .collect();
    for (j, text) in provider.match_images.iter().enumerate() {
        let Ok(pattern) = parse_schemeless(text) else {
            continue;
        };
        let path = format!("providers[{k}].matchImages[{j}]");
        if !served.iter().any(|s| may_overlap(s, &pattern)) {
            findings.warning(
                File::Kubelet,
                path,
                format!("no plugin of the host config serves images of {text:?}: the kubelet execs the host for them and gets no credentials"),
                format!("remove {text:?}, or add a plugin whose matchImages cover it"),
            );
        } else if !served.iter().any(|s| covers(s, &pattern)) {
            findings.warning(
                File::Kubelet,
                path,
                format!("no single plugin covers all images of {text:?}: for the images no plugin matches, the host answers with no credentials"),
                "narrow the pattern to the images the plugins serve, or add a plugin for the rest",
            );
        }
    }
}

/// The token and its cache mode: sent where a plugin needs it, cached the
/// way the plugin's answer allows.
fn tokens(k: usize, provider: &Provider, plugins: &[PluginFacts<'_>], findings: &mut Findings) {
    let at = format!("providers[{k}]");
    let wanting: Vec<(usize, &PluginFacts<'_>)> = plugins
        .iter()
        .enumerate()
        .filter(|(_, f)| f.granted_token())
        .collect();
    let Some(attributes) = &provider.token_attributes else {
        let version = if provider.api_version == PROVIDER_V1 {
            String::new()
        } else {
            format!(" and `apiVersion: {PROVIDER_V1}`")
        };
        let fix = format!(
            "add to {at}: `tokenAttributes: {{serviceAccountTokenAudience: <audience>, cacheType: ServiceAccount, requireServiceAccount: true}}`{version}"
        );
        for (i, facts) in plugins.iter().enumerate() {
            let name = &facts.plugin.name;
            if facts.granted_token() {
                findings.error(
                    File::Host,
                    format!("plugins[{i}]"),
                    format!("plugin {name:?} is granted the service-account token, but {at} has no tokenAttributes: the kubelet never sends a token"),
                    fix.clone(),
                );
            } else if facts.declares_token() {
                findings.warning(
                    File::Host,
                    format!("plugins[{i}]"),
                    format!("plugin {name:?} declares the service-account token, but it is not granted and {at} has no tokenAttributes: the plugin runs without one"),
                    format!("if the plugin needs it: grant it (plugins[{i}].grants.serviceAccountToken: true) and {fix}"),
                );
            }
        }
        return;
    };
    if wanting.is_empty() {
        findings.warning(
            File::Kubelet,
            format!("{at}.tokenAttributes"),
            "no plugin is granted the service-account token: the kubelet requests a token for every pull (and may skip pods without a service account) for nothing",
            format!("remove {at}.tokenAttributes, or grant the token to the plugin that needs it"),
        );
        return;
    }
    // Annotations reach the plugin only when the entry lists them.
    for (i, facts) in &wanting {
        let Some(declaration) = facts.declaration else {
            continue;
        };
        for key in &declaration.annotations {
            let listed = attributes
                .required_service_account_annotation_keys
                .iter()
                .chain(&attributes.optional_service_account_annotation_keys)
                .any(|k| k == key);
            if !listed {
                findings.warning(
                    File::Host,
                    format!("plugins[{i}]"),
                    format!(
                        "plugin {:?} reads the service-account annotation {key:?}, but {at} does not list it: the kubelet never forwards it (unless the plugin's config names another key)",
                        facts.plugin.name
                    ),
                    format!("add {key:?} to {at}.tokenAttributes.optionalServiceAccountAnnotationKeys"),
                );
            }
        }
    }
    let kubelet_type = match attributes.cache_type.as_deref() {
        Some("Token") => TokenCacheType::Token,
        Some("ServiceAccount") => TokenCacheType::ServiceAccount,
        // Missing or invalid: the kubelet config's own finding.
        _ => return,
    };
    for (i, facts) in &wanting {
        let name = &facts.plugin.name;
        match (facts.plugin.cache.token_cache_type, kubelet_type) {
            (TokenCacheType::Token, TokenCacheType::ServiceAccount) => findings.error(
                File::Host,
                format!("plugins[{i}].cache.tokenCacheType"),
                format!(
                    "plugin {name:?} may answer with the token itself (tokenCacheType: Token), but {at} caches per service account (cacheType: ServiceAccount): the kubelet refuses a password equal to the token, and would serve one pod's credential to every pod of the service account"
                ),
                format!("set {at}.tokenAttributes.cacheType: Token in the kubelet config"),
            ),
            (TokenCacheType::ServiceAccount, TokenCacheType::Token) => findings.warning(
                File::Host,
                format!("plugins[{i}].cache.tokenCacheType"),
                format!(
                    "plugin {name:?} is cached per service account, but {at} caches per token (cacheType: Token): the host refuses an answer carrying the token and shares answers among the pods of a service account anyway"
                ),
                format!("set plugins[{i}].cache.tokenCacheType: Token, or {at}.tokenAttributes.cacheType: ServiceAccount"),
            ),
            _ => {}
        }
        if attributes.require_service_account == Some(false) && facts.declares_token() {
            findings.warning(
                File::Kubelet,
                format!("{at}.tokenAttributes.requireServiceAccount"),
                format!("requireServiceAccount is false: for pods without a service account the kubelet execs the host with no token, and plugin {name:?} fails for them"),
                "set requireServiceAccount: true unless the plugin also works without a token (e.g. a node identity)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::kubelet_config::parse;
    use crate::check::{Finding, Severity};
    use crate::config::HostConfig;
    use std::path::Path;

    const HOST: &str = "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n";

    fn run(kubelet: &str, plugins: &str, declarations: &[Option<&str>]) -> Vec<Finding> {
        let kubelet = parse(&format!(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n{kubelet}"
        ))
        .unwrap();
        let host = HostConfig::parse(&format!("{HOST}{plugins}"), Path::new("/")).unwrap();
        let declarations: Vec<Option<Declaration>> = declarations
            .iter()
            .map(|d| d.map(|json| Declaration::parse(json.as_bytes()).unwrap()))
            .collect();
        let facts: Vec<PluginFacts<'_>> = host
            .plugins
            .iter()
            .enumerate()
            .map(|(i, plugin)| PluginFacts {
                plugin,
                declaration: declarations.get(i).and_then(Option::as_ref),
            })
            .collect();
        let mut findings = Findings::default();
        check(
            &kubelet,
            &|c| c == "/etc/wcp/host.yaml",
            "/etc/wcp/host.yaml",
            &facts,
            &mut findings,
        );
        findings.into_vec()
    }

    fn provider(match_images: &str, extra: &str) -> String {
        format!(
            "  - name: wcp\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: {match_images}\n    defaultCacheDuration: 1m\n    args: [--config, /etc/wcp/host.yaml]\n{extra}"
        )
    }

    const SA: &str = "    tokenAttributes: {serviceAccountTokenAudience: a, cacheType: ServiceAccount, requireServiceAccount: true}\n";

    fn summary(findings: &[Finding]) -> Vec<(Severity, String)> {
        findings
            .iter()
            .map(|f| (f.severity, f.path.clone()))
            .collect()
    }

    #[test]
    fn agreeing_files_have_no_findings() {
        let got = run(
            &provider("[\"*.registry.io\", \"other.io\"]", SA),
            "  - {name: a, module: a.wasm, matchImages: [\"a.registry.io\", \"*.registry.io\"], grants: {serviceAccountToken: true}}\n  - {name: b, module: b.wasm, matchImages: [\"other.io\"]}\n",
            &[Some(r#"{"serviceAccountToken": true}"#), Some("{}")],
        );
        assert_eq!(got, []);
    }

    #[test]
    fn no_provider_runs_the_host() {
        let got = run(
            "  - name: wcp\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [x.io]\n    defaultCacheDuration: 1m\n    args: [--config=/etc/other.yaml]\n",
            "  - {name: a, module: a.wasm, matchImages: [x.io]}\n",
            &[],
        );
        assert_eq!(summary(&got), [(Severity::Error, "providers".to_string())]);
        assert!(
            got[0].fix.contains("\"--config\", \"/etc/wcp/host.yaml\""),
            "{}",
            got[0].fix
        );
    }

    #[test]
    fn coverage_both_ways() {
        let got = run(
            &provider("[\"*.registry.io\", \"registry.io\", \"nobody.io\"]", ""),
            "  - {name: a, module: a.wasm, matchImages: [\"a.registry.io\", \"registry.io/team\", \"*.io\", \"elsewhere.com\"]}\n",
            &[],
        );
        assert_eq!(
            summary(&got),
            [
                (Severity::Warning, "plugins[0].matchImages[2]".to_string()),
                (Severity::Error, "plugins[0].matchImages[3]".to_string()),
                // `registry.io` is covered by `*.io`.
                (Severity::Warning, "providers[0].matchImages[0]".to_string()),
            ]
        );
        assert!(
            got[1].message.contains("never execs the host"),
            "{}",
            got[1].message
        );
        assert!(
            got[1]
                .fix
                .contains("add \"elsewhere.com\" to providers[0].matchImages")
        );
        // `*.io` overlaps `nobody.io`, so that one is served.
        let got = run(
            &provider("[\"nobody.io\"]", ""),
            "  - {name: a, module: a.wasm, matchImages: [\"x.io\"]}\n",
            &[],
        );
        assert_eq!(
            summary(&got),
            [
                (Severity::Error, "plugins[0].matchImages[0]".to_string()),
                (Severity::Warning, "providers[0].matchImages[0]".to_string()),
            ]
        );
        assert!(
            got[1]
                .message
                .contains("no plugin of the host config serves")
        );
    }

    #[test]
    fn the_token_and_its_cache_mode() {
        let plugin = "  - {name: a, module: a.wasm, matchImages: [x.io], grants: {serviceAccountToken: true}}\n";
        // Granted but no tokenAttributes; declared only is a warning.
        let got = run(
            &provider("[x.io]", ""),
            plugin,
            &[Some(r#"{"serviceAccountToken": true}"#)],
        );
        assert_eq!(summary(&got), [(Severity::Error, "plugins[0]".to_string())]);
        assert!(got[0].message.contains("never sends a token"));
        let got = run(
            &provider("[x.io]", ""),
            "  - {name: a, module: a.wasm, matchImages: [x.io]}\n",
            &[Some(r#"{"serviceAccountToken": true}"#)],
        );
        assert_eq!(
            summary(&got),
            [(Severity::Warning, "plugins[0]".to_string())]
        );
        // tokenAttributes nobody uses.
        let got = run(
            &provider("[x.io]", SA),
            "  - {name: a, module: a.wasm, matchImages: [x.io]}\n",
            &[Some("{}")],
        );
        assert_eq!(
            summary(&got),
            [(
                Severity::Warning,
                "providers[0].tokenAttributes".to_string()
            )]
        );
        // Token echo allowed by the host, cached per service account by the kubelet.
        let echo = plugin.replace("}}\n", "}, cache: {tokenCacheType: Token}}\n");
        let got = run(&provider("[x.io]", SA), &echo, &[]);
        assert_eq!(
            summary(&got),
            [(
                Severity::Error,
                "plugins[0].cache.tokenCacheType".to_string()
            )]
        );
        assert!(got[0].fix.contains("cacheType: Token"));
        let per_token = SA.replace("cacheType: ServiceAccount", "cacheType: Token");
        assert_eq!(run(&provider("[x.io]", &per_token), &echo, &[]), []);
        let got = run(&provider("[x.io]", &per_token), plugin, &[]);
        assert_eq!(
            summary(&got),
            [(
                Severity::Warning,
                "plugins[0].cache.tokenCacheType".to_string()
            )]
        );
        // An annotation the plugin reads must be listed.
        let reads = r#"{"serviceAccountToken": true, "annotations": ["example.com/role"]}"#;
        let got = run(&provider("[x.io]", SA), plugin, &[Some(reads)]);
        assert_eq!(
            summary(&got),
            [(Severity::Warning, "plugins[0]".to_string())]
        );
        assert!(
            got[0].message.contains("never forwards it"),
            "{}",
            got[0].message
        );
        let listed = SA.replace("requireServiceAccount: true}", "requireServiceAccount: true, optionalServiceAccountAnnotationKeys: [example.com/role]}");
        assert_eq!(
            run(&provider("[x.io]", &listed), plugin, &[Some(reads)]),
            []
        );
        // No service account: the plugin runs without its token.
        let optional = SA.replace(
            "requireServiceAccount: true",
            "requireServiceAccount: false",
        );
        let got = run(
            &provider("[x.io]", &optional),
            plugin,
            &[Some(r#"{"serviceAccountToken": true}"#)],
        );
        assert_eq!(
            summary(&got),
            [(
                Severity::Warning,
                "providers[0].tokenAttributes.requireServiceAccount".to_string()
            )]
        );
    }
}
