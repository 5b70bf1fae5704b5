//! OCI distribution and signatures against real parts: the distribution
//! registry (Debian `docker-registry`) on 127.0.0.1 with TLS from a
//! test-time CA and htpasswd auth, PyPI's `oras` as an independent client,
//! and `openssl` as an independent signer. Every refusal is one stderr
//! line, writes nothing and leaves nothing the exec path would load.

use crate::support;

use base64::Engine as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::kubelet::{Provider, RequestSpec, V1};
use support::registry::Registry;
use support::workspace::{Workspace, host_binary, host_command};
use wcp_test_artifacts as artifacts;

/// `sha256:<hex>` of `bytes`.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// An ECDSA P-256 key pair made by openssl: (private PEM, public PEM) paths.
fn openssl_key(ws: &Workspace, name: &str) -> (PathBuf, PathBuf) {
    let key = ws.path().join(format!("{name}.pem"));
    let public = ws.path().join(format!("{name}.pub"));
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public));
    (key, public)
}

/// The fingerprint of a public key as openssl sees it: SHA-256 of its DER.
fn openssl_fingerprint(public: &Path) -> String {
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(public));
    digest(&der)
}

/// `cosign sign-blob` format, made by openssl: base64 of the DER ECDSA
/// signature over SHA-256 of `message`.
fn openssl_sign(ws: &Workspace, key: &Path, message: &[u8]) -> String {
    let input = ws.write("to-sign.bin", message);
    let der = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&input));
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the host with `args` (no --config unless given); (success, stdout, stderr).
fn host(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(host_binary()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts one stderr line containing `needle`, a failure, and returns the line.
fn one_line_failure((ok, stdout, stderr): (bool, String, String), needle: &str) -> String {
    assert!(!ok, "expected a failure: {stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {lines:#?}");
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
    assert!(
        !lines[0].contains(support::registry::PASSWORD),
        "{}",
        lines[0]
    );
    lines[0].to_string()
}

/// Pushes the static plugin with our `push`; returns the manifest digest.
fn push_static(registry: &Registry, repo_tag: &str) -> String {
    let reference = registry.oci(repo_tag);
    let mut args = vec!["push", artifacts::STATIC_PLUGIN, reference.as_str()];
    let auth = registry.auth_args();
    args.extend(auth.iter().map(String::as_str));
    let (ok, stdout, stderr) = host(&args);
    assert!(ok, "{stderr}");
    let manifest = stdout
        .split("manifest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {stdout:?}"))
        .to_string();
    println!("{}", stdout.trim_end());
    manifest
}

/// A workspace with a host config whose plugin `static` is installed from
/// `source` into `static.wasm`, with the given `verify:` block (YAML lines).
struct Install {
    ws: Workspace,
    config: PathBuf,
    module: PathBuf,
}

impl Install {
    fn new(ws: Workspace, registry: &Registry, source: &str, verify: &str) -> Self {
        let module = ws.path().join("modules/static.wasm");
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        let config = ws.write(
            "host-config.yaml",
            format!(
                "{}tls:\n  caBundle: {}\nplugins:\n  - name: static\n    module: {}\n    source: {source}\n{verify}    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    cache: {{defaultDuration: 0s}}\n",
                ws.header(),
                registry.ca_file.display(),
                module.display()
            ),
        );
        Self { ws, config, module }
    }

    fn pull(&self, registry: &Registry) -> (bool, String, String) {
        let config = self.config.display().to_string();
        let mut args = vec!["--config", config.as_str(), "pull", "--plugin", "static"];
        let auth = registry.auth_args();
        // The CA comes from the config's tls.caBundle.
        args.extend(auth[2..].iter().map(String::as_str));
        host(&args)
    }

    fn exec(&self) -> support::kubelet::Exec {
        Provider::new(host_binary(), &self.config).exec(&RequestSpec::new(V1, "a.registry.io/x"))
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.ws.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Nothing was written and nothing can be loaded.
    fn assert_nothing_installed(&self) {
        assert!(!self.module.exists(), "module was written");
        let record = PathBuf::from(format!("{}.oci.json", self.module.display()));
        assert!(!record.exists(), "pull record was written");
        let leftovers: Vec<_> = std::fs::read_dir(self.module.parent().unwrap())
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        self.exec().assert_clean_failure("cannot read module");
    }
}

#[test]
fn push_and_pull_both_ways_with_oras() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let ws = Workspace::new();
    let module = std::fs::read(artifacts::STATIC_PLUGIN).unwrap();
    // Ours -> oras.
    let manifest = push_static(&registry, "vendor/static:v1");
    let outdir = ws.path().join("oras-out");
    let pulled = registry.oras(&[
        "pull-wasm",
        &registry.host(),
        "vendor/static:v1",
        outdir.to_str().unwrap(),
    ]);
    let files: Vec<&str> = pulled.lines().collect();
    assert_eq!(files.len(), 1, "{pulled}");
    assert_eq!(std::fs::read(files[0]).unwrap(), module);
    // oras -> ours, by tag and then by the digest oras reported.
    let probe = std::fs::read(artifacts::HTTP_PROBE).unwrap();
    let oras_manifest = registry
        .oras(&[
            "push-wasm",
            &registry.host(),
            "vendor/probe:v1",
            artifacts::HTTP_PROBE,
        ])
        .trim()
        .to_string();
    assert!(oras_manifest.starts_with("sha256:"), "{oras_manifest}");
    let out = ws.path().join("probe.wasm");
    let mut args = vec![
        "pull".to_string(),
        registry.oci("vendor/probe:v1"),
        "--output".into(),
        out.display().to_string(),
    ];
    args.extend(registry.auth_args());
    let (ok, stdout, stderr) = host(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    println!("{}", stdout.trim_end());
    assert!(
        stdout.contains(&format!("manifest {oras_manifest}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "pin it: source: {}@{oras_manifest}",
            registry.oci("vendor/probe")
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), probe);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.oci.json", out.display())).unwrap())
            .unwrap();
    assert_eq!(
        record["reference"],
        format!("{}@{oras_manifest}", registry.oci("vendor/probe"))
    );
    // Our own push pulled back by digest.
    let again = ws.path().join("static.wasm");
    let pinned = format!("{}@{manifest}", registry.oci("vendor/static"));
    let mut args = vec![
        "pull".to_string(),
        pinned,
        "--output".into(),
        again.display().to_string(),
    ];
    args.extend(registry.auth_args());
    let (ok, _, stderr) = host(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&again).unwrap(), module);
}

#[test]
fn wrong_password_and_unreachable_registry_are_one_line() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let ws = Workspace::new();
    let bad = ws.write("bad-password", "wrong\n");
    let out = ws.path().join("x.wasm");
    let reference = registry.oci("vendor/static:v1");
    let line = one_line_failure(
        host(&[
            "push",
            artifacts::STATIC_PLUGIN,
            &reference,
            "--ca-file",
            registry.ca_file.to_str().unwrap(),
            "--username",
            "vendor",
            "--password-file",
            bad.to_str().unwrap(),
        ]),
        "cannot push",
    );
    println!("wrong password: {line}");
    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = std::time::Instant::now();
    let line = one_line_failure(
        host(&[
            "pull",
            &format!("oci://{closed}/vendor/static:v1"),
            "--output",
            out.to_str().unwrap(),
            "--ca-file",
            registry.ca_file.to_str().unwrap(),
        ]),
        &format!("cannot pull oci://{closed}/vendor/static:v1"),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    println!("unreachable: {line}");
    assert!(!out.exists());
    // A registry whose certificate the client does not trust.
    let line = one_line_failure(
        host(&["pull", &reference, "--output", out.to_str().unwrap()]),
        "cannot pull",
    );
    println!("untrusted certificate: {line}");
    assert!(!out.exists());
}

#[test]
fn verified_install_with_a_blob_signature_end_to_end() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let ws = Workspace::new();
    let (key, public) = openssl_key(&ws, "vendor");
    let module = std::fs::read(artifacts::STATIC_PLUGIN).unwrap();
    let signature = ws.write("static.wasm.sig", openssl_sign(&ws, &key, &module));
    let manifest = push_static(&registry, "vendor/static:v1");
    let source = format!("{}@{manifest}", registry.oci("vendor/static"));
    let verify = format!(
        "    verify:\n      publicKey: {}\n      signature: {}\n",
        public.display(),
        signature.display()
    );
    let install = Install::new(ws, &registry, &source, &verify);
    let (ok, stdout, stderr) = install.pull(&registry);
    assert!(ok, "{stderr}");
    println!("{}", stdout.trim_end());
    let fingerprint = openssl_fingerprint(&public);
    assert!(
        stdout.contains(&format!("verified: blob signature by key {fingerprint}")),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&install.module).unwrap(), module);
    let compiled = host_command(&install.config, &["compile"]);
    println!("{}", compiled.trim_end());
    assert!(
        compiled.contains(&format!("signature by {fingerprint} verified in")),
        "{compiled}"
    );
    let exec = install.exec();
    assert!(exec.success, "{exec:#?}");
    let audit = install.audit();
    let compile = audit.iter().find(|r| r["event"] == "compile").unwrap();
    assert_eq!(compile["provenance"]["signer"], fingerprint.as_str());
    let call = audit
        .iter()
        .rev()
        .find(|r| r["event"] == "plugin_call")
        .unwrap();
    assert_eq!(call["component"], "loaded");
    assert_eq!(call["provenance"]["signer"], fingerprint.as_str());
    assert_eq!(call["provenance"]["source"], source.as_str());
    assert_eq!(call["provenance"]["manifestDigest"], manifest.as_str());
    assert_eq!(call["provenance"]["signature"], "blob");
    assert!(call["provenance"]["verifiedAt"].as_u64().unwrap() > 1_700_000_000);
    // inspect shows where it came from and who signed it.
    let config = install.config.display().to_string();
    let wasm = install.module.display().to_string();
    let report: serde_json::Value = serde_json::from_str(&host_command(
        &install.config,
        &["inspect", &wasm, "--config", &config, "--output", "json"],
    ))
    .unwrap();
    assert_eq!(report["origin"]["reference"], source.as_str());
    assert_eq!(report["origin"]["layer"], "this file");
    let trust = &report["plugins"][0]["provenance"];
    assert_eq!(trust["requiredSigner"], fingerprint.as_str());
    assert_eq!(trust["verified"]["signer"], fingerprint.as_str());
    assert_eq!(trust["verified"]["manifestDigest"], manifest.as_str());
    // A rotated key with its own valid signature: the artifact verified for
    // the first key is not loaded; the module is verified again and
    // recompiled, and the record names the new signer.
    let (key2, public2) = openssl_key(&install.ws, "rotated");
    let signature2 = install.ws.write(
        "static.wasm.sig2",
        openssl_sign(&install.ws, &key2, &module),
    );
    let text = std::fs::read_to_string(&install.config)
        .unwrap()
        .replace(
            &public.display().to_string(),
            &public2.display().to_string(),
        )
        .replace(
            &signature.display().to_string(),
            &signature2.display().to_string(),
        );
    std::fs::write(&install.config, text).unwrap();
    let exec = install.exec();
    assert!(exec.success, "{exec:#?}");
    let call = install
        .audit()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "plugin_call")
        .unwrap();
    let how = call["component"].as_str().unwrap();
    assert!(
        how.starts_with("recompiled: artifact does not meet"),
        "{how}"
    );
    println!("rotated key: {how}");
    assert_eq!(
        call["provenance"]["signer"],
        openssl_fingerprint(&public2).as_str()
    );
}

#[test]
fn verified_install_with_the_registry_signature() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let ws = Workspace::new();
    let (key, public) = openssl_key(&ws, "vendor");
    let manifest = push_static(&registry, "vendor/static:v1");
    let sign = |ws: &Workspace, names: &str, with: &Path| {
        let payload = serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/vendor/static", registry.host())},
                "image": {"docker-manifest-digest": names},
                "type": "cosign container image signature",
            },
            "optional": null,
        }))
        .unwrap();
        let path = ws.write("payload.json", &payload);
        let sig = openssl_sign(ws, with, &payload);
        let tag = format!(
            "vendor/static:sha256-{}.sig",
            manifest.strip_prefix("sha256:").unwrap()
        );
        registry.oras(&[
            "push-sig",
            &registry.host(),
            &tag,
            path.to_str().unwrap(),
            &sig,
        ]);
    };
    let source = format!("{}@{manifest}", registry.oci("vendor/static"));
    let verify = format!(
        "    verify:\n      publicKey: {}\n      registrySignature: true\n",
        public.display()
    );
    // No signature in the registry yet.
    let install = Install::new(ws, &registry, &source, &verify);
    let line = one_line_failure(install.pull(&registry), "has no cosign signature");
    println!("missing registry signature: {line}");
    assert!(line.contains(&openssl_fingerprint(&public)), "{line}");
    install.assert_nothing_installed();
    // A signature by the right key over another manifest's digest.
    let other = format!("sha256:{}", "ab".repeat(32));
    sign(&install.ws, &other, &key);
    let line = one_line_failure(
        install.pull(&registry),
        &format!("names manifest {other}, not this one"),
    );
    println!("signature over another digest: {line}");
    install.assert_nothing_installed();
    // The real one.
    sign(&install.ws, &manifest, &key);
    let (ok, stdout, stderr) = install.pull(&registry);
    assert!(ok, "{stderr}");
    println!("{}", stdout.trim_end());
    assert!(
        stdout.contains("verified: registry signature by key"),
        "{stdout}"
    );
    let exec = install.exec();
    assert!(exec.success, "{exec:#?}");
    let call = install
        .audit()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "plugin_call")
        .unwrap();
    assert_eq!(call["provenance"]["signature"], "registry");
    assert_eq!(
        call["provenance"]["signer"],
        openssl_fingerprint(&public).as_str()
    );
}

#[test]
fn refusals_write_nothing_and_load_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let module = std::fs::read(artifacts::STATIC_PLUGIN).unwrap();
    let manifest = push_static(&registry, "vendor/static:v1");
    let source = format!("{}@{manifest}", registry.oci("vendor/static"));
    let blob_verify = |public: &Path, signature: &Path| {
        format!(
            "    verify:\n      publicKey: {}\n      signature: {}\n",
            public.display(),
            signature.display()
        )
    };

    // A signature by another key.
    let ws = Workspace::new();
    let (_, public) = openssl_key(&ws, "vendor");
    let (other_key, _) = openssl_key(&ws, "other");
    let sig = ws.write("static.wasm.sig", openssl_sign(&ws, &other_key, &module));
    let install = Install::new(ws, &registry, &source, &blob_verify(&public, &sig));
    let line = one_line_failure(install.pull(&registry), "signature does not match");
    assert!(
        line.contains(&format!("with key {}", openssl_fingerprint(&public))),
        "{line}"
    );
    assert!(line.contains(&digest(&module)), "{line}");
    println!("signature by another key: {line}");
    install.assert_nothing_installed();

    // A signature over another module.
    let ws = Workspace::new();
    let (key, public) = openssl_key(&ws, "vendor");
    let probe = std::fs::read(artifacts::HTTP_PROBE).unwrap();
    let sig = ws.write("static.wasm.sig", openssl_sign(&ws, &key, &probe));
    let install = Install::new(ws, &registry, &source, &blob_verify(&public, &sig));
    let line = one_line_failure(install.pull(&registry), "signature does not match");
    println!("signature over another digest: {line}");
    install.assert_nothing_installed();

    // A required signature that is missing.
    let ws = Workspace::new();
    let (_, public) = openssl_key(&ws, "vendor");
    let missing = ws.path().join("absent.sig");
    let install = Install::new(ws, &registry, &source, &blob_verify(&public, &missing));
    let line = one_line_failure(install.pull(&registry), "cannot read signature");
    println!("missing signature: {line}");
    install.assert_nothing_installed();

    // The exec path: a module put in place by hand, not signed by the key,
    // is never compiled nor loaded.
    let ws = Workspace::new();
    let (_, public) = openssl_key(&ws, "vendor");
    let (other_key, _) = openssl_key(&ws, "other");
    let sig = ws.write("static.wasm.sig", openssl_sign(&ws, &other_key, &module));
    let verify = blob_verify(&public, &sig);
    let ws2 = Workspace::new();
    let plain = ws2.config(&format!(
        "  - name: static\n    module: {}\n{verify}    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n",
        artifacts::STATIC_PLUGIN
    ));
    let exec = Provider::new(host_binary(), &plain).exec(&RequestSpec::new(V1, "a.registry.io/x"));
    let line = exec.assert_clean_failure("signature check failed");
    println!("exec of an unsigned module: {line}");
    let artifacts_made = std::fs::read_dir(ws2.cache_dir())
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(
        artifacts_made, 0,
        "an artifact was made from an unverified module"
    );
    drop(ws);
}

#[test]
fn tampered_registry_content_is_refused() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let module = std::fs::read(artifacts::STATIC_PLUGIN).unwrap();
    let manifest = push_static(&registry, "vendor/static:v1");
    let source = format!("{}@{manifest}", registry.oci("vendor/static"));

    // A layer changed in the registry's storage.
    let layer = registry.blob_file(&digest(&module));
    let original = std::fs::read(&layer).unwrap();
    let mut tampered = original.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    std::fs::write(&layer, &tampered).unwrap();
    let install = Install::new(Workspace::new(), &registry, &source, "");
    let line = one_line_failure(install.pull(&registry), &digest(&module));
    println!("tampered layer: {line}");
    install.assert_nothing_installed();
    std::fs::write(&layer, &original).unwrap();

    // A manifest changed in the registry's storage: its bytes no longer
    // have the pinned digest.
    let manifest_file = registry.blob_file(&manifest);
    let text = std::fs::read_to_string(&manifest_file).unwrap();
    let changed = text.replace("\"application/wasm\"", "\"application/wasx\"");
    assert_ne!(changed, text);
    std::fs::write(&manifest_file, changed).unwrap();
    let install = Install::new(Workspace::new(), &registry, &source, "");
    let line = one_line_failure(install.pull(&registry), "cannot pull");
    println!("tampered manifest: {line}");
    install.assert_nothing_installed();
    std::fs::write(&manifest_file, text).unwrap();

    // The config pins v1, but the file in place was pulled from v2.
    let v2 = push_probe_as(&registry, "vendor/static:v2");
    let install = Install::new(Workspace::new(), &registry, &source, "");
    let mut args = vec![
        "pull".to_string(),
        registry.oci("vendor/static:v2"),
        "--output".into(),
        install.module.display().to_string(),
    ];
    args.extend(registry.auth_args());
    let (ok, _, stderr) = host(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    let line = install.exec().assert_clean_failure(&format!(
        "the pulled manifest has digest {v2} but the config pins {manifest}"
    ));
    println!("manifest digest != pinned (exec): {line}");
    let compile = Command::new(host_binary())
        .arg("--config")
        .arg(&install.config)
        .arg("compile")
        .output()
        .unwrap();
    assert!(!compile.status.success());
    // Pulling the pinned source puts the right module back; the
    // install-time compile replaces the refused first-use compile.
    let (ok, _, stderr) = install.pull(&registry);
    assert!(ok, "{stderr}");
    host_command(&install.config, &["compile"]);
    let exec = install.exec();
    assert!(exec.success, "{exec:#?}");
}

/// Pushes the http-probe component under `repo_tag` with our push.
fn push_probe_as(registry: &Registry, repo_tag: &str) -> String {
    let reference = registry.oci(repo_tag);
    let mut args = vec!["push", artifacts::HTTP_PROBE, reference.as_str()];
    let auth = registry.auth_args();
    args.extend(auth.iter().map(String::as_str));
    let (ok, stdout, stderr) = host(&args);
    assert!(ok, "{stderr}");
    stdout
        .split("manifest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string()
}
