//! Declaring what a provider needs.
//!
//! The host enforces two locks: a capability works only if the component
//! *declares* it and the operator *grants* it. The declaration is a JSON
//! file beside the plugin, embedded at build time into a custom section
//! named `wcp-capabilities` that the host and `inspect` read without
//! running the component:
//!
//! ```json
//! {
//!   "outbound": ["https://sts.amazonaws.com", "https://*.amazonaws.com", "config:stsEndpoint"],
//!   "config": ["roleArn", "stsEndpoint"],
//!   "env": ["AWS_REGION"],
//!   "serviceAccountToken": true
//! }
//! ```
//!
//! * `outbound`: `scheme://host[:port]` destinations (a leading `*.` matches
//!   one or more labels, never the bare domain; no IP addresses), or
//!   `config:<key>` for "wherever the operator points that config value".
//! * `config`: the config keys the plugin reads; others are withheld.
//! * `env`: environment variable names the plugin reads.
//! * `serviceAccountToken`: whether the plugin needs the pod's token.
//! * `annotations`: the service-account annotation keys the plugin reads
//!   (its defaults, when its config can name others). The kubelet forwards
//!   only the keys its provider entry lists; `check` compares the two and
//!   `install` lists them.
//!
//! Anything not declared is denied, whatever the operator grants. Names
//! must be well formed or the host refuses the component: config keys are
//! letters, digits, `_`, `.` and `-` (not starting with `.` or `-`), env names
//! `[A-Za-z_][A-Za-z0-9_]*`, each at most 128 bytes, at most 64 per list.
//!
//! [`declare_capabilities!`](crate::declare_capabilities) checks all of this
//! when the plugin compiles: a typo (an unknown field, a malformed
//! destination or name, a duplicate field) fails the build with a message
//! naming the rule, instead of being refused on the node. And
//! [`export_provider!`](crate::export_provider) needs the declaration: a
//! plugin that forgets `declare_capabilities!` does not compile (cannot
//! find `__WCP_CAPABILITIES` in the crate root). Use both macros at the
//! crate root.

/// Embeds a capability declaration (a path relative to the plugin crate's
/// `Cargo.toml`) into the component, after checking it at compile time. Use
/// it once per plugin, at the crate root:
///
/// ```ignore
/// wcp_guest_sdk::declare_capabilities!("capabilities.json");
/// ```
#[macro_export]
macro_rules! declare_capabilities {
    ($path:literal) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        const __WCP_CAPABILITIES: &[u8] =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
        const _: () = $crate::capabilities::__check(__WCP_CAPABILITIES);
        const _: () = {
            const DECLARATION: &[u8] = __WCP_CAPABILITIES;
            #[used]
            #[unsafe(link_section = "wcp-capabilities")]
            static WCP_CAPABILITIES: [u8; DECLARATION.len()] = {
                let mut out = [0u8; DECLARATION.len()];
                let mut i = 0;
                while i < DECLARATION.len() {
                    out[i] = DECLARATION[i];
                    i += 1;
                }
                out
            };
        };
    };
}

/// The declaration as the provider's code sees it (see [`declared`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Declaration {
    #[serde(default)]
    pub outbound: Vec<String>,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub service_account_token: bool,
    /// Typed config keys (`"answer.password": "jsonPointer"`), which the host
    /// checks against the operator's config when it loads the plugin.
    #[serde(default)]
    pub config_types: std::collections::BTreeMap<String, String>,
    /// The host refuses any config key the plugin does not declare.
    #[serde(default)]
    pub strict_config: bool,
    /// The service-account annotation keys the plugin reads by default.
    #[serde(default)]
    pub annotations: Vec<String>,
}

impl Declaration {
    /// Parses a declaration (already checked at compile time).
    pub fn parse(json: &[u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    /// Whether config `key` is declared, under `config` or as the
    /// `config:<key>` of an `outbound` entry.
    pub fn declares_config_key(&self, key: &str) -> bool {
        self.config.iter().any(|k| k == key)
            || self.config_types.contains_key(key)
            || self
                .outbound
                .iter()
                .any(|d| d.strip_prefix("config:") == Some(key))
    }
}

static DECLARATION: std::sync::OnceLock<Option<Declaration>> = std::sync::OnceLock::new();

/// This component's own declaration, once the export glue has registered it
/// (always, inside a call of the provider); `None` outside one.
pub fn declared() -> Option<Declaration> {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    if let Some(declaration) = crate::testing::declaration() {
        return Some(declaration);
    }
    DECLARATION.get().cloned().flatten()
}

/// Called by the export glue before the provider runs.
#[doc(hidden)]
pub fn __register(json: &'static [u8]) {
    let _ = DECLARATION.set(Declaration::parse(json));
}

/// The compile-time check of [`declare_capabilities!`](crate::declare_capabilities):
/// the same rules as the host's, panicking (a compile error in a `const`)
/// with the rule that failed.
#[doc(hidden)]
pub const fn __check(json: &[u8]) {
    if json.len() > 64 * 1024 {
        panic!("capabilities.json: larger than 64 KiB");
    }
    let mut i = skip_ws(json, 0);
    if i >= json.len() || json[i] != b'{' {
        panic!("capabilities.json: not a JSON object");
    }
    i = skip_ws(json, i + 1);
    let mut seen = 0u8;
    if i < json.len() && json[i] == b'}' {
        i += 1;
    } else {
        loop {
            let (start, end) = string(json, i);
            let field = field_of(json, start, end);
            if seen & (1 << field) != 0 {
                panic!("capabilities.json: a field appears twice");
            }
            seen |= 1 << field;
            i = skip_ws(json, end + 1);
            if i >= json.len() || json[i] != b':' {
                panic!("capabilities.json: expected ':' after a field name");
            }
            i = skip_ws(json, i + 1);
            i = if field == 3 || field == 5 {
                boolean(json, i)
            } else if field == 4 {
                config_types(json, i)
            } else {
                list(json, i, field)
            };
            i = skip_ws(json, i);
            if i < json.len() && json[i] == b',' {
                i = skip_ws(json, i + 1);
            } else if i < json.len() && json[i] == b'}' {
                i += 1;
                break;
            } else {
                panic!("capabilities.json: expected ',' or '}}' in the object");
            }
        }
    }
    if skip_ws(json, i) != json.len() {
        panic!("capabilities.json: text after the JSON object");
    }
}

const fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while i < json.len() && matches!(json[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string starting at `i`: the range of its contents (between the quotes).
const fn string(json: &[u8], i: usize) -> (usize, usize) {
    if i >= json.len() || json[i] != b'"' {
        panic!("capabilities.json: expected a string");
    }
    let mut j = i + 1;
    while j < json.len() && json[j] != b'"' {
        if json[j] == b'\\' {
            panic!("capabilities.json: escapes are not allowed in names");
        }
        if json[j] < 0x20 {
            panic!("capabilities.json: control character in a string");
        }
        j += 1;
    }
    if j >= json.len() {
        panic!("capabilities.json: unterminated string");
    }
    (i + 1, j)
}

const fn eq(json: &[u8], start: usize, end: usize, word: &[u8]) -> bool {
    if end - start != word.len() {
        return false;
    }
    let mut k = 0;
    while k < word.len() {
        if json[start + k] != word[k] {
            return false;
        }
        k += 1;
    }
    true
}

/// 0 outbound, 1 config, 2 env, 3 serviceAccountToken, 4 configTypes,
/// 5 strictConfig, 6 annotations.
const fn field_of(json: &[u8], start: usize, end: usize) -> u8 {
    if eq(json, start, end, b"annotations") {
        6
    } else if eq(json, start, end, b"configTypes") {
        4
    } else if eq(json, start, end, b"strictConfig") {
        5
    } else if eq(json, start, end, b"outbound") {
        0
    } else if eq(json, start, end, b"config") {
        1
    } else if eq(json, start, end, b"env") {
        2
    } else if eq(json, start, end, b"serviceAccountToken") {
        3
    } else {
        panic!(
            "capabilities.json: unknown field; the fields are outbound, config, env, serviceAccountToken, configTypes, strictConfig and annotations"
        )
    }
}

const fn boolean(json: &[u8], i: usize) -> usize {
    if i + 4 <= json.len() && eq(json, i, i + 4, b"true") {
        i + 4
    } else if i + 5 <= json.len() && eq(json, i, i + 5, b"false") {
        i + 5
    } else {
        panic!("capabilities.json: serviceAccountToken and strictConfig must be true or false")
    }
}

const fn list(json: &[u8], i: usize, field: u8) -> usize {
    if i >= json.len() || json[i] != b'[' {
        panic!(
            "capabilities.json: outbound, config, env and annotations must be arrays of strings"
        );
    }
    let mut i = skip_ws(json, i + 1);
    if i < json.len() && json[i] == b']' {
        return i + 1;
    }
    let mut count = 0;
    loop {
        let (start, end) = string(json, i);
        match field {
            0 => check_destination(json, start, end),
            1 => check_config_key(json, start, end),
            6 => check_annotation_key(json, start, end),
            _ => check_env_name(json, start, end),
        }
        count += 1;
        if count > 64 {
            panic!("capabilities.json: at most 64 entries per list");
        }
        i = skip_ws(json, end + 1);
        if i < json.len() && json[i] == b',' {
            i = skip_ws(json, i + 1);
        } else if i < json.len() && json[i] == b']' {
            return i + 1;
        } else {
            panic!("capabilities.json: expected ',' or ']' in a list");
        }
    }
}

/// An annotation key: `[prefix/]name`, at most 253 + 1 + 63 bytes of
/// letters, digits, `-`, `_`, `.` and one `/` (the host checks the exact
/// Kubernetes rule when it loads the component).
const fn check_annotation_key(json: &[u8], start: usize, end: usize) {
    if end == start || end - start > 317 {
        panic!("capabilities.json: an annotation key is 1 to 317 bytes");
    }
    let mut i = start;
    let mut slashes = 0;
    while i < end {
        let c = json[i];
        if c == b'/' {
            slashes += 1;
        } else if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.') {
            panic!(
                "capabilities.json: an annotation key is [prefix/]name of letters, digits, '-', '_' and '.'"
            );
        }
        i += 1;
    }
    if slashes > 1 || json[start] == b'/' || json[end - 1] == b'/' {
        panic!("capabilities.json: an annotation key has at most one '/', between prefix and name");
    }
}

/// `configTypes`: an object of config key to type. The type's head word is
/// checked here; the host checks the rest when it loads the component.
const fn config_types(json: &[u8], i: usize) -> usize {
    if i >= json.len() || json[i] != b'{' {
        panic!("capabilities.json: configTypes must be an object of config key to type");
    }
    let mut i = skip_ws(json, i + 1);
    if i < json.len() && json[i] == b'}' {
        return i + 1;
    }
    let mut count = 0;
    loop {
        let (start, end) = string(json, i);
        check_config_key(json, start, end);
        i = skip_ws(json, end + 1);
        if i >= json.len() || json[i] != b':' {
            panic!("capabilities.json: expected ':' after a configTypes key");
        }
        let (start, end) = string(json, skip_ws(json, i + 1));
        check_config_type(json, start, end);
        count += 1;
        if count > 64 {
            panic!("capabilities.json: at most 64 configTypes");
        }
        i = skip_ws(json, end + 1);
        if i < json.len() && json[i] == b',' {
            i = skip_ws(json, i + 1);
        } else if i < json.len() && json[i] == b'}' {
            return i + 1;
        } else {
            panic!("capabilities.json: expected ',' or '}}' in configTypes");
        }
    }
}

const fn check_config_type(json: &[u8], start: usize, end: usize) {
    let mut colon = start;
    while colon < end && json[colon] != b':' {
        colon += 1;
    }
    let plain = eq(json, start, end, b"jsonPointer")
        || eq(json, start, end, b"url")
        || eq(json, start, end, b"duration")
        || eq(json, start, end, b"boolean")
        || eq(json, start, end, b"jsonObject");
    let listed = colon + 1 < end
        && (eq(json, start, colon, b"oneOf") || eq(json, start, colon, b"template"));
    if !plain && !listed {
        panic!(
            "capabilities.json: a config type is jsonPointer, url, duration, boolean, jsonObject, oneOf:<a|b|...> or template:<a|b|...>"
        );
    }
}

const fn check_config_key(json: &[u8], start: usize, end: usize) {
    if end == start || end - start > 128 {
        panic!("capabilities.json: a config key must be 1 to 128 bytes");
    }
    let mut k = start;
    while k < end {
        let c = json[k];
        let ok = c.is_ascii_alphanumeric() || c == b'_' || (k > start && (c == b'.' || c == b'-'));
        if !ok {
            panic!(
                "capabilities.json: a config key is letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            );
        }
        k += 1;
    }
}

const fn check_env_name(json: &[u8], start: usize, end: usize) {
    if end == start || end - start > 128 {
        panic!("capabilities.json: an env name must be 1 to 128 bytes");
    }
    let mut k = start;
    while k < end {
        let c = json[k];
        let ok = c.is_ascii_alphabetic() || c == b'_' || (k > start && c.is_ascii_digit());
        if !ok {
            panic!("capabilities.json: an env name is [A-Za-z_][A-Za-z0-9_]*");
        }
        k += 1;
    }
}

/// `config:<key>`, or `https://host[:port]` / `http://host[:port]` with an
/// optional leading `*.`, DNS names only.
const fn check_destination(json: &[u8], start: usize, end: usize) {
    if end - start >= 7 && eq(json, start, start + 7, b"config:") {
        check_config_key(json, start + 7, end);
        return;
    }
    let host_start = if end - start > 8 && eq(json, start, start + 8, b"https://") {
        start + 8
    } else if end - start > 7 && eq(json, start, start + 7, b"http://") {
        start + 7
    } else {
        panic!(
            "capabilities.json: an outbound entry is \"https://host[:port]\", \"http://host[:port]\" or \"config:<key>\""
        )
    };
    let mut k = host_start;
    if k + 2 <= end && json[k] == b'*' && json[k + 1] == b'.' {
        k += 2;
    }
    let labels_start = k;
    let mut label_len = 0;
    let mut all_digits = true;
    while k < end && json[k] != b':' {
        let c = json[k];
        if c == b'.' {
            if label_len == 0 {
                panic!("capabilities.json: an outbound host has an empty label");
            }
            label_len = 0;
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            if !c.is_ascii_digit() {
                all_digits = false;
            }
            label_len += 1;
            if label_len > 63 {
                panic!("capabilities.json: an outbound host label is longer than 63 bytes");
            }
        } else {
            panic!(
                "capabilities.json: an outbound entry is scheme://host[:port]: no path, query, user info, '*' inside or IPv6 literal"
            );
        }
        k += 1;
    }
    if k == labels_start || label_len == 0 {
        panic!("capabilities.json: an outbound entry has no host or ends in '.'");
    }
    if all_digits {
        panic!("capabilities.json: outbound entries name DNS names, not IP addresses");
    }
    if k < end {
        k += 1;
        if k == end || end - k > 5 {
            panic!("capabilities.json: an outbound port is 1 to 65535");
        }
        let mut port = 0u32;
        while k < end {
            if !json[k].is_ascii_digit() {
                panic!("capabilities.json: an outbound port is 1 to 65535");
            }
            port = port * 10 + (json[k] - b'0') as u32;
            k += 1;
        }
        if port == 0 || port > 65535 {
            panic!("capabilities.json: an outbound port is 1 to 65535");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), String> {
        std::panic::catch_unwind(|| __check(json.as_bytes())).map_err(|e| {
            e.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        })
    }

    #[test]
    fn valid_declarations_pass() {
        for json in [
            "{}",
            r#"{"outbound": [], "config": [], "env": [], "serviceAccountToken": false}"#,
            r#"{"config": ["a"], "configTypes": {"p": "jsonPointer", "u": "url", "w": "oneOf:x|y"}, "strictConfig": true}"#,
            r#"{"configTypes": {}}"#,
            r#"{"annotations": ["eks.amazonaws.com/ecr-role-arn", "plain"]}"#,
            r#"{
              "outbound": ["https://sts.amazonaws.com", "https://*.amazonaws.com", "http://imds.local:8080", "config:stsEndpoint"],
              "config": ["roleArn", "a.b-c_d", "_x"],
              "env": ["AWS_REGION", "_A1"],
              "serviceAccountToken": true
            }"#,
        ] {
            assert_eq!(check(json), Ok(()), "{json}");
        }
        // The repository's own plugins.
        for path in [
            "../plugins/static/capabilities.json",
            "../plugins/ecr/capabilities.json",
            "../plugins/acr/capabilities.json",
            "../plugins/gcp/capabilities.json",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            if let Ok(json) = std::fs::read_to_string(&path) {
                assert_eq!(check(&json), Ok(()), "{}", path.display());
            }
        }
    }

    #[test]
    fn typos_and_bad_names_fail_with_the_rule() {
        for (json, want) in [
            (r#"{"outbond": []}"#, "unknown field"),
            (r#"{"config": [], "config": []}"#, "appears twice"),
            (r#"{"config": ["-x"]}"#, "config key"),
            (r#"{"config": ["a b"]}"#, "config key"),
            (r#"{"env": ["1A"]}"#, "env name"),
            (r#"{"outbound": ["sts.amazonaws.com"]}"#, "outbound entry"),
            (r#"{"outbound": ["ftp://x.io"]}"#, "outbound entry"),
            (r#"{"outbound": ["https://x.io/"]}"#, "no path"),
            (r#"{"outbound": ["https://u@x.io"]}"#, "user info"),
            (r#"{"outbound": ["https://10.0.0.1"]}"#, "IP addresses"),
            (r#"{"outbound": ["https://x.io:0"]}"#, "port"),
            (r#"{"outbound": ["https://x.io:70000"]}"#, "port"),
            (r#"{"outbound": ["config:"]}"#, "config key"),
            (r#"{"serviceAccountToken": "yes"}"#, "true or false"),
            (r#"{"config": "a"}"#, "arrays of strings"),
            (r#"{"config": ["a",]}"#, "expected a string"),
            (r#"{"config": ["a"]} x"#, "after the JSON object"),
            (r#"{"configTypes": {"a": "string"}}"#, "a config type is"),
            (r#"{"configTypes": {"a": "oneOf:"}}"#, "a config type is"),
            (r#"{"configTypes": {"-a": "url"}}"#, "config key"),
            (r#"{"configTypes": ["a"]}"#, "configTypes must be an object"),
            (r#"{"strictConfig": 1}"#, "true or false"),
            (r#"{"annotations": ["a/b/c"]}"#, "at most one '/'"),
            (r#"{"annotations": ["/a"]}"#, "at most one '/'"),
            (r#"{"annotations": ["a b"]}"#, "annotation key"),
            (r#"{"annotations": [""]}"#, "annotation key"),
            (r#"{"annotations": "a"}"#, "arrays of strings"),
            ("[]", "not a JSON object"),
        ] {
            let got = check(json).unwrap_err();
            assert!(got.contains(want), "{json}: {got}");
        }
        let many = format!(
            r#"{{"config": [{}]}}"#,
            (0..65)
                .map(|i| format!("\"k{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(check(&many).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn config_destinations_imply_their_key() {
        let d = Declaration::parse(
            br#"{"outbound": ["config:tokenEndpoint"], "config": ["audience"]}"#,
        )
        .unwrap();
        assert!(d.declares_config_key("tokenEndpoint"));
        assert!(d.declares_config_key("audience"));
        assert!(!d.declares_config_key("other"));
    }
}
