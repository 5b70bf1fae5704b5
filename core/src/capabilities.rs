//! Two locks on every capability: the plugin *declares* what it needs (a
//! JSON document embedded in the component as a custom section, written by
//! the guest SDK at build time) and the operator *grants* it per plugin in
//! the host config. A capability is usable only if declared and granted;
//! empty means deny-all, and nothing is ever granted automatically.

use crate::destination::{Cidr, Destination, Origin, Scheme, special_range};
use crate::names::{check_config_key, check_count, check_env_name, shown};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Name of the custom section that carries the declaration.
pub const SECTION_NAME: &str = "wcp-capabilities";
/// Largest declaration accepted.
pub const MAX_DECLARATION_BYTES: usize = 64 * 1024;
/// Prefix of a declared destination taken from an operator config value.
pub const FROM_CONFIG_PREFIX: &str = "config:";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireDeclaration {
    #[serde(default)]
    outbound: Vec<String>,
    #[serde(default)]
    config: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    service_account_token: bool,
}

/// A destination as a plugin declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredDestination {
    Fixed(Destination),
    /// `config:<key>`: wherever the operator points config value `<key>`
    /// (regional, FIPS or VPC endpoints). Still needs a grant.
    FromConfig(String),
}

/// What a component asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declaration {
    pub outbound: Vec<DeclaredDestination>,
    pub config: BTreeSet<String>,
    pub env: BTreeSet<String>,
    pub service_account_token: bool,
}

impl Declaration {
    /// Parses the JSON embedded in a component. Every name must follow
    /// [`crate::names`] and every list is bounded; anything else refuses the
    /// component (its names reach logs and `inspect`'s table).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_DECLARATION_BYTES {
            bail!("capability declaration is larger than {MAX_DECLARATION_BYTES} bytes");
        }
        let wire: WireDeclaration = serde_json::from_slice(bytes)
            .context("capability declaration is not valid JSON of the expected shape")?;
        check_count("outbound destinations", wire.outbound.len())?;
        check_count("config keys", wire.config.len())?;
        check_count("environment variables", wire.env.len())?;
        let outbound = wire
            .outbound
            .iter()
            .enumerate()
            .map(|(i, entry)| match entry.strip_prefix(FROM_CONFIG_PREFIX) {
                Some("") => bail!(
                    "outbound[{i}]: declared destination {} names no config key",
                    shown(entry)
                ),
                Some(key) => {
                    check_config_key(key).with_context(|| format!("outbound[{i}]"))?;
                    Ok(DeclaredDestination::FromConfig(key.to_string()))
                }
                None => Destination::parse(entry, Origin::Declared)
                    .map(DeclaredDestination::Fixed)
                    .with_context(|| format!("outbound[{i}]")),
            })
            .collect::<Result<_>>()?;
        for (i, key) in wire.config.iter().enumerate() {
            check_config_key(key).with_context(|| format!("config[{i}]"))?;
        }
        for (i, name) in wire.env.iter().enumerate() {
            check_env_name(name).with_context(|| format!("env[{i}]"))?;
        }
        Ok(Self {
            outbound,
            config: wire.config.into_iter().collect(),
            env: wire.env.into_iter().collect(),
            service_account_token: wire.service_account_token,
        })
    }
}

/// What the operator grants one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub outbound: Vec<Destination>,
    pub allow_private_networks: Vec<Cidr>,
    pub env: BTreeSet<String>,
    pub service_account_token: bool,
}

/// Why a request may not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The plugin did not declare the destination.
    NotDeclared,
    /// Declared, but the operator did not grant it.
    NotGranted,
    /// Neither.
    NeitherDeclaredNorGranted,
}

impl Denial {
    /// The `error.type` of the structured log event.
    pub fn error_type(&self) -> &'static str {
        "destination_not_allowed"
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Denial::NotDeclared => "granted but not declared by the plugin",
            Denial::NotGranted => "declared by the plugin but not granted in the host config",
            Denial::NeitherDeclaredNorGranted => {
                "neither declared by the plugin nor granted in the host config"
            }
        }
    }
}

/// The intersection of a declaration and a grant, ready to check requests.
#[derive(Debug, Clone)]
pub struct Effective {
    declared: Vec<Destination>,
    granted: Vec<Destination>,
    private_networks: Vec<Cidr>,
    pub env: BTreeSet<String>,
    pub config_keys: BTreeSet<String>,
    pub service_account_token: bool,
    /// Declared-from-config destinations whose config value is not a usable
    /// endpoint URL; reported, never fatal on their own. They name the key,
    /// never the value (which may be a secret).
    pub problems: Vec<String>,
}

impl Effective {
    /// Combines the two locks. `config_values` resolves `config:` entries.
    pub fn new(
        declared: &Declaration,
        grant: &Grant,
        config_values: &BTreeMap<String, String>,
    ) -> Self {
        let mut problems = Vec::new();
        let mut declared_destinations = Vec::new();
        for entry in &declared.outbound {
            match entry {
                DeclaredDestination::Fixed(d) => declared_destinations.push(d.clone()),
                DeclaredDestination::FromConfig(key) => match config_values.get(key) {
                    None => {}
                    Some(value) => match destination_of_url(value) {
                        Ok(d) => declared_destinations.push(d),
                        Err(e) => problems.push(format!("config value {key:?}: {e}")),
                    },
                },
            }
        }
        Self {
            declared: declared_destinations,
            granted: grant.outbound.clone(),
            private_networks: grant.allow_private_networks.clone(),
            env: declared.env.intersection(&grant.env).cloned().collect(),
            config_keys: declared.config.clone(),
            service_account_token: declared.service_account_token && grant.service_account_token,
            problems,
        }
    }

    /// Checks the scheme, host and port of a request's final URI.
    pub fn check_request(&self, scheme: Scheme, host: &str, port: u16) -> Result<(), Denial> {
        let declared = self.declared.iter().any(|d| d.allows(scheme, host, port));
        let granted = self.granted.iter().any(|d| d.allows(scheme, host, port));
        match (declared, granted) {
            (true, true) => Ok(()),
            (false, true) => Err(Denial::NotDeclared),
            (true, false) => Err(Denial::NotGranted),
            (false, false) => Err(Denial::NeitherDeclaredNorGranted),
        }
    }

    /// Checks one address that a request to `scheme://host:port` reaches:
    /// an address `host` resolved to, or `host` itself when it is an IP
    /// literal. Loopback, link-local, private and other special addresses
    /// are refused unless an `allowPrivateNetworks` range contains the
    /// address, or the request names that IP literal itself and a grant
    /// names exactly that literal on the same scheme and port. A grant of
    /// `http://127.0.0.1:9000` exempts requests to that literal only, never
    /// a granted *name* that happens to resolve to 127.0.0.1, and never
    /// another port. Returns the kind of range on refusal.
    pub fn check_address(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        ip: IpAddr,
    ) -> Result<(), &'static str> {
        let Some(range) = special_range(ip) else {
            return Ok(());
        };
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        let named = literal
            && self
                .granted
                .iter()
                .any(|d| d.names_ip(ip) && d.allows(scheme, host, port));
        let in_range = self.private_networks.iter().any(|c| c.contains(ip));
        if named || in_range {
            Ok(())
        } else {
            Err(range)
        }
    }

    /// Destinations the plugin can actually reach: declared and granted.
    pub fn granted(&self) -> &[Destination] {
        &self.granted
    }
}

/// `scheme://authority` of a URL an operator configured (a path is allowed
/// here and ignored: it is an endpoint URL, not a destination entry). The
/// error never quotes `url`: a plugin can declare `config:<key>` for any
/// key, including one that holds a secret.
pub fn destination_of_url(url: &str) -> Result<Destination> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!(
            "the value is not an absolute URL (scheme://host[:port][/path]); its text is not shown"
        );
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Destination::parse(&format!("{scheme}://{authority}"), Origin::Granted).map_err(|_| {
        anyhow!(
            "the value's scheme://host[:port] is not a valid destination (https or http, a DNS name or IP address, one port, no user info); its text is not shown"
        )
    })
}

/// Parses the operator's grant (already split into its fields).
pub fn parse_grant(
    outbound: &[String],
    allow_private_networks: &[String],
    env: &[String],
    service_account_token: bool,
) -> Result<Grant> {
    Ok(Grant {
        outbound: outbound
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Destination::parse(e, Origin::Granted).with_context(|| format!("outbound[{i}]"))
            })
            .collect::<Result<_>>()?,
        allow_private_networks: allow_private_networks
            .iter()
            .enumerate()
            .map(|(i, e)| Cidr::parse(e).with_context(|| format!("allowPrivateNetworks[{i}]")))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .enumerate()
            .map(|(i, name)| {
                check_env_name(name)
                    .with_context(|| format!("env[{i}]"))
                    .map(|()| name.clone())
            })
            .collect::<Result<_>>()?,
        service_account_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration(json: &str) -> Declaration {
        Declaration::parse(json.as_bytes()).unwrap()
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
        let e = Effective::new(&d, &g, &BTreeMap::new());
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
        let e = Effective::new(&Declaration::default(), &Grant::default(), &BTreeMap::new());
        assert!(e.check_request(Scheme::Https, "a.io", 443).is_err());
        assert!(!e.service_account_token);
        assert!(e.env.is_empty());
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
        let e = Effective::new(&d, &g, &values);
        assert_eq!(e.check_request(Scheme::Https, "127.0.0.1", 8443), Ok(()));
        assert!(e.check_request(Scheme::Https, "127.0.0.1", 9443).is_err());
        let e = Effective::new(&d, &g, &BTreeMap::new());
        assert!(e.check_request(Scheme::Https, "127.0.0.1", 8443).is_err());
    }

    #[test]
    fn special_addresses_need_an_explicit_grant() {
        let d = declaration(r#"{"outbound":["https://registry.internal"]}"#);
        let g = parse_grant(&["https://registry.internal".into()], &[], &[], false).unwrap();
        let e = Effective::new(&d, &g, &BTreeMap::new());
        let name = |e: &Effective, ip: &str| {
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
        let e = Effective::new(&d, &g, &BTreeMap::new());
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
        let e = Effective::new(&d, &g, &BTreeMap::new());
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
        let e = Effective::new(&d, &g, &BTreeMap::new());
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
        let e = Effective::new(&d, &g, &BTreeMap::new());
        assert_eq!(e.env.iter().collect::<Vec<_>>(), vec!["AWS_REGION"]);
        assert!(!e.service_account_token);
        let g = parse_grant(&[], &[], &[], true).unwrap();
        assert!(Effective::new(&d, &g, &BTreeMap::new()).service_account_token);
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
        let e = Effective::new(&d, &Grant::default(), &values);
        assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
        for problem in &e.problems {
            assert!(!problem.contains("hunter"), "{problem}");
            assert!(problem.contains("not shown"), "{problem}");
        }
        assert!(e.problems[0].contains("\"password\""), "{:?}", e.problems);
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
