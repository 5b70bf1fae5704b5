//! Typed config keys: a component may say what shape each of its config
//! values has (`"configTypes": {"answer.password": "jsonPointer"}`) and that
//! it knows every key it can be given (`"strictConfig": true`). The host
//! then refuses a bad value or an unknown key when it loads the plugin,
//! naming the line of the host config, instead of the plugin failing on the
//! first pull with a message the operator has to map back to the file.
//!
//! The checks are shapes only; what a value means stays the plugin's. No
//! message quotes a value: it may be a secret read from a file.

use crate::duration::parse_go_duration;
use crate::names::check_config_key;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};

/// Longest `oneOf`/`template` word list.
const MAX_WORDS: usize = 32;
/// Longest word in such a list.
const MAX_WORD_LEN: usize = 64;

/// The shape a config value must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigType {
    /// An RFC 6901 JSON pointer (`""`, `/access_token`, `/a~1b/0`).
    JsonPointer,
    /// An absolute `https://` or `http://` URL with a host, without user
    /// info or fragment.
    Url,
    /// A Go duration (`90s`, `1h30m`).
    Duration,
    /// `true` or `false`.
    Boolean,
    /// One of the listed words.
    OneOf(Vec<String>),
    /// A JSON object whose values are all strings.
    JsonObject,
    /// A path template: `{word}` placeholders from the list only, no `..`
    /// segment, no empty segment, no `?` or `#`.
    Template(Vec<String>),
}

impl ConfigType {
    /// Parses the declared form: `jsonPointer`, `url`, `duration`, `boolean`,
    /// `jsonObject`, `oneOf:a|b|c`, `template:a|b`.
    pub fn parse(text: &str) -> Result<Self> {
        let (head, words) = match text.split_once(':') {
            Some((head, words)) => (head, Some(words)),
            None => (text, None),
        };
        let kind = match (head, words) {
            ("jsonPointer", None) => Self::JsonPointer,
            ("url", None) => Self::Url,
            ("duration", None) => Self::Duration,
            ("boolean", None) => Self::Boolean,
            ("jsonObject", None) => Self::JsonObject,
            ("oneOf", Some(words)) => Self::OneOf(parse_words(words)?),
            ("template", Some(words)) => Self::Template(parse_words(words)?),
            _ => bail!(
                "unknown config type; the types are jsonPointer, url, duration, boolean, jsonObject, oneOf:<a|b|...> and template:<a|b|...>"
            ),
        };
        Ok(kind)
    }

    /// Checks `value` against this shape; the error says what is expected,
    /// never what was given.
    pub fn check(&self, value: &str) -> Result<()> {
        match self {
            Self::JsonPointer => check_json_pointer(value),
            Self::Url => check_url(value),
            Self::Duration => parse_go_duration(value)
                .map(|_| ())
                .context("expected a duration such as 90s or 1h"),
            Self::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => bail!("expected true or false"),
            },
            Self::OneOf(words) => {
                if words.iter().any(|w| w == value) {
                    Ok(())
                } else {
                    bail!("expected one of {}", words.join(", "))
                }
            }
            Self::JsonObject => {
                match serde_json::from_str::<BTreeMap<String, serde_json::Value>>(value) {
                    Ok(map) if map.values().all(serde_json::Value::is_string) => Ok(()),
                    Ok(_) => bail!("expected a JSON object whose values are all strings"),
                    Err(e) => bail!(
                        "expected a JSON object of strings (not JSON at column {})",
                        e.column()
                    ),
                }
            }
            Self::Template(words) => check_template(value, words),
        }
    }
}

/// The declared form, as [`ConfigType::parse`] reads it.
impl std::fmt::Display for ConfigType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JsonPointer => f.write_str("jsonPointer"),
            Self::Url => f.write_str("url"),
            Self::Duration => f.write_str("duration"),
            Self::Boolean => f.write_str("boolean"),
            Self::JsonObject => f.write_str("jsonObject"),
            Self::OneOf(words) => write!(f, "oneOf:{}", words.join("|")),
            Self::Template(words) => write!(f, "template:{}", words.join("|")),
        }
    }
}

fn parse_words(words: &str) -> Result<Vec<String>> {
    let list: Vec<String> = words.split('|').map(str::to_string).collect();
    if list.len() > MAX_WORDS {
        bail!("at most {MAX_WORDS} words in a oneOf or template type");
    }
    for word in &list {
        let ok = !word.is_empty()
            && word.len() <= MAX_WORD_LEN
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            bail!(
                "a word of a oneOf or template type must be 1 to {MAX_WORD_LEN} letters, digits, '_', '-' or '.'"
            );
        }
    }
    Ok(list)
}

fn check_json_pointer(value: &str) -> Result<()> {
    if !value.is_empty() && !value.starts_with('/') {
        bail!("expected a JSON pointer (RFC 6901): empty or starting with '/', e.g. /access_token");
    }
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            bail!("expected a JSON pointer (RFC 6901): '~' must be followed by 0 or 1");
        }
        if c.is_control() {
            bail!("expected a JSON pointer (RFC 6901) without control characters");
        }
    }
    Ok(())
}

fn check_url(value: &str) -> Result<()> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .context("expected an absolute https:// (or http://) URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        bail!("expected a URL with a host");
    }
    if authority.contains('@') {
        bail!("expected a URL without user info (put credentials in configFromFile)");
    }
    if value.contains('#') {
        bail!("expected a URL without a fragment");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("expected a URL without spaces or control characters");
    }
    Ok(())
}

fn check_template(value: &str, words: &[String]) -> Result<()> {
    if value.is_empty() {
        bail!("expected a non-empty path template");
    }
    if value.contains(['?', '#']) || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("expected a path template without '?', '#', spaces or control characters");
    }
    for segment in value.trim_matches('/').split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            bail!("expected a path template without empty, '.' or '..' segments");
        }
    }
    let mut rest = value;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            bail!("expected a path template whose '}}' closes a '{{'");
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .context("expected a path template whose '{' is closed")?;
        let name = &after[..close];
        if !words.iter().any(|w| w == name) {
            bail!(
                "expected a path template whose placeholders are among {{{}}}",
                words.join("}, {")
            );
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The typed part of a declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSchema {
    /// Every set key must be declared (untyped under `config`, or typed).
    pub strict: bool,
    pub types: BTreeMap<String, ConfigType>,
}

impl ConfigSchema {
    /// Parses the declaration's `configTypes` and `strictConfig`.
    pub(super) fn parse_declared(types: BTreeMap<String, String>, strict: bool) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (key, kind) in types {
            check_config_key(&key).context("configTypes")?;
            let kind = ConfigType::parse(&kind).with_context(|| format!("configTypes.{key}"))?;
            out.insert(key, kind);
        }
        Ok(Self { strict, types: out })
    }

    /// Checks one key and its value (when known: a `configFromFile` or
    /// `configFromEnv` value is only known at exec time). `declared` is the
    /// declaration's whole key set.
    pub fn check(&self, declared: &BTreeSet<String>, key: &str, value: Option<&str>) -> Result<()> {
        if self.strict && !declared.contains(key) {
            let mut known: Vec<&str> = declared.iter().map(String::as_str).collect();
            known.truncate(64);
            bail!(
                "unknown config key {key:?} for this plugin; it knows {}",
                known.join(", ")
            );
        }
        if let (Some(kind), Some(value)) = (self.types.get(key), value) {
            kind.check(value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> ConfigType {
        ConfigType::parse(text).unwrap()
    }

    #[test]
    fn json_pointers() {
        let p = kind("jsonPointer");
        for ok in ["", "/access_token", "/a~0b/~1c/0", "/"] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        for bad in ["access_token", "/a~2", "/a~", "#/a"] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_templates_and_words() {
        let u = kind("url");
        assert!(
            u.check("https://example.jfrog.io/access/api/v1/oidc/token")
                .is_ok()
        );
        assert!(u.check("http://127.0.0.1:8200").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://u:p@x.io/",
            "https://x.io/#f",
            "https://x.io/ a",
        ] {
            assert!(u.check(bad).is_err(), "{bad}");
        }
        let t = kind("template:namespace|name|registry");
        assert!(t.check("registry/{namespace}/{registry}").is_ok());
        for bad in [
            "registry/../x",
            "a//b",
            "{pod}",
            "{namespace",
            "a}b",
            "a?b",
            "",
        ] {
            assert!(t.check(bad).is_err(), "{bad}");
        }
        let w = kind("oneOf:jfrog|quay");
        assert!(w.check("quay").is_ok());
        let e = w.check("harbor").unwrap_err().to_string();
        assert_eq!(e, "expected one of jfrog, quay");
        assert!(kind("jsonObject").check(r#"{"a":"b"}"#).is_ok());
        assert!(kind("jsonObject").check(r#"{"a":1}"#).is_err());
        assert!(kind("jsonObject").check("[]").is_err());
        assert!(kind("duration").check("1h").is_ok());
        assert!(kind("duration").check("1 hour").is_err());
        assert!(kind("boolean").check("yes").is_err());
    }

    #[test]
    fn types_display_as_declared() {
        for text in [
            "jsonPointer",
            "url",
            "oneOf:a|b",
            "template:namespace|registry",
        ] {
            assert_eq!(kind(text).to_string(), text);
        }
    }

    #[test]
    fn bad_declared_types_are_refused() {
        for bad in [
            "string",
            "oneOf",
            "oneOf:",
            "oneOf:a||b",
            "template:{x}",
            "url:x",
        ] {
            assert!(ConfigType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strict_schemas_refuse_unknown_keys_and_never_quote_values() {
        let schema = ConfigSchema::parse_declared(
            [("passwordPointer".to_string(), "jsonPointer".to_string())].into(),
            true,
        )
        .unwrap();
        let declared: BTreeSet<String> = ["endpoint".into(), "passwordPointer".into()].into();
        assert!(schema.check(&declared, "endpoint", Some("x")).is_ok());
        let e = schema
            .check(&declared, "endpiont", Some("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown config key \"endpiont\""), "{e}");
        assert!(e.contains("endpoint, passwordPointer"), "{e}");
        let e = schema
            .check(&declared, "passwordPointer", Some("s3cret-value"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(schema.check(&declared, "passwordPointer", None).is_ok());
    }
}
