//! Outbound HTTP: where a plugin may connect. The plugin declares
//! destinations (fixed ones, or `config:<key>` for wherever the operator
//! points that config value); the operator grants destinations and, apart,
//! the private address ranges a granted name may resolve into. A request
//! goes out only if a declared *and* a granted entry allow it.

use super::Differences;
use crate::config::problems::{FieldPath, Problems};
use crate::destination::{Cidr, Destination, Origin, Scheme, special_range};
use crate::names::{check_config_key, shown};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// Prefix of a declared destination taken from an operator config value.
pub const FROM_CONFIG_PREFIX: &str = "config:";

/// A destination as a plugin declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredDestination {
    Fixed(Destination),
    /// `config:<key>`: wherever the operator points config value `<key>`
    /// (regional, FIPS or VPC endpoints). Still needs a grant.
    FromConfig(String),
}

/// As the plugin wrote it.
impl fmt::Display for DeclaredDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclaredDestination::Fixed(d) => write!(f, "{d}"),
            DeclaredDestination::FromConfig(key) => write!(f, "{FROM_CONFIG_PREFIX}{key}"),
        }
    }
}

/// Parses the declaration's `outbound` list; the first bad entry refuses
/// the component.
pub(super) fn parse_declared(entries: &[String]) -> Result<Vec<DeclaredDestination>> {
    entries
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
        .collect()
}

/// What the operator grants: `grants.outbound` and
/// `grants.allowPrivateNetworks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundGrant {
    pub destinations: Vec<Destination>,
    pub allow_private_networks: Vec<Cidr>,
}

impl OutboundGrant {
    /// Validates the raw lists, recording every bad entry under `grants`.
    pub(super) fn validate(
        outbound: &[String],
        allow_private_networks: &[String],
        grants: &FieldPath,
        problems: &mut Problems,
    ) -> Self {
        let destinations = outbound
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let at = grants.at(format!("outbound[{i}]"));
                problems.check(&at, Destination::parse(e, Origin::Granted))
            })
            .collect();
        let allow_private_networks = allow_private_networks
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let at = grants.at(format!("allowPrivateNetworks[{i}]"));
                problems.check(&at, Cidr::parse(e))
            })
            .collect();
        Self {
            destinations,
            allow_private_networks,
        }
    }
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

/// Declared and granted destinations together: checks every request and
/// every address it reaches, and says where the two lists differ.
#[derive(Debug, Clone)]
pub struct OutboundPermission {
    /// As declared, for reporting.
    declared: Vec<DeclaredDestination>,
    /// Config keys the operator set: a `config:<key>` entry whose key is
    /// set counts as matching the grant even when its value is unknown.
    set_keys: BTreeSet<String>,
    /// Declared destinations resolved (fixed ones, and `config:` ones
    /// whose value is a usable URL).
    reachable: Vec<Destination>,
    granted: Vec<Destination>,
    private_networks: Vec<Cidr>,
    /// Declared-from-config destinations whose config value is not a
    /// usable endpoint URL; reported, never fatal on their own. They name
    /// the key, never the value (which may be a secret).
    problems: Vec<String>,
}

impl OutboundPermission {
    /// `values` resolves `config:` entries; without them (as in `inspect`)
    /// those entries reach nothing, but still count as granted for
    /// reporting when their key is in `set_keys`.
    pub(super) fn new(
        declared: &[DeclaredDestination],
        grant: &OutboundGrant,
        set_keys: &BTreeSet<String>,
        values: &BTreeMap<String, String>,
    ) -> Self {
        let mut problems = Vec::new();
        let mut reachable = Vec::new();
        for entry in declared {
            match entry {
                DeclaredDestination::Fixed(d) => reachable.push(d.clone()),
                DeclaredDestination::FromConfig(key) => match values.get(key) {
                    None => {}
                    Some(value) => match destination_of_url(value) {
                        Ok(d) => reachable.push(d),
                        Err(e) => problems.push(format!("config value {key:?}: {e}")),
                    },
                },
            }
        }
        Self {
            declared: declared.to_vec(),
            set_keys: set_keys.clone(),
            reachable,
            granted: grant.destinations.clone(),
            private_networks: grant.allow_private_networks.clone(),
            problems,
        }
    }

    /// Checks the scheme, host and port of a request's final URI.
    pub fn check_request(&self, scheme: Scheme, host: &str, port: u16) -> Result<(), Denial> {
        let declared = self.reachable.iter().any(|d| d.allows(scheme, host, port));
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

    /// Whether a request this permission allows may be HTTPS: some
    /// declared destination and some granted destination are `https`
    /// (not necessarily the same one: an over-approximation, which only
    /// costs a plugin that can never reach its HTTPS grant an early read
    /// of the trust roots). The host starts loading its TLS trust roots
    /// early only when this holds, so that a plugin without HTTPS never
    /// pays for them.
    pub fn may_use_tls(&self) -> bool {
        let https = |list: &[Destination]| list.iter().any(|d| d.scheme == Scheme::Https);
        https(&self.reachable) && https(&self.granted)
    }

    /// The granted destinations.
    pub fn granted(&self) -> &[Destination] {
        &self.granted
    }

    /// Declared `config:` destinations whose value is unusable (key named,
    /// value never shown).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn declared_is_granted(&self, entry: &DeclaredDestination) -> bool {
        match entry {
            DeclaredDestination::Fixed(d) => self.granted.iter().any(|g| d.is_within(g)),
            DeclaredDestination::FromConfig(key) => self.set_keys.contains(key),
        }
    }

    fn granted_is_declared(&self, granted: &Destination) -> bool {
        self.declared.iter().any(|d| match d {
            DeclaredDestination::Fixed(d) => granted.is_within(d),
            // The value may point anywhere; without it the grant may be
            // what the plugin will use.
            DeclaredDestination::FromConfig(key) => self.set_keys.contains(key),
        })
    }

    pub(super) fn differences(&self, out: &mut Differences) {
        for entry in &self.declared {
            if !self.declared_is_granted(entry) {
                out.declared_not_granted.push(match entry {
                    DeclaredDestination::Fixed(d) => format!("outbound {d}"),
                    DeclaredDestination::FromConfig(_) => {
                        format!("outbound {entry} (config key not set)")
                    }
                });
            }
        }
        for g in &self.granted {
            if !self.granted_is_declared(g) {
                out.granted_not_declared.push(format!("outbound {g}"));
            }
        }
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
