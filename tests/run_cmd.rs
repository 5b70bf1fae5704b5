//! `run`: one request through the host with the plugin always called, its
//! outbound requests traced and its passwords masked unless asked.

use crate::support;

use std::process::Command;
use support::kubelet::{Provider, RequestSpec, V1};
use support::server::{Reply, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(config: &std::path::Path, request: &RequestSpec, extra: &[&str]) -> Run {
    let ws = Workspace::new();
    let file = ws.write("request.json", request.encode());
    let out = Command::new(host_binary())
        .arg("--config")
        .arg(config)
        .arg("run")
        .arg("--request")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    Run {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn probe(ws: &Workspace, server: &TestServer, granted: bool) -> std::path::PathBuf {
    let grants = if granted {
        format!(
            "    grants:\n      outbound: [\"http://{}\"]\n",
            server.addr
        )
    } else {
        String::new()
    };
    ws.config(&format!(
        "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n{grants}",
        artifacts::HTTP_PROBE,
        server.url("/token?sig=query-secret")
    ))
}

#[test]
fn run_traces_every_request_masks_the_password_and_bypasses_the_cache() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "issued-password-value"));
    let config = probe(&ws, &server, true);
    let request = RequestSpec::new(V1, "team.registry.io/app");
    let out = run(&config, &request, &[]);
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("plugin    probe"), "{}", out.stdout);
    let get = format!("GET http://127.0.0.1:{}/token?…  200", server.addr.port());
    assert!(out.stdout.contains(&get), "{}", out.stdout);
    assert!(!out.stdout.contains("query-secret"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("issued-password-value"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("--show-secrets"), "{}", out.stdout);
    let shown = run(&config, &request, &["--show-secrets"]);
    assert!(
        shown.stdout.contains("issued-password-value"),
        "{}",
        shown.stdout
    );
    // Nothing was cached: the kubelet's exec still calls the plugin.
    assert_eq!(server.seen().len(), 2);
    let exec = Provider::new(host_binary(), &config).exec(&request);
    assert!(exec.success, "{exec:#?}");
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn run_shows_a_refused_request_and_ends_with_the_failure_line() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "never"));
    let config = probe(&ws, &server, false);
    let out = run(&config, &RequestSpec::new(V1, "team.registry.io/app"), &[]);
    assert!(!out.success);
    assert!(
        out.stdout.contains("REFUSED destination_not_allowed"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("RESPONSE"), "{}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("not granted"), "{}", out.stderr);
    assert_eq!(server.connections(), 0);
}

#[test]
fn run_says_when_no_plugin_serves_the_image() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "never"));
    let config = probe(&ws, &server, true);
    let out = run(
        &config,
        &RequestSpec::new(V1, "docker.io/library/nginx"),
        &[],
    );
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("no plugin's matchImages matches the image"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("OUTBOUND\n  (none)"), "{}", out.stdout);
    assert_eq!(server.connections(), 0);
}
