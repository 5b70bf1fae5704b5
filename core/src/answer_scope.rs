//! Keeps a plugin's answer to the images the host would select that plugin
//! for.
//!
//! The kubelet checks nothing of an answer's auth keys. It caches the answer
//! for its whole provider entry under `cacheKeyType` (the image, its
//! registry, or one `Global` entry), serves it later for other images of the
//! entry without calling the host, and puts every auth key into the keyring
//! that pulls any image the key matches (kubelet contract §3.3, §5.2). One
//! host entry often carries several plugins, so a plugin answering with keys
//! such as `*`, `docker.io` or another plugin's registry, or with `Global`,
//! would decide pulls the host gives to other plugins. The rules here:
//!
//! * Every auth key is read as the kubelet reads it (scheme and a leading
//!   `/v1` or `/v2` dropped) and must be a plain registry key:
//!   `host[:port][/path]`, DNS labels of letters, digits, `-`, `_` and `*`.
//! * Every image the key can match must be matched by one of the plugin's
//!   own `matchImages` ([`covers`]), and by no `matchImages` of a plugin
//!   earlier in the config ([`may_overlap`]): the first match wins, so that
//!   plugin would be selected for them. `index.docker.io` also counts as
//!   `docker.io` and `*`: the kubelet falls back to it for images no key
//!   matches whose registry is Docker Hub or has a one-label name.
//! * `cacheKeyType` is narrowed so that the kubelet's cache entry only serves
//!   images this plugin is selected for: `Global` becomes `Registry` when the
//!   host has more than one plugin, and `Registry` becomes `Image` when
//!   another plugin can be selected for some image of that registry.

use crate::config::{HostConfig, PluginConfig};
use crate::coverage::{covers, may_overlap};
use crate::image::registry_of;
use crate::matching::{UrlParts, parse_schemeless};
use crate::protocol::CacheKeyType;
use crate::redact::Redactor;
use anyhow::{Context, Result, bail};

/// The kubelet's fallback key for Docker Hub images.
const DOCKER_HUB_FALLBACK: &str = "index.docker.io";
/// Longest part of a rejected key quoted in an error.
const MAX_QUOTED: usize = 100;

/// One plugin's place among the host's plugins.
#[derive(Clone, Copy)]
pub struct AnswerScope<'a> {
    plugins: &'a [PluginConfig],
    index: usize,
    /// Applied to a key before an error quotes it.
    redactor: Option<&'a Redactor>,
}

/// The `cacheKeyType` to tell the kubelet, and why it differs from the
/// plugin's, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    pub kind: CacheKeyType,
    pub reason: Option<String>,
}

impl<'a> AnswerScope<'a> {
    /// The scope of the plugin named `plugin` in `config`.
    pub fn new(config: &'a HostConfig, plugin: &str) -> Result<Self> {
        let index = config
            .plugins
            .iter()
            .position(|p| p.name == plugin)
            .with_context(|| format!("plugin {plugin:?} is not in the host config"))?;
        Ok(Self {
            plugins: &config.plugins,
            index,
            redactor: None,
        })
    }

    /// The same scope, hiding `redactor`'s secrets (the token, secret
    /// config values) in the keys its errors quote.
    pub fn hiding(self, redactor: &'a Redactor) -> Self {
        Self {
            redactor: Some(redactor),
            ..self
        }
    }

    fn quote_key(&self, key: &str) -> String {
        match self.redactor {
            Some(redactor) => quote(&redactor.redact(key)),
            None => quote(key),
        }
    }

    fn plugin(&self) -> &'a PluginConfig {
        &self.plugins[self.index]
    }

    /// Refuses the first key that is not a plain registry key or that can
    /// match an image this plugin is not selected for.
    pub fn check_keys<'k>(&self, keys: impl IntoIterator<Item = &'k String>) -> Result<()> {
        keys.into_iter().try_for_each(|key| self.check_key(key))
    }

    /// See [`AnswerScope::check_keys`].
    pub fn check_key(&self, key: &str) -> Result<()> {
        let plugin = self.plugin();
        let parts = kubelet_key(key).with_context(|| {
            format!(
                "plugin {:?} returned the auth key {}, which is not a registry key the kubelet can match (host[:port][/path], `*` only within DNS labels)",
                plugin.name,
                self.quote_key(key)
            )
        })?;
        let mut targets = vec![parts.clone()];
        let mut note = "";
        if parts.host == DOCKER_HUB_FALLBACK && parts.port.is_empty() && parts.path.is_empty() {
            // kubelet's `isDefaultRegistryMatch`, for images as the kubelet
            // normalizes them (always with a path).
            for default in ["docker.io", "*"] {
                targets.push(parse_schemeless(default).expect("a valid pattern"));
            }
            note = " (the kubelet also uses it for docker.io images and for every registry with a one-label name such as localhost; answer with docker.io instead)";
        }
        for target in &targets {
            if !plugin
                .match_images
                .iter()
                .any(|m| covers(m.parts(), target))
            {
                bail!(
                    "plugin {:?} returned the auth key {}{note}, which its matchImages [{}] do not cover; an answer may only name images the plugin is selected for",
                    plugin.name,
                    self.quote_key(key),
                    patterns(plugin)
                );
            }
            for earlier in &self.plugins[..self.index] {
                if let Some(m) = earlier
                    .match_images
                    .iter()
                    .find(|m| may_overlap(m.parts(), target))
                {
                    bail!(
                        "plugin {:?} returned the auth key {}{note}, which can match images of plugin {:?} (matchImages {:?}), selected before it; an answer may only name images the plugin is selected for",
                        plugin.name,
                        self.quote_key(key),
                        earlier.name,
                        m.as_str()
                    );
                }
            }
        }
        Ok(())
    }

    /// The widest kind, up to `requested`, whose kubelet cache entry for
    /// `image` only serves images this plugin is selected for.
    pub fn cache_key_type(&self, requested: CacheKeyType, image: &str) -> Narrowed {
        let mut reasons = Vec::new();
        let mut kind = requested;
        if kind == CacheKeyType::Global && self.plugins.len() > 1 {
            reasons.push(format!(
                "the host config has {} plugins, and the kubelet serves a Global answer for every image of its provider entry, other plugins' images included",
                self.plugins.len()
            ));
            kind = CacheKeyType::Registry;
        }
        if kind == CacheKeyType::Registry
            && let Some(why) = self.registry_shared(registry_of(image))
        {
            reasons.push(why);
            kind = CacheKeyType::Image;
        }
        Narrowed {
            kind,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    }

    /// Why another plugin may be selected for some image of `registry`
    /// (`host[:port]`), if one may: an earlier plugin when it can match one,
    /// a later one only when this plugin does not match every such image.
    fn registry_shared(&self, registry: &str) -> Option<String> {
        let Ok(target) = parse_schemeless(registry) else {
            return Some(format!("the registry {} cannot be parsed", quote(registry)));
        };
        let me = self.plugin();
        let overlaps = |p: &PluginConfig| {
            p.match_images
                .iter()
                .any(|m| may_overlap(m.parts(), &target))
        };
        let covered = me.match_images.iter().any(|m| covers(m.parts(), &target));
        let other =
            self.plugins
                .iter()
                .enumerate()
                .find(|(i, other)| match i.cmp(&self.index) {
                    std::cmp::Ordering::Less => overlaps(other),
                    std::cmp::Ordering::Equal => false,
                    std::cmp::Ordering::Greater => !covered && overlaps(other),
                })?;
        Some(format!(
            "plugin {:?} can be selected for other images of {}",
            other.1.name,
            quote(registry)
        ))
    }
}

/// An auth key as the kubelet's keyring stores and matches it
/// (`BasicDockerKeyring.Add`): an `https://` or `http://` prefix dropped, a
/// path starting `/v1/` or `/v2/` losing those three characters, a bare `/`
/// path dropped. Only plain registry keys are accepted, so that the result
/// is exactly what Go's `url.Parse` would make of it: no user info, query,
/// fragment, escapes or glob syntax beyond `*`.
pub fn kubelet_key(key: &str) -> Result<UrlParts> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        bail!("no host");
    }
    let (host, port) = if authority.starts_with('[') {
        let (ip, after) = authority
            .split_once(']')
            .context("unterminated '[' in the host")?;
        let ip = &ip[1..];
        if !ip.contains(':')
            || !ip
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        {
            bail!("a bracketed host must be an IPv6 address");
        }
        (&authority[..ip.len() + 2], after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[') {
        for label in host.split('.') {
            if label.is_empty() {
                bail!("empty DNS label in the host");
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
            {
                bail!("character {} in the host", quote(&c.to_string()));
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        bail!("the port must be digits");
    }
    if port.is_none() && authority.len() != host.len() {
        bail!("text after the bracketed host");
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/' | '*')))
    {
        bail!("character {} in the path", quote(&c.to_string()));
    }
    let path = match path {
        p if p.starts_with("/v1/") || p.starts_with("/v2/") => &p[3..],
        p => p,
    };
    let path = if path == "/" { "" } else { path };
    parse_schemeless(&format!("{authority}{path}"))
}

/// `text` quoted for an error line: ASCII only (everything else escaped),
/// cut after [`MAX_QUOTED`] characters.
pub fn quote(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTED).collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    format!("\"{}\"", out.escape_default())
}

fn patterns(plugin: &PluginConfig) -> String {
    plugin
        .match_images
        .iter()
        .map(|m| format!("{:?}", m.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A host config with one plugin per `(name, matchImages)`, in order.
    fn config(plugins: &[(&str, &[&str])]) -> HostConfig {
        let mut text = String::from(
            "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n",
        );
        for (name, patterns) in plugins {
            text.push_str(&format!(
                "  - name: {name}\n    module: m.wasm\n    matchImages: {patterns:?}\n"
            ));
        }
        HostConfig::parse(&text, Path::new("/")).unwrap()
    }

    #[test]
    fn keys_as_the_kubelet_stores_them() {
        let cases = [
            ("registry.io", "registry.io", "", ""),
            ("https://quay.io/v1/", "quay.io", "", ""),
            ("https://*.docker.io/v2/", "*.docker.io", "", ""),
            ("http://quay.io/foo", "quay.io", "", "/foo"),
            ("registry.io/v1/foo", "registry.io", "", "/foo"),
            ("registry.io/v2", "registry.io", "", "/v2"),
            ("https://index.docker.io/v1/", "index.docker.io", "", ""),
            ("registry.io:5000/team", "registry.io", "5000", "/team"),
            ("registry.io/", "registry.io", "", ""),
            ("[::1]:5000/x", "::1", "5000", "/x"),
        ];
        for (key, host, port, path) in cases {
            let parts = kubelet_key(key).unwrap_or_else(|e| panic!("{key}: {e:#}"));
            assert_eq!(
                (
                    parts.host.as_str(),
                    parts.port.as_str(),
                    parts.path.as_str()
                ),
                (host, port, path),
                "{key}"
            );
        }
        for bad in [
            "",
            "/path",
            "https://",
            "user@registry.io",
            "registry.io?x",
            "registry.io#x",
            "registry.io/%2A",
            "registry.io:",
            "registry.io:x",
            "HTTPS://registry.io",
            "reg istry.io",
            "registry..io",
            ".registry.io",
            "registry.io/a b",
            "registry.io/a\nb",
            "rég.io",
            "[::1]x",
            "[registry.io]",
            "registry.io\\x",
            "a?.io",
            "[a-c].io",
        ] {
            assert!(kubelet_key(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_must_stay_within_the_plugins_images() {
        let cfg = config(&[
            ("ecr", &["*.dkr.ecr.*.amazonaws.com"]),
            ("first", &["a.registry.io", "registry.io/team-a"]),
            (
                "probe",
                &["*.registry.io", "registry.io", "index.docker.io"],
            ),
            ("hub", &["docker.io"]),
        ]);
        let probe = AnswerScope::new(&cfg, "probe").unwrap();
        // (key, accepted, part of the error)
        let cases = [
            ("b.registry.io", true, ""),
            ("https://b.registry.io/v2/", true, ""),
            ("registry.io/team-b", true, ""),
            ("*", false, "do not cover"),
            ("docker.io", false, "do not cover"),
            ("*.io", false, "do not cover"),
            ("*.registry.io", false, "plugin \"first\""),
            ("a.registry.io", false, "plugin \"first\""),
            ("registry.io", false, "plugin \"first\""),
            ("registry.io/team", false, "plugin \"first\""),
            ("registry.io/team-a/app", false, "plugin \"first\""),
            ("b.registry.io:5000", false, "do not cover"),
            ("b.c.registry.io", false, "do not cover"),
            ("123.dkr.ecr.us-east-1.amazonaws.com", false, "do not cover"),
            ("index.docker.io", false, "answer with docker.io instead"),
            ("user@b.registry.io", false, "not a registry key"),
        ];
        for (key, ok, needle) in cases {
            let result = probe.check_key(key);
            assert_eq!(result.is_ok(), ok, "{key}: {result:?}");
            if let Err(e) = result {
                let text = format!("{e:#}");
                assert!(text.contains(needle), "{key}: {text}");
                assert!(text.contains("plugin \"probe\""), "{text}");
            }
        }
        let hub_only = config(&[("hub", &["docker.io", "index.docker.io"])]);
        let hub = AnswerScope::new(&hub_only, "hub").unwrap();
        assert!(hub.check_key("docker.io").is_ok());
        assert!(hub.check_key("https://index.docker.io/v2/library").is_ok());
        // The fallback also serves localhost/... when nothing else matches.
        assert!(hub.check_key("https://index.docker.io/v1/").is_err());
        let everything = config(&[("all", &["*", "docker.io", "index.docker.io"])]);
        let all = AnswerScope::new(&everything, "all").unwrap();
        assert!(all.check_key("https://index.docker.io/v1/").is_ok());
        // The first plugin is constrained only by its own patterns.
        let ecr = AnswerScope::new(&cfg, "ecr").unwrap();
        assert!(ecr.check_key("123.dkr.ecr.us-east-1.amazonaws.com").is_ok());
        assert!(ecr.check_key("*.dkr.ecr.*.amazonaws.com").is_ok());
        assert!(ecr.check_key("*.dkr.ecr.*.amazonaws.com.cn").is_err());
        assert!(ecr.check_key("public.ecr.aws").is_err());
    }

    #[test]
    fn errors_quote_keys_safely() {
        let cfg = config(&[("probe", &["*.registry.io"])]);
        let probe = AnswerScope::new(&cfg, "probe").unwrap();
        let long = format!("{}.io", "a".repeat(500));
        let text = format!("{:#}", probe.check_key(&long).unwrap_err());
        assert!(!text.contains(&"a".repeat(101)), "{text}");
        let mut redactor = Redactor::default();
        redactor.add("secret-token-value");
        let hiding = probe.hiding(&redactor);
        let text = format!(
            "{:#}",
            hiding
                .check_key("docker.io/secret-token-value")
                .unwrap_err()
        );
        assert!(
            text.contains("docker.io/<redacted>") && !text.contains("secret"),
            "{text}"
        );
        let text = format!(
            "{:#}",
            probe.check_key("\u{1b}[31m\u{202e}.io").unwrap_err()
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
    }

    #[test]
    fn cache_key_type_is_narrowed_to_the_plugins_images() {
        use CacheKeyType::{Global, Image, Registry};
        let single = config(&[("only", &["*.registry.io"])]);
        let only = AnswerScope::new(&single, "only").unwrap();
        for kind in [Image, Registry, Global] {
            assert_eq!(
                only.cache_key_type(kind, "a.registry.io/app"),
                Narrowed { kind, reason: None }
            );
        }
        let cfg = config(&[
            ("team-a", &["registry.io/team-a"]),
            ("regional", &["*.registry.io", "registry.io"]),
            ("other", &["other.io"]),
            ("later", &["*.registry.io", "registry.io/team-c", "late.io"]),
        ]);
        let regional = AnswerScope::new(&cfg, "regional").unwrap();
        let later = AnswerScope::new(&cfg, "later").unwrap();
        let other = AnswerScope::new(&cfg, "other").unwrap();
        // (scope, requested, image, told)
        let cases = [
            (regional, Global, "a.registry.io/app", Registry),
            (regional, Registry, "a.registry.io/app", Registry),
            (regional, Image, "a.registry.io/app", Image),
            // team-a is selected first for registry.io/team-a/...
            (regional, Registry, "registry.io/team-b/app", Image),
            (regional, Global, "registry.io/team-b/app", Image),
            // regional covers all of a.registry.io, so later never wins there.
            (other, Global, "other.io/app", Registry),
            (later, Registry, "late.io/app", Registry),
            (later, Registry, "registry.io/team-c/app", Image),
        ];
        for (scope, requested, image, told) in cases {
            let narrowed = scope.cache_key_type(requested, image);
            assert_eq!(narrowed.kind, told, "{requested:?} for {image}");
            assert_eq!(narrowed.reason.is_some(), told != requested, "{narrowed:?}");
        }
        let why = regional
            .cache_key_type(Global, "registry.io/team-b/app")
            .reason
            .unwrap();
        assert!(
            why.contains("4 plugins") && why.contains("\"team-a\""),
            "{why}"
        );
    }

    #[test]
    fn a_later_plugin_sharing_a_registry_narrows_it() {
        use CacheKeyType::{Image, Registry};
        let cfg = config(&[
            ("team-b", &["registry.io/team-b"]),
            ("team-a", &["registry.io/team-a"]),
        ]);
        let b = AnswerScope::new(&cfg, "team-b").unwrap();
        // team-a is later, but team-b does not cover all of registry.io.
        assert_eq!(
            b.cache_key_type(Registry, "registry.io/team-b/x").kind,
            Image
        );
    }
}
