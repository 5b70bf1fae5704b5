//! Two locks on every capability: the plugin *declares* what it needs (a
//! JSON document embedded in the component as a custom section, written by
//! the guest SDK at build time) and the operator *grants* it per plugin in
//! the host config. A capability is usable only if declared and granted;
//! empty means deny-all, and nothing is ever granted automatically.
//!
//! One module per kind of capability, each owning its declared form, its
//! granted form, how the two combine into what the plugin may do, and how
//! it reports where they differ:
//!
//! * [`outbound`]: HTTP destinations (incl. `config:<key>` and
//!   `allowPrivateNetworks`);
//! * [`config_keys`]: operator config values;
//! * [`env`](mod@env): environment variables;
//! * [`service_account_token`]: the kubelet's service-account token.
//!
//! [`Permissions`] is the one answer to "what may this plugin do": the
//! sandbox enforces it, and `inspect` (and logs) report its
//! [`Differences`], so the two can never disagree.
//!
//! A new kind of capability is a new module here plus one field in each of
//! `RawDeclaration`, [`Declaration`], [`RawGrant`], [`Grant`] and
//! [`Permissions`] (and a line in [`Permissions::differences`]); then the
//! host's enforcement (`host/src/sandbox.rs` and the runtime piece that
//! provides it), the lines `inspect` prints for it, and the guest SDK's
//! `declare_capabilities!`.

pub mod config_keys;
pub mod config_types;
pub mod env;
pub mod outbound;
pub mod service_account_token;

pub use config_keys::ConfigKeysPermission;
pub use config_types::{ConfigSchema, ConfigType};
pub use env::EnvPermission;
pub use outbound::{
    DeclaredDestination, Denial, FROM_CONFIG_PREFIX, OutboundGrant, OutboundPermission,
    destination_of_url,
};
pub use service_account_token::TokenPermission;

use crate::config::problems::{ConfigError, FieldPath, Problems};
use crate::destination::Scheme;
use crate::names::check_count;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Name of the custom section that carries the declaration.
pub const SECTION_NAME: &str = "wcp-capabilities";
/// Largest declaration accepted.
pub const MAX_DECLARATION_BYTES: usize = 64 * 1024;

/// The declaration's JSON, before its names are checked.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDeclaration {
    #[serde(default)]
    outbound: Vec<String>,
    #[serde(default)]
    config: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    service_account_token: bool,
    #[serde(default)]
    config_types: BTreeMap<String, String>,
    #[serde(default)]
    strict_config: bool,
    #[serde(default)]
    annotations: Vec<String>,
}

/// What a component asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declaration {
    pub outbound: Vec<DeclaredDestination>,
    pub config: BTreeSet<String>,
    pub env: BTreeSet<String>,
    pub service_account_token: bool,
    /// The shapes of typed config keys and whether unknown keys are
    /// refused; checked against the host config when the plugin loads.
    pub config_schema: ConfigSchema,
    /// The service-account annotation keys the plugin reads by default: the
    /// kubelet forwards only the keys its provider entry lists, so `check`
    /// compares the two (and `install` lists them).
    pub annotations: BTreeSet<String>,
}

impl Declaration {
    /// Parses the JSON embedded in a component. Every name must follow
    /// [`crate::names`] and every list is bounded; anything else refuses the
    /// component (its names reach logs and `inspect`'s table).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_DECLARATION_BYTES {
            bail!("capability declaration is larger than {MAX_DECLARATION_BYTES} bytes");
        }
        let raw: RawDeclaration = serde_json::from_slice(bytes)
            .context("capability declaration is not valid JSON of the expected shape")?;
        check_count("outbound destinations", raw.outbound.len())?;
        check_count("config keys", raw.config.len())?;
        check_count("environment variables", raw.env.len())?;
        check_count("config types", raw.config_types.len())?;
        check_count("annotation keys", raw.annotations.len())?;
        for key in &raw.annotations {
            crate::check::kubelet_config::check_annotation_key(key).map_err(|why| {
                anyhow::anyhow!(
                    "annotation key {} is not valid: {why}",
                    crate::names::shown(key)
                )
            })?;
        }
        let config_schema = ConfigSchema::parse_declared(raw.config_types, raw.strict_config)?;
        let outbound = outbound::parse_declared(&raw.outbound)?;
        let mut config = config_keys::parse_declared(raw.config)?;
        // A destination taken from config value `<key>` is a read of that
        // value: declaring `config:<key>` declares the key too, so a plugin
        // does not have to say it twice (and cannot be told "not set" for a
        // key the operator did set).
        config.extend(outbound.iter().filter_map(|d| match d {
            DeclaredDestination::FromConfig(key) => Some(key.clone()),
            DeclaredDestination::Fixed(_) => None,
        }));
        // A typed key is a declared key.
        config.extend(config_schema.types.keys().cloned());
        Ok(Self {
            outbound,
            config,
            env: env::parse_declared(raw.env)?,
            service_account_token: raw.service_account_token,
            config_schema,
            annotations: raw.annotations.into_iter().collect(),
        })
    }

    /// Checks one config key the operator set, and its value when known,
    /// against [`Declaration::config_schema`].
    pub fn check_config(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.config_schema.check(&self.config, key, value)
    }
}

/// `plugins[].grants` as written in the host config, before validation.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGrant {
    #[serde(default)]
    pub outbound: Vec<String>,
    #[serde(default)]
    pub allow_private_networks: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub service_account_token: bool,
}

/// What the operator grants one plugin: its `grants` plus the config keys
/// it set (setting a key is what grants it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub outbound: OutboundGrant,
    pub config: BTreeSet<String>,
    pub env: BTreeSet<String>,
    pub service_account_token: bool,
}

impl Grant {
    /// Validates `raw`, recording every bad entry under `grants` (e.g.
    /// `plugins[0]: grants: outbound[1]: ...`). `set_keys` are the config
    /// keys the operator set, already checked by the config.
    pub fn validate(
        raw: RawGrant,
        set_keys: BTreeSet<String>,
        grants: &FieldPath,
        problems: &mut Problems,
    ) -> Self {
        Self {
            outbound: OutboundGrant::validate(
                &raw.outbound,
                &raw.allow_private_networks,
                grants,
                problems,
            ),
            config: set_keys,
            env: env::validate_granted(raw.env, grants, problems),
            service_account_token: raw.service_account_token,
        }
    }

    /// A grant on its own (no config keys set), e.g. in tests; paths are
    /// relative to the grant.
    pub fn parse(raw: RawGrant) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let grant = Self::validate(raw, BTreeSet::new(), &FieldPath::root(), &mut problems);
        problems.into_result(grant)
    }
}

/// What one plugin may do: its declaration and its grant combined, kind by
/// kind. This is what the sandbox enforces and what `inspect` reports.
#[derive(Debug, Clone)]
pub struct Permissions {
    pub outbound: OutboundPermission,
    pub config: ConfigKeysPermission,
    pub env: EnvPermission,
    pub service_account_token: TokenPermission,
}

/// Where a declaration and a grant differ, each item as `inspect` shows it
/// (`outbound https://x.io`, `env HOME`, `config k (not set)`, ...), in a
/// fixed order of kinds: outbound, env, serviceAccountToken, config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    /// Asked for but not usable.
    pub declared_not_granted: Vec<String>,
    /// Granted (or set) but withheld, because the plugin did not ask.
    pub granted_not_declared: Vec<String>,
}

impl Permissions {
    /// Combines the two locks. `config_values` resolves `config:`
    /// destinations; pass an empty map where values are not read (then
    /// those destinations reach nothing).
    pub fn new(
        declared: &Declaration,
        grant: &Grant,
        config_values: &BTreeMap<String, String>,
    ) -> Self {
        Self {
            outbound: OutboundPermission::new(
                &declared.outbound,
                &grant.outbound,
                &grant.config,
                config_values,
            ),
            config: ConfigKeysPermission::new(&declared.config, &grant.config),
            env: EnvPermission::new(&declared.env, &grant.env),
            service_account_token: TokenPermission::new(
                declared.service_account_token,
                grant.service_account_token,
            ),
        }
    }

    /// Checks the scheme, host and port of a request's final URI.
    pub fn check_request(&self, scheme: Scheme, host: &str, port: u16) -> Result<(), Denial> {
        self.outbound.check_request(scheme, host, port)
    }

    /// Checks one address a request reaches; see
    /// [`OutboundPermission::check_address`].
    pub fn check_address(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        ip: IpAddr,
    ) -> Result<(), &'static str> {
        self.outbound.check_address(scheme, host, port, ip)
    }

    /// Every difference between what was declared and what was granted.
    pub fn differences(&self) -> Differences {
        let mut out = Differences::default();
        self.outbound.differences(&mut out);
        self.env.differences(&mut out);
        self.service_account_token.differences(&mut out);
        self.config.differences(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration(json: &str) -> Declaration {
        Declaration::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn annotation_keys_are_checked_as_kubernetes_does() {
        let d = declaration(r#"{"annotations": ["eks.amazonaws.com/ecr-role-arn"]}"#);
        assert!(d.annotations.contains("eks.amazonaws.com/ecr-role-arn"));
        for bad in [r#"["-x"]"#, r#"["a/b/c"]"#, r#"["UPPER_/x"]"#] {
            let err =
                Declaration::parse(format!(r#"{{"annotations": {bad}}}"#).as_bytes()).unwrap_err();
            assert!(
                format!("{err:#}").contains("annotation key"),
                "{bad}: {err:#}"
            );
        }
    }

    fn parse_grant(
        outbound: &[String],
        allow_private_networks: &[String],
        env: &[String],
        service_account_token: bool,
    ) -> Result<Grant, ConfigError> {
        Grant::parse(RawGrant {
            outbound: outbound.to_vec(),
            allow_private_networks: allow_private_networks.to_vec(),
            env: env.to_vec(),
            service_account_token,
        })
    }

    #[test]
    fn a_config_destination_declares_its_key() {
        let d = declaration(r#"{"outbound":["config:tokenEndpoint"],"config":["audience"]}"#);
        assert_eq!(
            d.config.iter().collect::<Vec<_>>(),
            ["audience", "tokenEndpoint"]
        );
    }

    #[test]
    fn tls_may_be_used_only_when_an_https_destination_is_declared_and_granted() {
        let may = |declared: &str, granted: &[&str]| {
            let d = declaration(declared);
            let granted: Vec<String> = granted.iter().map(|g| g.to_string()).collect();
            let g = parse_grant(&granted, &[], &[], false).unwrap();
            Permissions::new(&d, &g, &BTreeMap::new())
                .outbound
                .may_use_tls()
        };
        assert!(may(
            r#"{"outbound":["https://sts.amazonaws.com"]}"#,
            &["https://sts.amazonaws.com"]
        ));
        assert!(!may(r#"{"outbound":["http://a.io"]}"#, &["http://a.io"]));
        assert!(!may(r#"{"outbound":["https://sts.amazonaws.com"]}"#, &[]));
        assert!(!may(r#"{}"#, &["https://sts.amazonaws.com"]));
        assert!(!may(r#"{"outbound":["https://a.io"]}"#, &["http://a.io"]));
        // Declared and granted HTTPS destinations that differ: the request
        // will be refused, but the early read is harmless.
        assert!(may(r#"{"outbound":["https://a.io"]}"#, &["https://b.io"]));
    }

    #[test]
    fn both_locks_are_required() {
        let d = declaration(r#"{"outbound":["https://sts.amazonaws.com","https://*.ecr.aws"]}"#);
        let g = parse_grant(
            &[
                "https://sts.amazonaws.com".into(),
                "https://other.io".into(),
            ],
            &[],
            &[],
            false,
        )
        .unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        assert_eq!(
            e.check_request(Scheme::Https, "sts.amazonaws.com", 443),
            Ok(())
        );
        assert_eq!(
            e.check_request(Scheme::Https, "public.ecr.aws", 443),
            Err(Denial::NotGranted)
        );
        assert_eq!(
            e.check_request(Scheme::Https, "other.io", 443),
            Err(Denial::NotDeclared)
        );
        assert_eq!(
            e.check_request(Scheme::Https, "evil.io", 443),
            Err(Denial::NeitherDeclaredNorGranted)
        );
    }

    #[test]
    fn empty_is_deny_all() {
        let e = Permissions::new(&Declaration::default(), &Grant::default(), &BTreeMap::new());
        assert!(e.check_request(Scheme::Https, "a.io", 443).is_err());
        assert!(!e.service_account_token.allowed());
        assert!(e.env.allowed().next().is_none());
    }

    #[test]
    fn config_destinations_follow_the_operator_value() {
        let d = declaration(r#"{"outbound":["config:stsEndpoint"]}"#);
        let g = parse_grant(&["https://127.0.0.1:8443".into()], &[], &[], false).unwrap();
        let mut values = BTreeMap::new();
        values.insert(
            "stsEndpoint".to_string(),
            "https://127.0.0.1:8443/".to_string(),
        );
        let e = Permissions::new(&d, &g, &values);
        assert_eq!(e.check_request(Scheme::Https, "127.0.0.1", 8443), Ok(()));
        assert!(e.check_request(Scheme::Https, "127.0.0.1", 9443).is_err());
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        assert!(e.check_request(Scheme::Https, "127.0.0.1", 8443).is_err());
    }

    #[test]
    fn special_addresses_need_an_explicit_grant() {
        let d = declaration(r#"{"outbound":["https://registry.internal"]}"#);
        let g = parse_grant(&["https://registry.internal".into()], &[], &[], false).unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        let name = |e: &Permissions, ip: &str| {
            e.check_address(Scheme::Https, "registry.internal", 443, ip.parse().unwrap())
        };
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.5",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
        ] {
            assert!(name(&e, ip).is_err(), "{ip}");
        }
        assert!(name(&e, "52.1.2.3").is_ok());
        let g = parse_grant(
            &["https://registry.internal".into()],
            &["10.0.0.0/8".into()],
            &[],
            false,
        )
        .unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        assert!(name(&e, "10.0.0.5").is_ok());
        assert!(name(&e, "127.0.0.1").is_err());
    }

    #[test]
    fn an_ip_literal_grant_exempts_only_that_literal_scheme_and_port() {
        let d = declaration(r#"{"outbound":["https://registry.internal"]}"#);
        let g = parse_grant(
            &[
                "http://127.0.0.1:9000".into(),
                "https://registry.internal".into(),
            ],
            &[],
            &[],
            false,
        )
        .unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        let lo = "127.0.0.1".parse().unwrap();
        assert!(e.check_address(Scheme::Http, "127.0.0.1", 9000, lo).is_ok());
        // The same address reached through a granted name, another port or
        // another scheme is not exempt.
        assert!(
            e.check_address(Scheme::Https, "registry.internal", 443, lo)
                .is_err()
        );
        assert!(
            e.check_address(Scheme::Http, "127.0.0.1", 9001, lo)
                .is_err()
        );
        assert!(
            e.check_address(Scheme::Https, "127.0.0.1", 9000, lo)
                .is_err()
        );
        assert!(
            e.check_address(
                Scheme::Http,
                "127.0.0.2",
                9000,
                "127.0.0.2".parse().unwrap()
            )
            .is_err()
        );
        // IPv6 literals and mapped forms compare canonically.
        let g = parse_grant(&["http://[::1]:9000".into()], &[], &[], false).unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        assert!(
            e.check_address(Scheme::Http, "[::1]", 9000, "::1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn env_and_token_are_intersections() {
        let d = declaration(
            r#"{"env":["AWS_REGION","AWS_SECRET_ACCESS_KEY"],"serviceAccountToken":true}"#,
        );
        let g = parse_grant(&[], &[], &["AWS_REGION".into(), "HOME".into()], false).unwrap();
        let e = Permissions::new(&d, &g, &BTreeMap::new());
        assert_eq!(e.env.allowed().collect::<Vec<_>>(), vec!["AWS_REGION"]);
        assert!(!e.service_account_token.allowed());
        let g = parse_grant(&[], &[], &[], true).unwrap();
        assert!(
            Permissions::new(&d, &g, &BTreeMap::new())
                .service_account_token
                .allowed()
        );
    }

    #[test]
    fn declaration_errors() {
        assert!(Declaration::parse(br#"{"outbound":["https://127.0.0.1"]}"#).is_err());
        assert!(Declaration::parse(br#"{"outbound":["sts.amazonaws.com"]}"#).is_err());
        assert!(Declaration::parse(br#"{"outbound":["config:"]}"#).is_err());
        assert!(Declaration::parse(br#"{"outbund":[]}"#).is_err());
        assert!(Declaration::parse(b"not json").is_err());
    }

    #[test]
    fn declared_names_are_well_formed_and_bounded() {
        declaration(
            r#"{"outbound":["config:sts.endpoint"],"config":["roleArn","sts.endpoint","a-b_c"],"env":["AWS_REGION","_X1"]}"#,
        );
        let too_many = |field: &str, item: &dyn Fn(usize) -> String| {
            let items: Vec<String> = (0..65).map(item).collect();
            format!("{{\"{field}\":{}}}", serde_json::to_string(&items).unwrap())
        };
        let cases = [
            (r#"{"config":["\u001b[2Jevil"]}"#.to_string(), "config[0]"),
            (r#"{"config":["ok","a\nb"]}"#.to_string(), "config[1]"),
            (r#"{"config":["a\u202eb"]}"#.to_string(), "config[0]"),
            (r#"{"config":[""]}"#.to_string(), "config[0]"),
            (
                format!(r#"{{"config":["{}"]}}"#, "k".repeat(129)),
                "config[0]",
            ),
            (r#"{"env":["A\u0007B"]}"#.to_string(), "env[0]"),
            (r#"{"env":["1A"]}"#.to_string(), "env[0]"),
            (r#"{"env":["A-B"]}"#.to_string(), "env[0]"),
            (
                r#"{"outbound":["config:\u001b]0;x\u0007"]}"#.to_string(),
                "outbound[0]",
            ),
            (r#"{"outbound":["config:a b"]}"#.to_string(), "outbound[0]"),
            (too_many("config", &|i| format!("k{i}")), "at most 64"),
            (too_many("env", &|i| format!("E{i}")), "at most 64"),
            (
                too_many("outbound", &|i| format!("https://h{i}.example.com")),
                "at most 64",
            ),
        ];
        for (json, want) in cases {
            let err = format!("{:#}", Declaration::parse(json.as_bytes()).unwrap_err());
            assert!(err.contains(want), "{json} => {err}");
            assert!(
                !err.chars().any(crate::escape::is_hazardous),
                "{json} => raw control character in {err:?}"
            );
        }
    }

    #[test]
    fn config_problems_never_quote_the_value() {
        let d = declaration(r#"{"outbound":["config:password","config:url"]}"#);
        let mut values = BTreeMap::new();
        values.insert("password".to_string(), "hunter2-secret-value".to_string());
        values.insert(
            "url".to_string(),
            "https://user:hunter3@x.io:99999/".to_string(),
        );
        let e = Permissions::new(&d, &Grant::default(), &values);
        assert_eq!(
            e.outbound.problems().len(),
            2,
            "{:?}",
            e.outbound.problems()
        );
        for problem in e.outbound.problems() {
            assert!(!problem.contains("hunter"), "{problem}");
            assert!(problem.contains("not shown"), "{problem}");
        }
        assert!(
            e.outbound.problems()[0].contains("\"password\""),
            "{:?}",
            e.outbound.problems()
        );
    }

    #[test]
    fn differences_are_reported_kind_by_kind() {
        let d = declaration(
            r#"{"outbound":["https://sts.amazonaws.com","https://*.ecr.aws","config:endpoint","config:unset"],"config":["endpoint","unset","roleArn"],"env":["AWS_REGION","AWS_PROFILE"],"serviceAccountToken":true}"#,
        );
        let mut g = parse_grant(
            &[
                "https://STS.amazonaws.com:443".into(),
                "https://public.ecr.aws".into(),
                "https://evil.example.com".into(),
            ],
            &[],
            &["AWS_REGION".into(), "HOME".into()],
            false,
        )
        .unwrap();
        g.config = ["endpoint", "extra"].map(String::from).into();
        let differences = Permissions::new(&d, &g, &BTreeMap::new()).differences();
        assert_eq!(
            differences.declared_not_granted,
            [
                // Only public.ecr.aws of *.ecr.aws is granted.
                "outbound https://*.ecr.aws",
                "outbound config:unset (config key not set)",
                "env AWS_PROFILE",
                "serviceAccountToken",
                "config roleArn (not set)",
                "config unset (not set)",
            ]
        );
        // The same destination written differently is the same grant, and
        // a set config: destination may point at any grant, so no outbound
        // entry is reported here.
        assert_eq!(
            differences.granted_not_declared,
            ["env HOME", "config extra (set, withheld)"]
        );
        let d = declaration(r#"{"outbound":["https://*.ecr.aws"]}"#);
        let g = parse_grant(
            &["https://public.ecr.aws".into(), "https://ecr.aws".into()],
            &[],
            &[],
            true,
        )
        .unwrap();
        let differences = Permissions::new(&d, &g, &BTreeMap::new()).differences();
        assert_eq!(
            differences.granted_not_declared,
            ["outbound https://ecr.aws", "serviceAccountToken"]
        );
    }

    #[test]
    fn raw_grant_problems_are_all_reported() {
        let err = parse_grant(
            &["https://ok.io".into(), "bad.io".into()],
            &["10.0.0.0/99".into()],
            &["1A".into()],
            false,
        )
        .unwrap_err();
        let paths: Vec<String> = err
            .problems()
            .iter()
            .map(|p| p.path().to_string())
            .collect();
        assert_eq!(paths, ["outbound[1]", "allowPrivateNetworks[0]", "env[0]"]);
    }

    #[test]
    fn granted_env_names_are_checked() {
        assert!(parse_grant(&[], &[], &["AWS_REGION".into()], false).is_ok());
        let err = format!(
            "{:#}",
            parse_grant(&[], &[], &["OK".into(), "BAD\u{1b}".into()], false).unwrap_err()
        );
        assert!(err.contains("env[1]") && err.contains("\\u{1b}"), "{err}");
    }
}
