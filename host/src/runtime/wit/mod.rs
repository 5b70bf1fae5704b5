//! The provider world, one module per API version (`since_v0_1_0.rs` for
//! `wit/since_v0.1.0`), chosen by the version of the `provider` interface a
//! component exports. Old versions stay so that components built against
//! them keep working.
//!
//! The rest of the runtime is version-free: it links WASI and wasi:http,
//! asks [`ApiVersion::of`] which version a component targets, and speaks
//! [`PluginRequest`] and [`Reply`] (the latest, version-free types) to the
//! [`Provider`] it gets back. Each version module converts those to and from
//! its own generated types and implements its own `Host` traits on
//! `PluginState` by forwarding to version-free methods.
//!
//! A new version is a new `wit/since_vX.Y.Z` directory, a sibling module
//! here, and one variant in [`ApiVersion`] and [`Provider`] with its match
//! arms below. `since_v0_99_0` (test-only) shows it.

/// `answer` and `refusal` for a version module whose `credentials` and
/// `provider-error` have the shape of the latest ones (every version so
/// far): expanded inside the module, where `export` names its generated
/// provider interface and `wit` its package. A version whose shapes differ
/// writes its own two functions instead.
macro_rules! latest_shape_conversions {
    () => {
        fn answer(credentials: export::Credentials) -> wcp_core::answer::Answer {
            use wcp_core::protocol::CacheKeyType;
            use wit::types::CacheKeyType as K;
            wcp_core::answer::Answer {
                auth: credentials
                    .auth
                    .into_iter()
                    .map(|e| wcp_core::answer::AuthEntry {
                        match_key: e.match_key,
                        username: e.username,
                        password: e.password,
                    })
                    .collect(),
                cache_key_type: match credentials.cache_key_type {
                    K::Image => CacheKeyType::Image,
                    K::Registry => CacheKeyType::Registry,
                    K::Global => CacheKeyType::Global,
                },
                expires_at: credentials.expires_at,
            }
        }

        fn refusal(error: export::ProviderError) -> super::Refusal {
            use super::Refusal;
            use export::ProviderError as E;
            match error {
                E::NoCredentials(why) => Refusal::NoCredentials(why),
                E::Config(why) => Refusal::Config(why),
                E::Unauthorized(why) => Refusal::Unauthorized(why),
                E::Upstream(why) => Refusal::Upstream(why),
            }
        }
    };
}
use latest_shape_conversions;

mod since_v0_1_0;
#[cfg(test)]
mod since_v0_99_0;

use super::state::PluginState;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wcp_core::answer::Answer;

/// The provider interface's export name without its version.
pub const PROVIDER_EXPORT_PREFIX: &str = "wcp:credential-provider/provider@";

/// One version of the provider world this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V0_1,
    #[cfg(test)]
    V0_99,
}

/// What every version's `get-credentials` receives, before its conversion.
pub struct PluginRequest<'a> {
    pub image: &'a str,
    /// Only when declared and granted.
    pub service_account_token: Option<&'a str>,
    pub service_account_annotations: &'a BTreeMap<String, String>,
}

/// What every version's `get-credentials` returns, after its conversion:
/// an answer, or the plugin's own refusal (text not yet redacted).
pub type Reply = std::result::Result<Answer, Refusal>;

/// A provider error, as the latest version spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoCredentials(String),
    Config(String),
    Unauthorized(String),
    Upstream(String),
}

/// An instantiated provider of some version.
pub enum Provider {
    V0_1(since_v0_1_0::Plugin),
    #[cfg(test)]
    V0_99(since_v0_99_0::Plugin),
}

impl ApiVersion {
    /// Every version this build runs, oldest first.
    pub const ALL: &[ApiVersion] = &[
        ApiVersion::V0_1,
        #[cfg(test)]
        ApiVersion::V0_99,
    ];

    /// The full package version, as this host's WIT spells it.
    pub fn package_version(self) -> &'static str {
        match self {
            ApiVersion::V0_1 => since_v0_1_0::VERSION,
            #[cfg(test)]
            ApiVersion::V0_99 => since_v0_99_0::VERSION,
        }
    }

    /// `major.minor`: components of any patch release of it are accepted.
    fn major_minor(self) -> &'static str {
        let version = self.package_version();
        let second_dot = version
            .match_indices('.')
            .nth(1)
            .map_or(version.len(), |(i, _)| i);
        &version[..second_dot]
    }

    /// The version `component` targets, so that a wrong component fails
    /// with a clear line instead of a linker error.
    pub fn of(engine: &Engine, component: &Component) -> Result<Self> {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        Self::from_exports(&exports)
    }

    fn from_exports(exports: &[String]) -> Result<Self> {
        let Some(version) = exports
            .iter()
            .find_map(|name| name.strip_prefix(PROVIDER_EXPORT_PREFIX))
        else {
            bail!(
                "component does not export wcp:credential-provider/provider (it exports: [{}]); \
                 it was not built against this host's provider world",
                exports.join(", ")
            );
        };
        let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        match Self::ALL.iter().find(|v| v.major_minor() == major_minor) {
            Some(v) => Ok(*v),
            None => bail!(
                "component targets wcp:credential-provider@{version}, but this host supports only {}",
                Self::ALL
                    .iter()
                    .map(|v| format!("{}.x", v.major_minor()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Adds this version's provider imports to a linker that has WASI.
    pub fn add_to_linker(self, linker: &mut Linker<PluginState>) -> Result<()> {
        match self {
            ApiVersion::V0_1 => since_v0_1_0::add_to_linker(linker).map_err(Into::into),
            #[cfg(test)]
            ApiVersion::V0_99 => since_v0_99_0::add_to_linker(linker).map_err(Into::into),
        }
    }

    pub async fn instantiate(
        self,
        store: &mut Store<PluginState>,
        component: &Component,
        linker: &Linker<PluginState>,
    ) -> wasmtime::Result<Provider> {
        Ok(match self {
            ApiVersion::V0_1 => Provider::V0_1(
                since_v0_1_0::Plugin::instantiate_async(store, component, linker).await?,
            ),
            #[cfg(test)]
            ApiVersion::V0_99 => Provider::V0_99(
                since_v0_99_0::Plugin::instantiate_async(store, component, linker).await?,
            ),
        })
    }
}

impl Provider {
    pub async fn get_credentials(
        &self,
        store: &mut Store<PluginState>,
        request: &PluginRequest<'_>,
    ) -> wasmtime::Result<Reply> {
        match self {
            Provider::V0_1(p) => since_v0_1_0::get_credentials(p, store, request).await,
            #[cfg(test)]
            Provider::V0_99(p) => since_v0_99_0::get_credentials(p, store, request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiVersion;

    fn exports(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_version_is_chosen_by_the_export_and_patch_releases_are_accepted() {
        let of = |name: &str| ApiVersion::from_exports(&exports(&[name]));
        assert_eq!(
            of("wcp:credential-provider/provider@0.1.0").unwrap(),
            ApiVersion::V0_1
        );
        assert_eq!(
            of("wcp:credential-provider/provider@0.1.7").unwrap(),
            ApiVersion::V0_1
        );
        assert_eq!(
            of("wcp:credential-provider/provider@0.99.0").unwrap(),
            ApiVersion::V0_99
        );
        let err = of("wcp:credential-provider/provider@0.2.0").unwrap_err();
        assert!(
            err.to_string().contains("supports only 0.1.x, 0.99.x"),
            "{err}"
        );
        let err = ApiVersion::from_exports(&exports(&["wasi:cli/run@0.2.0"])).unwrap_err();
        assert!(err.to_string().contains("[wasi:cli/run@0.2.0]"), "{err}");
    }

    #[test]
    fn the_version_is_spelled_once() {
        // The bindings' WIT directory and the version constant agree.
        let wit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wit/since_v0.1.0/provider.wit"
        ))
        .unwrap();
        assert!(wit.contains(&format!(
            "package wcp:credential-provider@{};",
            ApiVersion::V0_1.package_version()
        )));
        assert_eq!(ApiVersion::V0_1.major_minor(), "0.1");
    }

    /// The proof that a world version is only a file and a registry
    /// entry: the test-only 0.99 component runs through the same
    /// version-free `run_plugin` as a 0.1 plugin, with the request and the
    /// answer converted by `since_v0_99_0.rs` (only 0.99 sends the registry).
    #[cfg(feature = "compiler")]
    #[test]
    fn a_second_world_version_runs_through_the_version_free_runtime() {
        use crate::runtime::{Call, Outcome, run_plugin};
        let answer = |module: &str, config: &str| {
            let text = format!(
                "apiVersion: wasm-credential-provider.io/v1alpha1\n\
                 kind: CredentialProviderHostConfig\n\
                 plugins:\n\
                 - name: versioned\n  module: {module}\n  matchImages: [\"*.registry.io\"]\n  config:\n{config}"
            );
            let host =
                wcp_core::config::HostConfig::parse(&text, std::path::Path::new("/")).unwrap();
            let plugin = &host.plugins[0];
            let request = wcp_core::protocol::Request::decode(
                br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"team.registry.io/app/web:1"}"#,
            )
            .unwrap();
            let module = crate::module::load_stamped(plugin, None).unwrap();
            let declaration = module.declaration().unwrap();
            let values = crate::config_file::resolve_values(plugin).unwrap();
            let sandbox =
                crate::sandbox::Sandbox::resolve(plugin, &declaration, values, &request, |_| None);
            let report = run_plugin(Call {
                plugin,
                module: &module,
                request: &request,
                sandbox,
                tls: crate::tls::TlsClient::new(None),
                proxy: wcp_core::proxy::ProxyPolicy::from_env(|_| None).unwrap(),
                proxy_resolution: Default::default(),
                artifacts: &crate::runtime::Artifacts {
                    cache: None,
                    config_path: std::path::Path::new("/nonexistent"),
                },
            });
            assert!(report.events.is_empty());
            match report.outcome {
                Ok(Outcome::Answer(answer)) => answer,
                Ok(Outcome::NoCredentials(why)) => panic!("no credentials: {why}"),
                Err(e) => panic!("{e:#}"),
            }
        };
        let next = answer(
            wcp_test_artifacts::NEXT_API_COMPONENT,
            "    username: next-robot\n",
        );
        assert_eq!(next.auth.len(), 1);
        assert_eq!(next.auth[0].match_key, "team.registry.io");
        assert_eq!(next.auth[0].username, "next-robot");
        assert_eq!(
            next.auth[0].password,
            "next-api-for-team.registry.io/app/web:1"
        );
        let current = answer(
            wcp_test_artifacts::STATIC_PLUGIN,
            "    username: robot\n    password: hunter2\n",
        );
        assert_eq!(current.auth[0].username, "robot");
    }
}
