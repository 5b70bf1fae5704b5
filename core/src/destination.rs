//! Outbound destinations: the grammar plugins use to declare where they
//! connect and operators use to grant it, and the checks made on every
//! request URL and every resolved address.
//!
//! Grammar: `scheme://host[:port]`.
//! * scheme is required: `https`, or `http` only when written explicitly;
//! * host is an exact DNS name, or `*.` + name, which matches one or more
//!   labels in front of the name but never the bare name;
//! * the port is exact and defaults from the scheme (443, 80);
//! * IP literals are allowed only in operator grants, never in a plugin's
//!   declaration; no paths, queries, user info, ranges or other globs.

use anyhow::{Result, bail};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Who wrote a destination; only operators may name IP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Declared by the plugin author in the component's metadata.
    Declared,
    /// Granted by the operator in the host config.
    Granted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host part of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An exact DNS name, lower-cased.
    Exact(String),
    /// `*.suffix`: one or more labels in front of `suffix` (lower-cased).
    Wildcard(String),
    /// An IP literal (operator grants only).
    Ip(IpAddr),
}

/// A parsed destination; keeps the original text for audit output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: Scheme,
    pub host: HostPattern,
    pub port: u16,
    original: String,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Destination {
    /// Parses one entry. Errors name the entry and, where there is one, the
    /// corrected form to write instead.
    pub fn parse(entry: &str, origin: Origin) -> Result<Self> {
        let text = entry.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            bail!(
                "destination {entry:?} has no scheme; write \"https://{}\"",
                text.trim_end_matches('/')
            );
        };
        let scheme = match scheme {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => bail!(
                "destination {entry:?} has scheme {other:?}; only \"https\" (or an explicit \"http\") is allowed, e.g. \"https://{rest}\""
            ),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if !tail.is_empty() {
            let fixed = format!("{}://{authority}", scheme.as_str());
            if tail == "/" {
                bail!("destination {entry:?} has a trailing '/'; write {fixed:?}");
            }
            bail!(
                "destination {entry:?} has a path or query; destinations are scheme://host[:port] only, write {fixed:?}"
            );
        }
        if authority.contains('@') {
            bail!(
                "destination {entry:?} contains user info; write \"{}://{}\"",
                scheme.as_str(),
                authority.rsplit('@').next().unwrap_or_default()
            );
        }
        let (host, port) = split_authority(authority)
            .map_err(|why| anyhow::anyhow!("destination {entry:?}: {why}"))?;
        let port = port.unwrap_or(scheme.default_port());
        let host = parse_host(host, origin)
            .map_err(|why| anyhow::anyhow!("destination {entry:?}: {why}"))?;
        Ok(Self {
            scheme,
            host,
            port,
            original: entry.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` is covered by this entry.
    /// `host` is what the request URL names (a DNS name or an IP literal).
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if self.scheme != scheme || self.port != port {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match (&self.host, host.parse::<IpAddr>()) {
            (HostPattern::Ip(ip), Ok(requested)) => canonical(*ip) == canonical(requested),
            (HostPattern::Ip(_), Err(_)) | (_, Ok(_)) => false,
            (HostPattern::Exact(name), Err(_)) => normalize_name(host) == *name,
            (HostPattern::Wildcard(suffix), Err(_)) => {
                let host = normalize_name(host);
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// Whether every request this entry allows, `other` allows too: the
    /// same scheme and port, and a host pattern that `other` matches
    /// (exactly, by its wildcard, or as the same address). This is how
    /// `inspect` tells whether a declared entry is granted, so that it
    /// agrees with [`Destination::allows`] instead of comparing texts.
    pub fn is_within(&self, other: &Destination) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match (&self.host, &other.host) {
            (HostPattern::Ip(ip), _) => other.names_ip(*ip),
            (HostPattern::Exact(name), _) => other.allows(self.scheme, name, self.port),
            (HostPattern::Wildcard(inner), HostPattern::Wildcard(outer)) => {
                inner == outer || other.allows(self.scheme, inner, self.port)
            }
            (HostPattern::Wildcard(_), _) => false,
        }
    }

    /// Whether this entry names exactly `ip`, which makes that address
    /// reachable even when it is loopback or private.
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        matches!(self.host, HostPattern::Ip(granted) if canonical(granted) == canonical(ip))
    }
}

fn normalize_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    if authority.is_empty() {
        return Err("has no host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("has an unclosed '['".into());
        };
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return Err(format!("has junk {after:?} after the IPv6 address")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "port {p:?} is not a single port number from 1 to 65535 (ranges are not supported; list each port)"
                ));
            }
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

fn parse_host(host: &str, origin: Origin) -> Result<HostPattern, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match origin {
            Origin::Granted => Ok(HostPattern::Ip(ip)),
            Origin::Declared => Err(format!(
                "IP address {host} may only appear in the operator's grant, not in a plugin's declaration; declare a DNS name"
            )),
        };
    }
    if host.contains('/') || host.parse::<Ipv4Addr>().is_ok() {
        return Err(
            "CIDR ranges are not destinations; list them under allowPrivateNetworks".into(),
        );
    }
    if host == "*" {
        return Err(
            "\"*\" alone would allow every host; name the hosts, e.g. \"*.example.com\"".into(),
        );
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, host),
    };
    if name.contains('*') {
        return Err(format!(
            "only a leading \"*.\" wildcard is allowed, e.g. \"*.{}\"",
            name.trim_start_matches(['*', '.']).replace('*', "x")
        ));
    }
    let name = normalize_name(name);
    validate_dns_name(&name)?;
    if wildcard && !name.contains('.') {
        return Err(format!(
            "wildcard \"*.{name}\" is too broad; name at least a registrable domain such as \"*.example.com\""
        ));
    }
    Ok(if wildcard {
        HostPattern::Wildcard(name)
    } else {
        HostPattern::Exact(name)
    })
}

fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("has an empty or over-long host name".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("host label {label:?} is not a valid DNS label"));
        }
    }
    Ok(())
}

/// An IPv4-mapped or -compatible IPv6 address is the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// An operator-granted address range (`10.0.0.0/8`, `fd00::/8`, or one IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
    original: String,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                anyhow::anyhow!("{text:?} is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")")
            })?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                anyhow::anyhow!("{text:?} has an invalid prefix length (0 to {max})")
            })?,
        };
        Ok(Self {
            network,
            prefix,
            original: text.to_string(),
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why an address is not a normal public destination, if it is not.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (carrier-grade NAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else if ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
    {
        Some("reserved for documentation, benchmarking or protocol assignments")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private; includes the EC2 metadata address fd00:ec2::254)")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local (deprecated private)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0 {
        Some("IPv4-compatible (deprecated)")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        Some("NAT64")
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        Some("documentation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_within_agrees_with_allows() {
        let d = |text: &str| Destination::parse(text, Origin::Granted).unwrap();
        let within = [
            ("https://a.io", "https://A.io:443"),
            ("https://x.a.io", "https://*.a.io"),
            ("https://*.x.a.io", "https://*.a.io"),
            ("https://*.a.io", "https://*.A.io"),
            ("http://10.0.0.1:80", "http://10.0.0.1"),
            ("http://[::1]:9000", "http://[0:0:0:0:0:0:0:1]:9000"),
        ];
        for (inner, outer) in within {
            assert!(d(inner).is_within(&d(outer)), "{inner} within {outer}");
        }
        let not_within = [
            ("https://a.io", "https://*.a.io"),
            ("https://*.a.io", "https://x.a.io"),
            ("https://*.a.io", "https://*.x.a.io"),
            ("https://a.io", "http://a.io:443"),
            ("https://a.io", "https://a.io:8443"),
            ("https://10.0.0.1", "https://10.0.0.2"),
        ];
        for (inner, outer) in not_within {
            assert!(!d(inner).is_within(&d(outer)), "{inner} not within {outer}");
        }
    }

    fn granted(text: &str) -> Destination {
        Destination::parse(text, Origin::Granted).unwrap()
    }

    #[test]
    fn parse_table() {
        let ok = [
            (
                "https://sts.amazonaws.com",
                Scheme::Https,
                HostPattern::Exact("sts.amazonaws.com".into()),
                443,
            ),
            (
                "http://metadata.google.internal",
                Scheme::Http,
                HostPattern::Exact("metadata.google.internal".into()),
                80,
            ),
            (
                "https://*.amazonaws.com:8443",
                Scheme::Https,
                HostPattern::Wildcard("amazonaws.com".into()),
                8443,
            ),
            (
                "https://API.Example.COM.",
                Scheme::Https,
                HostPattern::Exact("api.example.com".into()),
                443,
            ),
        ];
        for (text, scheme, host, port) in ok {
            let d = Destination::parse(text, Origin::Declared).unwrap();
            assert_eq!((d.scheme, d.host, d.port), (scheme, host, port), "{text}");
            assert_eq!(
                Destination::parse(text, Origin::Declared)
                    .unwrap()
                    .to_string(),
                text
            );
        }
        assert_eq!(
            granted("https://127.0.0.1:8443").host,
            HostPattern::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(granted("https://[::1]:8443").port, 8443);
    }

    #[test]
    fn parse_errors_show_the_fix() {
        let cases = [
            (
                "sts.amazonaws.com",
                Origin::Declared,
                "write \"https://sts.amazonaws.com\"",
            ),
            ("ftp://a.com", Origin::Declared, "only \"https\""),
            (
                "https://a.com/v2/",
                Origin::Declared,
                "write \"https://a.com\"",
            ),
            ("https://a.com/", Origin::Declared, "trailing '/'"),
            ("https://a.com?x=1", Origin::Declared, "path or query"),
            ("https://*", Origin::Declared, "every host"),
            ("https://*foo.com", Origin::Declared, "leading \"*.\""),
            ("https://foo.*.com", Origin::Declared, "leading \"*.\""),
            ("https://*.com", Origin::Declared, "too broad"),
            (
                "https://a.com:1-100",
                Origin::Declared,
                "ranges are not supported",
            ),
            ("https://a.com:0", Origin::Declared, "single port"),
            ("https://a.com:99999", Origin::Declared, "single port"),
            (
                "https://127.0.0.1",
                Origin::Declared,
                "only appear in the operator's grant",
            ),
            (
                "https://[::1]:443",
                Origin::Declared,
                "only appear in the operator's grant",
            ),
            ("https://10.0.0.0/8", Origin::Granted, "path or query"),
            ("https://user@a.com", Origin::Declared, "user info"),
            ("https://", Origin::Declared, "no host"),
            ("https://a..com", Origin::Declared, "not a valid DNS label"),
            ("https://a b.com", Origin::Declared, "not a valid DNS label"),
        ];
        for (text, origin, want) in cases {
            let err = Destination::parse(text, origin).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains(text), "error must name the entry: {err}");
        }
    }

    #[test]
    fn allows_table() {
        use Scheme::*;
        let cases = [
            (
                "https://sts.amazonaws.com",
                Https,
                "sts.amazonaws.com",
                443,
                true,
            ),
            (
                "https://sts.amazonaws.com",
                Https,
                "STS.amazonaws.com",
                443,
                true,
            ),
            (
                "https://sts.amazonaws.com",
                Http,
                "sts.amazonaws.com",
                443,
                false,
            ),
            (
                "https://sts.amazonaws.com",
                Https,
                "sts.amazonaws.com",
                8443,
                false,
            ),
            (
                "https://sts.amazonaws.com",
                Https,
                "evil.sts.amazonaws.com",
                443,
                false,
            ),
            (
                "https://sts.amazonaws.com",
                Https,
                "sts.amazonaws.com.evil.io",
                443,
                false,
            ),
            (
                "https://*.amazonaws.com",
                Https,
                "sts.amazonaws.com",
                443,
                true,
            ),
            (
                "https://*.amazonaws.com",
                Https,
                "api.ecr.us-east-1.amazonaws.com",
                443,
                true,
            ),
            (
                "https://*.amazonaws.com",
                Https,
                "amazonaws.com",
                443,
                false,
            ),
            (
                "https://*.amazonaws.com",
                Https,
                "evilamazonaws.com",
                443,
                false,
            ),
            ("https://*.amazonaws.com", Https, "127.0.0.1", 443, false),
            ("http://127.0.0.1:8080", Http, "127.0.0.1", 8080, true),
            ("http://127.0.0.1:8080", Http, "localhost", 8080, false),
            ("https://[::1]:8443", Https, "[::1]", 8443, true),
            (
                "https://127.0.0.1:8443",
                Https,
                "[::ffff:127.0.0.1]",
                8443,
                true,
            ),
        ];
        for (entry, scheme, host, port, want) in cases {
            assert_eq!(
                granted(entry).allows(scheme, host, port),
                want,
                "{entry} vs {host}:{port}"
            );
        }
    }

    #[test]
    fn special_ranges() {
        for (ip, special) in [
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("169.254.169.254", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("255.255.255.255", true),
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("fd00:ec2::254", true),
            ("fec0::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::127.0.0.1", true),
            ("8.8.8.8", false),
            ("52.94.1.1", false),
            ("2600:1f18::1", false),
            ("::ffff:8.8.8.8", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(special_range(ip).is_some(), special, "{ip}");
        }
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd00:ec2::254".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
