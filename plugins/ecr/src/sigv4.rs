//! AWS Signature Version 4 for a request without a query string, as the
//! JSON-protocol APIs (ECR) need it: canonical request, string to sign,
//! derived signing key, `Authorization` header.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// An AWS access key, possibly temporary. `Debug` hides the secret and the
/// session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What is signed, besides the credentials.
pub struct Signing<'a> {
    pub method: &'a str,
    /// The absolute path, e.g. `/`; sent as is, so it must need no encoding.
    pub path: &'a str,
    /// Every header to sign, including `host` (the request's authority,
    /// exactly as sent) and `x-amz-date`; any case, values untrimmed.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// `X-Amz-Date`, e.g. `20150830T123600Z`.
    pub amz_date: &'a str,
}

/// The canonical request (step 1 of the algorithm), and the signed-headers
/// list.
pub fn canonical_request(s: &Signing<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), normalize_value(value)))
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = format!("{}\n{}\n\n", s.method, s.path);
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(&hex(&Sha256::digest(s.payload)));
    (canonical, signed_headers)
}

/// The value of the `Authorization` header for `s` signed with `credentials`.
pub fn authorization(s: &Signing<'_>, credentials: &AwsCredentials) -> String {
    let (canonical, signed_headers) = canonical_request(s);
    let date = &s.amz_date[..s.amz_date.len().min(8)];
    let scope = format!("{date}/{}/{}/aws4_request", s.region, s.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        s.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = format!("AWS4{}", credentials.secret_access_key);
    let k_date = hmac(key.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, s.region.as_bytes());
    let k_service = hmac(&k_region, s.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

/// Trims and collapses runs of spaces, as the canonical form requires.
fn normalize_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's published SigV4 test suite.
    fn suite_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn suite(method: &str) -> (String, String) {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let signing = Signing {
            method,
            path: "/",
            headers: &headers,
            payload: b"",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        };
        (
            canonical_request(&signing).0,
            authorization(&signing, &suite_credentials()),
        )
    }

    #[test]
    fn get_vanilla() {
        let (canonical, authorization) = suite("GET");
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla() {
        let (_, authorization) = suite("POST");
        assert!(
            authorization.ends_with(
                "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            ),
            "{authorization}"
        );
    }

    #[test]
    fn headers_are_sorted_lowercased_and_trimmed() {
        let headers = [
            (
                "X-Amz-Target",
                "  AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken ",
            ),
            ("host", "api.ecr.us-west-2.amazonaws.com"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Date", "20260101T000000Z"),
            ("X-Amz-Security-Token", "a  b"),
        ];
        let signing = Signing {
            method: "POST",
            path: "/",
            headers: &headers,
            payload: b"{}",
            region: "us-west-2",
            service: "ecr",
            amz_date: "20260101T000000Z",
        };
        let (canonical, signed) = canonical_request(&signing);
        assert_eq!(
            signed,
            "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        );
        assert!(
            canonical.contains(
                "x-amz-security-token:a b\nx-amz-target:AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken\n\n"
            ),
            "{canonical}"
        );
        // sha256("{}")
        assert!(
            canonical.ends_with("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        );
        let credentials = AwsCredentials {
            session_token: Some("session".into()),
            ..suite_credentials()
        };
        let header = authorization(&signing, &credentials);
        assert!(header.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-west-2/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        ));
        let debug = format!("{credentials:?}");
        assert!(
            !debug.contains("wJalr") && !debug.contains("\"session\""),
            "{debug}"
        );
    }
}
