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
            (Some(_), false) => {
                tracing::debug!(
                    plugin = %name,
                    declared = policy.service_account_token.declared(),
                    granted = policy.service_account_token.granted(),
                    "service-account token withheld: the plugin must declare it and grants.serviceAccountToken must be true"
                );
                None
            }
            (None, _) => None,
        };
        Self {
            config,
            env,
            token,
            policy,
            redactor,
        }
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
