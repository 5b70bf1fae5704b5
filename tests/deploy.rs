//! `deploy/`: every manifest passes the Kubernetes schemas (offline, from
//! PyPI's `kubernetes-validate`, installed by scripts/setup.sh), and the
//! DaemonSet, the ConfigMap and the Containerfile agree with each other and
//! with the installer: the DaemonSet's own command runs the real installer.

use crate::support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::workspace::{Workspace, host_binary, runtime_binary};
use wcp_test_artifacts as artifacts;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.34.0",
        ])
        .args(files)
        .output()
        .expect("python3 runs (scripts/setup.sh installs kubernetes-validate)")
}

fn yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas() {
    let files = manifests();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "configmap.yaml",
            "daemonset.yaml",
            "namespace.yaml",
            "serviceaccount.yaml"
        ]
    );
    let out = validate(&files);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
    // The validator is not vacuous: a typo in a field fails it.
    let ws = Workspace::new();
    let broken = std::fs::read_to_string(deploy_dir().join("daemonset.yaml"))
        .unwrap()
        .replace("volumeMounts:", "volumeMount:");
    let out = validate(&[ws.write("daemonset.yaml", broken)]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `COPY --from=build SOURCE DEST` lines of the Containerfile: DEST -> SOURCE.
fn image_files() -> BTreeMap<String, String> {
    std::fs::read_to_string(deploy_dir().join("Containerfile"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("COPY --from=build "))
        .map(|l| {
            let (source, dest) = l.split_once(' ').unwrap();
            (dest.to_string(), source.to_string())
        })
        .collect()
}

struct Installer {
    command: Vec<String>,
    /// mountPath -> hostPath (hostPath volumes only).
    host_mounts: BTreeMap<String, String>,
    /// mountPath -> ConfigMap name.
    config_mounts: BTreeMap<String, String>,
}

fn installer() -> Installer {
    let ds = yaml(&deploy_dir().join("daemonset.yaml"));
    let spec = &ds["spec"]["template"]["spec"];
    let install = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "install")
        .unwrap();
    let command = install["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let (mut host_mounts, mut config_mounts) = (BTreeMap::new(), BTreeMap::new());
    for mount in install["volumeMounts"].as_array().unwrap() {
        let volume = volumes[mount["name"].as_str().unwrap()];
        let at = mount["mountPath"].as_str().unwrap().to_string();
        if let Some(path) = volume["hostPath"]["path"].as_str() {
            host_mounts.insert(at, path.to_string());
        } else if let Some(name) = volume["configMap"]["name"].as_str() {
            config_mounts.insert(at, name.to_string());
        }
    }
    Installer {
        command,
        host_mounts,
        config_mounts,
    }
}

fn flag<'a>(command: &'a [String], name: &str) -> &'a str {
    let i = command
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} not passed"));
    &command[i + 1]
}

#[test]
fn the_daemonset_passes_only_flags_the_installer_has_and_paths_agree() {
    let Installer {
        command,
        host_mounts,
        config_mounts,
    } = installer();
    let image = image_files();
    assert!(
        image.contains_key(&command[0]),
        "{} is not in the image",
        command[0]
    );
    assert_eq!(command[1], "install");
    let help = Command::new(host_binary())
        .args(["install", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for arg in command.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("  {arg} ")) || help.contains(&format!("  {arg}\n")),
            "{arg} is not an install flag:\n{help}"
        );
    }
    // Every hostPath is mounted at the same path below --root.
    let root = flag(&command, "--root");
    for (at, host) in &host_mounts {
        assert_eq!(
            at,
            &format!("{root}{host}"),
            "mount {at} of hostPath {host}"
        );
    }
    let on_host = |path: &str| host_mounts.values().any(|h| Path::new(path).starts_with(h));
    for name in ["--bin-dir", "--config-dir", "--kubelet-config"] {
        assert!(
            on_host(flag(&command, name)),
            "{name} {} is on no hostPath mount",
            flag(&command, name)
        );
    }
    // The host config comes from the ConfigMap; its plugins from the image.
    let config = Path::new(flag(&command, "--config"));
    let (mount, map) = config_mounts
        .iter()
        .find(|(at, _)| config.starts_with(at))
        .expect("--config is in a ConfigMap mount");
    let cm = yaml(&deploy_dir().join("configmap.yaml"));
    assert_eq!(cm["metadata"]["name"], map.as_str());
    let key = config.strip_prefix(mount).unwrap().to_str().unwrap();
    let host_config = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap has no {key}"));
    let host: Value = serde_yaml_ng::from_str(host_config).unwrap();
    for plugin in host["plugins"].as_array().unwrap() {
        let module = plugin["module"].as_str().unwrap();
        assert!(
            image.contains_key(module),
            "module {module} is not in the image"
        );
    }
    assert!(image.contains_key(flag(&command, "--exec-binary")));
    assert!(image.contains_key(flag(&command, "--runtime-binary")));
    // The runtime the image's front hands misses to is beside it.
    assert_eq!(
        Path::new(flag(&command, "--runtime-binary")).parent(),
        Path::new(flag(&command, "--exec-binary")).parent()
    );
    // The host's cache directory (where install precompiles) is on the node.
    assert!(
        !host_config.contains("directory:"),
        "the ConfigMap keeps the default cache directory"
    );
    assert!(on_host("/var/lib/kubelet/wasm-credential-provider/cache"));
    // Every plugin the image ships is one the plugins workspace builds.
    let built = Path::new(artifacts::STATIC_PLUGIN).parent().unwrap();
    for source in image.values().filter(|s| s.ends_with(".wasm")) {
        let file = Path::new(source).file_name().unwrap();
        assert!(
            built.join(file).exists(),
            "{source}: no such plugin is built"
        );
    }
}

/// The DaemonSet's own command, run against a temporary root, with the
/// image's paths mapped to the files built here.
#[test]
fn the_daemonset_command_installs_a_node() {
    let Installer {
        command,
        config_mounts,
        ..
    } = installer();
    let image = image_files();
    let ws = Workspace::new();
    let built = Path::new(artifacts::STATIC_PLUGIN).parent().unwrap();
    let cm = yaml(&deploy_dir().join("configmap.yaml"));
    let config = Path::new(flag(&command, "--config"));
    let mount = config_mounts
        .keys()
        .find(|at| config.starts_with(at))
        .unwrap();
    let mut host_config = cm["data"][config.strip_prefix(mount).unwrap().to_str().unwrap()]
        .as_str()
        .unwrap()
        .to_string();
    for (dest, source) in image.iter().filter(|(d, _)| d.ends_with(".wasm")) {
        let file = built.join(Path::new(source).file_name().unwrap());
        host_config = host_config.replace(dest.as_str(), &file.display().to_string());
    }
    let source = ws.write("source/host.yaml", host_config);
    let root = ws.path().join("root");
    let mut args: Vec<String> = command[2..].to_vec();
    for (name, value) in [
        ("--root", root.display().to_string()),
        ("--config", source.display().to_string()),
        ("--exec-binary", host_binary().display().to_string()),
        ("--runtime-binary", runtime_binary().display().to_string()),
    ] {
        let i = args.iter().position(|a| a == name).unwrap();
        args[i + 1] = value;
    }
    let out = Command::new(host_binary())
        .arg("install")
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("check: 0 error(s), 0 warning(s)"),
        "{stdout}"
    );
    let bin_dir = flag(&command, "--bin-dir").trim_start_matches('/');
    assert!(root.join(bin_dir).join("wasm-credential-provider").exists());
    assert!(
        root.join(bin_dir)
            .join("wasm-credential-provider-runtime")
            .exists()
    );
    assert!(
        root.join(flag(&command, "--kubelet-config").trim_start_matches('/'))
            .exists()
    );
}
