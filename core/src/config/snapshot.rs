//! The host config as JSON, for the front binary (`host/src/front.rs`) that
//! answers cache hits without linking a YAML parser.
//!
//! A snapshot is the config file's own content re-encoded, not the
//! validated [`HostConfig`]: the front validates it with the same code
//! ([`super::validate`]) as a YAML load, so defaults, path resolution and
//! every rule stay in one place and a snapshot written by an older build
//! can never carry an older build's interpretation. [`encode`] refuses a
//! text whose JSON form does not validate to exactly what the YAML does,
//! so the two loads cannot disagree.

use super::HostConfig;
use super::problems::{ConfigError, Problems};
use super::schema::RawHostConfig;
use std::path::Path;

/// The JSON form of config `text`, if it means exactly what the YAML does
/// (`None` for a text that is not a valid config, or one whose JSON form
/// differs, e.g. a map key that is not a string).
pub fn encode(text: &str, base_dir: &Path) -> Option<Vec<u8>> {
    let from_yaml = HostConfig::parse(text, base_dir).ok()?;
    let value: serde_json::Value = serde_yaml_ng::from_str(text).ok()?;
    let json = serde_json::to_vec(&value).ok()?;
    let from_json = decode(&json, base_dir).ok()?;
    // `Debug` of a config is deterministic (its maps are ordered) and
    // covers every field: equal text means equal configs.
    (format!("{from_yaml:?}") == format!("{from_json:?}")).then_some(json)
}

/// Validates a snapshot made by [`encode`]; relative paths are resolved
/// against `base_dir` as for the file.
pub fn decode(json: &[u8], base_dir: &Path) -> Result<HostConfig, ConfigError> {
    let raw: RawHostConfig =
        serde_json::from_slice(json).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    let mut problems = Problems::default();
    let config = super::validate::host_config(raw, base_dir, &mut problems);
    problems.into_result(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\n";

    #[test]
    fn a_snapshot_validates_to_the_same_config() {
        let text =
            format!("{HEADER}cache: {{directory: cache, maxEntries: 7}}\naudit_log_unused: []\n");
        assert!(
            encode(&text, Path::new("/etc/wcp")).is_none(),
            "unknown field"
        );
        let text = format!(
            "{HEADER}cache: {{directory: cache, maxEntries: 7}}\nplugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['*.example.com']\n    config: {{user: robot}}\n    configFromFile: {{password: secret}}\n    grants: {{outbound: ['https://api.example.com']}}\n    limits: {{timeout: 3s, memoryMiB: 32}}\n    cache: {{defaultDuration: 1h, shareFailuresFor: 2s}}\n"
        );
        let base = Path::new("/etc/wcp");
        let json = encode(&text, base).expect("a valid config has a snapshot");
        let decoded = decode(&json, base).unwrap();
        let parsed = HostConfig::parse(&text, base).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{parsed:?}"));
        assert_eq!(decoded.cache_directory, Path::new("/etc/wcp/cache"));
        assert_eq!(decoded.plugins[0].module, Path::new("/etc/wcp/a.wasm"));
    }

    #[test]
    fn an_invalid_config_has_no_snapshot_and_a_bad_snapshot_is_an_error() {
        let text =
            format!("{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: []\n");
        assert!(encode(&text, Path::new("/")).is_none());
        assert!(decode(b"{\"apiVersion\": 1}", Path::new("/")).is_err());
        assert!(decode(b"not json", Path::new("/")).is_err());
        // Valid JSON that does not validate: every problem, as for YAML.
        let err = decode(
            br#"{"apiVersion":"v0","kind":"CredentialProviderHostConfig","plugins":[]}"#,
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
    }

    #[test]
    fn yaml_that_json_cannot_say_has_no_snapshot() {
        // A numeric map key is a string to the YAML load of a string map,
        // but cannot be a JSON object key as-is: no snapshot, not a guess.
        let text = format!(
            "{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    config: {{1: one}}\n"
        );
        if let Some(json) = encode(&text, Path::new("/")) {
            let decoded = decode(&json, Path::new("/")).unwrap();
            let parsed = HostConfig::parse(&text, Path::new("/")).unwrap();
            assert_eq!(format!("{decoded:?}"), format!("{parsed:?}"));
        }
    }
}
