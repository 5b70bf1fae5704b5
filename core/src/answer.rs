//! Turns a provider's answer into the kubelet response. The provider says
//! what the credential is and when it expires; the host decides what the
//! kubelet is told, so that every provider gets the same, correct rules.

use crate::duration::format_go_seconds;
use crate::protocol::{ApiVersion, AuthConfig, CacheKeyType, Response};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// Most auth entries one answer may carry.
pub const MAX_AUTH_ENTRIES: usize = 64;
/// Most bytes of keys, usernames and passwords one answer may carry; an ECR
/// token is about 2 KiB, so this only stops runaway or hostile plugins.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// One credential as a provider returned it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthEntry {
    pub match_key: String,
    pub username: String,
    pub password: String,
}

/// A provider's successful answer, independent of any WIT version.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub auth: Vec<AuthEntry>,
    pub cache_key_type: CacheKeyType,
    /// Seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Answer {
    /// Validates the answer and turns it into the kubelet's `auth` map.
    /// Rejects answers the kubelet would misread or that no real provider
    /// produces (too many or too large entries, duplicate or empty keys).
    pub fn into_auth(self) -> Result<BTreeMap<String, AuthConfig>> {
        if self.auth.len() > MAX_AUTH_ENTRIES {
            bail!(
                "plugin returned {} auth entries, more than the limit of {MAX_AUTH_ENTRIES}",
                self.auth.len()
            );
        }
        let size: usize = self
            .auth
            .iter()
            .map(|e| e.match_key.len() + e.username.len() + e.password.len())
            .sum();
        if size > MAX_ANSWER_BYTES {
            bail!(
                "plugin returned {size} bytes of credentials, more than the limit of {MAX_ANSWER_BYTES}"
            );
        }
        let mut auth = BTreeMap::new();
        for entry in self.auth {
            if entry.match_key.is_empty() {
                bail!("plugin returned an auth entry with an empty match key");
            }
            if auth.contains_key(&entry.match_key) {
                bail!("plugin returned the auth key {:?} twice", entry.match_key);
            }
            auth.insert(
                entry.match_key,
                AuthConfig {
                    username: entry.username,
                    password: entry.password,
                },
            );
        }
        Ok(auth)
    }
}

/// The response for an answer valid for `duration_secs` more seconds.
pub fn response(
    api_version: ApiVersion,
    cache_key_type: CacheKeyType,
    duration_secs: u64,
    auth: BTreeMap<String, AuthConfig>,
) -> Response {
    Response::new(
        api_version,
        cache_key_type,
        Some(format_go_seconds(duration_secs)),
        auth,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> AuthEntry {
        AuthEntry {
            match_key: key.into(),
            username: "u".into(),
            password: "p".into(),
        }
    }

    #[test]
    fn response_carries_the_duration() {
        let auth = Answer {
            auth: vec![entry("registry.io")],
            cache_key_type: CacheKeyType::Registry,
            expires_at: None,
        }
        .into_auth()
        .unwrap();
        let resp = response(ApiVersion::V1, CacheKeyType::Registry, 3540, auth);
        assert_eq!(resp.cache_duration.as_deref(), Some("59m0s"));
        assert_eq!(resp.auth["registry.io"].username, "u");
    }

    #[test]
    fn rejects_malformed_answers() {
        let dup = Answer {
            auth: vec![entry("a"), entry("a")],
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(dup.into_auth().unwrap_err().to_string().contains("twice"));
        let many = Answer {
            auth: (0..=MAX_AUTH_ENTRIES)
                .map(|i| entry(&format!("r{i}.io")))
                .collect(),
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(many.into_auth().is_err());
        let big = Answer {
            auth: vec![AuthEntry {
                match_key: "r.io".into(),
                username: "u".into(),
                password: "x".repeat(MAX_ANSWER_BYTES),
            }],
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(
            big.into_auth()
                .unwrap_err()
                .to_string()
                .contains("bytes of credentials")
        );
        let empty_key = Answer {
            auth: vec![entry("")],
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(empty_key.into_auth().is_err());
    }
}
