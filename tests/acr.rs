//! The Azure Container Registry plugin end to end through the host, against
//! loopback fakes of Entra ID, IMDS and an ACR login server (TLS with a
//! test CA, IMDS over HTTP as the real one) that check every form field,
//! query parameter and header and answer in Azure's real shapes.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, Seen, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const REGISTRY: &str = "myreg.azurecr.io";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "6a2b3c4d-0000-4000-8000-00000000abcd";
const NODE_CLIENT_ID: &str = "9f8e7d6c-1111-4222-8333-444455556666";
const CLIENT_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";
const TENANT_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPE: &str = "https://containerregistry.azure.net/.default";
const RESOURCE: &str = "https://containerregistry.azure.net";
/// ACR refresh tokens live about 3 hours.
const REFRESH_LIFETIME: u64 = 3 * 3600;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A JWT-shaped token (not signed) with `claims`.
fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
        b64url(&claims.to_string()),
        b64url("fake signature bytes")
    )
}

fn sa_token(name: &str) -> String {
    support::tokens::sa_token("api://AzureADTokenExchange", "team", name, "uid-1", "pod-1")
}

/// The Entra ID access token the fakes issue to `who` (`pod` or `node`).
fn aad_token(who: &str) -> String {
    jwt(serde_json::json!({
        "aud": RESOURCE, "iss": format!("https://sts.windows.net/{TENANT}/"),
        "tid": TENANT, "oid": who, "exp": now() + 3600, "sub": format!("aad-{who}")
    }))
}

fn refresh_token(service: &str, exp: u64) -> String {
    jwt(serde_json::json!({
        "jti": "9f2d", "sub": "aad-principal", "nbf": now(), "exp": exp, "iat": now(),
        "iss": "Azure Container Registry", "aud": service, "version": "1.0",
        "rid": "r", "grant_type": "refresh_token", "tenant": TENANT
    }))
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes `application/x-www-form-urlencoded` (a body or a query), in order.
fn form_decode(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Full(
        status,
        vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body.to_string().into_bytes(),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AadMode {
    Ok,
    /// No federated identity credential matches (AADSTS70021).
    NoFederatedCredential,
}

/// The loopback Azure.
struct FakeAzure {
    ca: TestCa,
    aad: TestServer,
    imds: TestServer,
    acr: TestServer,
    /// Tokens the fakes issued; none may appear in stderr or the audit log.
    issued: Arc<Mutex<Vec<String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl FakeAzure {
    /// `token`: the client assertion Entra ID expects; `throttles`: how
    /// many Entra ID and exchange calls first answer 429 / 503.
    fn start(token: &str, mode: AadMode, throttles: usize) -> Self {
        let ca = TestCa::new();
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let issued = Arc::new(Mutex::new(Vec::<String>::new()));

        let (report, expected, minted) = (problems.clone(), token.to_string(), issued.clone());
        let aad_calls = Arc::new(AtomicUsize::new(0));
        let aad = TestServer::https(&ca, move |seen| {
            let mut wrong = Vec::new();
            let path = format!("/{TENANT}/oauth2/v2.0/token");
            if seen.method != "POST" || seen.path != path {
                wrong.push(format!("AAD: {} {}", seen.method, seen.path));
            }
            if header(seen, "content-type") != Some("application/x-www-form-urlencoded") {
                wrong.push(format!(
                    "AAD: content-type {:?}",
                    header(seen, "content-type")
                ));
            }
            let fields = form_decode(std::str::from_utf8(&seen.body).unwrap_or(""));
            let want = pairs(&[
                ("client_id", CLIENT_ID),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", expected.as_str()),
                ("scope", SCOPE),
            ]);
            if fields != want {
                // Never echo the token, even into a test failure.
                wrong.push(format!(
                    "AAD: form fields {:?}",
                    fields.iter().map(|(k, _)| k).collect::<Vec<_>>()
                ));
            }
            if !wrong.is_empty() {
                report.lock().unwrap().extend(wrong);
                return json(
                    400,
                    serde_json::json!({"error": "invalid_request", "error_description": "AADSTS900144: The request body must contain the following parameter: 'client_assertion'.", "error_codes": [900144]}),
                );
            }
            if aad_calls.fetch_add(1, Ordering::SeqCst) < throttles {
                return json(
                    429,
                    serde_json::json!({"error": "temporarily_unavailable", "error_description": "AADSTS50196: The server terminated an operation because it encountered a client request loop.\r\nTrace ID: 0\r\nCorrelation ID: 0", "error_codes": [50196]}),
                );
            }
            if mode == AadMode::NoFederatedCredential {
                return json(
                    400,
                    serde_json::json!({
                        "error": "invalid_request",
                        "error_description": "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://kubernetes.default.svc.cluster.local'. Assertion Subject: 'system:serviceaccount:team:puller'. Assertion Audience: 'api://AzureADTokenExchange'. https://docs.microsoft.com/azure/active-directory/develop/workload-identity-federation\r\nTrace ID: 6f0d7a5e-0a2b-4c3d-9e8f-1a2b3c4d5e00\r\nCorrelation ID: 1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809\r\nTimestamp: 2026-12-02 01:00:00Z",
                        "error_codes": [70021], "timestamp": "2026-12-02 01:00:00Z",
                        "trace_id": "6f0d7a5e-0a2b-4c3d-9e8f-1a2b3c4d5e00",
                        "correlation_id": "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809",
                        "error_uri": "https://login.microsoftonline.com/error?code=70021"
                    }),
                );
            }
            let token = aad_token("pod");
            minted.lock().unwrap().push(token.clone());
            json(
                200,
                serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
            )
        });

        let (report, minted) = (problems.clone(), issued.clone());
        let imds = TestServer::http(move |seen| {
            // The real IMDS refuses a request without `Metadata: true`, and
            // one that carries X-Forwarded-For.
            if header(seen, "metadata") != Some("true") || header(seen, "x-forwarded-for").is_some()
            {
                report
                    .lock()
                    .unwrap()
                    .push("IMDS: no Metadata: true header".into());
                return json(
                    400,
                    serde_json::json!({"error": "bad_request_102", "error_description": "Required metadata header not specified"}),
                );
            }
            let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
            let want = pairs(&[
                ("api-version", "2018-02-01"),
                ("resource", RESOURCE),
                ("client_id", NODE_CLIENT_ID),
            ]);
            if seen.method != "GET"
                || path != "/metadata/identity/oauth2/token"
                || form_decode(query) != want
            {
                report
                    .lock()
                    .unwrap()
                    .push(format!("IMDS: {} {}", seen.method, seen.path));
                return json(
                    400,
                    serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
                );
            }
            let token = aad_token("node");
            minted.lock().unwrap().push(token.clone());
            let exp = now() + 86399;
            json(
                200,
                serde_json::json!({
                    "access_token": token, "client_id": NODE_CLIENT_ID, "expires_in": "86399",
                    "expires_on": exp.to_string(), "ext_expires_in": "86399",
                    "not_before": now().to_string(), "resource": RESOURCE, "token_type": "Bearer"
                }),
            )
        });

        let own_url = Arc::new(OnceLock::<String>::new());
        let (report, minted, url) = (problems.clone(), issued.clone(), own_url.clone());
        let exchanges = Arc::new(AtomicUsize::new(0));
        let acr = TestServer::https(&ca, move |seen| {
            let base = url.get().cloned().unwrap_or_default();
            match (seen.method.as_str(), seen.path.as_str()) {
                ("GET", "/v2/") => {
                    if header(seen, "authorization").is_some() {
                        report
                            .lock()
                            .unwrap()
                            .push("ACR: /v2/ with credentials".into());
                    }
                    Reply::Full(
                        401,
                        vec![
                            ("content-type".into(), "application/json; charset=utf-8".into()),
                            ("www-authenticate".into(), format!("Bearer realm=\"{base}/oauth2/token\",service=\"{REGISTRY}\"")),
                        ],
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required, visit https://aka.ms/acr/authorization for more information.","detail":null}]}"#.to_vec(),
                    )
                }
                ("POST", "/oauth2/exchange") => {
                    let fields = form_decode(std::str::from_utf8(&seen.body).unwrap_or(""));
                    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                    let known =
                        get("access_token").is_some_and(|t| minted.lock().unwrap().contains(&t));
                    let ok = header(seen, "content-type")
                        == Some("application/x-www-form-urlencoded")
                        && keys == ["grant_type", "service", "tenant", "access_token"]
                        && get("grant_type").as_deref() == Some("access_token")
                        && get("service").as_deref() == Some(REGISTRY)
                        && get("tenant").as_deref() == Some(TENANT)
                        && known;
                    if !ok {
                        report.lock().unwrap().push(format!(
                            "ACR: exchange fields {keys:?}, token known: {known}"
                        ));
                        return json(
                            401,
                            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
                        );
                    }
                    if exchanges.fetch_add(1, Ordering::SeqCst) < throttles {
                        return json(
                            503,
                            serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]}),
                        );
                    }
                    let token = refresh_token(REGISTRY, now() + REFRESH_LIFETIME);
                    minted.lock().unwrap().push(token.clone());
                    json(200, serde_json::json!({"refresh_token": token}))
                }
                (method, path) => {
                    report
                        .lock()
                        .unwrap()
                        .push(format!("ACR: unexpected {method} {path}"));
                    json(
                        404,
                        serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "not found"}]}),
                    )
                }
            }
        });
        own_url.set(acr.url("")).unwrap();
        Self {
            ca,
            aad,
            imds,
            acr,
            issued,
            problems,
        }
    }

    /// A host config pointing the plugin at the fakes; `config` adds YAML
    /// flow-map entries.
    fn config(&self, ws: &Workspace, config: &str) -> PathBuf {
        let bundle = self.ca.write_bundle(ws.path());
        ws.write(
            "host-config.yaml",
            format!(
                "{}tls:\n  caBundle: {}\nplugins:\n  - name: acr\n    module: {}\n    matchImages: [\"*.azurecr.io\", \"registry.example.com\"]\n    config: {{authorityEndpoint: \"{}\", loginServerEndpoint: \"{}\", imdsEndpoint: \"{}\", nodeIdentityId: \"{NODE_CLIENT_ID}\", tenantId: \"{TENANT}\"{config}}}\n    grants: {{outbound: [\"{}\", \"{}\", \"{}\"], serviceAccountToken: true}}\n",
                ws.header(),
                bundle.display(),
                artifacts::ACR_PLUGIN,
                self.aad.url(""),
                self.acr.url(""),
                self.imds.url(""),
                self.aad.url(""),
                self.acr.url(""),
                self.imds.url(""),
            ),
        )
    }

    /// (token calls to Entra ID, IMDS calls, /v2/ challenges, exchanges).
    fn calls(&self) -> (usize, usize, usize, usize) {
        let acr = self.acr.seen();
        let count = |path: &str| acr.iter().filter(|s| s.path == path).count();
        (
            self.aad.seen().len(),
            self.imds.seen().len(),
            count("/v2/"),
            count("/oauth2/exchange"),
        )
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    fn assert_no_problems(&self) {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "the fakes saw: {problems:#?}");
    }
}

fn pod_request(image: &str, token: &str) -> RequestSpec {
    RequestSpec::new(V1, image)
        .token(token)
        .annotation(CLIENT_ANNOTATION, CLIENT_ID)
        .annotation(TENANT_ANNOTATION, TENANT)
}

/// The one credential of a successful answer, and the answer.
fn credential(exec: &Exec) -> (String, support::strict::Auth, support::strict::Accepted) {
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth.len(), 1, "{:?}", resp.auth);
    let (key, auth) = resp.auth.iter().next().unwrap();
    (key.clone(), auth.clone(), resp)
}

fn duration_secs(resp: &support::strict::Accepted) -> u64 {
    wcp_core::duration::parse_go_duration(resp.cache_duration.as_deref().unwrap())
        .unwrap()
        .as_secs()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !text.contains(secret.as_str()) && !text.contains(signature),
            "a token appears in the {what}:\n{text}"
        );
    }
}

#[test]
fn pod_identity_end_to_end_and_timings() {
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::Ok, 0);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let provider = Provider::new(host_binary(), &config);

    let first = provider.exec(&pod_request(&format!("{REGISTRY}/team/app"), &token));
    let (key, auth, resp) = credential(&first);
    assert_eq!(key, REGISTRY);
    assert_eq!(auth.username, "00000000-0000-0000-0000-000000000000");
    assert_eq!(resp.cache_key_type, "Registry");
    let issued = azure.issued();
    assert_eq!(issued.len(), 2, "one Entra ID token, one refresh token");
    assert_eq!(
        auth.password, issued[1],
        "the password is the ACR refresh token"
    );
    // The refresh token's exp minus the host's 60 s margin.
    let secs = duration_secs(&resp);
    assert!(
        (REFRESH_LIFETIME - 63..=REFRESH_LIFETIME - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert_eq!(azure.calls(), (1, 0, 1, 1));
    azure.assert_no_problems();

    // Cold requests (another forwarded annotation is another cache key):
    // Entra ID, the challenge and the exchange over TLS each time.
    let mut cold = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(
            &pod_request(&format!("{REGISTRY}/team/app"), &token)
                .annotation("example.com/nonce", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
    }
    assert_eq!(azure.calls(), (6, 0, 6, 6));
    // Cache hits: other images of the registry, same service account.
    let mut hits = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(&pod_request(&format!("{REGISTRY}/team/app-{i}"), &token));
        let (_, hit, _) = credential(&exec);
        assert_eq!(hit.password, auth.password);
        hits.push(exec.elapsed);
    }
    assert_eq!(azure.calls(), (6, 0, 6, 6));
    azure.assert_no_problems();
    println!(
        "ACR plugin, debug host: first exec (compiles the component) {:?}; cold request (Entra ID + /v2/ + exchange over TLS) median {:?} {cold:?}; cache hit median {:?} {hits:?}",
        first.elapsed,
        median(cold.clone()),
        median(hits.clone())
    );
}

#[test]
fn node_identity_end_to_end_through_imds() {
    // The fake refuses a metadata request without `Metadata: true`, as IMDS does.
    let probe = FakeAzure::start("unused", AadMode::Ok, 0);
    let refused = raw_get(
        probe.imds.addr,
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net",
    );
    assert!(
        refused.starts_with("HTTP/1.1 400") && refused.contains("bad_request_102"),
        "{refused}"
    );

    let azure = FakeAzure::start("unused", AadMode::Ok, 0);

    let ws = Workspace::new();
    let config = azure.config(&ws, ", identity: node");
    // identity: node ignores a token, even with the annotations.
    let token = sa_token("puller");
    let exec = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "info")
        .exec(&pod_request(&format!("{REGISTRY}/app"), &token));
    let (key, auth, resp) = credential(&exec);
    assert_eq!(key, REGISTRY);
    assert_eq!(resp.cache_key_type, "Registry");
    assert_eq!(auth.password, azure.issued()[1]);
    assert_eq!(azure.calls(), (0, 1, 1, 1));
    assert!(
        exec.stderr.contains("identity used: node"),
        "{}",
        exec.stderr
    );
    azure.assert_no_problems();

    // No token at all: the default is the node.
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    credential(&exec);
    assert_eq!(azure.calls(), (0, 2, 2, 2));

    // podThenNode: a pod without the client-id annotation gets the node's
    // identity; one with it, its own.
    let ws = Workspace::new();
    let config = azure.config(&ws, ", identity: podThenNode");
    let azure_pod = FakeAzure::start(&token, AadMode::Ok, 0);
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    credential(&exec);
    assert_eq!(azure.calls(), (0, 3, 3, 3));
    let ws = Workspace::new();
    let config = azure_pod.config(&ws, ", identity: podThenNode");
    let exec = Provider::new(host_binary(), &config)
        .exec(&pod_request(&format!("{REGISTRY}/app"), &token));
    credential(&exec);
    assert_eq!(azure_pod.calls(), (1, 0, 1, 1));
    azure.assert_no_problems();
    azure_pod.assert_no_problems();
}

/// A plain HTTP/1.1 GET without any extra header; the raw response.
fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn identity_policy_refusals_are_one_clear_line() {
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::Ok, 0);
    // Default with a token but no client-id annotation: pod, so refused.
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    let line = exec.assert_clean_failure(CLIENT_ANNOTATION);
    assert!(
        line.contains("podThenNode") && line.contains("unauthorized"),
        "{line}"
    );
    // identity: pod without a token.
    let ws = Workspace::new();
    let config = azure.config(&ws, ", identity: pod");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    exec.assert_clean_failure("no service-account token");
    assert_eq!(azure.calls(), (0, 0, 0, 0));
    // An image outside ACR gets no credentials.
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "registry.example.com/app"));
    assert!(exec.success, "{exec:#?}");
    assert!(
        support::strict::decode(&exec.stdout, V1)
            .unwrap()
            .auth
            .is_empty()
    );
}

#[test]
fn fifty_concurrent_images_of_one_registry_make_one_token_call_and_one_exchange() {
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::Ok, 0);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let config = config.clone();
            let request = pod_request(&format!("{REGISTRY}/team/app-{i}"), &token);
            std::thread::spawn(move || Provider::new(host_binary(), &config).exec(&request))
        })
        .collect();
    let mut passwords = BTreeMap::new();
    for handle in handles {
        let exec = handle.join().unwrap();
        let (key, auth, _) = credential(&exec);
        assert_eq!(key, REGISTRY);
        *passwords.entry(auth.password).or_insert(0) += 1;
    }
    println!(
        "50 concurrent ACR execs: calls (AAD, IMDS, /v2/, exchange) = {:?}",
        azure.calls()
    );
    assert_eq!(azure.calls(), (1, 0, 1, 1), "{passwords:?}");
    assert_eq!(passwords.len(), 1);
    azure.assert_no_problems();
}

#[test]
fn throttling_is_retried_then_succeeds() {
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::Ok, 1);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&pod_request(&format!("{REGISTRY}/app"), &token));
    credential(&exec);
    // One 429 from Entra ID and one 503 from the exchange, each retried.
    assert_eq!(azure.calls(), (2, 0, 1, 2));
    azure.assert_no_problems();

    let azure = FakeAzure::start(&token, AadMode::Ok, usize::MAX);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&pod_request(&format!("{REGISTRY}/app"), &token));
    let line = exec.assert_clean_failure("AADSTS50196");
    assert!(
        line.contains("3 attempts") && line.contains("HTTP 429"),
        "{line}"
    );
    assert_eq!(azure.calls(), (3, 0, 0, 0));
}

#[test]
fn aadsts_error_is_one_clean_line_and_no_token_reaches_logs() {
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::NoFederatedCredential, 0);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let request = pod_request(&format!("{REGISTRY}/app"), &token);
    let exec = Provider::new(host_binary(), &config).exec(&request);
    let line = exec.assert_clean_failure("AADSTS70021");
    println!("AADSTS70021: {line}");
    assert!(line.contains("unauthorized"), "{line}");
    assert!(
        line.contains("subject system:serviceaccount:team:puller"),
        "{line}"
    );
    assert!(line.contains(CLIENT_ID), "{line}");
    assert!(!line.contains("Trace ID"), "{line}");
    assert_eq!(azure.calls(), (1, 0, 0, 0));

    // Debug logging, on failure and on success, pod and node.
    let failed = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    assert!(!failed.success);
    assert!(
        failed.stderr.lines().count() > 1,
        "debug logging produced nothing: {}",
        failed.stderr
    );
    let ok_azure = FakeAzure::start(&token, AadMode::Ok, 0);
    let ok_ws = Workspace::new();
    let ok_config = ok_azure.config(&ok_ws, "");
    let ok = Provider::new(host_binary(), &ok_config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    credential(&ok);
    let node = Provider::new(host_binary(), &ok_config)
        .env("WCP_LOG", "debug")
        .exec(&RequestSpec::new(V1, "other.azurecr.io/app"));
    let (key, _, _) = credential(&node);
    assert_eq!(key, "other.azurecr.io");
    assert!(
        node.stderr.contains("identity used: node"),
        "{}",
        node.stderr
    );
    let mut secrets = ok_azure.issued();
    secrets.push(token.clone());
    assert!(secrets.len() >= 3, "{}", secrets.len());
    for (what, text) in [
        ("stderr", exec.stderr.clone()),
        ("debug stderr", failed.stderr.clone()),
        ("debug stderr on success", ok.stderr.clone()),
        ("debug stderr in node mode", node.stderr.clone()),
        (
            "audit log",
            std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
        (
            "audit log on success",
            std::fs::read_to_string(ok_ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
    ] {
        assert_no_secret(what, &text, &secrets);
    }
    azure.assert_no_problems();
}

/// Timings, not a test: runs only with `--ignored`. Interleaved rounds of a
/// cold request (a new forwarded annotation each time, so Entra ID, the
/// `/v2/` challenge and the exchange over TLS) and a cache hit, through the
/// host in `WCP_BENCH_HOST` (default: the test build of the host), after
/// one warm-up exec that compiles the component. Prints median and p95.
#[test]
#[ignore = "benchmark: cargo test ... --test all -- --ignored --nocapture acr::bench"]
fn bench_acr() {
    let host = std::env::var("WCP_BENCH_HOST").map_or_else(|_| host_binary(), PathBuf::from);
    let runs: usize = std::env::var("WCP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let token = sa_token("puller");
    let azure = FakeAzure::start(&token, AadMode::Ok, 0);
    let ws = Workspace::new();
    let config = azure.config(&ws, "");
    let provider = Provider::new(&host, &config);
    let image = format!("{REGISTRY}/team/app");
    credential(&provider.exec(&pod_request(&image, &token)));
    let (mut cold, mut hit) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let exec = provider
            .exec(&pod_request(&image, &token).annotation("example.com/nonce", &i.to_string()));
        credential(&exec);
        cold.push(exec.elapsed);
        let exec = provider.exec(&pod_request(&format!("{REGISTRY}/team/app-{i}"), &token));
        credential(&exec);
        hit.push(exec.elapsed);
    }
    azure.assert_no_problems();
    let p95 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() - 1) * 95 / 100]
    };
    println!("\nACR through {}", host.display());
    for (name, samples) in [
        ("cold (Entra ID + /v2/ + exchange, TLS)", cold),
        ("cache hit", hit),
    ] {
        println!(
            "{name:<44} median {:>8.2}ms  p95 {:>8.2}ms",
            median(samples.clone()).as_secs_f64() * 1000.0,
            p95(samples).as_secs_f64() * 1000.0
        );
    }
    println!("({runs} interleaved rounds after one warm-up)");
}
