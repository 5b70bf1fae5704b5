//! The pure parts of the Vault provider: the secret path from its template
//! and validated inputs, the login and KV v2 answers, and Vault's error
//! shapes as one line each. Unit-tested natively.

use serde::Deserialize;
use std::collections::BTreeMap;
use wcp_guest_sdk::{ProviderError, upstream_text as text};

/// What a path template may be filled with. Each value is checked before it
/// goes in, so no input can add a segment, climb with `..` or start a query.
pub struct PathInputs<'a> {
    pub namespace: Option<&'a str>,
    pub service_account: Option<&'a str>,
    pub registry: &'a str,
}

/// A Kubernetes name (DNS-1123 subdomain): what a namespace or
/// service-account name can be.
fn is_k8s_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && !value.contains("..")
}

/// A registry `host[:port]`, lowercase.
fn is_registry(value: &str) -> bool {
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    is_k8s_name(host)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A mount path (`kubernetes`, `auth-prod/k8s`, `secret`): plain segments only.
pub fn check_mount(key: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "config {key} must be path segments of letters, digits, '-', '_' and '.'"
        ))
    }
}

/// A Vault role name, from config or an annotation.
pub fn check_role(role: &str) -> Result<(), String> {
    let ok = !role.is_empty()
        && role.len() <= 128
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("the Vault role must be 1 to 128 letters, digits, '-', '_' or '.'".into())
    }
}

/// Fills `{namespace}`, `{serviceAccount}` and `{registry}`. The template
/// itself was checked by the host at load (placeholders, no `..`); here
/// each value must be a Kubernetes name or a registry `host[:port]`.
pub fn render_path(template: &str, inputs: &PathInputs<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("config path has an unclosed '{'")?;
        let name = &after[..close];
        let value = match name {
            "namespace" => inputs
                .namespace
                .filter(|v| is_k8s_name(v))
                .ok_or("the path uses {namespace}, and the service-account token carries no valid namespace")?,
            "serviceAccount" => inputs
                .service_account
                .filter(|v| is_k8s_name(v))
                .ok_or("the path uses {serviceAccount}, and the service-account token carries no valid service-account name")?,
            "registry" => {
                if !is_registry(inputs.registry) {
                    return Err("the path uses {registry}, and the image's registry is not a plain lowercase host[:port]".into());
                }
                inputs.registry
            }
            _ => return Err(format!("config path has an unknown placeholder {{{name}}}")),
        };
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let path = out.trim_matches('/').to_string();
    if path.is_empty()
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || path.contains(['?', '#', '%', '\\'])
    {
        return Err("config path does not make a plain secret path".into());
    }
    Ok(path)
}

#[derive(Deserialize)]
struct LoginAnswer {
    auth: Option<LoginAuth>,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
}

/// The client token and its lease (seconds; 0 for none) of a 2xx login.
pub fn login_answer(body: &[u8]) -> Result<(String, u64), String> {
    let answer: LoginAnswer = serde_json::from_slice(body)
        .map_err(|_| "the login answer is not Vault's JSON".to_string())?;
    let auth = answer
        .auth
        .filter(|a| !a.client_token.is_empty())
        .ok_or("the login answer has no auth.client_token")?;
    Ok((auth.client_token, auth.lease_duration))
}

#[derive(Deserialize)]
struct KvAnswer {
    data: Option<KvData>,
}

#[derive(Deserialize)]
struct KvData {
    data: Option<BTreeMap<String, serde_json::Value>>,
}

/// The username and password fields of a 2xx KV v2 read.
pub fn kv_answer(
    body: &[u8],
    username_field: &str,
    password_field: &str,
) -> Result<(String, String), String> {
    let answer: KvAnswer = serde_json::from_slice(body)
        .map_err(|_| "the KV answer is not Vault's JSON".to_string())?;
    let data = answer
        .data
        .and_then(|d| d.data)
        .ok_or("the KV answer has no data.data (is the mount KV version 2?)")?;
    let field = |name: &str| match data.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("the secret has no non-empty string field {name:?}")),
    };
    Ok((field(username_field)?, field(password_field)?))
}

/// Vault's `{"errors":[...]}` as one line; the start of the text otherwise.
fn detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<serde_json::Value>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let messages: Vec<String> = e
            .errors
            .iter()
            .take(4)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        return if messages.is_empty() {
            "(no error text)".into()
        } else {
            text::one_line(&messages.join("; "))
        };
    }
    let line = text::one_line(&String::from_utf8_lossy(&body[..body.len().min(2048)]));
    if line.is_empty() {
        "(empty body)".into()
    } else {
        line
    }
}

/// A non-2xx answer of `what` (the login or the read) as one error: 400
/// and 403 are refusals (an invalid role or JWT, a policy that does not
/// allow the read), 404 on the read is a missing secret, 503 a sealed or
/// standby Vault, anything else the server's failure.
pub fn failure(what: &str, status: u16, body: &[u8]) -> ProviderError {
    let detail = detail(body);
    match status {
        400 | 401 | 403 => {
            ProviderError::Unauthorized(format!("{what} refused (HTTP {status}): {detail}"))
        }
        404 => ProviderError::Config(format!(
            "{what}: no such secret or mount (HTTP 404): {detail}"
        )),
        503 => ProviderError::Upstream(format!(
            "{what}: Vault is unavailable (HTTP 503, sealed or in standby): {detail}"
        )),
        _ => ProviderError::Upstream(format!("{what} failed (HTTP {status}): {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(ns: Option<&'a str>, sa: Option<&'a str>, registry: &'a str) -> PathInputs<'a> {
        PathInputs {
            namespace: ns,
            service_account: sa,
            registry,
        }
    }

    #[test]
    fn templates_take_only_plain_names() {
        let good = inputs(Some("team-a"), Some("puller"), "registry.example.com:5000");
        assert_eq!(
            render_path("registry/{namespace}/{registry}", &good).unwrap(),
            "registry/team-a/registry.example.com:5000"
        );
        assert_eq!(
            render_path("/ci/{serviceAccount}/", &good).unwrap(),
            "ci/puller"
        );
        for bad in [
            inputs(Some("../admin"), None, "r.io"),
            inputs(Some("a/b"), None, "r.io"),
            inputs(Some(".."), None, "r.io"),
            inputs(Some("A"), None, "r.io"),
            inputs(Some("a%2f"), None, "r.io"),
            inputs(None, None, "r.io"),
        ] {
            assert!(render_path("x/{namespace}", &bad).is_err());
        }
        assert!(render_path("x/{registry}", &inputs(None, None, "r.io/evil")).is_err());
        assert!(render_path("x/{registry}", &inputs(None, None, "r.io:x")).is_err());
        assert!(render_path("x/{pod}", &good).is_err());
        assert!(render_path("x/../y", &good).is_err());
        assert!(check_mount("kvMount", "kv/team").is_ok());
        assert!(check_mount("kvMount", "kv/../sys").is_err());
        assert!(check_role("ci.pull-role").is_ok());
        assert!(check_role("a b").is_err());
    }

    #[test]
    fn answers() {
        let login = br#"{"request_id":"r","auth":{"client_token":"hvs.CAES","accessor":"a","policies":["p"],"lease_duration":3600,"renewable":true}}"#;
        assert_eq!(login_answer(login).unwrap(), ("hvs.CAES".into(), 3600));
        assert!(login_answer(br#"{"auth":null}"#).is_err());
        let kv = br#"{"data":{"data":{"username":"robot","password":"pw","note":1},"metadata":{"version":3}}}"#;
        assert_eq!(
            kv_answer(kv, "username", "password").unwrap(),
            ("robot".into(), "pw".into())
        );
        assert!(
            kv_answer(kv, "username", "note")
                .unwrap_err()
                .contains("\"note\"")
        );
        assert!(
            kv_answer(br#"{"data":{"username":"u"}}"#, "username", "password")
                .unwrap_err()
                .contains("version 2")
        );
    }

    #[test]
    fn vault_errors_are_one_line_each() {
        let e = failure(
            "Vault login",
            400,
            br#"{"errors":["invalid role name \"x\""]}"#,
        );
        assert_eq!(
            e,
            ProviderError::Unauthorized(
                "Vault login refused (HTTP 400): invalid role name \"x\"".into()
            )
        );
        let e = failure(
            "KV read",
            403,
            br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
        );
        assert_eq!(
            e,
            ProviderError::Unauthorized(
                "KV read refused (HTTP 403): 1 error occurred: * permission denied".into()
            )
        );
        assert!(
            matches!(failure("Vault login", 503, br#"{"errors":["Vault is sealed"]}"#), ProviderError::Upstream(m) if m.contains("sealed") && m.contains("Vault is sealed"))
        );
        assert!(
            matches!(failure("KV read", 404, br#"{"errors":[]}"#), ProviderError::Config(m) if m.contains("no such secret"))
        );
        assert!(
            matches!(failure("x", 500, b"<html>\n"), ProviderError::Upstream(m) if m.ends_with("<html>"))
        );
    }
}
