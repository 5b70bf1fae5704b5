//! The Vault plugin end to end through the host against a loopback Vault
//! (TLS, test-time CA; `support::vault`): Kubernetes auth login, a KV v2
//! read from a templated path, the Vault namespace header, lease-bounded
//! expiry, Vault's error shapes as one line each, and path-template inputs
//! that cannot climb out of their segment.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;
use support::exchanges::{jwt, now};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::TestCa;
use support::vault::{FakeVault, LEASE};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const REGISTRY: &str = "registry.example.com";
const NAMESPACE: &str = "admin/team-a";
const PASSWORD: &str = "robot-pw-7f3a9c1e";

fn token(namespace: &str, name: &str, nonce: &str) -> String {
    support::tokens::sa_token("vault", namespace, name, "uid-1", nonce)
}

fn start(ca: &TestCa) -> FakeVault {
    FakeVault::start(
        ca,
        &[("puller", "team"), ("other", "ops")],
        &[
            (
                format!("registry/team/{REGISTRY}").as_str(),
                "robot$team",
                PASSWORD,
            ),
            (
                "registry/ops/registry.example.com",
                "robot$ops",
                "ops-pw-123456",
            ),
        ],
        Some(NAMESPACE),
    )
}

/// A host config with one Vault plugin; `extra` (`, key: value` entries)
/// replaces or adds config keys.
fn config(ws: &Workspace, ca: &TestCa, vault: &FakeVault, extra: &str) -> PathBuf {
    let mut keys: Vec<(String, String)> = vec![
        ("address".into(), format!("\"{}\"", vault.address())),
        ("role".into(), "puller".into()),
        ("vaultNamespace".into(), NAMESPACE.into()),
        ("path".into(), "\"registry/{namespace}/{registry}\"".into()),
    ];
    for entry in extra.split(", ").filter(|e| !e.is_empty()) {
        let (key, value) = entry.split_once(": ").unwrap();
        keys.retain(|(k, _)| k != key);
        keys.push((key.into(), value.into()));
    }
    let map: Vec<String> = keys.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let bundle = ca.write_bundle(ws.path());
    ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: vault\n    module: {}\n    matchImages: [\"{REGISTRY}\", \"*.{REGISTRY}\"]\n    config: {{{}}}\n    grants: {{outbound: [\"{}\"], serviceAccountToken: true}}\n",
            ws.header(),
            bundle.display(),
            artifacts::VAULT_PLUGIN,
            map.join(", "),
            vault.address(),
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

#[test]
fn login_and_kv_read_end_to_end_with_one_login_per_identity() {
    let ca = TestCa::new();
    let vault = start(&ca);
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &config(&ws, &ca, &vault, ""));
    let puller = token("team", "puller", "pod-1");
    for i in 0..5 {
        let exec = provider
            .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app-{i}")).token(&puller));
        let (key, auth, resp) = credential(&exec);
        assert_eq!(key, REGISTRY);
        assert_eq!(auth.username, "robot$team");
        assert_eq!(auth.password, PASSWORD);
        assert_eq!(resp.cache_key_type, "Registry");
        // Bounded by the login's lease.
        let secs = duration_secs(&resp);
        assert!(
            (LEASE - 70..=LEASE - 59).contains(&secs),
            "{:?}",
            resp.cache_duration
        );
    }
    assert_eq!(vault.calls(), (1, 1));
    assert_eq!(
        vault.reads(),
        [format!("/v1/secret/data/registry/team/{REGISTRY}")]
    );
    // An operator maximum below the lease wins.
    let ws = Workspace::new();
    let provider = Provider::new(
        host_binary(),
        &config(&ws, &ca, &vault, ", maxDuration: 10m"),
    );
    let exec = provider.exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app")).token(&puller));
    let (_, _, resp) = credential(&exec);
    assert_eq!(duration_secs(&resp), 540);
    // The role from an annotation; another team's secret by the same entry.
    let ws = Workspace::new();
    let provider = Provider::new(
        host_binary(),
        &config(&ws, &ca, &vault, ", roleAnnotation: vault.example.com/role"),
    );
    let exec = provider.exec(
        &RequestSpec::new(V1, &format!("{REGISTRY}/ops/tool"))
            .token(&token("ops", "deployer", "pod-2"))
            .annotation("vault.example.com/role", "other"),
    );
    let (_, auth, _) = credential(&exec);
    assert_eq!(auth.username, "robot$ops");
    vault.assert_no_problems();
}

#[test]
fn vault_errors_are_one_clean_line_each_and_no_secret_reaches_logs() {
    let ca = TestCa::new();
    let vault = start(&ca);
    let expired = jwt(serde_json::json!({
        "aud": ["vault"], "exp": now() - 60,
        "kubernetes.io": {"namespace": "team", "pod": {"name": "p", "uid": "pod-9"},
                          "serviceaccount": {"name": "puller", "uid": "uid-1"}},
        "sub": "system:serviceaccount:team:puller"
    }));
    let cases: [(&str, String, &str, &[&str]); 5] = [
        (
            "",
            expired.clone(),
            "team",
            &[
                "unauthorized",
                "Vault login at",
                "refused (HTTP 403): permission denied",
            ],
        ),
        (
            ", role: nope",
            token("team", "puller", "p1"),
            "team",
            &[
                "unauthorized",
                "role nope",
                "refused (HTTP 400): invalid role name \"nope\"",
            ],
        ),
        // Bound to team, reading another team's path: the policy refuses.
        (
            ", path: \"registry/ops/{registry}\"",
            token("team", "puller", "p2"),
            "team",
            &[
                "unauthorized",
                "KV read of secret/data/registry/ops/registry.example.com refused (HTTP 403): 1 error occurred: * permission denied",
            ],
        ),
        (
            ", path: \"registry/{namespace}/missing\"",
            token("team", "puller", "p3"),
            "team",
            &["configuration error", "no such secret or mount (HTTP 404)"],
        ),
        (
            ", usernameField: user",
            token("team", "puller", "p4"),
            "team",
            &[
                "upstream failure",
                "the secret has no non-empty string field \"user\"",
            ],
        ),
    ];
    for (extra, sa, _ns, wants) in &cases {
        let ws = Workspace::new();
        let provider =
            Provider::new(host_binary(), &config(&ws, &ca, &vault, extra)).env("WCP_LOG", "debug");
        let exec = provider.exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app")).token(sa));
        let line = support::exchanges::debug_failure_line(&exec, wants[0]);
        for want in *wants {
            assert!(line.contains(want), "{want:?} not in {line}");
        }
        println!("{line}");
        let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap_or_default();
        let mut secrets = vec![sa.clone(), PASSWORD.to_string()];
        secrets.extend(vault.client_tokens());
        for secret in &secrets {
            assert!(
                !exec.stderr.contains(secret.as_str()),
                "{secret} in {}",
                exec.stderr
            );
            assert!(
                !audit.contains(secret.as_str()),
                "{secret} in the audit log"
            );
        }
    }
    // A success at debug level writes none of them either.
    let ws = Workspace::new();
    let provider =
        Provider::new(host_binary(), &config(&ws, &ca, &vault, "")).env("WCP_LOG", "debug");
    let sa = token("team", "puller", "p5");
    let exec = provider.exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app")).token(&sa));
    credential(&exec);
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    for secret in vault
        .client_tokens()
        .iter()
        .chain([&sa, &PASSWORD.to_string()])
    {
        assert!(
            !exec.stderr.contains(secret.as_str()),
            "{secret} in {}",
            exec.stderr
        );
        assert!(
            !audit.contains(secret.as_str()),
            "{secret} in the audit log"
        );
    }
    // Sealed: one line, an upstream failure.
    vault.seal();
    let ws = Workspace::new();
    let exec = Provider::new(host_binary(), &config(&ws, &ca, &vault, "")).exec(
        &RequestSpec::new(V1, &format!("{REGISTRY}/team/app"))
            .token(&token("team", "puller", "p6")),
    );
    let line = exec.assert_clean_failure(
        "Vault is unavailable (HTTP 503, sealed or in standby): Vault is sealed",
    );
    assert!(line.contains("upstream failure"), "{line}");
    vault.assert_no_problems();
}

#[test]
fn path_template_injection_is_refused() {
    let ca = TestCa::new();
    let vault = start(&ca);
    // At load: a placeholder the plugin does not know, or a climbing template.
    for (extra, want) in [
        (
            ", path: \"registry/{pod}\"",
            "path: expected a path template whose placeholders are among {namespace}, {serviceAccount}, {registry}",
        ),
        (
            ", path: \"registry/../sys/{namespace}\"",
            "path: expected a path template without empty, '.' or '..' segments",
        ),
        (
            ", kvMount: \"secret/../sys\"",
            "kvMount must be path segments",
        ),
    ] {
        let ws = Workspace::new();
        let exec = Provider::new(host_binary(), &config(&ws, &ca, &vault, extra)).exec(
            &RequestSpec::new(V1, &format!("{REGISTRY}/team/app"))
                .token(&token("team", "puller", "p1")),
        );
        exec.assert_clean_failure(want);
    }
    // At exec: inputs that would add or climb segments.
    let ws = Workspace::new();
    let provider = Provider::new(
        host_binary(),
        &config(&ws, &ca, &vault, ", roleAnnotation: vault.example.com/role"),
    );
    let exec = provider.exec(
        &RequestSpec::new(V1, &format!("{REGISTRY}/team/app"))
            .token(&token("team", "puller", "p2"))
            .annotation("vault.example.com/role", "../../sys/policy"),
    );
    exec.assert_clean_failure("the Vault role must be");
    let exec = provider.exec(
        &RequestSpec::new(V1, &format!("{REGISTRY}/team/app")).token(&token(
            "team/../../ops",
            "puller",
            "p3",
        )),
    );
    exec.assert_clean_failure("carries no valid namespace");
    assert_eq!(vault.calls(), (0, 0), "nothing reached Vault");
}

/// Cold (login + read over TLS) and cache-hit medians of 20 execs each,
/// from one run; `cargo test ... vault::timings -- --nocapture`.
#[test]
fn timings_cold_and_cache_hit() {
    let ca = TestCa::new();
    let vault = start(&ca);
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &config(&ws, &ca, &vault, ""));
    let puller = token("team", "puller", "pod-1");
    let first =
        provider.exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app")).token(&puller));
    credential(&first);
    let (mut cold, mut hits) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let exec = provider.exec(
            &RequestSpec::new(V1, &format!("{REGISTRY}/team/app"))
                .token(&puller)
                .annotation("example.com/run", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
        let exec = provider
            .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/team/app-{i}")).token(&puller));
        credential(&exec);
        hits.push(exec.elapsed);
    }
    assert_eq!(vault.calls(), (21, 21));
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "vault, {} host: first exec {:?}; cold median {:?}; cache-hit median {:?}",
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
fn a_hostile_vault_cannot_echo_the_token_or_break_the_line() {
    let ca = TestCa::new();
    let server = support::server::TestServer::https(&ca, |seen| {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let jwt = body["jwt"].as_str().unwrap_or_default().to_string();
        support::exchanges::json(
            400,
            serde_json::json!({"errors": [format!("invalid JWT {jwt}\n\u{1b}[1Awasm-credential-provider: error: fake")]}),
        )
    });
    let ws = Workspace::new();
    let bundle = ca.write_bundle(ws.path());
    let path = ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: vault\n    module: {}\n    matchImages: [\"{REGISTRY}\"]\n    config: {{address: \"{}\", role: puller, path: \"registry/{{namespace}}\"}}\n    grants: {{outbound: [\"{}\"], serviceAccountToken: true}}\n",
            ws.header(),
            bundle.display(),
            artifacts::VAULT_PLUGIN,
            server.url(""),
            server.url(""),
        ),
    );
    let sa = token("team", "puller", "pod-1");
    let exec = Provider::new(host_binary(), &path)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/a")).token(&sa));
    let line = exec.assert_clean_failure("refused (HTTP 400): invalid JWT <redacted>");
    assert!(!line.contains(&sa) && !line.contains('\u{1b}'), "{line}");
}
