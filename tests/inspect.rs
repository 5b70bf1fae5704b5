//! `inspect`: what a security team sees for a component, with and without
//! the operator's grant.

use crate::support;

use std::process::Command;
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

fn inspect(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(host_binary())
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn table_shows_declaration_imports_and_grant_diff() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: robot, extra: x}}\n    configFromEnv: {{password: PW}}\n    grants:\n      outbound: [\"https://evil.example.com\"]\n",
        artifacts::STATIC_PLUGIN
    ));
    let (ok, out, err) = inspect(&[
        artifacts::STATIC_PLUGIN,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for needle in [
        "provider API    wcp:credential-provider@0.1.0",
        "config keys           matchKey, password, username",
        "wcp:credential-provider/config@0.1.0",
        "GRANTED to plugin \"static\"",
        "sha256 pin            none",
        "declared, not granted config matchKey (not set)",
        "granted, not declared outbound https://evil.example.com, config extra (set, withheld)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(!out.contains("REFUSED"), "{out}");
}

#[test]
fn json_is_complete_and_every_built_component_import_is_classified() {
    let components = [
        artifacts::STATIC_PLUGIN,
        artifacts::HTTP_PROBE,
        artifacts::ENV_PROBE,
        artifacts::FS_PROBE,
        artifacts::SOCKET_PROBE,
        artifacts::MEMORY_BOMB,
    ];
    for wasm in components {
        let (ok, out, err) = inspect(&[wasm, "--output", "json"]);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["providerApi"], "0.1.0");
        assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
        for import in report["imports"].as_array().unwrap() {
            assert!(
                import["class"] == "gated" || import["class"] == "harmless",
                "{wasm}: unclassified import {import}"
            );
        }
    }
    let (_, out, _) = inspect(&[artifacts::HTTP_PROBE, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["declared"]["outbound"][0], "config:target");
    let outgoing = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["name"]
                .as_str()
                .unwrap()
                .starts_with("wasi:http/outgoing-handler")
        })
        .expect("http-probe imports outgoing-handler");
    assert_eq!(outgoing["class"], "gated");
}

#[test]
fn other_world_and_garbage() {
    let (ok, out, _) = inspect(&[artifacts::OTHER_WORLD_COMPONENT]);
    assert!(ok);
    assert!(
        out.contains("none: not a wcp:credential-provider component"),
        "{out}"
    );
    let ws = Workspace::new();
    let garbage = ws.write("x.wasm", b"garbage");
    let (ok, _, err) = inspect(&[garbage.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("is not a WebAssembly component"), "{err}");
    let config = ws.config(&format!(
        "  - name: other\n    module: {}\n    matchImages: [\"x.io\"]\n",
        artifacts::HTTP_PROBE
    ));
    let (ok, _, err) = inspect(&[
        artifacts::STATIC_PLUGIN,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no plugin in"), "{err}");
}

/// A component without a declaration (built without
/// `declare_capabilities!`) can use nothing; inspect says so plainly
/// instead of showing empty lists.
#[test]
fn a_missing_declaration_section_is_named() {
    let (ok, out, err) = inspect(&[artifacts::OTHER_WORLD_COMPONENT]);
    assert!(ok, "{err}");
    assert!(
        out.contains("MISSING: the component carries no wcp-capabilities section"),
        "{out}"
    );
    let (ok, json, err) = inspect(&[artifacts::OTHER_WORLD_COMPONENT, "--output", "json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["declarationSection"], false);
    // A component with one is not flagged.
    let (_, out, _) = inspect(&[artifacts::STATIC_PLUGIN]);
    assert!(!out.contains("MISSING"), "{out}");
    let (_, json, _) = inspect(&[artifacts::STATIC_PLUGIN, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["declarationSection"], true);
}

/// The service-account annotations a component reads are part of what it
/// asks for: shown in the table and the JSON.
#[test]
fn declared_annotations_are_shown() {
    let (ok, table, _) = inspect(&[artifacts::ACR_PLUGIN]);
    assert!(ok);
    assert!(
        table.contains("  annotations           kubernetes.azure.com/acr-client-id, kubernetes.azure.com/acr-tenant-id\n"),
        "{table}"
    );
    let (ok, json, _) = inspect(&[artifacts::ECR_PLUGIN, "--output", "json"]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report["declared"]["annotations"],
        serde_json::json!(["eks.amazonaws.com/ecr-role-arn"])
    );
    // A component that declares none has no such field.
    let (_, json, _) = inspect(&[artifacts::STATIC_PLUGIN, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(report["declared"].get("annotations").is_none(), "{json}");
}
