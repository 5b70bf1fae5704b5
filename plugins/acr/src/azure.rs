//! The pure parts of the Azure protocol: which registries are ACR and in
//! which cloud, the Entra ID (AAD) client-assertion request and its
//! answers (AADSTS codes), the managed-identity answer of IMDS (numbers as
//! strings), the login server's `/v2/` challenge, and the
//! `/oauth2/exchange` request and answer.

use crate::text::one_line;
use serde::Deserialize;
use wcp_guest_sdk::ProviderError;

/// The AAD resource (and, with `/.default`, the scope) of ACR, the same in
/// every cloud.
pub const RESOURCE: &str = "https://containerregistry.azure.net";
pub const SCOPE: &str = "https://containerregistry.azure.net/.default";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The username of every ACR refresh token.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
pub const IMDS_API_VERSION: &str = "2018-02-01";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Public,
    China,
    UsGovernment,
}

impl Cloud {
    /// The Entra ID authority host of the cloud.
    pub fn authority(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::China => "https://login.chinacloudapi.cn",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
        }
    }

    /// Config `cloud`: the names `azure.json` uses.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "azurepubliccloud" | "public" => Some(Cloud::Public),
            "azurechinacloud" | "china" => Some(Cloud::China),
            "azureusgovernmentcloud" | "azureusgovernment" | "usgovernment" => {
                Some(Cloud::UsGovernment)
            }
            _ => None,
        }
    }
}

/// The cloud of an ACR login server `<name>.azurecr.io|cn|us` (also the
/// regional `<name>.<region>.data.azurecr.io` and DNL-scoped
/// `<name>-<hash>.azurecr.io` forms). No port, lowercase DNS labels.
pub fn acr_cloud(host: &str) -> Option<Cloud> {
    let (name, cloud) = [
        (".azurecr.io", Cloud::Public),
        (".azurecr.cn", Cloud::China),
        (".azurecr.us", Cloud::UsGovernment),
    ]
    .into_iter()
    .find_map(|(suffix, cloud)| host.strip_suffix(suffix).map(|name| (name, cloud)))?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    (!name.is_empty() && name.split('.').all(label_ok)).then_some(cloud)
}

/// A registry host as written in config: lowercase DNS labels and an
/// optional port.
fn valid_registry_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Config `registryMirrors`: `source=loginServer` pairs separated by
/// commas, where the login server is an ACR registry. Errors name the
/// entry's position, never its text.
pub fn parse_mirrors(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let bad = |why: &str| format!("config registryMirrors, entry {}: {why}", i + 1);
            let (source, target) = entry
                .split_once('=')
                .ok_or_else(|| bad("expected source=loginServer"))?;
            let (source, target) = (source.trim(), target.trim());
            if !valid_registry_host(source) {
                return Err(bad("the source is not a registry host[:port]"));
            }
            if acr_cloud(target).is_none() {
                return Err(bad(
                    "the login server is not an ACR registry (<name>.azurecr.io, .cn or .us)",
                ));
            }
            Ok((source.to_string(), target.to_string()))
        })
        .collect()
}

/// Config `customDomains`: registry hosts separated by commas.
pub fn parse_hosts(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, host)| {
            if valid_registry_host(host) {
                Ok(host.to_string())
            } else {
                Err(format!(
                    "config customDomains, entry {}: not a registry host[:port]",
                    i + 1
                ))
            }
        })
        .collect()
}

/// A tenant as it may go into a URL path: a GUID or a domain name.
pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !tenant.starts_with('.')
}

/// An application (client) id: a GUID.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The form of the client-assertion token request, in the order MSAL
/// sends these fields.
pub fn aad_form<'a>(client_id: &'a str, assertion: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("client_id", client_id),
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("scope", SCOPE),
    ]
}

/// The query of the IMDS managed-identity token request. `identity`
/// selects a user-assigned identity: an ARM resource id
/// (`/subscriptions/...`) goes in `msi_res_id`, anything else is a client id.
pub fn imds_query(identity: Option<&str>) -> String {
    let mut pairs = vec![("api-version", IMDS_API_VERSION), ("resource", RESOURCE)];
    match identity {
        Some(id) if id.starts_with('/') => pairs.push(("msi_res_id", id)),
        Some(id) => pairs.push(("client_id", id)),
        None => {}
    }
    wcp_guest_sdk::http::form_urlencode(&pairs)
}

/// What one upstream answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<T> {
    Done(T),
    /// Throttled or a server error: worth another attempt.
    Retry(String),
    Fail(ProviderError),
}

/// An Entra ID access token.
#[derive(Debug, PartialEq, Eq)]
pub struct AadToken {
    pub access_token: String,
    /// Seconds, when the answer says.
    pub expires_in: Option<u64>,
}

/// A number IMDS sends as a string (`"86399"`) and Entra ID as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flexible {
    Number(u64),
    Text(String),
}

fn flexible(v: Option<Flexible>) -> Option<u64> {
    match v? {
        Flexible::Number(n) => Some(n),
        Flexible::Text(t) => t.trim().parse().ok(),
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_in: Option<Flexible>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
    error_codes: Vec<u64>,
}

/// Who asked, for the messages of a refused client assertion. The claims
/// are read from the service-account token unverified, to tell the operator
/// which federated credential is missing.
#[derive(Debug, Default)]
pub struct AssertionContext {
    pub client_id: String,
    pub tenant: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

fn token_body(status: u16, body: &[u8], what: &str) -> Answer<AadToken> {
    let parsed: Option<TokenBody> = serde_json::from_slice(body).ok();
    match parsed {
        Some(TokenBody {
            access_token: Some(token),
            expires_in,
        }) if !token.is_empty() => Answer::Done(AadToken {
            access_token: token,
            expires_in: flexible(expires_in),
        }),
        _ => Answer::Fail(ProviderError::Upstream(format!(
            "{what} answered HTTP {status} without an access_token"
        ))),
    }
}

/// Interprets the answer of `POST <authority>/<tenant>/oauth2/v2.0/token`.
pub fn aad_answer(status: u16, body: &[u8], ctx: &AssertionContext) -> Answer<AadToken> {
    let what = format!(
        "Entra ID token request (client {}, tenant {})",
        ctx.client_id, ctx.tenant
    );
    if (200..300).contains(&status) {
        return token_body(status, body, &what);
    }
    let error: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    let description = error
        .error_description
        .as_deref()
        .map(first_line)
        .unwrap_or_default();
    let code = error
        .error_codes
        .first()
        .copied()
        .or_else(|| aadsts_code(&description));
    let head = match (&error.error, code) {
        (Some(e), Some(c)) => format!("{what} failed: HTTP {status} {}: AADSTS{c}", one_line(e)),
        (Some(e), None) => format!("{what} failed: HTTP {status} {}", one_line(e)),
        (None, _) => format!("{what} failed: HTTP {status}"),
    };
    let said = if description.is_empty() {
        match error.error {
            Some(_) => String::new(),
            None => format!(": {}", one_line(&String::from_utf8_lossy(body))),
        }
    } else {
        format!(" ({})", one_line(&description))
    };
    if status == 429 || status >= 500 {
        return Answer::Retry(format!("{head}{said}"));
    }
    let sub = ctx.subject.as_deref().unwrap_or("(none)");
    let iss = ctx.issuer.as_deref().unwrap_or("(none)");
    let (config, hint) = match code {
        Some(70021 | 700211 | 700212 | 700213) => (
            false,
            format!(
                "no federated identity credential of application {} matches the service-account token (issuer {iss}, subject {sub}, audience must be api://AzureADTokenExchange): add one for exactly this issuer and subject",
                ctx.client_id
            ),
        ),
        Some(700016) => (
            true,
            format!(
                "application {} does not exist in tenant {}: check the client id and tenant annotations or config",
                ctx.client_id, ctx.tenant
            ),
        ),
        Some(90002 | 900023) => (
            true,
            format!("tenant {} does not exist: check the tenant id", ctx.tenant),
        ),
        Some(700024) => (
            false,
            "the service-account token is expired or not yet valid: check the node's clock".into(),
        ),
        Some(50027 | 700027 | 5002727) => (
            false,
            format!(
                "the service-account token's signature could not be verified: the issuer {iss} must publish its keys (OIDC discovery) where Entra ID can fetch them"
            ),
        ),
        Some(70011) => (true, "the scope is not valid for this application".into()),
        _ => (false, String::new()),
    };
    let message = if hint.is_empty() {
        format!("{head}{said}")
    } else {
        format!("{head}: {hint}{said}")
    };
    Answer::Fail(if config {
        ProviderError::Config(message)
    } else {
        ProviderError::Unauthorized(message)
    })
}

/// The part of an Entra ID error description before its trace lines.
fn first_line(description: &str) -> String {
    description
        .split(['\r', '\n'])
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `AADSTS<digits>` at the start of `text`.
fn aadsts_code(text: &str) -> Option<u64> {
    let rest = text.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Interprets the answer of IMDS's managed-identity token endpoint.
pub fn imds_answer(status: u16, body: &[u8]) -> Answer<AadToken> {
    let what = "the Azure instance metadata service (managed identity)";
    if (200..300).contains(&status) {
        return token_body(status, body, what);
    }
    let error: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    let detail = match (&error.error, &error.error_description) {
        (Some(e), Some(d)) => format!("{}: {}", one_line(e), one_line(d)),
        (Some(e), None) => one_line(e),
        _ => one_line(&String::from_utf8_lossy(body)),
    };
    let message = format!("{what} failed: HTTP {status}: {detail}");
    if status == 429 || status >= 500 {
        Answer::Retry(message)
    } else if status == 400 && detail.contains("Identity not found") {
        Answer::Fail(ProviderError::Config(format!(
            "{message} (no managed identity is assigned to the node, or config nodeIdentityId names one it does not have)"
        )))
    } else {
        Answer::Fail(ProviderError::Upstream(message))
    }
}

/// The `Bearer` challenge of a registry's `GET /v2/`.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: String,
}

/// Parses `Bearer realm="...",service="..."[,scope=...]` (RFC 7235
/// auth-params: quoted strings with backslash escapes or plain tokens).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end?..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        match name.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        service: service?,
    })
}

/// `scheme://authority` of an absolute http(s) URL, lowercased, without
/// user info.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The service of a challenge as it may go into a form: a host[:port].
pub fn valid_service(service: &str) -> bool {
    !service.is_empty()
        && service.len() <= 261
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
}

/// How the exchange asks: `access_token` (the grant ACR documents today)
/// or the older `access_token_refresh_token` that cloud-provider-azure
/// still sends, with the AAD token also as `refresh_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    AccessToken,
    AccessTokenRefreshToken,
}

impl Grant {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("access_token") => Ok(Grant::AccessToken),
            Some("access_token_refresh_token") => Ok(Grant::AccessTokenRefreshToken),
            Some(_) => Err(
                "config exchangeGrantType must be access_token or access_token_refresh_token"
                    .into(),
            ),
        }
    }
}

/// The form of `POST /oauth2/exchange`.
pub fn exchange_form<'a>(
    grant: Grant,
    service: &'a str,
    tenant: Option<&'a str>,
    aad_token: &'a str,
) -> Vec<(&'static str, &'a str)> {
    let mut form = vec![
        (
            "grant_type",
            match grant {
                Grant::AccessToken => "access_token",
                Grant::AccessTokenRefreshToken => "access_token_refresh_token",
            },
        ),
        ("service", service),
    ];
    if let Some(tenant) = tenant {
        form.push(("tenant", tenant));
    }
    form.push(("access_token", aad_token));
    if grant == Grant::AccessTokenRefreshToken {
        form.push(("refresh_token", aad_token));
    }
    form
}

#[derive(Deserialize)]
struct ExchangeBody {
    refresh_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AcrErrors {
    errors: Vec<AcrError>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AcrError {
    code: String,
    message: String,
}

/// Interprets the answer of `POST /oauth2/exchange`: the ACR refresh token.
pub fn exchange_answer(status: u16, body: &[u8], login_server: &str) -> Answer<String> {
    let what = format!("the ACR token exchange at {login_server}");
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<ExchangeBody>(body) {
            Ok(ExchangeBody {
                refresh_token: Some(t),
            }) if !t.is_empty() => Answer::Done(t),
            _ => Answer::Fail(ProviderError::Upstream(format!(
                "{what} answered HTTP {status} without a refresh_token"
            ))),
        };
    }
    let parsed: AcrErrors = serde_json::from_slice(body).unwrap_or_default();
    let detail = if let Some(e) = parsed.errors.first() {
        format!("{}: {}", one_line(&e.code), one_line(&e.message))
    } else if let Some(e) = parsed.error {
        match parsed.error_description {
            Some(d) => format!("{}: {}", one_line(&e), one_line(&d)),
            None => one_line(&e),
        }
    } else {
        one_line(&String::from_utf8_lossy(body))
    };
    let message = format!("{what} failed: HTTP {status}: {detail}");
    match status {
        429 | 500.. => Answer::Retry(message),
        401 | 403 => Answer::Fail(ProviderError::Unauthorized(format!(
            "{message} (the identity needs a pull role such as AcrPull on the registry, and the registry must allow Entra ID authentication)"
        ))),
        _ => Answer::Fail(ProviderError::Upstream(message)),
    }
}

#[derive(Deserialize)]
struct TenantClaim {
    tid: Option<String>,
}

/// The tenant (`tid`) of an Entra ID access token, unverified: sent to the
/// exchange, which verifies the token itself.
pub fn tenant_of(access_token: &str) -> Option<String> {
    wcp_guest_sdk::jwt::payload::<TenantClaim>(access_token)
        .ok()?
        .tid
        .filter(|t| valid_tenant(t))
}

/// The expiry (`exp`) of an ACR refresh token.
pub fn refresh_token_expiry(refresh_token: &str) -> Option<u64> {
    wcp_guest_sdk::jwt::claims(refresh_token).ok()?.exp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        use base64::Engine as _;
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn acr_hosts_and_clouds() {
        assert_eq!(acr_cloud("myreg.azurecr.io"), Some(Cloud::Public));
        assert_eq!(acr_cloud("myreg.azurecr.cn"), Some(Cloud::China));
        assert_eq!(acr_cloud("myreg.azurecr.us"), Some(Cloud::UsGovernment));
        assert_eq!(acr_cloud("myreg-abc123.azurecr.io"), Some(Cloud::Public));
        assert_eq!(
            acr_cloud("myreg.eastus.data.azurecr.io"),
            Some(Cloud::Public)
        );
        for bad in [
            "azurecr.io",
            ".azurecr.io",
            "myreg.azurecr.io:443",
            "myreg.azurecr.io.evil.com",
            "MyReg.azurecr.io",
            "my_reg.azurecr.io",
            "-a.azurecr.io",
            "myreg.azurecr.de",
            "evil.com/x.azurecr.io",
        ] {
            assert_eq!(acr_cloud(bad), None, "{bad}");
        }
        assert_eq!(Cloud::China.authority(), "https://login.chinacloudapi.cn");
        assert_eq!(
            Cloud::parse("AzureUSGovernmentCloud"),
            Some(Cloud::UsGovernment)
        );
        assert_eq!(Cloud::parse("AzurePublicCloud"), Some(Cloud::Public));
        assert_eq!(Cloud::parse("mars"), None);
    }

    #[test]
    fn mirrors_and_custom_domains() {
        assert_eq!(
            parse_mirrors(" mcr.microsoft.com=myreg.azurecr.io, mirror.local:5000=b.azurecr.cn ,")
                .unwrap(),
            [
                (
                    "mcr.microsoft.com".to_string(),
                    "myreg.azurecr.io".to_string()
                ),
                ("mirror.local:5000".to_string(), "b.azurecr.cn".to_string())
            ]
        );
        let e = parse_mirrors("a.io=evil.com").unwrap_err();
        assert!(e.contains("entry 1") && !e.contains("evil"), "{e}");
        assert!(
            parse_mirrors("a.io")
                .unwrap_err()
                .contains("source=loginServer")
        );
        assert!(parse_mirrors("a b=x.azurecr.io").is_err());
        assert_eq!(
            parse_hosts("registry.contoso.com").unwrap(),
            ["registry.contoso.com"]
        );
        assert!(parse_hosts("ok.io,Bad/").unwrap_err().contains("entry 2"));
        assert!(parse_mirrors("").unwrap().is_empty());
    }

    #[test]
    fn ids_that_go_into_paths() {
        assert!(valid_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(valid_tenant("contoso.onmicrosoft.com"));
        for bad in ["", "a/b", "..", ".x", "a?b", "a b", "a%2f"] {
            assert!(!valid_tenant(bad), "{bad}");
        }
        assert!(valid_client_id("00000000-1111-2222-3333-444444444444"));
        assert!(!valid_client_id("x&y=z"));
    }

    #[test]
    fn client_assertion_form() {
        let form = wcp_guest_sdk::http::form_urlencode(&aad_form("cid", "eyJ.a.b"));
        assert_eq!(
            form,
            "client_id=cid&grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJ.a.b&scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default"
        );
    }

    #[test]
    fn imds_query_and_string_numbers() {
        assert_eq!(
            imds_query(None),
            "api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net"
        );
        assert!(imds_query(Some("c1d2")).ends_with("&client_id=c1d2"));
        assert!(
            imds_query(Some("/subscriptions/s/rg/x"))
                .contains("&msi_res_id=%2Fsubscriptions%2Fs%2Frg%2Fx")
        );
        let body = br#"{"access_token":"eyJimds","client_id":"c","expires_in":"86399","expires_on":"1767268800","ext_expires_in":"86399","not_before":"1767182100","resource":"https://containerregistry.azure.net","token_type":"Bearer"}"#;
        assert_eq!(
            imds_answer(200, body),
            Answer::Done(AadToken {
                access_token: "eyJimds".into(),
                expires_in: Some(86399)
            })
        );
        // Entra ID sends numbers.
        let body = br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJaad"}"#;
        assert_eq!(
            aad_answer(200, body, &AssertionContext::default()),
            Answer::Done(AadToken {
                access_token: "eyJaad".into(),
                expires_in: Some(3599)
            })
        );
        assert!(matches!(
            imds_answer(200, br#"{"access_token":""}"#),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("without an access_token")
        ));
    }

    #[test]
    fn imds_errors() {
        assert!(matches!(
            imds_answer(400, br#"{"error":"invalid_request","error_description":"Identity not found"}"#),
            Answer::Fail(ProviderError::Config(m)) if m.contains("Identity not found") && m.contains("nodeIdentityId")
        ));
        assert!(matches!(
            imds_answer(400, br#"{"error":"bad_request_102","error_description":"Required metadata header not specified"}"#),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("bad_request_102")
        ));
        assert!(
            matches!(imds_answer(429, b"Too many requests"), Answer::Retry(m) if m.contains("HTTP 429"))
        );
        assert!(matches!(imds_answer(503, b""), Answer::Retry(_)));
    }

    fn ctx() -> AssertionContext {
        AssertionContext {
            client_id: "cid-1".into(),
            tenant: "tid-1".into(),
            issuer: Some("https://oidc.example/x".into()),
            subject: Some("system:serviceaccount:team:puller".into()),
        }
    }

    #[test]
    fn aadsts_codes_become_actionable_lines() {
        let body = br#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://oidc.example/x'. Assertion Subject: 'system:serviceaccount:team:puller'. Assertion Audience: 'api://AzureADTokenExchange'.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-02 00:00:00Z","error_codes":[70021],"timestamp":"2026-12-02 00:00:00Z","trace_id":"1","correlation_id":"2","error_uri":"https://login.microsoftonline.com/error?code=70021"}"#;
        let Answer::Fail(ProviderError::Unauthorized(m)) = aad_answer(400, body, &ctx()) else {
            panic!("not unauthorized");
        };
        assert!(m.contains("HTTP 400 invalid_request: AADSTS70021"), "{m}");
        assert!(
            m.contains("subject system:serviceaccount:team:puller"),
            "{m}"
        );
        assert!(
            m.contains("no federated identity credential of application cid-1"),
            "{m}"
        );
        assert!(
            !m.contains("Trace ID") && !m.contains('\r') && !m.contains('\n'),
            "{m}"
        );

        // The code from the description when error_codes is missing.
        let body = br#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject."}"#;
        assert!(matches!(
            aad_answer(401, body, &ctx()),
            Answer::Fail(ProviderError::Unauthorized(m)) if m.contains("AADSTS700213") && m.contains("add one")
        ));
        for (code, error, config) in [
            (700016, "unauthorized_client", true),
            (90002, "invalid_tenant", true),
            (700024, "invalid_client", false),
            (50027, "invalid_request", false),
            (12345, "invalid_request", false),
        ] {
            let body = format!(
                r#"{{"error":"{error}","error_description":"AADSTS{code}: something.\r\nTrace ID: t","error_codes":[{code}]}}"#
            );
            match aad_answer(400, body.as_bytes(), &ctx()) {
                Answer::Fail(ProviderError::Config(m)) if config => {
                    assert!(m.contains(&format!("AADSTS{code}")), "{m}")
                }
                Answer::Fail(ProviderError::Unauthorized(m)) if !config => {
                    assert!(
                        m.contains(&format!("AADSTS{code}")) && m.contains("(AADSTS"),
                        "{m}"
                    )
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            aad_answer(429, br#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: loop"}"#, &ctx()),
            Answer::Retry(m) if m.contains("HTTP 429")
        ));
        assert!(matches!(
            aad_answer(502, b"<html>\nbad gateway</html>", &ctx()),
            Answer::Retry(m) if m.contains("HTTP 502: <html> bad gateway</html>")
        ));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io""#
            ),
            Some(Challenge {
                realm: "https://myreg.azurecr.io/oauth2/token".into(),
                service: "myreg.azurecr.io".into()
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer service=a.io, realm="https://a.io/t\"x", scope="repository:x:pull""#
            ),
            Some(Challenge {
                realm: "https://a.io/t\"x".into(),
                service: "a.io".into()
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_challenge(r#"Bearer realm="https://a.io/t""#), None);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(
            origin("https://MyReg.azurecr.io:443/oauth2/token?x"),
            Some("https://myreg.azurecr.io:443".into())
        );
        assert_eq!(origin("https://u@h/"), None);
        assert_eq!(origin("ftp://h/"), None);
        assert!(valid_service("myreg.azurecr.io") && valid_service("127.0.0.1:8443"));
        assert!(!valid_service("a&b") && !valid_service(""));
    }

    #[test]
    fn exchange_forms() {
        let enc = |f: Vec<(&str, &str)>| wcp_guest_sdk::http::form_urlencode(&f);
        assert_eq!(
            enc(exchange_form(
                Grant::AccessToken,
                "r.azurecr.io",
                Some("t1"),
                "aad"
            )),
            "grant_type=access_token&service=r.azurecr.io&tenant=t1&access_token=aad"
        );
        assert_eq!(
            enc(exchange_form(
                Grant::AccessTokenRefreshToken,
                "r.azurecr.io",
                None,
                "aad"
            )),
            "grant_type=access_token_refresh_token&service=r.azurecr.io&access_token=aad&refresh_token=aad"
        );
        assert_eq!(Grant::parse(None), Ok(Grant::AccessToken));
        assert_eq!(
            Grant::parse(Some("access_token_refresh_token")),
            Ok(Grant::AccessTokenRefreshToken)
        );
        assert!(Grant::parse(Some("password")).is_err());
    }

    #[test]
    fn exchange_answers() {
        assert_eq!(
            exchange_answer(200, br#"{"refresh_token":"eyJr"}"#, "r"),
            Answer::Done("eyJr".into())
        );
        assert!(matches!(
            exchange_answer(200, b"{}", "r"),
            Answer::Fail(ProviderError::Upstream(_))
        ));
        assert!(matches!(
            exchange_answer(401, br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required\n, visit https://aka.ms/acr/authorization"}]}"#, "r.azurecr.io"),
            Answer::Fail(ProviderError::Unauthorized(m)) if m.contains("HTTP 401: UNAUTHORIZED: authentication required , visit") && m.contains("AcrPull")
        ));
        assert!(matches!(exchange_answer(429, b"{}", "r"), Answer::Retry(_)));
        assert!(
            matches!(exchange_answer(503, b"busy", "r"), Answer::Retry(m) if m.contains("busy"))
        );
        assert!(matches!(
            exchange_answer(400, br#"{"error":"invalid_request","error_description":"bad tenant"}"#, "r"),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("invalid_request: bad tenant")
        ));
    }

    #[test]
    fn claims_of_issued_tokens() {
        assert_eq!(
            tenant_of(&jwt(r#"{"tid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}"#)).as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(tenant_of(&jwt(r#"{"tid":"a/b"}"#)), None);
        assert_eq!(tenant_of("opaque"), None);
        assert_eq!(
            refresh_token_expiry(&jwt(r#"{"exp":1767240000,"jti":"x"}"#)),
            Some(1_767_240_000)
        );
        assert_eq!(refresh_token_expiry("opaque"), None);
    }
}
