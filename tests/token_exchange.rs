//! The token-exchange plugin end to end through the host, one loopback
//! fake (TLS, test-time CA) per preset's vendor that checks every field and
//! header and answers in the vendor's real success and error shapes (see
//! `support::exchanges`).

use crate::support;

use std::path::PathBuf;
use std::time::Duration;
use support::exchanges::{FakeExchange, LIFETIME, QUAY_ROBOT, Vendor, jwt, now};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const REGISTRY: &str = "registry.example.com";
const ROBOT_ANNOTATION: &str = "quay.io/federated-robot-account";

fn token(name: &str, nonce: &str) -> String {
    support::tokens::sa_token("registry.example.com", "team", name, "uid-1", nonce)
}

/// A projected token that expired a minute ago.
fn expired_token() -> String {
    jwt(serde_json::json!({
        "aud": ["registry.example.com"], "exp": now() - 60, "iat": now() - 3660,
        "kubernetes.io": {"namespace": "team", "pod": {"name": "p", "uid": "pod-9"},
                          "serviceaccount": {"name": "puller", "uid": "uid-1"}},
        "sub": "system:serviceaccount:team:puller"
    }))
}

fn request(image: &str, token: &str) -> RequestSpec {
    RequestSpec::new(V1, image)
        .token(token)
        .annotation(ROBOT_ANNOTATION, QUAY_ROBOT)
}

/// A host config with one token-exchange plugin for `fake`; `extra` is
/// added to its `config` flow map.
fn config(ws: &Workspace, ca: &TestCa, fake: &FakeExchange, extra: &str) -> PathBuf {
    let bundle = ca.write_bundle(ws.path());
    ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: tx\n    module: {}\n    matchImages: [\"{REGISTRY}\", \"*.{REGISTRY}\"]\n    config: {{preset: {}, endpoint: \"{}\", {}{extra}}}\n    grants: {{outbound: [\"{}\"], serviceAccountToken: true}}\n",
            ws.header(),
            bundle.display(),
            artifacts::TOKEN_EXCHANGE_PLUGIN,
            fake.vendor.preset(),
            fake.endpoint(),
            fake.vendor.config(),
            fake.server.url(""),
        ),
    )
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

#[test]
fn every_preset_end_to_end_with_one_exchange_per_identity() {
    let ca = TestCa::new();
    for vendor in Vendor::ALL {
        let fake = FakeExchange::start(&ca, vendor);
        let ws = Workspace::new();
        let provider = Provider::new(host_binary(), &config(&ws, &ca, &fake, ""));
        let puller = token("puller", "pod-1");
        // Five images of one registry, one identity: one exchange.
        let mut password = None;
        for i in 0..5 {
            let exec = provider.exec(&request(&format!("{REGISTRY}/team/app-{i}"), &puller));
            let (key, auth, resp) = credential(&exec);
            assert_eq!(key, REGISTRY, "{vendor:?}");
            assert_eq!(auth.username, vendor.username(), "{vendor:?}");
            assert_eq!(resp.cache_key_type, "Registry", "{vendor:?}");
            let secs = duration_secs(&resp);
            assert!(
                (LIFETIME - 70..=LIFETIME - 59).contains(&secs),
                "{vendor:?}: {:?}",
                resp.cache_duration
            );
            password.get_or_insert(auth.password.clone());
            assert_eq!(Some(&auth.password), password.as_ref(), "{vendor:?}");
        }
        assert_eq!(fake.issued(), [password.unwrap()], "{vendor:?}");
        assert_eq!(fake.calls(), 1, "{vendor:?}");
        // Another service account: its own exchange.
        let exec = provider.exec(&request(
            &format!("{REGISTRY}/team/app-0"),
            &token("builder", "pod-2"),
        ));
        let (_, auth, _) = credential(&exec);
        assert_eq!(fake.calls(), 2, "{vendor:?}");
        assert_eq!(auth.password, fake.issued()[1], "{vendor:?}");
        fake.assert_no_problems();
    }
}

#[test]
fn an_expired_token_is_one_clean_line_and_no_secret_reaches_logs() {
    let ca = TestCa::new();
    for vendor in Vendor::ALL {
        let fake = FakeExchange::start(&ca, vendor);
        let expired = expired_token();
        // At the default level: exactly one line.
        let quiet = Workspace::new();
        let exec = Provider::new(host_binary(), &config(&quiet, &ca, &fake, ""))
            .exec(&request(&format!("{REGISTRY}/team/app"), &expired));
        let line = exec.assert_clean_failure(vendor.refusal());
        // At debug level (another cache, so the failure is not shared).
        let ws = Workspace::new();
        let provider =
            Provider::new(host_binary(), &config(&ws, &ca, &fake, "")).env("WCP_LOG", "debug");
        let exec = provider.exec(&request(&format!("{REGISTRY}/team/app"), &expired));
        assert_eq!(
            support::exchanges::debug_failure_line(&exec, vendor.refusal()),
            line
        );
        assert!(line.contains("unauthorized"), "{vendor:?}: {line}");
        assert!(
            line.contains(&format!(
                "{} token exchange at {}",
                vendor.preset(),
                fake.server.url("")
            )),
            "{vendor:?}: {line}"
        );
        println!("{vendor:?} refused: {line}");
        // A good token at debug level: neither it nor what was issued is written.
        // (Another service account: the refusal is shared for 5 s with
        // execs of the same identity.)
        let good = token("builder", "pod-7");
        let ok = provider.exec(&request(&format!("{REGISTRY}/team/app"), &good));
        let (_, auth, _) = credential(&ok);
        let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
        assert!(!audit.is_empty());
        for (what, text) in [
            ("stderr of the refusal", exec.stderr.as_str()),
            ("stderr of the success", ok.stderr.as_str()),
            ("audit log", audit.as_str()),
        ] {
            for secret in [expired.as_str(), good.as_str(), auth.password.as_str()] {
                assert!(
                    !text.contains(secret),
                    "{vendor:?}: a secret in the {what}: {text}"
                );
            }
            // Nor the token's signature part on its own.
            let signature = good.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "{vendor:?}: {what}");
        }
        assert!(
            ok.stderr.contains("DEBUG"),
            "debug logging is on: {}",
            ok.stderr
        );
        fake.assert_no_problems();
    }
}

#[test]
fn a_bad_pointer_or_unknown_key_is_refused_at_load_naming_its_line() {
    let ca = TestCa::new();
    let fake = FakeExchange::start(&ca, Vendor::Jfrog);
    let cases = [
        (
            ", passwordPointer: access_token",
            "passwordPointer: expected a JSON pointer",
        ),
        (", endpiont: x", "endpiont: unknown config key"),
        (", preset2: jfrog", "preset2: unknown config key"),
        (
            ", encoding: xml",
            "encoding: expected one of form, json, none",
        ),
        (
            ", fields: \"{\\\"a\\\": 1}\"",
            "fields: expected a JSON object",
        ),
    ];
    for (extra, want) in cases {
        let ws = Workspace::new();
        let path = config(&ws, &ca, &fake, extra);
        let exec = Provider::new(host_binary(), &path).exec(&request(
            &format!("{REGISTRY}/team/app"),
            &token("puller", "pod-1"),
        ));
        let line = exec.assert_clean_failure(want);
        assert!(line.contains("invalid config for plugin \"tx\""), "{line}");
        // The plugin's `config:` flow map is line 12 of the file.
        assert!(line.contains("at line 12 column"), "{line}");
        // Install time reports it too, before any pull.
        let compile = std::process::Command::new(host_binary())
            .args(["--config", path.to_str().unwrap(), "compile"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&compile.stderr);
        assert!(
            !compile.status.success() && stderr.contains(want),
            "{stderr}"
        );
    }
    // A value read from a file is checked when it is read, by key.
    let ws = Workspace::new();
    let pointer = ws.write("pointer", "access_token\n");
    let path = config(&ws, &ca, &fake, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "    grants:",
        &format!(
            "    configFromFile: {{passwordPointer: {}}}\n    grants:",
            pointer.display()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let exec = Provider::new(host_binary(), &path).exec(&request(
        &format!("{REGISTRY}/team/app"),
        &token("puller", "pod-1"),
    ));
    exec.assert_clean_failure(
        "config value \"passwordPointer\" (from a file or the environment): expected a JSON pointer",
    );
    assert_eq!(fake.calls(), 0, "nothing was exchanged");
}

#[test]
fn the_endpoint_is_the_operators_only() {
    let ca = TestCa::new();
    let fake = FakeExchange::start(&ca, Vendor::Quay);
    let elsewhere = TestServer::https(&ca, |_| Reply::text(200, "{\"token\":\"x\"}"));
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &config(&ws, &ca, &fake, ""));
    // The annotations quay-credential-provider obeys, and an image of
    // another registry host: the token still goes to the configured
    // endpoint only.
    let exec = provider.exec(
        &request(
            "other.registry.example.com/team/app",
            &token("puller", "pod-1"),
        )
        .annotation("quay.io/host-override", &elsewhere.url(""))
        .annotation("quay.io/plain-http", "true"),
    );
    let (key, auth, _) = credential(&exec);
    assert_eq!(key, "other.registry.example.com");
    assert_eq!(auth.username, QUAY_ROBOT);
    assert_eq!(fake.calls(), 1);
    assert_eq!(elsewhere.connections(), 0);
    // A pod whose service account lacks the robot annotation: one line saying what to set.
    let exec =
        provider.exec(&RequestSpec::new(V1, "registry.example.com/a").token(&token("x", "pod-3")));
    let line = exec.assert_clean_failure(ROBOT_ANNOTATION);
    assert!(
        line.contains("requiredServiceAccountAnnotationKeys"),
        "{line}"
    );
    fake.assert_no_problems();
}

/// Cold (an exchange over TLS) and cache-hit medians of 20 execs each,
/// from one run; `cargo test ... token_exchange::timings -- --nocapture`.
#[test]
fn timings_cold_and_cache_hit() {
    let ca = TestCa::new();
    let fake = FakeExchange::start(&ca, Vendor::Jfrog);
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &config(&ws, &ca, &fake, ""));
    let puller = token("puller", "pod-1");
    let first = provider.exec(&request(&format!("{REGISTRY}/team/app"), &puller));
    credential(&first);
    let mut cold = Vec::new();
    let mut hits = Vec::new();
    for i in 0..20 {
        // A new pod's token each time: the cache is per service account,
        // so vary the forwarded annotations to miss it.
        let exec = provider.exec(
            &request(&format!("{REGISTRY}/team/app"), &puller)
                .annotation("example.com/run", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
        let exec = provider.exec(&request(&format!("{REGISTRY}/team/app-{i}"), &puller));
        credential(&exec);
        hits.push(exec.elapsed);
    }
    assert_eq!(fake.calls(), 21);
    println!(
        "token-exchange (jfrog preset), {} host: first exec {:?}; cold median {:?}; cache-hit median {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        first.elapsed,
        median(cold),
        median(hits)
    );
}

#[test]
fn twenty_concurrent_images_of_one_registry_make_one_exchange() {
    let ca = TestCa::new();
    let fake = FakeExchange::start(&ca, Vendor::Cloudsmith);
    let ws = Workspace::new();
    let config = config(&ws, &ca, &fake, "");
    let puller = token("puller", "pod-1");
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let (config, request) = (
                config.clone(),
                request(&format!("{REGISTRY}/team/app-{i}"), &puller),
            );
            std::thread::spawn(move || Provider::new(host_binary(), &config).exec(&request))
        })
        .collect();
    for handle in handles {
        let (_, auth, _) = credential(&handle.join().unwrap());
        assert_eq!(auth.password, fake.issued()[0]);
    }
    assert_eq!(fake.calls(), 1);
    fake.assert_no_problems();
}

#[test]
fn a_hostile_endpoint_cannot_echo_the_token_or_break_the_line() {
    let ca = TestCa::new();
    // Echoes the subject token (raw and in a JSON escape) with terminal
    // escapes and newlines in its refusal.
    let server = TestServer::https(&ca, |seen| {
        let form = support::exchanges::form(&seen.body).unwrap_or_default();
        let subject = form.get("subject_token").cloned().unwrap_or_default();
        support::exchanges::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": format!("bad token {subject}\n\u{1b}[2J\u{202e}wasm-credential-provider: error: fake")}),
        )
    });
    let ws = Workspace::new();
    let bundle = ca.write_bundle(ws.path());
    let path = ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: tx\n    module: {}\n    matchImages: [\"{REGISTRY}\"]\n    config: {{preset: rfc8693, endpoint: \"{}\"}}\n    grants: {{outbound: [\"{}\"], serviceAccountToken: true}}\n",
            ws.header(),
            bundle.display(),
            artifacts::TOKEN_EXCHANGE_PLUGIN,
            server.url("/token"),
            server.url(""),
        ),
    );
    let puller = token("puller", "pod-1");
    let exec =
        Provider::new(host_binary(), &path).exec(&request(&format!("{REGISTRY}/a"), &puller));
    let line = exec.assert_clean_failure("invalid_grant: bad token <redacted>");
    assert!(
        !line.contains(&puller) && !line.contains('\u{1b}') && !line.contains('\u{202e}'),
        "{line}"
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn inspect_shows_the_typed_declaration_and_checks_the_config() {
    let ca = TestCa::new();
    let fake = FakeExchange::start(&ca, Vendor::Yandex);
    let ws = Workspace::new();
    let good = config(&ws, &ca, &fake, "");
    let inspect = |path: &std::path::Path| {
        let out = std::process::Command::new(host_binary())
            .args([
                "inspect",
                artifacts::TOKEN_EXCHANGE_PLUGIN,
                "--output",
                "json",
                "--config",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&inspect(&good)).unwrap();
    assert_eq!(report["declared"]["strictConfig"], true, "{report:#}");
    assert_eq!(
        report["declared"]["configTypes"]["passwordPointer"],
        "jsonPointer"
    );
    assert_eq!(report["plugins"][0]["configCheck"], "ok");
    let bad = config(&ws, &ca, &fake, ", expiry: never");
    let report: serde_json::Value = serde_json::from_str(&inspect(&bad)).unwrap();
    let check = report["plugins"][0]["configCheck"].as_str().unwrap();
    assert!(
        check.contains("plugins[0].config.expiry: expected one of expiresIn, jwt, none at line 12"),
        "{check}"
    );
    assert_eq!(fake.calls(), 0);
}
