//! HTTP Basic credentials as base64 `user:password`: registries' token APIs
//! return them this way (ECR's `authorizationToken` is `AWS:<password>`), and
//! token endpoints expect them in an `Authorization: Basic` header.

use crate::ProviderError;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::fmt;

/// Why a basic-auth value could not be split. The message never contains
/// the value, which is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuthError(&'static str);

impl fmt::Display for BasicAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed basic-auth credential: {}", self.0)
    }
}

impl std::error::Error for BasicAuthError {}

/// Such values come from an upstream service's answer, so a malformed one
/// is the upstream's fault.
impl From<BasicAuthError> for ProviderError {
    fn from(error: BasicAuthError) -> Self {
        ProviderError::Upstream(error.to_string())
    }
}

/// Decodes base64 `user:password` into `(user, password)`, splitting on the
/// first `:` (a password may contain `:`, a user name may not). Padding is
/// optional and surrounding whitespace is ignored.
pub fn split(encoded: &str) -> Result<(String, String), BasicAuthError> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| BasicAuthError("not base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| BasicAuthError("not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or(BasicAuthError("no ':' between user and password"))?;
    Ok((user.to_string(), password.to_string()))
}

/// base64 of `user:password`, the value after `Basic ` in an
/// `Authorization` header.
pub fn encode(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Standard base64, padding optional: not every service pads.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_the_first_colon() {
        // What ECR's GetAuthorizationToken returns, shortened.
        let ecr = encode("AWS", "eyJwYXlsb2FkIjoi:with:colons");
        assert_eq!(
            split(&ecr).unwrap(),
            (
                "AWS".to_string(),
                "eyJwYXlsb2FkIjoi:with:colons".to_string()
            )
        );
        assert_eq!(
            split("dXNlcjo=").unwrap(),
            ("user".to_string(), String::new())
        );
        assert_eq!(split("OnB3").unwrap(), (String::new(), "pw".to_string()));
    }

    #[test]
    fn encodes_like_rfc_7617() {
        assert_eq!(
            encode("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(encode("", ""), "Og==");
        let (user, password) = split(&encode("jöhn", "pä:ss")).unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("jöhn", "pä:ss"));
    }

    #[test]
    fn tolerates_missing_padding_and_whitespace() {
        assert_eq!(
            split(" QWxhZGRpbjpvcGVuIHNlc2FtZQ\n").unwrap(),
            ("Aladdin".to_string(), "open sesame".to_string())
        );
    }

    #[test]
    fn rejects_malformed_values_without_echoing_them() {
        let no_colon = base64::engine::general_purpose::STANDARD.encode("s3cr3t-no-colon");
        let not_utf8 = base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe]);
        for (value, want) in [
            (no_colon.as_str(), "no ':'"),
            ("not base64!", "not base64"),
            (not_utf8.as_str(), "not UTF-8"),
        ] {
            let err = split(value).unwrap_err().to_string();
            assert!(err.contains(want), "{value:?} => {err}");
            assert!(!err.contains("s3cr3t") && !err.contains(value), "{err}");
        }
        assert!(matches!(
            ProviderError::from(split("x").unwrap_err()),
            ProviderError::Upstream(_)
        ));
    }
}
