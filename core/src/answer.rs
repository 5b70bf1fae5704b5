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
/// How long before the reported expiry the kubelet should stop using a
/// credential, so that a pull started just before expiry still succeeds.
pub const EXPIRY_SAFETY_MARGIN_SECS: u64 = 60;

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
    /// Builds the response for `api_version` at wall-clock time `now`
    /// (Unix seconds). Rejects answers the kubelet would misread.
    pub fn into_response(self, api_version: ApiVersion, now: u64) -> Result<Response> {
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
        let cache_duration = self.expires_at.map(|expires_at| {
            let usable_until = expires_at.saturating_sub(EXPIRY_SAFETY_MARGIN_SECS);
            format_go_seconds(usable_until.saturating_sub(now))
        });
        Ok(Response::new(
            api_version,
            self.cache_key_type,
            cache_duration,
            auth,
        ))
    }
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
    fn expiry_becomes_remaining_lifetime_minus_margin() {
        let answer = Answer {
            auth: vec![entry("registry.io")],
            cache_key_type: CacheKeyType::Registry,
            expires_at: Some(1_000_000 + 3600),
        };
        let resp = answer.into_response(ApiVersion::V1, 1_000_000).unwrap();
        assert_eq!(resp.cache_duration.as_deref(), Some("59m0s"));
    }

    #[test]
    fn expired_or_nearly_expired_is_not_cached() {
        for expires_at in [0, 999_990, 1_000_030] {
            let answer = Answer {
                auth: vec![entry("registry.io")],
                cache_key_type: CacheKeyType::Image,
                expires_at: Some(expires_at),
            };
            let resp = answer.into_response(ApiVersion::V1, 1_000_000).unwrap();
            assert_eq!(resp.cache_duration.as_deref(), Some("0s"));
        }
    }

    #[test]
    fn unknown_expiry_leaves_duration_to_kubelet_default() {
        let answer = Answer {
            auth: vec![entry("registry.io")],
            cache_key_type: CacheKeyType::Global,
            expires_at: None,
        };
        assert_eq!(
            answer
                .into_response(ApiVersion::V1, 0)
                .unwrap()
                .cache_duration,
            None
        );
    }

    #[test]
    fn rejects_malformed_answers() {
        let dup = Answer {
            auth: vec![entry("a"), entry("a")],
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(
            dup.into_response(ApiVersion::V1, 0)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let many = Answer {
            auth: (0..=MAX_AUTH_ENTRIES)
                .map(|i| entry(&format!("r{i}.io")))
                .collect(),
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(many.into_response(ApiVersion::V1, 0).is_err());
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
            big.into_response(ApiVersion::V1, 0)
                .unwrap_err()
                .to_string()
                .contains("bytes of credentials")
        );
        let empty_key = Answer {
            auth: vec![entry("")],
            cache_key_type: CacheKeyType::Image,
            expires_at: None,
        };
        assert!(empty_key.into_response(ApiVersion::V1, 0).is_err());
    }
}
