//! The operator's configuration values for this plugin (the host config's
//! `config`, `configFromFile` and `configFromEnv` maps, already resolved).
//! Only this plugin's values are visible, and only the keys its
//! `capabilities.json` declares (under `config`, or as the key of a
//! `config:<key>` outbound entry).

use crate::ProviderError;
use crate::capabilities::Declaration;

/// The value of `key`, if the operator set it.
pub fn get(key: &str) -> Option<String> {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    return crate::testing::config_get(key);
    #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
    crate::bindings::wcp::credential_provider::config::get(key)
}

/// The value of `key`, or a [`ProviderError::Config`] naming the key and
/// saying who has to act: the plugin's author when `capabilities.json` does
/// not declare it (the host withholds undeclared keys), else the operator.
pub fn require(key: &str) -> Result<String, ProviderError> {
    get(key).ok_or_else(|| missing(key, crate::capabilities::declared().as_ref()))
}

/// All keys the operator set for this plugin (and it declared), sorted.
pub fn keys() -> Vec<String> {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    return crate::testing::config_keys();
    #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
    crate::bindings::wcp::credential_provider::config::keys()
}

fn missing(key: &str, declaration: Option<&Declaration>) -> ProviderError {
    match declaration {
        Some(d) if !d.declares_config_key(key) => ProviderError::Config(format!(
            "required config key {key:?} is not declared by the plugin, so the host withholds it (add it to \"config\" in the plugin's capabilities.json)"
        )),
        _ => ProviderError::Config(format!(
            "required config key {key:?} is not set by the operator (set it in the plugin's config, configFromFile or configFromEnv)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_error_names_the_key() {
        let ProviderError::Config(message) = missing("password", None) else {
            panic!("not a config error");
        };
        assert!(message.contains("\"password\""), "{message}");
    }

    #[test]
    fn missing_key_tells_undeclared_from_unset() {
        let d = Declaration::parse(br#"{"config": ["password"], "outbound": ["config:endpoint"]}"#)
            .unwrap();
        for key in ["password", "endpoint"] {
            let ProviderError::Config(m) = missing(key, Some(&d)) else {
                panic!()
            };
            assert!(m.contains("not set by the operator"), "{m}");
        }
        let ProviderError::Config(m) = missing("username", Some(&d)) else {
            panic!()
        };
        assert!(
            m.contains("not declared by the plugin") && m.contains("capabilities.json"),
            "{m}"
        );
    }
}
