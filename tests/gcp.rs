//! The Google (Artifact Registry / GCR) plugin end to end through the host,
//! against loopback fakes of Google STS, IAM Credentials (TLS with a test
//! CA) and the metadata server (HTTP, as the real one) that check every
//! JSON field and header and answer in Google's real shapes.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, Seen, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const REGISTRY: &str = "us-docker.pkg.dev";
const PROJECT: &str = "my-proj";
const IDP: &str =
    "https://container.googleapis.com/v1/projects/my-proj/locations/us-central1/clusters/c1";
const OPT_IN: &str = "iam.gke.io/enable-wi-image-pull";
const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
const GSA: &str = "puller@my-proj.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const TOKEN_LIFETIME: u64 = 3600;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sa_token(name: &str) -> String {
    support::tokens::sa_token(
        &format!("{PROJECT}.svc.id.goog"),
        "team",
        name,
        "uid-1",
        "pod-1",
    )
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Full(
        status,
        vec![(
            "content-type".into(),
            "application/json; charset=UTF-8".into(),
        )],
        body.to_string().into_bytes(),
    )
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StsMode {
    Ok,
    InvalidGrant,
}

/// The loopback Google.
struct FakeGoogle {
    ca: TestCa,
    sts: TestServer,
    iam: TestServer,
    metadata: TestServer,
    issued: Arc<Mutex<Vec<String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl FakeGoogle {
    /// `token`: the subject token STS expects; `throttles`: how many STS
    /// and metadata calls first answer 429 / 503; `iam_denied`: IAM
    /// refuses the impersonation.
    fn start(token: &str, mode: StsMode, throttles: usize, iam_denied: bool) -> Self {
        let ca = TestCa::new();
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let issued = Arc::new(Mutex::new(Vec::<String>::new()));
        let counter = AtomicUsize::new(0);

        let (report, expected, minted) = (problems.clone(), token.to_string(), issued.clone());
        let sts_calls = AtomicUsize::new(0);
        let sts = TestServer::https(&ca, move |seen| {
            let mut wrong = Vec::new();
            if seen.method != "POST" || seen.path != "/v1/token" {
                wrong.push(format!("STS: {} {}", seen.method, seen.path));
            }
            if header(seen, "content-type") != Some("application/json") {
                wrong.push(format!(
                    "STS: content-type {:?}",
                    header(seen, "content-type")
                ));
            }
            if header(seen, "authorization").is_some() {
                wrong.push("STS: the exchange takes no credentials".into());
            }
            let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
            let want = serde_json::json!({
                "audience": format!("identitynamespace:{PROJECT}.svc.id.goog:{IDP}"),
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "scope": SCOPE,
                "subject_token": expected,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            });
            if body != want {
                let keys: Vec<String> = body
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                wrong.push(format!("STS: JSON fields {keys:?} (values differ)"));
            }
            if !wrong.is_empty() {
                report.lock().unwrap().extend(wrong);
                return json(
                    400,
                    serde_json::json!({"error": "invalid_request", "error_description": "Invalid request"}),
                );
            }
            if sts_calls.fetch_add(1, Ordering::SeqCst) < throttles {
                return json(
                    429,
                    serde_json::json!({"error": "rate_limit_exceeded", "error_description": "Quota exceeded for quota metric 'Token exchange requests'."}),
                );
            }
            if mode == StsMode::InvalidGrant {
                return json(
                    400,
                    serde_json::json!({"error": "invalid_grant", "error_description": "The audience in ID Token [sts.amazonaws.com] does not match the expected audience my-proj.svc.id.goog."}),
                );
            }
            let token = format!(
                "ya29.d.federated-{}",
                counter.fetch_add(1, Ordering::SeqCst)
            );
            minted.lock().unwrap().push(token.clone());
            json(
                200,
                serde_json::json!({
                    "access_token": token,
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "token_type": "Bearer", "expires_in": TOKEN_LIFETIME
                }),
            )
        });

        let (report, minted) = (problems.clone(), issued.clone());
        let iam = TestServer::https(&ca, move |seen| {
            let path = format!("/v1/projects/-/serviceAccounts/{GSA}:generateAccessToken");
            let bearer = header(seen, "authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let known = bearer.as_ref().is_some_and(|b| {
                b.starts_with("ya29.d.federated-") && minted.lock().unwrap().contains(b)
            });
            let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
            let ok = seen.method == "POST"
                && seen.path == path
                && header(seen, "content-type") == Some("application/json")
                && body == serde_json::json!({"scope": [SCOPE]})
                && known;
            if !ok {
                report.lock().unwrap().push(format!(
                    "IAM: {} {} (federated token known: {known})",
                    seen.method, seen.path
                ));
                return json(
                    401,
                    serde_json::json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
                );
            }
            if iam_denied {
                return json(
                    403,
                    serde_json::json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).", "status": "PERMISSION_DENIED", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED", "domain": "iam.googleapis.com", "metadata": {"permission": "iam.serviceAccounts.getAccessToken"}}]}}),
                );
            }
            let token = format!("ya29.c.impersonated-{}", minted.lock().unwrap().len());
            minted.lock().unwrap().push(token.clone());
            json(
                200,
                serde_json::json!({"accessToken": token, "expireTime": rfc3339(now() + TOKEN_LIFETIME)}),
            )
        });

        let (report, minted) = (problems.clone(), issued.clone());
        let metadata_calls = AtomicUsize::new(0);
        let metadata = TestServer::http(move |seen| {
            // The GCE metadata server refuses a request without the header.
            if header(seen, "metadata-flavor") != Some("Google") {
                report
                    .lock()
                    .unwrap()
                    .push("metadata: no Metadata-Flavor: Google".into());
                return Reply::Full(
                    403,
                    vec![("content-type".into(), "text/html; charset=UTF-8".into())],
                    b"<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 403 (Forbidden)!!1</title>\n  <p><b>403.</b> <ins>That\xe2\x80\x99s an error.</ins>\n  <p>Your client does not have permission to get URL <code>/computeMetadata/v1/instance/service-accounts/default/token</code> from this server. Missing Metadata-Flavor:Google header. <ins>That\xe2\x80\x99s all we know.</ins>\n".to_vec(),
                );
            }
            if seen.method != "GET"
                || seen.path != "/computeMetadata/v1/instance/service-accounts/default/token"
            {
                report
                    .lock()
                    .unwrap()
                    .push(format!("metadata: {} {}", seen.method, seen.path));
                return Reply::text(404, "Not Found\n");
            }
            if metadata_calls.fetch_add(1, Ordering::SeqCst) < throttles {
                return Reply::text(503, "Service Unavailable\n");
            }
            let token = format!("ya29.c.node-{}", minted.lock().unwrap().len());
            minted.lock().unwrap().push(token.clone());
            Reply::Full(
                200,
                vec![("content-type".into(), "application/json".into()), ("metadata-flavor".into(), "Google".into())],
                serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string().into_bytes(),
            )
        });
        Self {
            ca,
            sts,
            iam,
            metadata,
            issued,
            problems,
        }
    }

    fn config(&self, ws: &Workspace, config: &str) -> PathBuf {
        let bundle = self.ca.write_bundle(ws.path());
        ws.write(
            "host-config.yaml",
            format!(
                "{}tls:\n  caBundle: {}\nplugins:\n  - name: gcp\n    module: {}\n    matchImages: [\"*.pkg.dev\", \"gcr.io\", \"*.gcr.io\", \"registry.example.com\"]\n    config: {{stsEndpoint: \"{}\", iamCredentialsEndpoint: \"{}\", metadataEndpoint: \"{}\", projectId: \"{PROJECT}\", identityProvider: \"{IDP}\"{config}}}\n    grants: {{outbound: [\"{}\", \"{}\", \"{}\"], serviceAccountToken: true}}\n",
                ws.header(),
                bundle.display(),
                artifacts::GCP_PLUGIN,
                self.sts.url("/v1/token"),
                self.iam.url(""),
                self.metadata.url(""),
                self.sts.url(""),
                self.iam.url(""),
                self.metadata.url(""),
            ),
        )
    }

    /// (STS, IAM, metadata) calls.
    fn calls(&self) -> (usize, usize, usize) {
        (
            self.sts.seen().len(),
            self.iam.seen().len(),
            self.metadata.seen().len(),
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
        .annotation(OPT_IN, "true")
}

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
fn pod_identity_end_to_end_and_timings() {
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::Ok, 0, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let provider = Provider::new(host_binary(), &config);

    let first = provider.exec(&pod_request(
        &format!("{REGISTRY}/my-proj/repo/app"),
        &token,
    ));
    let (key, auth, resp) = credential(&first);
    assert_eq!(key, REGISTRY);
    assert_eq!(auth.username, "_token");
    assert_eq!(
        auth.password,
        google.issued()[0],
        "the federated token itself, as upstream"
    );
    assert_eq!(resp.cache_key_type, "Registry");
    let secs = duration_secs(&resp);
    assert!(
        (TOKEN_LIFETIME - 63..=TOKEN_LIFETIME - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert_eq!(google.calls(), (1, 0, 0));
    google.assert_no_problems();

    let mut cold = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(
            &pod_request(&format!("{REGISTRY}/my-proj/repo/app"), &token)
                .annotation("example.com/nonce", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
    }
    assert_eq!(google.calls(), (6, 0, 0));
    let mut hits = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(&pod_request(
            &format!("{REGISTRY}/my-proj/repo/app-{i}"),
            &token,
        ));
        let (_, hit, _) = credential(&exec);
        assert_eq!(hit.password, auth.password);
        hits.push(exec.elapsed);
    }
    assert_eq!(google.calls(), (6, 0, 0));
    google.assert_no_problems();
    println!(
        "GCP plugin, debug host: first exec (compiles the component) {:?}; cold request (STS over TLS) median {:?} {cold:?}; cache hit median {:?} {hits:?}",
        first.elapsed,
        median(cold.clone()),
        median(hits.clone())
    );
}

#[test]
fn impersonation_of_a_google_service_account() {
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::Ok, 0, false);
    let ws = Workspace::new();
    let config = google.config(
        &ws,
        &format!(", serviceAccountAnnotation: \"{GSA_ANNOTATION}\""),
    );
    let request = pod_request("gcr.io/my-proj/app", &token).annotation(GSA_ANNOTATION, GSA);
    let exec = Provider::new(host_binary(), &config).exec(&request);
    let (key, auth, resp) = credential(&exec);
    assert_eq!(key, "gcr.io");
    assert_eq!(auth.username, "_token");
    let issued = google.issued();
    assert_eq!(issued.len(), 2);
    assert_eq!(
        auth.password, issued[1],
        "the impersonated service account's token"
    );
    let secs = duration_secs(&resp);
    assert!(
        (TOKEN_LIFETIME - 63..=TOKEN_LIFETIME - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert_eq!(google.calls(), (1, 1, 0));
    google.assert_no_problems();

    // IAM refuses: one line naming the binding to add.
    let denied = FakeGoogle::start(&token, StsMode::Ok, 0, true);
    let ws = Workspace::new();
    let config = denied.config(&ws, &format!(", serviceAccountEmail: \"{GSA}\""));
    let exec =
        Provider::new(host_binary(), &config).exec(&pod_request("gcr.io/my-proj/app", &token));
    let line = exec.assert_clean_failure("PERMISSION_DENIED");
    println!("IAM denied: {line}");
    assert!(line.contains("unauthorized"), "{line}");
    assert!(
        line.contains(&format!("roles/iam.workloadIdentityUser on {GSA}")),
        "{line}"
    );
    assert!(line.contains("system:serviceaccount:team:puller"), "{line}");
    denied.assert_no_problems();
}

#[test]
fn node_identity_end_to_end_through_the_metadata_server() {
    // The fake refuses a metadata request without `Metadata-Flavor: Google`.
    let probe = FakeGoogle::start("unused", StsMode::Ok, 0, false);
    let refused = raw_get(
        probe.metadata.addr,
        "/computeMetadata/v1/instance/service-accounts/default/token",
    );
    assert!(
        refused.starts_with("HTTP/1.1 403") && refused.contains("Missing Metadata-Flavor"),
        "{refused}"
    );

    let google = FakeGoogle::start("unused", StsMode::Ok, 0, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "info")
        .exec(&RequestSpec::new(V1, "europe-west4-docker.pkg.dev/p/r/app"));
    let (key, auth, resp) = credential(&exec);
    assert_eq!(key, "europe-west4-docker.pkg.dev");
    assert_eq!(auth.username, "_token");
    assert_eq!(auth.password, google.issued()[0]);
    assert_eq!(resp.cache_key_type, "Registry");
    let secs = duration_secs(&resp);
    assert!(
        (3599 - 63..=3599 - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert!(
        exec.stderr.contains("identity used: node"),
        "{}",
        exec.stderr
    );
    assert_eq!(google.calls(), (0, 0, 1));

    // podThenNode: a token without the opt-in gets the node's identity.
    let token = sa_token("puller");
    let ws = Workspace::new();
    let config = google.config(&ws, ", identity: podThenNode");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "us.gcr.io/p/app").token(&token));
    credential(&exec);
    assert_eq!(google.calls(), (0, 0, 2));
    // The default with a token: pod, so a pod that did not opt in is refused.
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "us.gcr.io/p/app").token(&token));
    let line = exec.assert_clean_failure(OPT_IN);
    assert!(line.contains("unauthorized"), "{line}");
    // identity: node ignores an opted-in token.
    let ws = Workspace::new();
    let config = google.config(&ws, ", identity: node");
    let exec = Provider::new(host_binary(), &config).exec(&pod_request("us.gcr.io/p/app", &token));
    credential(&exec);
    assert_eq!(google.calls(), (0, 0, 3));
    // Not a Google registry: no credentials.
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "registry.example.com/app"));
    assert!(exec.success, "{exec:#?}");
    assert!(
        support::strict::decode(&exec.stdout, V1)
            .unwrap()
            .auth
            .is_empty()
    );
    google.assert_no_problems();
}

#[test]
fn fifty_concurrent_images_of_one_registry_make_one_exchange() {
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::Ok, 0, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let config = config.clone();
            let request = pod_request(&format!("{REGISTRY}/my-proj/repo/app-{i}"), &token);
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
        "50 concurrent GCP execs: calls (STS, IAM, metadata) = {:?}",
        google.calls()
    );
    assert_eq!(google.calls(), (1, 0, 0), "{passwords:?}");
    assert_eq!(passwords.len(), 1);
    google.assert_no_problems();
}

#[test]
fn throttling_is_retried_then_succeeds() {
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::Ok, 1, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    credential(
        &Provider::new(host_binary(), &config)
            .exec(&pod_request(&format!("{REGISTRY}/p/r/app"), &token)),
    );
    assert_eq!(google.calls(), (2, 0, 0));
    // The metadata server answers 503 once.
    credential(&Provider::new(host_binary(), &config).exec(&RequestSpec::new(V1, "gcr.io/p/app")));
    assert_eq!(google.calls(), (2, 0, 2));
    google.assert_no_problems();

    let google = FakeGoogle::start(&token, StsMode::Ok, usize::MAX, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&pod_request(&format!("{REGISTRY}/p/r/app"), &token));
    let line = exec.assert_clean_failure("rate_limit_exceeded");
    assert!(line.contains("3 attempts"), "{line}");
    assert_eq!(google.calls(), (3, 0, 0));
}

#[test]
fn invalid_grant_is_one_clean_line_and_no_token_reaches_logs() {
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::InvalidGrant, 0, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let request = pod_request(&format!("{REGISTRY}/p/r/app"), &token);
    let exec = Provider::new(host_binary(), &config).exec(&request);
    let line = exec.assert_clean_failure("invalid_grant");
    println!("invalid_grant: {line}");
    assert!(
        line.contains("unauthorized") && line.contains("workload identity pool provider"),
        "{line}"
    );
    assert_eq!(google.calls(), (1, 0, 0));

    let failed = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    assert!(!failed.success);
    assert!(
        failed.stderr.lines().count() > 1,
        "debug logging produced nothing: {}",
        failed.stderr
    );
    let ok_google = FakeGoogle::start(&token, StsMode::Ok, 0, false);
    let ok_ws = Workspace::new();
    let ok_config = ok_google.config(&ok_ws, &format!(", serviceAccountEmail: \"{GSA}\""));
    let verbose = Provider::new(host_binary(), &ok_config).env("WCP_LOG", "debug");
    let ok = verbose.exec(&request);
    credential(&ok);
    let node = verbose.exec(&RequestSpec::new(V1, "gcr.io/p/app"));
    credential(&node);
    let mut secrets = ok_google.issued();
    assert_eq!(secrets.len(), 3, "federated, impersonated, node");
    secrets.push(token.clone());
    let signature = token.rsplit('.').next().unwrap().to_string();
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
        for secret in secrets.iter().chain([&signature]) {
            assert!(
                !text.contains(secret.as_str()),
                "a token appears in the {what}:\n{text}"
            );
        }
    }
    google.assert_no_problems();
    ok_google.assert_no_problems();
}

/// Timings, not a test: runs only with `--ignored`. Interleaved rounds of a
/// cold request (a new forwarded annotation each time, so the STS exchange
/// over TLS) and a cache hit, through the host in `WCP_BENCH_HOST`
/// (default: the test build of the host), after one warm-up exec that
/// compiles the component. Prints median and p95.
#[test]
#[ignore = "benchmark: cargo test ... --test all -- --ignored --nocapture gcp::bench"]
fn bench_gcp() {
    let host = std::env::var("WCP_BENCH_HOST").map_or_else(|_| host_binary(), PathBuf::from);
    let runs: usize = std::env::var("WCP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let token = sa_token("puller");
    let google = FakeGoogle::start(&token, StsMode::Ok, 0, false);
    let ws = Workspace::new();
    let config = google.config(&ws, "");
    let provider = Provider::new(&host, &config);
    let image = format!("{REGISTRY}/my-proj/repo/app");
    credential(&provider.exec(&pod_request(&image, &token)));
    let (mut cold, mut hit) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let exec = provider
            .exec(&pod_request(&image, &token).annotation("example.com/nonce", &i.to_string()));
        credential(&exec);
        cold.push(exec.elapsed);
        let exec = provider.exec(&pod_request(
            &format!("{REGISTRY}/my-proj/repo/app-{i}"),
            &token,
        ));
        credential(&exec);
        hit.push(exec.elapsed);
    }
    google.assert_no_problems();
    let p95 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() - 1) * 95 / 100]
    };
    println!("\nGCP through {}", host.display());
    for (name, samples) in [("cold (STS exchange, TLS)", cold), ("cache hit", hit)] {
        println!(
            "{name:<44} median {:>8.2}ms  p95 {:>8.2}ms",
            median(samples.clone()).as_secs_f64() * 1000.0,
            p95(samples).as_secs_f64() * 1000.0
        );
    }
    println!("({runs} interleaved rounds after one warm-up)");
}
