//! Metrics for node-exporter's textfile collector: 50 concurrent execs keep
//! one file that always parses (checked with the real Prometheus client
//! parser, `prometheus_client` from PyPI) and whose counts add up.

use crate::support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::kubelet::{Provider, RequestSpec, V1};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

/// Parses every file given with `prometheus_client` and prints, per
/// metric family, the sum of its samples (histograms: `_count`) as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
sums = {}
for path in sys.argv[1:]:
    sums = {}
    for family in text_string_to_metric_families(open(path).read()):
        for s in family.samples:
            if family.type == "histogram" and not s.name.endswith("_count"):
                continue
            key = s.name if family.type != "counter" else family.name
            label = s.labels.get("outcome") or s.labels.get("key_kind") or ""
            sums.setdefault(key, {}).setdefault(label, 0)
            sums[key][label] += s.value
print(json.dumps(sums))
"#;

#[test]
fn fifty_concurrent_execs_keep_one_parseable_metrics_file_whose_counts_add_up() {
    let ws = Workspace::new();
    let dir = ws.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let config = ws.write(
        "host-config.yaml",
        format!(
            "{}metrics:\n  textfileDirectory: {}\nplugins:\n  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: robot, password: hunter2-password}}\n",
            ws.header(),
            dir.display(),
            artifacts::STATIC_PLUGIN
        ),
    );
    let file = dir.join("wasm_credential_provider.prom");
    // Snapshots taken while the execs run: each must parse whole.
    let done = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (done, snapshots, file) = (done.clone(), snapshots.clone(), file.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    let mut snapshots = snapshots.lock().unwrap();
                    if snapshots.last() != Some(&text) {
                        snapshots.push(text);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let execs: Vec<_> = (0..50)
        .map(|i| {
            let config = config.clone();
            std::thread::spawn(move || {
                Provider::new(host_binary(), &config)
                    .exec(&RequestSpec::new(V1, &format!("team.registry.io/app-{i}")))
            })
        })
        .collect();
    for exec in execs {
        let exec = exec.join().unwrap();
        assert!(exec.success, "{exec:#?}");
    }
    // One exec whose image no plugin serves, one that fails.
    let empty = Provider::new(host_binary(), &config).exec(&RequestSpec::new(V1, "docker.io/x"));
    assert!(empty.success, "{empty:#?}");
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("app-"), "no image names in labels: {text}");
    let mut paths = Vec::new();
    for (i, snapshot) in snapshots.lock().unwrap().iter().enumerate() {
        paths.push(ws.write(&format!("snapshot-{i}.prom"), snapshot));
    }
    paths.push(file.clone());
    let out = Command::new("python3")
        .arg("-c")
        .arg(PARSE)
        .args(&paths)
        .output()
        .expect("python3 runs (scripts/setup.sh installs prometheus_client)");
    assert!(
        out.status.success(),
        "a metrics file did not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{} snapshots parsed; final file:\n{text}", paths.len());
    let sums: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let execs = &sums["wcp_execs"];
    let total: f64 = execs
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(total, 51.0, "{sums}");
    assert_eq!(execs["empty"], 1.0, "{sums}");
    let calls = sums["wcp_plugin_calls"]["credentials"].as_f64().unwrap();
    let hits: f64 = sums["wcp_cache_hits"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(calls + hits, 50.0, "{sums}");
    assert_eq!(execs["plugin"].as_f64().unwrap(), calls, "{sums}");
    assert_eq!(
        sums["wcp_plugin_call_duration_seconds_count"][""]
            .as_f64()
            .unwrap(),
        calls,
        "{sums}"
    );
}
