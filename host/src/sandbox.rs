//! What one plugin call may see and do: the [`Permissions`] of its
//! declaration and grant, resolved against this process's environment and
//! the request. Every decision here asks the permissions; nothing compares
//! declaration and grant on its own.

use std::collections::BTreeMap;
use wcp_core::capabilities::{Declaration, Permissions};
use wcp_core::config::PluginConfig;
use wcp_core::protocol::Request;
use wcp_core::redact::Redactor;

/// Everything the runtime hands to one plugin instance.
pub struct Sandbox {
    /// Config values the plugin declared and the operator set.
    pub config: BTreeMap<String, String>,
    /// Environment variables declared, granted and present.
    pub env: Vec<(String, String)>,
    /// The service-account token, only if declared and granted.
    pub token: Option<String>,
    pub policy: Permissions,
    /// Hides the token and secret config values in anything logged.
    pub redactor: Redactor,
    /// Why a plugin that declared the service-account token runs without
    /// it, for its failure line: the plugin cannot tell the two causes
    /// apart, and each is fixed in a different file.
    pub token_note: Option<String>,
}

impl Sandbox {
    /// Resolves the sandbox of `plugin` for `request`. `env` reads the
    /// host's environment (the kubelet's plus the provider config's `env`).
    pub fn resolve(
        plugin: &PluginConfig,
        declaration: &Declaration,
        values: BTreeMap<String, String>,
        request: &Request,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let name = &plugin.name;
        let mut redactor = Redactor::default();
        if let Some(token) = &request.service_account_token {
            redactor.add(token);
        }
        for value in plugin.secret_values(&values) {
            redactor.add(value);
        }
        let policy = Permissions::new(declaration, &plugin.grant, &values);
        for problem in policy.outbound.problems() {
            tracing::info!(plugin = %name, "declared destination unusable: {problem}");
        }
        let mut config = BTreeMap::new();
        for (key, value) in values {
            if policy.config.passes(&key) {
                config.insert(key, value);
            } else {
                tracing::info!(plugin = %name, key = %key, "config key is set but the plugin does not declare it; not passed to the plugin");
            }
        }
        for name_granted in policy.env.granted_not_declared() {
            tracing::debug!(plugin = %name, env = %name_granted, "env var granted but not declared; not passed");
        }
        let env: Vec<(String, String)> = policy
            .env
            .allowed()
            .filter_map(|var| env(var).map(|value| (var.clone(), value)))
            .collect();
        // Granted variables that by their name hold credentials
        // (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...) are secrets like
        // configFromEnv values; others (AWS_REGION) stay readable in logs.
        for (var, value) in &env {
            if names_a_secret(var) {
                redactor.add(value);
                crate::secrets::register(value);
            }
        }
        let token = match (
            &request.service_account_token,
            policy.service_account_token.allowed(),
        ) {
            (Some(token), true) => Some(token.clone()),
            _ => None,
        };
        let token_note = token_note(
            name,
            request.service_account_token.is_some(),
            policy.service_account_token.declared(),
            policy.service_account_token.granted(),
        );
        if let Some(note) = &token_note {
            tracing::info!(plugin = %name, "{note}");
        }
        Self {
            config,
            env,
            token,
            policy,
            redactor,
            token_note,
        }
    }
}

/// Why a plugin that declared the service-account token does not get it:
/// the kubelet sent none (its provider entry has no `tokenAttributes`), or
/// the operator did not grant it. `None` when it gets the token or never
/// asked for it.
fn token_note(plugin: &str, sent: bool, declared: bool, granted: bool) -> Option<String> {
    match (declared, sent, granted) {
        (false, _, _) | (true, true, true) => None,
        (true, false, _) => Some(
            "the plugin declares the service-account token but the kubelet sent none: \
             set tokenAttributes (serviceAccountTokenAudience, cacheType) on this provider \
             in the kubelet's CredentialProviderConfig"
                .to_string(),
        ),
        (true, true, false) => Some(format!(
            "the kubelet sent a service-account token but the host withheld it: \
             set grants.serviceAccountToken: true for plugin {plugin:?} in the host config"
        )),
    }
}

/// Whether an environment variable's name says it holds a credential.
fn names_a_secret(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_token_names_the_setting_that_fixes_it() {
        let note = |sent, declared, granted| super::token_note("p", sent, declared, granted);
        assert!(note(false, true, true).unwrap().contains("tokenAttributes"));
        assert!(
            note(false, true, false)
                .unwrap()
                .contains("tokenAttributes")
        );
        assert!(
            note(true, true, false)
                .unwrap()
                .contains("grants.serviceAccountToken: true for plugin \"p\"")
        );
        assert_eq!(note(true, true, true), None);
        assert_eq!(note(true, false, true), None);
        assert_eq!(note(false, false, false), None);
    }

    #[test]
    fn credential_variables_are_secrets() {
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "REGISTRY_PASSWORD",
        ] {
            assert!(super::names_a_secret(var), "{var}");
        }
        for var in ["AWS_REGION", "HOME", "AWS_DEFAULT_REGION"] {
            assert!(!super::names_a_secret(var), "{var}");
        }
    }
}
