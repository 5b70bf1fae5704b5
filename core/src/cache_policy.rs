//! How long an answer may be reused, decided once for every provider: the
//! provider reports when its credential expires; the host turns that into
//! the kubelet's `cacheDuration` and its own cache lifetime, identically.

use crate::answer::Answer;
use crate::cache_key::TokenCacheType;
use crate::token_echo;
use anyhow::{Result, bail};
use std::time::Duration;

/// Stop using a credential this long before it expires, so that a pull
/// started just before expiry still authenticates.
pub const EXPIRY_SAFETY_MARGIN_SECS: u64 = 60;
/// Lifetime of an answer with no known expiry, unless configured.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5 * 60);
/// Longest lifetime of any answer, unless configured.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(12 * 3600);

/// One plugin's cache settings (host config `plugins[].cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    pub token_cache_type: TokenCacheType,
    /// For answers without an expiry; zero means "do not cache".
    pub default_duration: Duration,
    /// Upper bound for every answer.
    pub max_duration: Duration,
    /// How long a failed flight's line is shared with execs that wanted
    /// the same answer (see [`crate::shared_failure`]); zero disables.
    pub share_failures_for: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            token_cache_type: TokenCacheType::ServiceAccount,
            default_duration: DEFAULT_DURATION,
            max_duration: DEFAULT_MAX_DURATION,
            share_failures_for: crate::shared_failure::DEFAULT_WINDOW,
        }
    }
}

impl CachePolicy {
    /// Seconds the answer may be used from `now` (Unix seconds): the
    /// remaining lifetime minus the safety margin, or the default, capped by
    /// the maximum. Zero means "do not cache".
    pub fn duration_secs(&self, expires_at: Option<u64>, now: u64) -> u64 {
        let wanted = match expires_at {
            Some(expires_at) => expires_at
                .saturating_sub(EXPIRY_SAFETY_MARGIN_SECS)
                .saturating_sub(now),
            None => self.default_duration.as_secs(),
        };
        wanted.min(self.max_duration.as_secs())
    }

    /// Refuses an answer that carries the service-account token anywhere
    /// (see [`crate::token_echo`]) unless credentials are cached per token:
    /// cached per service account, one pod's token would be served to the
    /// service account's other pods. The kubelet only refuses a password
    /// equal to the token.
    pub fn check_token_echo(&self, answer: &Answer, token: Option<&str>) -> Result<()> {
        let Some(token) = token else { return Ok(()) };
        if self.token_cache_type == TokenCacheType::Token {
            return Ok(());
        }
        if let Some(found) = token_echo::find(&answer.auth, token) {
            // The one fix, spelled out: pass-through registries need both.
            bail!(
                "plugin returned {found}; an answer that carries the token is cached per token only: set `cache: {{tokenCacheType: Token}}` on this plugin in the host config and `tokenAttributes.cacheType: Token` on the kubelet's CredentialProviderConfig entry that execs this host"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::AuthEntry;
    use crate::protocol::CacheKeyType;

    #[test]
    fn durations() {
        let p = CachePolicy::default();
        let now = 1_000_000;
        assert_eq!(p.duration_secs(Some(now + 3600), now), 3540);
        assert_eq!(p.duration_secs(Some(now + 30), now), 0);
        assert_eq!(p.duration_secs(Some(now - 10), now), 0);
        assert_eq!(p.duration_secs(None, now), 300);
        assert_eq!(p.duration_secs(Some(now + 48 * 3600), now), 12 * 3600);
        let short = CachePolicy {
            max_duration: Duration::from_secs(600),
            default_duration: Duration::ZERO,
            ..CachePolicy::default()
        };
        assert_eq!(short.duration_secs(Some(now + 3600), now), 600);
        assert_eq!(short.duration_secs(None, now), 0);
    }

    #[test]
    fn token_echo() {
        let answer = Answer {
            auth: vec![AuthEntry {
                match_key: "r.io".into(),
                username: "u".into(),
                password: "the-token".into(),
            }],
            cache_key_type: CacheKeyType::Registry,
            expires_at: None,
        };
        let sa = CachePolicy::default();
        assert!(sa.check_token_echo(&answer, Some("the-token")).is_err());
        let mut bearer = answer.clone();
        bearer.auth[0].password = "Bearer the-token".into();
        let err = sa
            .check_token_echo(&bearer, Some("the-token"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("password of auth entry 1"), "{err}");
        assert!(!err.contains("the-token"), "{err}");
        assert!(
            err.contains("set `cache: {tokenCacheType: Token}` on this plugin")
                && err.contains("`tokenAttributes.cacheType: Token`"),
            "{err}"
        );
        let mut username = answer.clone();
        username.auth[0].password = "p".into();
        username.auth[0].username = "the-token".into();
        assert!(sa.check_token_echo(&username, Some("the-token")).is_err());
        assert!(sa.check_token_echo(&answer, Some("other")).is_ok());
        assert!(sa.check_token_echo(&answer, None).is_ok());
        let per_token = CachePolicy {
            token_cache_type: TokenCacheType::Token,
            ..CachePolicy::default()
        };
        assert!(
            per_token
                .check_token_echo(&answer, Some("the-token"))
                .is_ok()
        );
    }
}
