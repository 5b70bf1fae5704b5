//! One host-wide outbound proxy policy from the standard environment
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, also lower-case), as nodes
//! behind a corporate proxy set them for the kubelet. The destination
//! check always applies to the target, never to the proxy.

use anyhow::{Context, Result, bail};

/// Who resolves a target's name when a request goes through the proxy.
///
/// The address policy (no loopback, link-local, private or other special
/// addresses unless granted) is a promise about where a request lands, so
/// by default the host resolves the name itself, checks every address
/// exactly as on the direct path, and asks the proxy to `CONNECT` to the
/// checked address, keeping the name for SNI and `Host`. A name the host
/// cannot resolve is refused. Some nodes can resolve public names only
/// through their proxy; there an operator may choose [`Proxy`], which
/// tunnels by name: the host still refuses a name it *can* resolve to a
/// forbidden address, but where the name lands is then up to the proxy's
/// own DNS and egress rules.
///
/// [`Proxy`]: ProxyResolution::Proxy
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyResolution {
    /// `host` (the default): resolve and check here, tunnel to the address.
    #[default]
    Host,
    /// `proxy`: tunnel by name and trust the proxy's resolution.
    Proxy,
}

impl ProxyResolution {
    /// Parses the host config value (`host` or `proxy`).
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "host" => Ok(Self::Host),
            "proxy" => Ok(Self::Proxy),
            _ => bail!("must be \"host\" (the default) or \"proxy\""),
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Proxy => "proxy",
        }
    }
}

/// Where to send a request for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    https: Option<(String, u16)>,
    http: Option<(String, u16)>,
    no_proxy: Vec<String>,
}

impl ProxyPolicy {
    /// Reads the policy through `env` (upper-case names win).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| {
            env(name)
                .or_else(|| env(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        let parse = |name: &str| -> Result<Option<(String, u16)>> {
            var(name)
                .map(|v| parse_proxy_url(&v).with_context(|| name.to_string()))
                .transpose()
        };
        Ok(Self {
            https: parse("HTTPS_PROXY")?,
            http: parse("HTTP_PROXY")?,
            no_proxy: var("NO_PROXY")
                .map(|v| {
                    v.split(',')
                        .map(|e| e.trim().to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The proxy (host, port) to tunnel through for `host`, if any.
    pub fn proxy_for(&self, https: bool, host: &str) -> Option<&(String, u16)> {
        let proxy = if https {
            self.https.as_ref()
        } else {
            self.http.as_ref()
        }?;
        let host = host
            .trim_matches(['[', ']'])
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry.split(':').next().unwrap_or(entry);
            entry == "*"
                || host == entry.trim_start_matches('.')
                || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))
        });
        (!bypass).then_some(proxy)
    }
}

fn parse_proxy_url(value: &str) -> Result<(String, u16)> {
    let rest = match value.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            bail!("proxy scheme {scheme:?} is not supported; use an http:// proxy")
        }
        None => value,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse::<u16>().context("invalid proxy port")?,
        ),
        _ => (authority.to_string(), 80),
    };
    if host.is_empty() {
        bail!("proxy URL {value:?} has no host");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(vars: &[(&str, &str)]) -> ProxyPolicy {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyPolicy::from_env(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap()
    }

    #[test]
    fn selects_and_bypasses() {
        let p = policy(&[
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("no_proxy", "localhost,.internal.corp, 10.0.0.5,svc:8443"),
        ]);
        assert_eq!(
            p.proxy_for(true, "api.ecr.us-east-1.amazonaws.com"),
            Some(&("proxy.corp".to_string(), 3128))
        );
        assert_eq!(
            p.proxy_for(false, "api.example.com"),
            None,
            "no HTTP_PROXY set"
        );
        for bypassed in [
            "localhost",
            "registry.internal.corp",
            "internal.corp",
            "10.0.0.5",
            "svc",
            "a.svc",
        ] {
            assert_eq!(p.proxy_for(true, bypassed), None, "{bypassed}");
        }
        assert!(p.proxy_for(true, "notinternal.corp").is_some());
        let all = policy(&[("HTTPS_PROXY", "proxy:8080"), ("NO_PROXY", "*")]);
        assert_eq!(all.proxy_for(true, "x.io"), None);
        let lower = policy(&[("https_proxy", "http://user:pw@p.corp:9/")]);
        assert_eq!(
            lower.proxy_for(true, "x.io"),
            Some(&("p.corp".to_string(), 9))
        );
    }

    #[test]
    fn resolution_setting() {
        assert_eq!(ProxyResolution::default(), ProxyResolution::Host);
        assert_eq!(
            ProxyResolution::parse("proxy").unwrap(),
            ProxyResolution::Proxy
        );
        assert_eq!(ProxyResolution::parse("host").unwrap().as_str(), "host");
        assert!(ProxyResolution::parse("Proxy").is_err());
    }

    #[test]
    fn rejects_unsupported_proxies() {
        let vars = [("HTTPS_PROXY".to_string(), "socks5://p:1080".to_string())];
        let err =
            ProxyPolicy::from_env(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
                .unwrap_err();
        assert!(format!("{err:#}").contains("not supported"));
    }
}
