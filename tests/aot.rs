//! Precompiled artifacts: produced by the host, verified before use, and
//! never trusted when modified, swapped, truncated or foreign. The artifact
//! cache never fails a request.

mod support;

use std::path::PathBuf;
use support::kubelet::{Provider, RequestSpec, V1};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

struct Setup {
    ws: Workspace,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let ws = Workspace::new();
        // No credential caching: every exec runs the plugin.
        let config = ws.config(&format!(
            "  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    cache: {{defaultDuration: 0s}}\n  - name: probe\n    module: {}\n    matchImages: [\"probe.io\"]\n    config: {{target: \"http://127.0.0.1:9\"}}\n",
            artifacts::STATIC_PLUGIN,
            artifacts::HTTP_PROBE
        ));
        Self { ws, config }
    }

    /// Runs the static plugin; returns how its component was obtained.
    fn run(&self) -> String {
        let exec = Provider::new(host_binary(), &self.config)
            .exec(&RequestSpec::new(V1, "a.registry.io/x"));
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        assert_eq!(resp.auth["a.registry.io"].password, "p");
        let audit = std::fs::read_to_string(self.ws.path().join("audit.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        last["component"].as_str().unwrap().to_string()
    }

    fn artifacts(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.ws.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    }

    fn static_artifact(&self) -> PathBuf {
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                std::fs::read(artifacts::STATIC_PLUGIN).unwrap(),
            ))
        };
        self.artifacts()
            .into_iter()
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&sha))
            .expect("static plugin artifact")
    }

    fn compile(&self) -> String {
        support::workspace::host_command(&self.config, &["compile"])
    }
}

#[test]
fn first_use_compiles_then_loads() {
    let s = Setup::new();
    assert_eq!(s.run(), "compiled");
    assert_eq!(s.run(), "loaded");
    let artifact = s.static_artifact();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&artifact).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = s.ws.cache_dir().join("host.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
}

#[test]
fn compile_command_precompiles_every_plugin() {
    let s = Setup::new();
    let out = s.compile();
    assert!(out.contains("static: compiled"), "{out}");
    assert!(out.contains("probe: compiled"), "{out}");
    assert_eq!(s.artifacts().len(), 2);
    assert_eq!(s.run(), "loaded");
    assert!(s.compile().contains("static: up to date"));
}

#[test]
fn tampered_artifacts_are_never_executed() {
    type Tamper = (&'static str, fn(&Setup, &std::path::Path));
    let cases: [Tamper; 6] = [
        ("flipped code byte", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() - 100;
            b[i] ^= 0x40;
            std::fs::write(p, b).unwrap();
        }),
        ("truncated", |_, p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() / 3]).unwrap();
        }),
        ("swapped with another module's artifact", |s, p| {
            let other = s.artifacts().into_iter().find(|a| a != p).unwrap();
            std::fs::copy(other, p).unwrap();
        }),
        ("foreign format version", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            b[11] = b'9';
            std::fs::write(p, b).unwrap();
        }),
        ("produced under another host key", |s, _| {
            std::fs::write(s.ws.cache_dir().join("host.key"), [7u8; 32]).unwrap();
        }),
        ("world-writable", |_, p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
        }),
    ];
    for (name, tamper) in cases {
        let s = Setup::new();
        s.compile();
        let artifact = s.static_artifact();
        tamper(&s, &artifact);
        let how = s.run();
        assert!(how.starts_with("recompiled: "), "{name}: {how}");
        println!("{name}: {how}");
        // The replacement is good again.
        assert_eq!(s.run(), "loaded", "{name}");
    }
}

#[test]
fn unusable_cache_directory_still_answers() {
    let s = Setup::new();
    std::fs::create_dir_all(s.ws.cache_dir()).unwrap();
    std::os::unix::fs::chown(s.ws.cache_dir(), Some(65534), Some(65534)).unwrap();
    let exec =
        Provider::new(host_binary(), &s.config).exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert!(exec.success, "{exec:#?}");
}
