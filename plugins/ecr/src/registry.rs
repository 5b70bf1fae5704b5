//! Which ECR registry an image's registry host names, and the API that
//! serves its authorization tokens.

/// The DNS suffixes of ECR registries, one per AWS partition (and the
/// dual-stack ones), as ecr-credential-provider recognizes them. Longer
/// suffixes first, so that `amazonaws.com.cn` is not taken for
/// `amazonaws.com`.
const SUFFIXES: &[&str] = &[
    "on.amazonwebservices.com.cn",
    "amazonaws.com.cn",
    "amazonaws.com",
    "amazonaws.eu",
    "on.aws",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// Hosts of ECR Public.
const PUBLIC_HOSTS: &[&str] = &["public.ecr.aws", "ecr-public.aws.com"];

/// An ECR registry and how to get a token for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// The region the token is for and the API is signed for.
    pub region: String,
    /// The SigV4 service name: `ecr` or `ecr-public`.
    pub service: &'static str,
    /// The `X-Amz-Target` of `GetAuthorizationToken`.
    pub target: &'static str,
    /// The default API endpoint, `https://host/`.
    pub ecr_endpoint: String,
    /// The DNS suffix of the partition's STS endpoints
    /// (`sts.<region>.<suffix>`).
    pub sts_suffix: &'static str,
    /// The 12-digit account of a private registry; `None` for ECR Public.
    pub account: Option<String>,
}

impl Registry {
    /// The default regional STS endpoint for `region`.
    pub fn sts_endpoint(&self, region: &str) -> String {
        format!("https://sts.{region}.{}/", self.sts_suffix)
    }
}

/// Parses a registry `host[:port]`; `None` if it is not an ECR registry
/// (a port never is).
pub fn parse(host: &str) -> Option<Registry> {
    let host = host.to_ascii_lowercase();
    if PUBLIC_HOSTS.contains(&host.as_str()) {
        return Some(Registry {
            region: "us-east-1".into(),
            service: "ecr-public",
            target: "SpencerFrontendService.GetAuthorizationToken",
            ecr_endpoint: "https://api.ecr-public.us-east-1.amazonaws.com/".into(),
            sts_suffix: "amazonaws.com",
            account: None,
        });
    }
    let (rest, suffix) = SUFFIXES.iter().find_map(|suffix| {
        let rest = host.strip_suffix(suffix)?.strip_suffix('.')?;
        Some((rest, *suffix))
    })?;
    let labels: Vec<&str> = rest.split('.').collect();
    // `<account>.dkr.ecr[-fips].<region>` or `<account>.dkr-ecr[-fips].<region>`
    let (account, service_label, region) = match labels.as_slice() {
        [account, "dkr", ecr, region] => (*account, *ecr, *region),
        [account, dkr_ecr, region] => (*account, dkr_ecr.strip_prefix("dkr-")?, *region),
        _ => return None,
    };
    let fips = match service_label {
        "ecr" => false,
        "ecr-fips" => true,
        _ => return None,
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let valid_region = region
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_region {
        return None;
    }
    let ecr = if fips { "ecr-fips" } else { "ecr" };
    let (api_host, sts_suffix) = match suffix {
        // Dual-stack registries; their APIs live under `api.aws`.
        "on.aws" => (format!("{ecr}.{region}.api.aws"), "amazonaws.com"),
        "on.amazonwebservices.com.cn" => (
            format!("{ecr}.{region}.api.amazonwebservices.com.cn"),
            "amazonaws.com.cn",
        ),
        _ if fips => (format!("ecr-fips.{region}.{suffix}"), suffix),
        _ => (format!("api.ecr.{region}.{suffix}"), suffix),
    };
    Some(Registry {
        region: region.to_string(),
        service: "ecr",
        target: "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ecr_endpoint: format!("https://{api_host}/"),
        sts_suffix,
        account: Some(account.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_registries_of_every_partition() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-west-2.amazonaws.com",
                "us-west-2",
                "https://api.ecr.us-west-2.amazonaws.com/",
                "https://sts.us-west-2.amazonaws.com/",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                "https://ecr-fips.us-gov-west-1.amazonaws.com/",
                "https://sts.us-gov-west-1.amazonaws.com/",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                "https://api.ecr.cn-north-1.amazonaws.com.cn/",
                "https://sts.cn-north-1.amazonaws.com.cn/",
            ),
            (
                "123456789012.dkr-ecr.us-east-1.on.aws",
                "us-east-1",
                "https://ecr.us-east-1.api.aws/",
                "https://sts.us-east-1.amazonaws.com/",
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-1.on.aws",
                "us-east-1",
                "https://ecr-fips.us-east-1.api.aws/",
                "https://sts.us-east-1.amazonaws.com/",
            ),
            (
                "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                "cn-northwest-1",
                "https://ecr.cn-northwest-1.api.amazonwebservices.com.cn/",
                "https://sts.cn-northwest-1.amazonaws.com.cn/",
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "eusc-de-east-1",
                "https://api.ecr.eusc-de-east-1.amazonaws.eu/",
                "https://sts.eusc-de-east-1.amazonaws.eu/",
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "us-isob-east-1",
                "https://api.ecr.us-isob-east-1.sc2s.sgov.gov/",
                "https://sts.us-isob-east-1.sc2s.sgov.gov/",
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "us-iso-east-1",
                "https://api.ecr.us-iso-east-1.c2s.ic.gov/",
                "https://sts.us-iso-east-1.c2s.ic.gov/",
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "eu-isoe-west-1",
                "https://api.ecr.eu-isoe-west-1.cloud.adc-e.uk/",
                "https://sts.eu-isoe-west-1.cloud.adc-e.uk/",
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                "us-isof-south-1",
                "https://api.ecr.us-isof-south-1.csp.hci.ic.gov/",
                "https://sts.us-isof-south-1.csp.hci.ic.gov/",
            ),
            (
                "123456789012.DKR.ECR.US-WEST-2.AMAZONAWS.COM",
                "us-west-2",
                "https://api.ecr.us-west-2.amazonaws.com/",
                "https://sts.us-west-2.amazonaws.com/",
            ),
        ];
        for (host, region, ecr, sts) in cases {
            let registry = parse(host).unwrap_or_else(|| panic!("{host} not recognized"));
            assert_eq!(registry.region, region, "{host}");
            assert_eq!(registry.ecr_endpoint, ecr, "{host}");
            assert_eq!(registry.sts_endpoint(&registry.region), sts, "{host}");
            assert_eq!(registry.service, "ecr");
            assert_eq!(
                registry.target,
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
            );
            assert_eq!(registry.account.as_deref(), Some("123456789012"));
        }
    }

    #[test]
    fn public_ecr() {
        for host in ["public.ecr.aws", "ecr-public.aws.com"] {
            let registry = parse(host).unwrap();
            assert_eq!(registry.service, "ecr-public");
            assert_eq!(registry.region, "us-east-1");
            assert_eq!(
                registry.target,
                "SpencerFrontendService.GetAuthorizationToken"
            );
            assert_eq!(
                registry.ecr_endpoint,
                "https://api.ecr-public.us-east-1.amazonaws.com/"
            );
            assert_eq!(registry.account, None);
        }
    }

    #[test]
    fn other_hosts_are_not_ecr() {
        for host in [
            "",
            "docker.io",
            "registry.example.com",
            "public.ecr.aws:443",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com:443",
            "12345678901.dkr.ecr.us-west-2.amazonaws.com",
            "1234567890123.dkr.ecr.us-west-2.amazonaws.com",
            "12345678901a.dkr.ecr.us-west-2.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.-bad.amazonaws.com",
            "123456789012.dkr.ecs.us-west-2.amazonaws.com",
            "123456789012.dkr.ecr.us-west-2.amazonaws.org",
            "123456789012.dkr.ecr.us-west-2.evilamazonaws.com",
            "x.123456789012.dkr.ecr.us-west-2.amazonaws.com",
            "123456789012.dkr.ecr.us-west-2.example.com",
            "123456789012.dkr.ecr-fips2.us-west-2.amazonaws.com",
            "123456789012.dkr-ecr.us-west-2",
            "sub.public.ecr.aws",
        ] {
            assert_eq!(parse(host), None, "{host}");
        }
    }
}
