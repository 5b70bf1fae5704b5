//! The kubelet's `CredentialProviderConfig`, decoded and validated as the
//! kubelet does it at startup (`pkg/credentialprovider/plugin/config.go`):
//! a config the kubelet would refuse makes it exit, so every rule it
//! applies is an error here, with the kubelet's own wording where it has
//! one. Unlike the kubelet, a finding names the provider by index.

use super::{File, Findings};
use crate::duration::parse_go_duration;
use crate::matching::{ImagePattern, parse_schemeless};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The group of the kubelet config file's `apiVersion`.
pub const GROUP: &str = "kubelet.config.k8s.io";
/// Its versions the kubelet decodes.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];
pub const KIND: &str = "CredentialProviderConfig";
/// The provider `apiVersion`s the kubelet execs plugins with.
pub const PROVIDER_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];
/// The only provider `apiVersion` that carries the service-account token.
pub const PROVIDER_V1: &str = "credentialprovider.kubelet.k8s.io/v1";

/// The file, decoded strictly (unknown and duplicate fields are errors,
/// as in the kubelet's strict decoder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialProviderConfig {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub providers: Vec<Provider>,
}

/// One `providers[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provider {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub match_images: Vec<String>,
    #[serde(default)]
    pub default_cache_duration: Option<String>,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub token_attributes: Option<TokenAttributes>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// `tokenAttributes`: the kubelet sends a service-account token only to a
/// provider that has them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenAttributes {
    #[serde(default)]
    pub service_account_token_audience: String,
    #[serde(default)]
    pub cache_type: Option<String>,
    #[serde(default)]
    pub require_service_account: Option<bool>,
    #[serde(default)]
    pub required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    pub optional_service_account_annotation_keys: Vec<String>,
}

impl Provider {
    /// The value of its `--config` argument (`--config FILE` or
    /// `--config=FILE`), if any.
    pub fn config_arg(&self) -> Option<&str> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == "--config" {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix("--config=") {
                return Some(value);
            }
        }
        None
    }
}

/// Whether `name` is an executable file in the kubelet's bin dir (as Go's
/// `exec.LookPath(binDir/name)`): `Err` says why not.
pub type BinDir<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Decodes the file as the kubelet's strict decoder does (YAML or JSON).
/// The error names its line.
pub fn parse(text: &str) -> Result<CredentialProviderConfig, String> {
    serde_yaml_ng::from_str(text).map_err(|e| format!("strict decoding error: {e}"))
}

/// Every rule the kubelet applies at startup, recorded in file order.
/// With `bin_dir`, each provider's executable is looked up too.
pub fn validate(
    config: &CredentialProviderConfig,
    bin_dir: Option<BinDir<'_>>,
    findings: &mut Findings,
) {
    const K: File = File::Kubelet;
    let (group, version) = config
        .api_version
        .split_once('/')
        .unwrap_or(("", config.api_version.as_str()));
    let known_version = group == GROUP && VERSIONS.contains(&version);
    if !known_version || config.kind != KIND {
        findings.error(
            K,
            if known_version { "kind" } else { "apiVersion" },
            format!(
                "no kind {:?} is registered for version {:?}: the kubelet refuses the file",
                config.kind, config.api_version
            ),
            format!("set `apiVersion: {GROUP}/v1` and `kind: {KIND}`"),
        );
    }
    if config.providers.is_empty() {
        findings.error(
            K,
            "providers",
            "at least 1 item in plugins is required",
            "add a provider entry (see the README's \"Using it with the kubelet\")",
        );
    }
    let mut names = BTreeSet::new();
    for (i, provider) in config.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if version != "v1" && known_version && provider.token_attributes.is_some() {
            findings.error(
                K,
                format!("{at}.tokenAttributes"),
                format!(
                    "unknown field \"providers[{i}].tokenAttributes\": {GROUP}/{version} has no tokenAttributes"
                ),
                format!("use `apiVersion: {GROUP}/v1` for the file"),
            );
        }
        name(provider, &at, &mut names, bin_dir, findings);
        if provider.api_version.is_empty() {
            findings.error(
                K,
                format!("{at}.apiVersion"),
                "apiVersion: Required value",
                format!("set `apiVersion: {PROVIDER_V1}`"),
            );
        } else if !PROVIDER_API_VERSIONS.contains(&provider.api_version.as_str()) {
            findings.error(
                K,
                format!("{at}.apiVersion"),
                format!(
                    "apiVersion: Unsupported value: {:?}: supported values: {}",
                    provider.api_version,
                    PROVIDER_API_VERSIONS.map(|v| format!("{v:?}")).join(", ")
                ),
                format!("set `apiVersion: {PROVIDER_V1}`"),
            );
        }
        match_images(provider, &at, findings);
        match provider.default_cache_duration.as_deref() {
            None => findings.error(
                K,
                format!("{at}.defaultCacheDuration"),
                "defaultCacheDuration: Required value",
                "set `defaultCacheDuration` (e.g. `10m`; the host's answers carry their own cacheDuration)",
            ),
            Some(text) if text.starts_with('-') => findings.error(
                K,
                format!("{at}.defaultCacheDuration"),
                format!("defaultCacheDuration: Invalid value: {text:?}: must be greater than or equal to 0"),
                "use a duration of 0s or more",
            ),
            Some(text) => {
                if let Err(e) = parse_go_duration(text) {
                    findings.error(
                        K,
                        format!("{at}.defaultCacheDuration"),
                        format!("defaultCacheDuration: {e:#}"),
                        "use a Go duration such as `10m` or `1h30m`",
                    );
                }
            }
        }
        if let Some(attributes) = &provider.token_attributes {
            token_attributes(provider, attributes, &at, findings);
        }
    }
}

fn name(
    provider: &Provider,
    at: &str,
    names: &mut BTreeSet<String>,
    bin_dir: Option<BinDir<'_>>,
    findings: &mut Findings,
) {
    const K: File = File::Kubelet;
    let name = &provider.name;
    let path = format!("{at}.name");
    let fix =
        "name the provider after its executable in the bin dir (e.g. `wasm-credential-provider`)";
    let bad = if name.is_empty() {
        Some("name: Required value".to_string())
    } else if name.contains('/') {
        Some(format!(
            "name: Invalid value: {name:?}: provider name cannot contain '/'"
        ))
    } else if name.contains(' ') {
        Some(format!(
            "name: Invalid value: {name:?}: provider name cannot contain spaces"
        ))
    } else if name == "." || name == ".." {
        Some(format!(
            "name: Invalid value: {name:?}: provider name cannot be {name:?}"
        ))
    } else {
        None
    };
    if let Some(message) = bad {
        findings.error(K, &path, message, fix);
        return;
    }
    if !names.insert(name.clone()) {
        findings.error(
            K,
            &path,
            format!("name: Duplicate value: {name:?}"),
            "give every provider its own name (install the binary under a second name, a hard link, for a second entry)",
        );
    }
    if let Some(lookup) = bin_dir
        && let Err(why) = lookup(name)
    {
        findings.error(
            K,
            &path,
            format!("plugin binary executable {name:?} is not usable in the bin dir: {why}; the kubelet exits at startup"),
            "install the binary under this name in --image-credential-provider-bin-dir (mode 0755), or run `wasm-credential-provider install`",
        );
    }
}

fn match_images(provider: &Provider, at: &str, findings: &mut Findings) {
    if provider.match_images.is_empty() {
        findings.error(
            File::Kubelet,
            format!("{at}.matchImages"),
            "matchImages: Required value: at least 1 item in matchImages is required",
            "list the registries this provider serves, e.g. `matchImages: [\"*.registry.example.com\"]`",
        );
    }
    for (j, pattern) in provider.match_images.iter().enumerate() {
        let path = format!("{at}.matchImages[{j}]");
        if let Err(e) = parse_schemeless(pattern) {
            findings.error(
                File::Kubelet,
                path,
                format!("matchImages: Invalid value: {pattern:?}: match image is invalid: {e:#}"),
                "write host[:port][/path] with `*` only inside DNS labels",
            );
        } else if let Err(e) = ImagePattern::parse(pattern) {
            // The kubelet accepts it, but its matcher never matches it.
            findings.warning(
                File::Kubelet,
                path,
                format!("{pattern:?} matches no image: {e:#}"),
                "fix the glob: `*` matches within one DNS label",
            );
        }
    }
}

fn token_attributes(
    provider: &Provider,
    attributes: &TokenAttributes,
    at: &str,
    findings: &mut Findings,
) {
    const K: File = File::Kubelet;
    let at = format!("{at}.tokenAttributes");
    if provider.api_version != PROVIDER_V1 {
        findings.error(
            K,
            &at,
            format!("tokenAttributes: Forbidden: tokenAttributes is only supported for {PROVIDER_V1} API version"),
            format!("set the provider's `apiVersion: {PROVIDER_V1}`"),
        );
    }
    if attributes.service_account_token_audience.is_empty() {
        findings.error(
            K,
            format!("{at}.serviceAccountTokenAudience"),
            "serviceAccountTokenAudience: Required value",
            "set the audience the plugin's upstream expects (e.g. `sts.amazonaws.com`)",
        );
    }
    match attributes.require_service_account {
        None => findings.error(
            K,
            format!("{at}.requireServiceAccount"),
            "requireServiceAccount: Required value",
            "set `requireServiceAccount: true` (or false to also serve pods without a service account)",
        ),
        Some(false) if !attributes.required_service_account_annotation_keys.is_empty() => {
            findings.error(
                K,
                format!("{at}.requiredServiceAccountAnnotationKeys"),
                "requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set",
                "set `requireServiceAccount: true`, or move the keys to optionalServiceAccountAnnotationKeys",
            )
        }
        Some(_) => {}
    }
    let required: Vec<&String> = attributes
        .required_service_account_annotation_keys
        .iter()
        .collect();
    let optional: Vec<&String> = attributes
        .optional_service_account_annotation_keys
        .iter()
        .collect();
    for (field, keys) in [
        ("requiredServiceAccountAnnotationKeys", &required),
        ("optionalServiceAccountAnnotationKeys", &optional),
    ] {
        let mut seen = BTreeSet::new();
        for (j, key) in keys.iter().enumerate() {
            let path = format!("{at}.{field}[{j}]");
            if let Err(why) = check_annotation_key(key) {
                findings.error(
                    K,
                    &path,
                    format!("{field}: Invalid value: {key:?}: {why}"),
                    "use an annotation key: [prefix/]name, the name at most 63 characters of [A-Za-z0-9-_.] starting and ending alphanumeric",
                );
            }
            if !seen.insert(key.as_str()) {
                findings.error(
                    K,
                    &path,
                    format!("{field}: Duplicate value: {key:?}"),
                    "list each key once",
                );
            }
        }
    }
    let both: Vec<&str> = required
        .iter()
        .filter(|k| optional.contains(k))
        .map(|k| k.as_str())
        .collect();
    if !both.is_empty() {
        findings.error(
            K,
            &at,
            format!("tokenAttributes: Invalid value: {both:?}: annotation keys cannot be both required and optional"),
            "keep each key in one of the two lists",
        );
    }
    match attributes.cache_type.as_deref() {
        None => findings.error(
            K,
            format!("{at}.cacheType"),
            "cacheType: Required value: cacheType is required to be set when tokenAttributes is specified. Supported values are: ServiceAccount, Token",
            "set `cacheType: ServiceAccount` (or `Token` for a plugin whose answer is the token itself)",
        ),
        Some("ServiceAccount" | "Token") => {}
        Some(other) => findings.error(
            K,
            format!("{at}.cacheType"),
            format!("cacheType: Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"Token\""),
            "set `cacheType: ServiceAccount` or `cacheType: Token`",
        ),
    }
}

/// An annotation key as the API server validates it (after lower-casing,
/// as the kubelet does): an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters.
pub fn check_annotation_key(key: &str) -> Result<(), String> {
    let key = key.to_ascii_lowercase();
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key.as_str()),
    };
    if name.contains('/') {
        return Err(
            "a qualified name must consist of an optional prefix and a name, separated by one '/'"
                .into(),
        );
    }
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("prefix part must be a lowercase RFC 1123 subdomain".into());
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let bytes = name.as_bytes();
    if !alnum(bytes[0])
        || !alnum(bytes[bytes.len() - 1])
        || !bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str) -> Vec<(String, String)> {
        let config = parse(text).unwrap();
        let mut out = Findings::default();
        validate(&config, None, &mut out);
        out.into_vec()
            .into_iter()
            .map(|f| (f.path, f.message))
            .collect()
    }

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n";

    #[test]
    fn a_good_config_has_no_findings() {
        let text = format!(
            "{HEAD}providers:\n  - name: wcp\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [\"*.registry.io\"]\n    defaultCacheDuration: 10m\n    args: [\"--config\", \"/etc/wcp/host.yaml\"]\n    tokenAttributes:\n      serviceAccountTokenAudience: aud\n      cacheType: ServiceAccount\n      requireServiceAccount: true\n      requiredServiceAccountAnnotationKeys: [\"example.com/role\"]\n"
        );
        assert_eq!(findings(&text), []);
        let config = parse(&text).unwrap();
        assert_eq!(config.providers[0].config_arg(), Some("/etc/wcp/host.yaml"));
    }

    #[test]
    fn every_kubelet_rule() {
        let text = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a/b\n    matchImages: []\n  - name: x\n    apiVersion: credentialprovider.kubelet.k8s.io/v1alpha0\n    matchImages: ['%zz', 'a.[.io']\n    defaultCacheDuration: -1m\n  - name: x\n    apiVersion: credentialprovider.kubelet.k8s.io/v1beta1\n    matchImages: ['y.io']\n    defaultCacheDuration: 1d\n    tokenAttributes:\n      requireServiceAccount: false\n      requiredServiceAccountAnnotationKeys: ['a/b', 'cantendwithadash-', 'a/b']\n      optionalServiceAccountAnnotationKeys: ['a/b']\n      cacheType: Pod\n";
        let got = findings(text);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers[0].name",
                "providers[0].apiVersion",
                "providers[0].matchImages",
                "providers[0].defaultCacheDuration",
                "providers[1].apiVersion",
                "providers[1].matchImages[0]",
                "providers[1].matchImages[1]",
                "providers[1].defaultCacheDuration",
                "providers[2].name",
                "providers[2].defaultCacheDuration",
                "providers[2].tokenAttributes",
                "providers[2].tokenAttributes.serviceAccountTokenAudience",
                "providers[2].tokenAttributes.requiredServiceAccountAnnotationKeys",
                "providers[2].tokenAttributes.requiredServiceAccountAnnotationKeys[1]",
                "providers[2].tokenAttributes.requiredServiceAccountAnnotationKeys[2]",
                "providers[2].tokenAttributes",
                "providers[2].tokenAttributes.cacheType",
            ]
        );
        let text: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert!(text[0].contains("cannot contain '/'"), "{}", text[0]);
        assert!(text[4].contains("Unsupported value"), "{}", text[4]);
        assert!(text[5].contains("invalid URL escape"), "{}", text[5]);
        assert!(
            text[7].contains("greater than or equal to 0"),
            "{}",
            text[7]
        );
        assert!(text[8].contains("Duplicate value: \"x\""), "{}", text[8]);
        assert!(text[10].contains("only supported for"), "{}", text[10]);
        assert!(
            text[13].contains("start and end with an alphanumeric"),
            "{}",
            text[13]
        );
        assert!(
            text[15].contains("both required and optional"),
            "{}",
            text[15]
        );
        assert!(
            text[16].contains("Unsupported value: \"Pod\""),
            "{}",
            text[16]
        );
    }

    #[test]
    fn the_file_itself() {
        let got = findings(
            "apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\nproviders: []\n",
        );
        assert_eq!(got[0].0, "apiVersion");
        assert_eq!(got[1].1, "at least 1 item in plugins is required");
        let got = findings(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [a.io]\n    defaultCacheDuration: 1m\n    tokenAttributes: {serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.contains("has no tokenAttributes"), "{got:?}");
        let err = parse(&format!(
            "{HEAD}providers:\n  - name: a\n    matchImage: [x]\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("unknown field `matchImage`") && err.contains("line 5"),
            "{err}"
        );
        let err = parse(&format!("{HEAD}providers:\n  - name: a\n    name: b\n")).unwrap_err();
        assert!(err.contains("duplicate field `name`"), "{err}");
    }

    #[test]
    fn the_bin_dir() {
        let config = parse(&format!("{HEAD}providers:\n  - name: here\n    apiVersion: {PROVIDER_V1}\n    matchImages: [a.io]\n    defaultCacheDuration: 1m\n  - name: gone\n    apiVersion: {PROVIDER_V1}\n    matchImages: [a.io]\n    defaultCacheDuration: 1m\n")).unwrap();
        let lookup = |name: &str| {
            if name == "here" {
                Ok(())
            } else {
                Err("no such file".to_string())
            }
        };
        let mut out = Findings::default();
        validate(&config, Some(&lookup), &mut out);
        let got = out.into_vec();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "providers[1].name");
        assert!(got[0].message.contains("no such file"));
    }

    #[test]
    fn annotation_keys() {
        for good in [
            "a",
            "example.com/role-arn",
            "eks.amazonaws.com/role-arn",
            "A.b_c-d",
            "x/Y",
        ] {
            assert_eq!(check_annotation_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "/a",
            "a/",
            "a/b/c",
            "-x.com/a",
            &"a".repeat(64),
            "x..y/a",
            "a b",
        ] {
            assert!(check_annotation_key(bad).is_err(), "{bad}");
        }
    }
}
