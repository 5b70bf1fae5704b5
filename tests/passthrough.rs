//! The pass-through plugin: the pod's service-account token is the
//! registry password (Harbor federated robots, Zot). No network; only
//! allowed when answers are cached per token, and the refusal otherwise
//! says exactly what to set.

use crate::support;

use std::path::PathBuf;
use support::kubelet::{Provider, RequestSpec, V1};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

fn token(nonce: &str) -> String {
    support::tokens::sa_token("harbor.example.com", "team", "puller", "uid-1", nonce)
}

fn config(ws: &Workspace, extra: &str) -> PathBuf {
    ws.config(&format!(
        "  - name: harbor\n    module: {}\n    matchImages: [\"harbor.example.com\"]\n    config: {{username: robot$team+puller}}\n    grants: {{serviceAccountToken: true}}\n{extra}",
        artifacts::PASSTHROUGH_PLUGIN
    ))
}

#[test]
fn the_token_is_the_password_cached_per_token() {
    let ws = Workspace::new();
    let provider = Provider::new(
        host_binary(),
        &config(&ws, "    cache: {tokenCacheType: Token}\n"),
    );
    // Two pods of one service account: each gets its own token back, never
    // the other's from the cache.
    for nonce in ["pod-1", "pod-2", "pod-1"] {
        let token = token(nonce);
        let exec =
            provider.exec(&RequestSpec::new(V1, "harbor.example.com/team/app").token(&token));
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        let auth = &resp.auth["harbor.example.com"];
        assert_eq!(auth.username, "robot$team+puller");
        assert_eq!(auth.password, token);
        // The token expires far ahead: the plugin's maxDuration (12h) bounds
        // it. The repeat is a hit: what is left, a second less if a second
        // boundary passed since the first exec stored it.
        let duration = resp.cache_duration.as_deref();
        assert!(
            duration == Some("12h0m0s") || (nonce == "pod-1" && duration == Some("11h59m59s")),
            "{duration:?}"
        );
        assert!(!exec.stderr.contains(&token), "{}", exec.stderr);
    }
    // Without a token: one line naming the settings.
    let exec = provider.exec(&RequestSpec::new(V1, "harbor.example.com/team/app"));
    let line = exec.assert_clean_failure("tokenAttributes");
    assert!(line.contains("configuration error"), "{line}");
}

#[test]
fn cached_per_service_account_it_is_refused_with_the_settings_to_change() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &config(&ws, "")).env("WCP_LOG", "debug");
    let token = token("pod-1");
    let exec = provider.exec(&RequestSpec::new(V1, "harbor.example.com/team/app").token(&token));
    let line = support::exchanges::debug_failure_line(
        &exec,
        "set `cache: {tokenCacheType: Token}` on this plugin in the host config and `tokenAttributes.cacheType: Token` on the kubelet's CredentialProviderConfig entry",
    );
    assert!(line.contains("plugin \"harbor\""), "{line}");
    assert!(!exec.stderr.contains(&token), "{}", exec.stderr);
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap_or_default();
    assert!(!audit.contains(&token), "{audit}");
}

#[test]
fn it_declares_no_network() {
    let out = std::process::Command::new(host_binary())
        .args(["inspect", artifacts::PASSTHROUGH_PLUGIN, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let declared = &report["declared"];
    assert_eq!(declared["outbound"], serde_json::json!([]), "{report:#}");
    assert_eq!(declared["serviceAccountToken"], true, "{report:#}");
}
