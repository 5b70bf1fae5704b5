//! The secrets of this process, in one place, so that no call site can
//! forget them. The service-account token is registered as soon as the
//! request is decoded, secret config values (`configFromFile`,
//! `configFromEnv`) as soon as they are read; the stderr writer
//! ([`crate::logging`]) and the audit log ([`crate::audit`]) pass everything
//! they write through [`scrub`]. Host-written text (denials built from a
//! URL the plugin chose, errors that quote a plugin's declaration) is as
//! untrusted as plugin text, so the last step before the process writes
//! anything is the one that removes secrets and control characters.
//!
//! The per-plugin redaction of plugin output stays as it was; this is the
//! net beneath it. Registering costs a few string copies per secret; with
//! nothing registered (no token, cache hit) [`scrub`] only escapes.

use std::borrow::Cow;
use std::sync::RwLock;
use wcp_core::config::PluginConfig;
use wcp_core::escape::escape_controls;
use wcp_core::redact::Redactor;

static SECRETS: RwLock<Redactor> = RwLock::new(Redactor::new());

/// Adds a secret (in all the forms [`Redactor`] knows).
pub fn register(secret: &str) {
    if let Ok(mut secrets) = SECRETS.write() {
        secrets.add(secret);
    }
}

/// Registers the values of `plugin` that come from a file or the
/// environment; literal `config` values are in the config file and are not
/// secrets by the README's rules.
pub fn register_config_values(
    plugin: &PluginConfig,
    values: &std::collections::BTreeMap<String, String>,
) {
    plugin.secret_values(values).for_each(register);
}

/// `text` as it may be written: secrets redacted, then every control or
/// bidi character escaped, then redacted again (so a secret that only
/// matches in its escaped form is caught too). The result is one line.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        // A writer panicked while holding the lock: say nothing rather than
        // risk a secret.
        return Cow::Borrowed("<output withheld: secret registry unavailable>");
    };
    if secrets.is_empty() {
        return escape_controls(text);
    }
    let redacted = secrets.redact(text);
    let escaped = escape_controls(&redacted);
    Cow::Owned(secrets.redact(&escaped))
}

/// Whether `text` still holds a registered secret in a form it knows.
pub fn holds_secret(text: &str) -> bool {
    SECRETS.read().map_or(true, |s| s.finds_secret_in(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_redacts_every_form_and_escapes() {
        register("multi \"line\"\nsecret-value-two");
        let out = scrub("a multi \"line\"\nsecret-value-two b\u{1b}[2J\nsecret-value-two");
        assert_eq!(out, "a <redacted> b\\u{1b}[2J\\n<redacted>");
        let debug = format!("{:?}", "multi \"line\"\nsecret-value-two");
        assert_eq!(scrub(&debug), "\"<redacted>\"");
    }
}
