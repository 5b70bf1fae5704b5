//! A server-side SigV4 check for the fake AWS endpoints, written
//! independently of the plugin's signer: it parses the `Authorization`
//! header a request arrived with, rebuilds the canonical request from what
//! was received (method, path, the listed headers, the body) and recomputes
//! the signature with the secret the test knows.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::support::server::Seen;

/// What a verified request was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks `seen`'s signature; `secret_for` maps an access key id to its
/// secret. Returns what was signed, or why the check failed.
pub fn verify(
    seen: &Seen,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<Verified, String> {
    let authorization = header(seen, "authorization").ok_or("no Authorization header")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization is not AWS4-HMAC-SHA256")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in fields.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or("malformed Authorization")?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            other => return Err(format!("unexpected Authorization field {other}")),
        }
    }
    let (credential, signed_headers, signature) = (
        credential.ok_or("no Credential")?,
        signed_headers.ok_or("no SignedHeaders")?,
        signature.ok_or("no Signature")?,
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("malformed Credential {credential}"));
    };
    let amz_date = header(seen, "x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) || amz_date.len() != 16 {
        return Err(format!(
            "X-Amz-Date {amz_date} does not match the scope date {date}"
        ));
    }
    let secret = secret_for(access_key_id).ok_or(format!("unknown access key {access_key_id}"))?;

    let names: Vec<&str> = signed_headers.split(';').collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != names {
        return Err("SignedHeaders are not sorted".into());
    }
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = seen
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} was not received"));
        }
        canonical_headers += &format!("{name}:{}\n", values.join(","));
    }
    let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    let canonical_request = format!(
        "{}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        seen.method,
        sha256_hex(&seen.body)
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date);
    for part in [*region, *service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, &string_to_sign));
    if expected != signature {
        return Err(format!(
            "signature mismatch: expected {expected}, got {signature}; canonical request:\n{canonical_request}"
        ));
    }
    Ok(Verified {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: names.iter().map(|n| n.to_string()).collect(),
    })
}

#[test]
fn verifies_the_published_get_vanilla_vector() {
    let seen = Seen {
        method: "GET".into(),
        path: "/".into(),
        headers: vec![
            ("host".into(), "example.amazonaws.com".into()),
            ("x-amz-date".into(), "20150830T123600Z".into()),
            (
                "authorization".into(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".into(),
            ),
        ],
        body: Vec::new(),
    };
    let secret = |id: &str| {
        (id == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string())
    };
    let verified = verify(&seen, secret).unwrap();
    assert_eq!(verified.service, "service");
    let mut tampered = seen.clone();
    tampered.method = "POST".into();
    assert!(
        verify(&tampered, secret)
            .unwrap_err()
            .contains("signature mismatch")
    );
}
