//! The operator's configuration values for this plugin (the host config's
//! `config`, `configFromFile` and `configFromEnv` maps, already resolved).
//! Only this plugin's values are visible.

use crate::ProviderError;
use crate::bindings::wcp::credential_provider::config as host;

/// The value of `key`, if the operator set it.
pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// The value of `key`, or a [`ProviderError::Config`] naming the key, so that
/// the operator sees which setting is missing.
pub fn require(key: &str) -> Result<String, ProviderError> {
    get(key).ok_or_else(|| missing(key))
}

/// All keys the operator set for this plugin, sorted.
pub fn keys() -> Vec<String> {
    host::keys()
}

fn missing(key: &str) -> ProviderError {
    ProviderError::Config(format!(
        "required config key {key:?} is not set (set it in the plugin's config, configFromFile or configFromEnv)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_error_names_the_key() {
        let ProviderError::Config(message) = missing("password") else {
            panic!("not a config error");
        };
        assert!(message.contains("\"password\""), "{message}");
    }
}
