//! A module unchanged since an exec hashed it is not hashed again
//! (`host/src/stamp.rs`): the digest comes from a MAC'd stamp bound to the
//! file's identity. These tests change the file every way an operator or
//! attacker could and check the pin still holds.

use crate::support;
use std::time::Duration;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts::STATIC_PLUGIN;

struct Pinned {
    ws: Workspace,
    module: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Pinned {
    /// The static plugin copied into the workspace, pinned, no credential
    /// caching (every exec runs the plugin), and old enough to be stamped.
    fn new() -> Self {
        let ws = Workspace::new();
        let bytes = std::fs::read(STATIC_PLUGIN).unwrap();
        let module = ws.write("static.wasm", &bytes);
        let pin = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let config = ws.config(&format!(
            "  - name: p\n    module: {}\n    sha256: {pin}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    cache: {{defaultDuration: 0s}}\n",
            module.display()
        ));
        // A file changed within the last 2 s is never stamped.
        std::thread::sleep(Duration::from_millis(2100));
        Self { ws, module, config }
    }

    fn exec(&self, level: &str) -> Exec {
        Provider::new(host_binary(), &self.config)
            .env("WCP_LOG", level)
            .exec(&RequestSpec::new(V1, "a.registry.io/x"))
    }
}

/// Whether the exec read the module's bytes (a stamp that records the
/// capability section spares the read).
fn read_module(exec: &Exec) -> bool {
    let line = exec
        .stderr
        .lines()
        .find(|l| l.contains("module read"))
        .unwrap_or_else(|| panic!("no module read line in\n{}", exec.stderr));
    assert!(
        line.contains("read=true") || line.contains("read=false"),
        "{line}"
    );
    line.contains("read=true")
}

fn digest_from(exec: &Exec) -> &'static str {
    assert!(exec.success, "{exec:#?}");
    if exec.stderr.contains("digest=\"stamp\"") || exec.stderr.contains("digest=stamp") {
        "stamp"
    } else if exec.stderr.contains("digest=\"hashed\"") || exec.stderr.contains("digest=hashed") {
        "hashed"
    } else {
        panic!("no module read line in\n{}", exec.stderr)
    }
}

#[test]
fn an_unchanged_module_is_hashed_once_and_a_rewritten_one_meets_its_pin_again() {
    let p = Pinned::new();
    let first = p.exec("debug");
    assert_eq!(digest_from(&first), "hashed");
    assert!(read_module(&first));
    // Stamped: neither hashed nor read, and the plugin's typed config is
    // still checked against its declaration (recorded in the stamp): the
    // exec answers as the first did.
    for _ in 0..2 {
        let stamped = p.exec("debug");
        assert_eq!(digest_from(&stamped), "stamp");
        assert!(!read_module(&stamped), "{}", stamped.stderr);
        assert_eq!(stamped.stdout, first.stdout);
    }

    // Rewritten in place, same size, one byte different: the pin refuses it.
    let mut bytes = std::fs::read(&p.module).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&p.module, &bytes).unwrap();
    p.exec("warn").assert_clean_failure("refusing to run it");

    // Put back (new ctime): hashed again, then the pin holds.
    bytes[last] ^= 0x01;
    std::fs::write(&p.module, &bytes).unwrap();
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
}

#[test]
fn a_stamped_module_still_meets_a_pin_changed_in_the_config() {
    let p = Pinned::new();
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
    assert_eq!(digest_from(&p.exec("debug")), "stamp");
    // The module is untouched (its stamp holds); the operator pins another
    // digest: refused from the stamped digest without reading the module.
    let text = std::fs::read_to_string(&p.config).unwrap();
    let pin = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .unwrap()
        .to_string();
    let other = format!("{:064x}", 7);
    std::fs::write(&p.config, text.replace(&pin, &other)).unwrap();
    let exec = p.exec("debug");
    assert!(!exec.success && exec.stdout.is_empty(), "{exec:#?}");
    assert!(!read_module(&exec), "{}", exec.stderr);
    let last = exec.stderr.lines().last().unwrap();
    assert!(
        last.contains("refusing to run it") && last.contains(&other),
        "{}",
        exec.stderr
    );
}

#[test]
fn a_module_replaced_by_another_file_is_hashed_again() {
    let p = Pinned::new();
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
    // Swapped by rename for another file of the same size (another inode),
    // and its times set back to the original's.
    let original = std::fs::metadata(&p.module).unwrap();
    let mut bytes = std::fs::read(&p.module).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let other = p.ws.write("other.wasm", &bytes);
    let times = std::fs::FileTimes::new()
        .set_modified(original.modified().unwrap())
        .set_accessed(original.accessed().unwrap());
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_times(times)
        .unwrap();
    std::fs::rename(&other, &p.module).unwrap();
    p.exec("warn").assert_clean_failure("refusing to run it");
}

#[test]
fn stamps_in_the_cache_directory_cannot_vouch_for_another_module() {
    let p = Pinned::new();
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
    // Every stamp rewritten to claim a digest it was not given: ignored.
    for entry in std::fs::read_dir(p.ws.cache_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "stamp") {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[20] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
        }
    }
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
}

#[test]
fn the_declaration_a_stamp_records_still_bounds_the_plugins_config() {
    let p = Pinned::new();
    assert_eq!(digest_from(&p.exec("debug")), "hashed");
    assert_eq!(digest_from(&p.exec("debug")), "stamp");
    // The same module under a config with a key its declaration does not
    // name: kept from the plugin, by the stamped declaration as by the
    // module's, while the keys it declares are passed.
    let text = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace("password: p}", "password: p, token: t}");
    std::fs::write(&p.config, text).unwrap();
    let exec = Provider::new(host_binary(), &p.config)
        .env("WCP_LOG", "debug")
        .exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert_eq!(digest_from(&exec), "stamp");
    assert!(!read_module(&exec), "{}", exec.stderr);
    let undeclared: Vec<&str> = exec
        .stderr
        .lines()
        .filter(|l| l.contains("the plugin does not declare it"))
        .collect();
    assert_eq!(undeclared.len(), 1, "{}", exec.stderr);
    assert!(undeclared[0].contains("key=token"), "{}", exec.stderr);
    let answer: serde_json::Value = serde_json::from_slice(&exec.stdout).unwrap();
    assert_eq!(answer["auth"]["a.registry.io"]["username"], "u", "{answer}");
}
