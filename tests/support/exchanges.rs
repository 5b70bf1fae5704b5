//! Loopback fakes (TLS, test-time CA) of the token endpoints the
//! token-exchange plugin's presets talk to: JFrog Access OIDC, Cloudsmith
//! OpenID, Quay robot federation, Yandex Cloud IAM and a plain RFC 8693
//! server. Each checks the method, path, content type, every body field
//! and the authorization header, refuses an expired service-account token
//! in the vendor's own error shape, and answers a success in its real
//! shape. What a fake did not like goes to `problems`.

use super::server::{Reply, Seen, TestCa, TestServer};
use base64::Engine;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

pub const JFROG_PROVIDER: &str = "k8s-prod";
pub const JFROG_USER: &str = "k8s-puller";
pub const CLOUDSMITH_SLUG: &str = "ci-puller";
pub const QUAY_ROBOT: &str = "acme+puller";
pub const YANDEX_SA: &str = "ajelabcde12345fghij";
pub const RFC8693_AUDIENCE: &str = "registry.example.com";
/// Lifetimes of what each fake issues, in seconds.
pub const LIFETIME: u64 = 3600;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An unsigned JWT with these claims (the registries' tokens are JWTs; the
/// plugin reads their `exp` only).
pub fn jwt(claims: serde_json::Value) -> String {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    )
}

/// The `exp` of a JWT, if it has one.
pub fn exp_of(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

pub fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Full(
        status,
        vec![("content-type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

/// `application/x-www-form-urlencoded`; `None` on bad encoding.
pub fn form(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let decode = |s: &str| -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    };
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Jfrog,
    Cloudsmith,
    Quay,
    Yandex,
    Rfc8693,
}

impl Vendor {
    pub const ALL: [Vendor; 5] = [
        Vendor::Jfrog,
        Vendor::Cloudsmith,
        Vendor::Quay,
        Vendor::Yandex,
        Vendor::Rfc8693,
    ];

    pub fn preset(self) -> &'static str {
        match self {
            Vendor::Jfrog => "jfrog",
            Vendor::Cloudsmith => "cloudsmith",
            Vendor::Quay => "quay",
            Vendor::Yandex => "yandex",
            Vendor::Rfc8693 => "rfc8693",
        }
    }

    /// The endpoint path the operator configures.
    pub fn path(self) -> &'static str {
        match self {
            Vendor::Jfrog => "/access/api/v1/oidc/token",
            Vendor::Cloudsmith => "/openid/acme/",
            Vendor::Quay => "/oauth2/federation/robot/token",
            Vendor::Yandex => "/oauth/token",
            Vendor::Rfc8693 => "/token",
        }
    }

    /// The preset's few values, as host-config flow-map entries.
    pub fn config(self) -> String {
        match self {
            Vendor::Jfrog => format!("providerName: {JFROG_PROVIDER}"),
            Vendor::Cloudsmith => format!("serviceSlug: {CLOUDSMITH_SLUG}"),
            Vendor::Quay => "authUsername: \"$annotation:quay.io/federated-robot-account\"".into(),
            Vendor::Yandex => format!("audience: {YANDEX_SA}"),
            Vendor::Rfc8693 => format!("audience: {RFC8693_AUDIENCE}"),
        }
    }

    /// The username the kubelet should get.
    pub fn username(self) -> &'static str {
        match self {
            Vendor::Jfrog => JFROG_USER,
            Vendor::Cloudsmith => "token",
            Vendor::Quay => QUAY_ROBOT,
            Vendor::Yandex => "iam",
            Vendor::Rfc8693 => "oauth2",
        }
    }

    /// What the vendor's refusal of an expired token says, as the plugin
    /// puts it in its line.
    pub fn refusal(self) -> &'static str {
        match self {
            Vendor::Jfrog => "Token validation failed: token is expired",
            Vendor::Cloudsmith => "Token not accepted.",
            Vendor::Quay => "Failed to validate subject token: token is expired",
            Vendor::Yandex => "invalid_grant: Subject token expired",
            Vendor::Rfc8693 => "invalid_grant: subject token is expired",
        }
    }
}

/// One vendor's token endpoint.
pub struct FakeExchange {
    pub vendor: Vendor,
    pub server: TestServer,
    pub issued: Arc<Mutex<Vec<String>>>,
    pub problems: Arc<Mutex<Vec<String>>>,
}

impl FakeExchange {
    pub fn start(ca: &TestCa, vendor: Vendor) -> Self {
        let issued = Arc::new(Mutex::new(Vec::<String>::new()));
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let counter = AtomicUsize::new(0);
        let (minted, report) = (issued.clone(), problems.clone());
        let server = TestServer::https(ca, move |seen| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            match check(vendor, seen) {
                Err(wrong) => {
                    report.lock().unwrap().push(format!("{vendor:?}: {wrong}"));
                    json(400, serde_json::json!({"error": "invalid_request"}))
                }
                Ok(subject) if exp_of(&subject).is_none_or(|exp| exp <= now()) => refuse(vendor),
                Ok(_) => {
                    let reply = answer(vendor, n);
                    minted.lock().unwrap().push(reply.0);
                    reply.1
                }
            }
        });
        Self {
            vendor,
            server,
            issued,
            problems,
        }
    }

    pub fn endpoint(&self) -> String {
        self.server.url(self.vendor.path())
    }

    pub fn calls(&self) -> usize {
        self.server.seen().len()
    }

    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    pub fn assert_no_problems(&self) {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "the fake saw: {problems:#?}");
    }
}

/// Checks one request in every detail; the subject token it carried.
fn check(vendor: Vendor, seen: &Seen) -> Result<String, String> {
    let method = if vendor == Vendor::Quay {
        "GET"
    } else {
        "POST"
    };
    if seen.method != method || seen.path != vendor.path() {
        return Err(format!("{} {}", seen.method, seen.path));
    }
    let content_type = header(seen, "content-type");
    let json_body = || -> Result<serde_json::Map<String, serde_json::Value>, String> {
        if content_type != Some("application/json") {
            return Err(format!("content-type {content_type:?}"));
        }
        serde_json::from_slice(&seen.body).map_err(|_| "body is not a JSON object".to_string())
    };
    let form_body = || -> Result<BTreeMap<String, String>, String> {
        if content_type != Some("application/x-www-form-urlencoded") {
            return Err(format!("content-type {content_type:?}"));
        }
        form(&seen.body).ok_or_else(|| "body is not form-encoded".to_string())
    };
    if vendor != Vendor::Quay && header(seen, "authorization").is_some() {
        return Err("an authorization header".into());
    }
    let str_map = |m: serde_json::Map<String, serde_json::Value>| -> Result<BTreeMap<String, String>, String> {
        m.into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                _ => Err(format!("field {k} is not a string")),
            })
            .collect()
    };
    let (fields, expected): (BTreeMap<String, String>, Vec<(&str, &str)>) = match vendor {
        Vendor::Jfrog => (
            str_map(json_body()?)?,
            vec![
                ("grant_type", GRANT),
                ("subject_token_type", ID_TOKEN),
                ("provider_name", JFROG_PROVIDER),
                ("provider_type", "Generic OpenID Connect"),
            ],
        ),
        Vendor::Cloudsmith => (
            str_map(json_body()?)?,
            vec![("service_slug", CLOUDSMITH_SLUG)],
        ),
        Vendor::Yandex => (
            form_body()?,
            vec![
                ("grant_type", GRANT),
                ("requested_token_type", ACCESS_TOKEN),
                ("audience", YANDEX_SA),
                ("subject_token_type", ID_TOKEN),
            ],
        ),
        Vendor::Rfc8693 => (
            form_body()?,
            vec![
                ("grant_type", GRANT),
                ("subject_token_type", JWT),
                ("audience", RFC8693_AUDIENCE),
            ],
        ),
        Vendor::Quay => {
            if !seen.body.is_empty() {
                return Err("a body on the GET".into());
            }
            let basic = header(seen, "authorization")
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("no Basic authorization")?;
            let (robot, token) = basic.split_once(':').ok_or("Basic without ':'")?;
            if robot != QUAY_ROBOT {
                return Err(format!("robot {robot:?}"));
            }
            return Ok(token.to_string());
        }
    };
    let token_field = match vendor {
        Vendor::Cloudsmith => "oidc_token",
        _ => "subject_token",
    };
    let mut want: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let subject = fields.get(token_field).cloned().ok_or("no subject token")?;
    want.insert(token_field.into(), subject.clone());
    if fields != want {
        let keys: Vec<&String> = fields.keys().collect();
        return Err(format!("fields {keys:?} (or their values) differ"));
    }
    Ok(subject)
}

/// The vendor's refusal of an expired token, in its own shape.
fn refuse(vendor: Vendor) -> Reply {
    match vendor {
        Vendor::Jfrog => json(
            401,
            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "Token validation failed: token is expired"}]}),
        ),
        Vendor::Cloudsmith => json(401, serde_json::json!({"detail": "Token not accepted."})),
        Vendor::Quay => json(
            400,
            serde_json::json!({"message": "Failed to validate subject token: token is expired"}),
        ),
        Vendor::Yandex => json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Subject token expired"}),
        ),
        Vendor::Rfc8693 => json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "subject token is expired"}),
        ),
    }
}

/// The `n`th credential and the success reply that carries it.
fn answer(vendor: Vendor, n: usize) -> (String, Reply) {
    let exp = now() + LIFETIME;
    match vendor {
        Vendor::Jfrog => {
            let token = format!("eyJ2ZXIiOiIyIn0.jfrog-access-{n}");
            let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": LIFETIME, "issued_token_type": ACCESS_TOKEN, "scope": "applied-permissions/user", "username": JFROG_USER});
            (token, json(200, body))
        }
        Vendor::Cloudsmith => {
            let token = jwt(serde_json::json!({"sub": CLOUDSMITH_SLUG, "exp": exp, "n": n}));
            (
                token.clone(),
                json(201, serde_json::json!({"token": token})),
            )
        }
        Vendor::Quay => {
            let token = jwt(serde_json::json!({"sub": QUAY_ROBOT, "exp": exp, "n": n}));
            (
                token.clone(),
                json(200, serde_json::json!({"token": token})),
            )
        }
        Vendor::Yandex => {
            let token = format!("t1.9euelZqYyc{n}");
            let body = serde_json::json!({"access_token": token, "issued_token_type": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": LIFETIME});
            (token, json(200, body))
        }
        Vendor::Rfc8693 => {
            let token = format!("rfc8693-access-{n}");
            let body = serde_json::json!({"access_token": token, "issued_token_type": ACCESS_TOKEN, "token_type": "N_A", "expires_in": LIFETIME});
            (token, json(200, body))
        }
    }
}

/// The failure contract at `WCP_LOG=debug`: non-zero exit, nothing on
/// stdout, and among the log lines exactly one error line, the last,
/// containing `needle`; returns it.
pub fn debug_failure_line(exec: &super::kubelet::Exec, needle: &str) -> String {
    assert!(!exec.success && !exec.killed, "{exec:#?}");
    assert!(exec.stdout.is_empty(), "{exec:#?}");
    let lines = exec.stderr_lines();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("wasm-credential-provider: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert_eq!(Some(*errors[0]), lines.last().copied(), "{lines:#?}");
    assert!(
        errors[0].contains(needle),
        "{needle:?} not in {}",
        errors[0]
    );
    errors[0].to_string()
}
