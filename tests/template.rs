//! The provider template (`templates/provider`) works as shipped: its own
//! native test passes with `cargo test` (the SDK's `testing` feature), and
//! its component, built for wasm32-wasip2 by `wcp-test-artifacts`, exchanges
//! a service-account token at an RFC 8693 endpoint through the real host.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::kubelet::{Provider, RequestSpec, V1};
use support::server::{Reply, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/provider")
}

/// One value of an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body).replace('+', " ");
    let raw = text.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then_some(v)
    })?;
    let mut out = Vec::new();
    let mut rest = raw.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' && tail.len() >= 2 {
            out.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).ok()
}

#[test]
fn template_passes_its_own_native_test() {
    // The host binary lives in <target>/debug: build the template's test
    // there too, so its dependencies are shared, not built again elsewhere.
    let target = host_binary()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .args(["test", "--offline", "--locked", "--manifest-path"])
        .arg(template_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo test of the template failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 3 passed"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn template_component_exchanges_the_token_through_the_host() {
    let ws = Workspace::new();
    let sa_token = support::tokens::sa_token("sts.example.com", "team", "puller", "uid-1", "pod-1");
    let expected = sa_token.clone();
    let server = TestServer::http(move |seen| {
        let ok = seen.method == "POST"
            && seen.path == "/token"
            && form_value(&seen.body, "subject_token").as_deref() == Some(expected.as_str())
            && form_value(&seen.body, "grant_type").as_deref()
                == Some("urn:ietf:params:oauth:grant-type:token-exchange")
            && form_value(&seen.body, "audience").as_deref() == Some("team.registry.io");
        if ok {
            Reply::Full(
                200,
                vec![("content-type".into(), "application/json".into())],
                br#"{"access_token":"registry-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.to_vec(),
            )
        } else {
            Reply::Full(
                400,
                vec![("content-type".into(), "application/json".into())],
                br#"{"error":"invalid_grant","error_description":"the subject token was refused"}"#
                    .to_vec(),
            )
        }
    });
    let config = ws.config(&format!(
        "  - name: exchange\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config:\n      tokenEndpoint: \"{}\"\n    grants:\n      outbound: [\"http://{}\"]\n      serviceAccountToken: true\n",
        artifacts::TEMPLATE_PROVIDER,
        server.url("/token"),
        server.addr
    ));
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "team.registry.io/app").token(&sa_token));
    assert!(exec.success, "{exec:#?}");
    let response: serde_json::Value = serde_json::from_slice(&exec.stdout).unwrap();
    let auth = &response["auth"]["team.registry.io"];
    assert_eq!(auth["username"], "oauth2", "{response}");
    assert_eq!(auth["password"], "registry-token", "{response}");
    assert_eq!(server.connections(), 1);

    // A refusal is the operator's "unauthorized" with the endpoint's words.
    let other = support::tokens::sa_token("sts.example.com", "team", "other", "uid-2", "pod-2");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "team.registry.io/app").token(&other));
    let line = exec.assert_clean_failure("unauthorized");
    assert!(
        line.contains("invalid_grant: the subject token was refused"),
        "{line}"
    );
}
