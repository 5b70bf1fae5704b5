//! `install` under a temporary root: lays down the binaries, plugins, host
//! config and the merged kubelet config, precompiles and checks; reruns
//! change nothing; changed files and symbolic links are refused.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::workspace::{Workspace, host_binary, runtime_binary};
use wcp_test_artifacts as artifacts;

const BIN_DIR: &str = "usr/libexec/kubernetes/credential-providers";
const CONFIG_DIR: &str = "etc/kubernetes/wasm-credential-provider";
const KUBELET_CONFIG: &str = "etc/kubernetes/image-credential-provider-config.yaml";

/// Another vendor's provider, already on the node.
const EXISTING: &str = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ecr-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    defaultCacheDuration: 12h\n";

struct Node {
    ws: Workspace,
    source: PathBuf,
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Node {
    fn new() -> Self {
        let ws = Workspace::new();
        let plugin = ws.write(
            "image/plugins/static.wasm",
            std::fs::read(artifacts::STATIC_PLUGIN).unwrap(),
        );
        let source = ws.write(
            "image/host.yaml",
            format!("apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n", plugin.display()),
        );
        let node = Self { ws, source };
        node.ws.write(&format!("root/{KUBELET_CONFIG}"), EXISTING);
        let other = node.ws.write(
            &format!("root/{BIN_DIR}/ecr-credential-provider"),
            "#!/bin/sh\n",
        );
        std::fs::set_permissions(other, std::fs::Permissions::from_mode(0o755)).unwrap();
        node
    }

    fn root(&self) -> PathBuf {
        self.ws.path().join("root")
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root().join(path)
    }

    fn install(&self, extra: &[&str]) -> Run {
        let out = Command::new(host_binary())
            .arg("install")
            .arg("--root")
            .arg(self.root())
            .arg("--config")
            .arg(&self.source)
            .args(extra)
            .output()
            .unwrap();
        Run {
            success: out.status.success(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Every file below the root with its mode, modification time and
    /// digest (a digest, not the bytes: a failure prints them all).
    /// The host's cache directory (artifacts and their stamps) is the host's
    /// own state, which every exec may update, so it is left out.
    fn snapshot(&self) -> Vec<(PathBuf, u32, std::time::SystemTime, String)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root()];
        let cache = self.at("var/lib/kubelet/wasm-credential-provider/cache");
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if path == cache {
                    continue;
                }
                if meta.is_dir() {
                    dirs.push(path);
                } else {
                    out.push((
                        path.clone(),
                        meta.permissions().mode() & 0o7777,
                        meta.modified().unwrap(),
                        {
                            use sha2::Digest;
                            hex::encode(sha2::Sha256::digest(
                                std::fs::read(&path).unwrap_or_default(),
                            ))
                        },
                    ));
                }
            }
        }
        out.sort();
        out
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn save(name: &str, run: &Run) {
    if let Ok(dir) = std::env::var("WCP_INSTALL_REPORT_DIR") {
        std::fs::write(
            Path::new(&dir).join(name),
            format!("{}{}", run.stdout, run.stderr),
        )
        .unwrap();
    }
}

#[test]
fn installs_idempotently_under_a_root() {
    let node = Node::new();
    let before = node.snapshot();
    // The dry run shows every change and writes nothing.
    let dry = node.install(&["--dry-run"]);
    assert!(dry.success, "{}{}", dry.stdout, dry.stderr);
    save("install-dry-run.txt", &dry);
    for line in [
        format!("  create     /{CONFIG_DIR}/plugins/static.wasm (644, "),
        format!("  create     /{CONFIG_DIR}/host.yaml (600, "),
        format!("  create     /{BIN_DIR}/wasm-credential-provider-compile (755, "),
        format!("  create     /{BIN_DIR}/wasm-credential-provider-runtime (755, "),
        format!("  create     /{BIN_DIR}/wasm-credential-provider (755, "),
        format!("  update     /{KUBELET_CONFIG} (644, "),
        format!("provider entry for /{KUBELET_CONFIG}:\n"),
        format!("args:\n- --config\n- /{CONFIG_DIR}/host.yaml\n"),
        "dry run: 6 file(s) would change".to_string(),
        format!("  --image-credential-provider-config=/{KUBELET_CONFIG}"),
        format!("  --image-credential-provider-bin-dir=/{BIN_DIR}"),
        "kubelet restart: needed".to_string(),
    ] {
        assert!(
            dry.stdout.contains(&line),
            "missing {line:?} in\n{}",
            dry.stdout
        );
    }
    assert_eq!(node.snapshot(), before, "a dry run wrote something");

    let first = node.install(&[]);
    assert!(first.success, "{}{}", first.stdout, first.stderr);
    save("install-first.txt", &first);
    assert!(
        first.stdout.contains("6 file(s) changed"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("static: compiled "),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("check: 0 error(s), 0 warning(s)"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("kubelet restart: needed"),
        "{}",
        first.stdout
    );
    assert_eq!(first.stderr, "");
    assert_eq!(
        mode(&node.at(&format!("{BIN_DIR}/wasm-credential-provider"))),
        0o755
    );
    assert_eq!(
        mode(&node.at(&format!("{BIN_DIR}/wasm-credential-provider-compile"))),
        0o755
    );
    // The front and the runtime it hands misses to, from this build.
    for (installed, built) in [
        ("wasm-credential-provider", host_binary()),
        ("wasm-credential-provider-runtime", runtime_binary()),
    ] {
        let path = node.at(&format!("{BIN_DIR}/{installed}"));
        assert_eq!(mode(&path), 0o755);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&built).unwrap(),
            "{installed}"
        );
    }
    assert_eq!(
        mode(&node.at(&format!("{CONFIG_DIR}/plugins/static.wasm"))),
        0o644
    );
    assert_eq!(mode(&node.at(&format!("{CONFIG_DIR}/host.yaml"))), 0o600);
    assert_eq!(
        mode(&node.at(&format!("{CONFIG_DIR}/.install-manifest.json"))),
        0o600
    );
    // The other provider stays; ours runs the installed host config.
    let kubelet = std::fs::read_to_string(node.at(KUBELET_CONFIG)).unwrap();
    let value: serde_json::Value = serde_yaml_ng::from_str(&kubelet).unwrap();
    let providers = value["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "{kubelet}");
    assert_eq!(providers[0]["name"], "ecr-credential-provider");
    assert_eq!(providers[0]["defaultCacheDuration"], "12h");
    assert_eq!(providers[1]["name"], "wasm-credential-provider");
    assert_eq!(
        providers[1]["args"],
        serde_json::json!(["--config", format!("/{CONFIG_DIR}/host.yaml")])
    );
    assert_eq!(
        providers[1]["matchImages"],
        serde_json::json!(["*.registry.io"])
    );
    // The installed host config points at the installed, pinned plugin.
    let host = std::fs::read_to_string(node.at(&format!("{CONFIG_DIR}/host.yaml"))).unwrap();
    assert!(host.contains("module: plugins/static.wasm"), "{host}");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(artifacts::STATIC_PLUGIN).unwrap(),
        ))
    };
    assert!(host.contains(&sha), "{host}");
    // Precompiled into the cache directory, below the root.
    let cache = node.at("var/lib/kubelet/wasm-credential-provider/cache");
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].starts_with(&sha));

    // Again: nothing changes, not even a modification time.
    let installed = node.snapshot();
    let again = node.install(&[]);
    assert!(again.success, "{}{}", again.stdout, again.stderr);
    save("install-second.txt", &again);
    assert_eq!(
        again.stdout.matches("  unchanged  ").count(),
        6,
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("0 file(s) changed"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("static: up to date"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("kubelet restart: not needed"),
        "{}",
        again.stdout
    );
    assert_eq!(node.snapshot(), installed);
}

#[test]
fn a_changed_file_is_never_overwritten_without_force() {
    let node = Node::new();
    assert!(node.install(&[]).success);
    let host = node.at(&format!("{CONFIG_DIR}/host.yaml"));
    let edited = std::fs::read_to_string(&host)
        .unwrap()
        .replace("username: u", "username: edited");
    std::fs::write(&host, &edited).unwrap();
    let snapshot = node.snapshot();
    let run = node.install(&[]);
    assert!(!run.success);
    assert!(run.stdout.contains(&format!("  REFUSED    /{CONFIG_DIR}/host.yaml: changed since it was installed; rerun with --force")), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("install refused 1 file(s); nothing was written"),
        "{}",
        run.stderr
    );
    assert_eq!(node.snapshot(), snapshot);
    // The operator's own edit of our provider entry is refused the same way.
    let kubelet = node.at(KUBELET_CONFIG);
    let original = std::fs::read_to_string(&kubelet).unwrap();
    std::fs::write(&kubelet, original.replace("10m", "1m")).unwrap();
    let run = node.install(&[]);
    assert!(
        run.stdout
            .contains("provider \"wasm-credential-provider\" changed since it was installed"),
        "{}",
        run.stdout
    );
    // --force puts both back.
    let run = node.install(&["--force"]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(!std::fs::read_to_string(&host).unwrap().contains("edited"));
    assert!(std::fs::read_to_string(&kubelet).unwrap().contains("10m"));
    // A file the installer never wrote is not its to replace.
    let fresh = Node::new();
    let compiler = fresh.ws.write(
        &format!("root/{BIN_DIR}/wasm-credential-provider-compile"),
        "someone else's\n",
    );
    let run = fresh.install(&[]);
    assert!(!run.success);
    assert!(
        run.stdout.contains(
            "wasm-credential-provider-compile: exists and was not written by this installer"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&compiler).unwrap(),
        "someone else's\n"
    );
}

#[test]
fn symlinked_targets_are_refused_even_with_force() {
    let node = Node::new();
    let outside = node.ws.write("outside.yaml", "not the installer's\n");
    let link = node.at(&format!("{CONFIG_DIR}/host.yaml"));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let run = node.install(&["--force"]);
    assert!(!run.success);
    assert!(
        run.stdout
            .contains("is a symbolic link; refusing to write through it"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "not the installer's\n"
    );
    assert!(
        !node
            .at(&format!("{BIN_DIR}/wasm-credential-provider"))
            .exists()
    );
}

#[test]
fn a_new_plugin_needs_no_kubelet_restart_and_a_token_needs_an_audience() {
    let node = Node::new();
    assert!(node.install(&[]).success);
    // A new build of the plugin: plugin, pin and artifact change, the
    // kubelet's config does not.
    std::fs::write(
        node.ws.path().join("image/plugins/static.wasm"),
        std::fs::read(artifacts::ECR_PLUGIN).unwrap(),
    )
    .unwrap();
    let run = node.install(&[]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("  update     /{CONFIG_DIR}/plugins/static.wasm")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("  update     /{CONFIG_DIR}/host.yaml")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("kubelet restart: not needed"),
        "{}",
        run.stdout
    );
    // Granting the token needs the audience the kubelet should request.
    let text = std::fs::read_to_string(&node.source).unwrap().replace(
        "    config:",
        "    grants: {serviceAccountToken: true}\n    config:",
    );
    std::fs::write(&node.source, text).unwrap();
    let run = node.install(&[]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("is granted the service-account token: pass --token-audience"),
        "{}",
        run.stderr
    );
    let run = node.install(&[
        "--token-audience",
        "sts.amazonaws.com",
        "--optional-annotation-key",
        "eks.amazonaws.com/role-arn",
    ]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("kubelet restart: needed"),
        "{}",
        run.stdout
    );
    let kubelet: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(node.at(KUBELET_CONFIG)).unwrap())
            .unwrap();
    let attributes = &kubelet["providers"][1]["tokenAttributes"];
    assert_eq!(
        attributes["serviceAccountTokenAudience"],
        "sts.amazonaws.com"
    );
    assert_eq!(attributes["cacheType"], "ServiceAccount");
    // The flag's key, then the one the ECR component declares it reads.
    assert_eq!(
        attributes["optionalServiceAccountAnnotationKeys"],
        serde_json::json!([
            "eks.amazonaws.com/role-arn",
            "eks.amazonaws.com/ecr-role-arn"
        ])
    );
}
