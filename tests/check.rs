//! `check`: a kubelet `CredentialProviderConfig` and a host config read
//! together, every finding at once with file, line and fix, exit status
//! non-zero on errors. Each finding is triggered by a config written for it.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::workspace::{Workspace, host_binary, host_command};
use wcp_test_artifacts as artifacts;

struct Checked {
    success: bool,
    stdout: String,
    stderr: String,
}

fn check(kubelet: &Path, host: &Path, extra: &[&str]) -> Checked {
    let out = Command::new(host_binary())
        .arg("check")
        .arg("--kubelet-config")
        .arg(kubelet)
        .arg("--config")
        .arg(host)
        .args(extra)
        .output()
        .unwrap();
    Checked {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

const KUBELET_HEAD: &str =
    "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n";

fn provider(ws: &Workspace, host: &Path, match_images: &str, extra: &str) -> PathBuf {
    ws.write(
        "kubelet.yaml",
        format!(
            "{KUBELET_HEAD}  - name: wasm-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: {match_images}\n    defaultCacheDuration: 10m\n    args: [\"--config\", \"{}\"]\n{extra}",
            host.display()
        ),
    )
}

fn static_plugin(name: &str, match_images: &str) -> String {
    format!(
        "  - name: {name}\n    module: {}\n    matchImages: {match_images}\n    config: {{username: u, password: p}}\n",
        artifacts::STATIC_PLUGIN
    )
}

/// The finding lines (not the `fix:` lines) of a report.
fn findings(out: &Checked) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
        .collect()
}

#[test]
fn agreeing_configs_pass_once_the_plugins_are_precompiled() {
    let ws = Workspace::new();
    let host = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    let kubelet = provider(&ws, &host, "[\"*.registry.io\"]", "");
    // Before the install-time compile: one warning, still a success.
    let out = check(&kubelet, &host, &[]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].starts_with(&format!(
            "{}:8: warning: plugins[0].module:",
            host.display()
        )),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("no precompiled artifact"), "{}", lines[0]);
    assert!(
        out.stdout
            .contains("    fix: run `wasm-credential-provider-compile")
    );
    host_command(&host, &["compile"]);
    let out = check(&kubelet, &host, &[]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "check: 0 error(s), 0 warning(s)\n");
    assert_eq!(out.stderr, "");
}

/// Every finding of a broken pair in one run, each at its file and line.
#[test]
fn a_broken_pair_reports_everything_at_once() {
    let ws = Workspace::new();
    let ecr = ws.write("ecr.wasm", std::fs::read(artifacts::ECR_PLUGIN).unwrap());
    let host = ws.config(&format!(
        "{}    sha256: \"{}\"\n{}  - name: ecr\n    module: {}\n    matchImages: [\"*.dkr.ecr.us-east-1.amazonaws.com\"]\n    grants:\n      serviceAccountToken: true\n      env: [HOME]\n    cache:\n      tokenCacheType: Token\n  - name: gone\n    module: missing.wasm\n    matchImages: [\"gone.io\"]\n",
        static_plugin("static", "[\"*.registry.io\", \"elsewhere.com\"]"),
        "0".repeat(64),
        static_plugin("team", "[\"registry.io/team\"]"),
        ecr.display()
    ));
    let kubelet = ws.write(
        "kubelet.yaml",
        format!(
            "{KUBELET_HEAD}  - name: wasm-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [\"*.registry.io\", \"*.dkr.ecr.us-east-1.amazonaws.com\", \"gone.io\", \"nobody.io\"]\n    args: [\"--config\", \"{}\"]\n    tokenAttributes:\n      serviceAccountTokenAudience: sts.amazonaws.com\n      requireServiceAccount: false\n      requiredServiceAccountAnnotationKeys: [\"eks.amazonaws.com/role-arn\"]\n      cacheType: ServiceAccount\n  - name: wasm-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1alpha0\n    matchImages: [\"x.io\"]\n    defaultCacheDuration: 1m\n",
            host.display()
        ),
    );
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success, "{}", out.stdout);
    let (k, h) = (kubelet.display(), host.display());
    let want = [
        format!(
            "{k}:4: error: providers[0].defaultCacheDuration: defaultCacheDuration: Required value"
        ),
        format!(
            "{k}:11: error: providers[0].tokenAttributes.requiredServiceAccountAnnotationKeys: requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false"
        ),
        format!(
            "{k}:13: error: providers[1].name: name: Duplicate value: \"wasm-credential-provider\""
        ),
        format!(
            "{k}:14: error: providers[1].apiVersion: apiVersion: Unsupported value: \"credentialprovider.kubelet.k8s.io/v1alpha0\""
        ),
        format!(
            "{h}:11: error: plugins[0].sha256: plugin \"static\": module {} has sha256",
            artifacts::STATIC_PLUGIN
        ),
        format!("{h}:13: warning: plugins[1].module: plugin \"team\": no precompiled artifact"),
        format!(
            "{h}:16: warning: plugins[2]: plugin \"ecr\" reads the service-account annotation \"eks.amazonaws.com/ecr-role-arn\", but providers[0] does not list it"
        ),
        format!(
            "{h}:19: warning: plugins[2].grants: plugin \"ecr\" declares outbound destinations but is granted none"
        ),
        format!(
            "{h}:19: warning: plugins[2].grants: plugin \"ecr\" is granted what it does not declare (withheld): env HOME"
        ),
        format!("{h}:17: warning: plugins[2].module: plugin \"ecr\": no precompiled artifact"),
        format!("{h}:25: error: plugins[3].module: plugin \"gone\": cannot read module"),
        format!(
            "{h}:9: error: plugins[0].matchImages[1]: plugin \"static\": no image of \"elsewhere.com\" matches providers[0] (wasm-credential-provider): the kubelet never execs the host for them"
        ),
        format!(
            "{h}:14: error: plugins[1].matchImages[0]: plugin \"team\": no image of \"registry.io/team\" matches providers[0]"
        ),
        format!(
            "{k}:6: warning: providers[0].matchImages[3]: no plugin of the host config serves images of \"nobody.io\""
        ),
        format!(
            "{h}:23: error: plugins[2].cache.tokenCacheType: plugin \"ecr\" may answer with the token itself (tokenCacheType: Token), but providers[0] caches per service account"
        ),
        format!(
            "{k}:10: warning: providers[0].tokenAttributes.requireServiceAccount: requireServiceAccount is false"
        ),
    ];
    let lines = findings(&out);
    for want in &want {
        assert!(
            lines.iter().any(|l| l.starts_with(want.as_str())),
            "missing {want}\nin:\n{}",
            out.stdout
        );
    }
    assert_eq!(lines.len(), want.len(), "{}", out.stdout);
    // Every finding carries its fix on the next line.
    let fixes = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("    fix: "))
        .count();
    assert_eq!(fixes, lines.len());
    assert!(
        out.stdout.ends_with("check: 9 error(s), 7 warning(s)\n"),
        "{}",
        out.stdout
    );
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(stderr.len(), 1, "{}", out.stderr);
    assert!(
        stderr[0].starts_with(
            "wasm-credential-provider: error: check found 9 error(s) and 7 warning(s)"
        ),
        "{}",
        out.stderr
    );
    if let Ok(dir) = std::env::var("WCP_CHECK_REPORT_DIR") {
        std::fs::write(
            Path::new(&dir).join("check-broken.txt"),
            format!(
                "$ wasm-credential-provider check --kubelet-config {k} --config {h}\n{}{}",
                out.stdout, out.stderr
            ),
        )
        .unwrap();
    }
}

#[test]
fn the_token_the_plugin_needs_is_never_sent() {
    let ws = Workspace::new();
    let host = ws.config(&format!(
        "  - name: ecr\n    module: {}\n    matchImages: [\"*.dkr.ecr.us-east-1.amazonaws.com\"]\n    grants: {{serviceAccountToken: true, outbound: [\"https://sts.us-east-1.amazonaws.com\"]}}\n",
        artifacts::ECR_PLUGIN
    ));
    host_command(&host, &["compile"]);
    let kubelet = provider(&ws, &host, "[\"*.dkr.ecr.us-east-1.amazonaws.com\"]", "");
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].starts_with(&format!("{}:7: error: plugins[0]: plugin \"ecr\" is granted the service-account token, but providers[0] has no tokenAttributes", host.display())), "{}", lines[0]);
    // With tokenAttributes the pair agrees; tokenAttributes nobody uses is a warning.
    let attributes = "    tokenAttributes: {serviceAccountTokenAudience: sts.amazonaws.com, cacheType: ServiceAccount, requireServiceAccount: true}\n";
    let kubelet = provider(
        &ws,
        &host,
        "[\"*.dkr.ecr.us-east-1.amazonaws.com\"]",
        attributes,
    );
    let out = check(&kubelet, &host, &[]);
    assert!(out.success, "{}", out.stdout);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].contains("warning: plugins[0]: plugin \"ecr\" reads the service-account annotation \"eks.amazonaws.com/ecr-role-arn\", but providers[0] does not list it: the kubelet never forwards it"), "{}", lines[0]);
    let attributes = attributes.replace("requireServiceAccount: true}", "requireServiceAccount: true, optionalServiceAccountAnnotationKeys: [eks.amazonaws.com/ecr-role-arn]}");
    let kubelet = provider(
        &ws,
        &host,
        "[\"*.dkr.ecr.us-east-1.amazonaws.com\"]",
        &attributes,
    );
    let out = check(&kubelet, &host, &[]);
    assert!(out.success, "{}", out.stdout);
    assert_eq!(findings(&out).len(), 0, "{}", out.stdout);
    let ws = Workspace::new();
    let other = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    host_command(&other, &["compile"]);
    let kubelet = provider(&ws, &other, "[\"*.registry.io\"]", &attributes);
    let out = check(&kubelet, &other, &[]);
    assert!(out.success, "{}", out.stdout);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].contains(":9: warning: providers[0].tokenAttributes: no plugin is granted"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_provider_entry_and_its_executable() {
    let ws = Workspace::new();
    let host = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    host_command(&host, &["compile"]);
    // No entry runs this host config.
    let kubelet = ws.write(
        "kubelet.yaml",
        format!("{KUBELET_HEAD}  - name: other\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages: [\"*.registry.io\"]\n    defaultCacheDuration: 10m\n    args: [\"--config=/etc/elsewhere.yaml\"]\n"),
    );
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].starts_with(&format!(
            "{}:3: error: providers: no provider entry runs this host with --config {}",
            kubelet.display(),
            host.display()
        )),
        "{}",
        lines[0]
    );
    // The bin dir: missing, not executable, present.
    let kubelet = provider(&ws, &host, "[\"*.registry.io\"]", "");
    let bin = ws.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let bin_arg = bin.display().to_string();
    let out = check(&kubelet, &host, &["--bin-dir", &bin_arg]);
    assert!(!out.success);
    assert!(findings(&out)[0].contains(":4: error: providers[0].name: plugin binary executable \"wasm-credential-provider\" is not usable in the bin dir"), "{}", out.stdout);
    let exe = ws.write("bin/wasm-credential-provider", "#!/bin/sh\n");
    let out = check(&kubelet, &host, &["--bin-dir", &bin_arg]);
    assert!(
        findings(&out)[0].contains("is not executable"),
        "{}",
        out.stdout
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The front is there; the runtime it hands misses to is not.
    let out = check(&kubelet, &host, &["--bin-dir", &bin_arg]);
    assert!(!out.success);
    let lines = findings(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].contains(":4: error: providers[0].name: the provider hands every cache miss to wasm-credential-provider-runtime beside it, which is not usable"),
        "{}",
        out.stdout
    );
    let runtime = ws.write("bin/wasm-credential-provider-runtime", "#!/bin/sh\n");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = check(&kubelet, &host, &["--bin-dir", &bin_arg]);
    assert!(out.success, "{}", out.stdout);
}

#[test]
fn unreadable_and_malformed_files() {
    let ws = Workspace::new();
    let host = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    // A strict-decoding error names its line; the host config is still checked.
    let kubelet = ws.write(
        "kubelet.yaml",
        format!("{KUBELET_HEAD}  - name: wasm-credential-provider\n    matchImage: [x]\n"),
    );
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success);
    let lines = findings(&out);
    assert!(
        lines[0].starts_with(&format!(
            "{}: error: strict decoding error: providers[0]: unknown field `matchImage`",
            kubelet.display()
        )),
        "{}",
        out.stdout
    );
    assert!(lines[0].contains("line 5"), "{}", lines[0]);
    // Every host config problem, each at its line.
    let bad_host = ws.write("bad-host.yaml", format!("{}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['%zz']\n    limits: {{timeout: 90s}}\n", ws.header()));
    let kubelet = provider(&ws, &bad_host, "[x.io]", "");
    let out = check(&kubelet, &bad_host, &[]);
    assert!(!out.success);
    let lines = findings(&out);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].starts_with(&format!(
            "{}:9: error: plugins[0].matchImages[0]: invalid pattern ",
            bad_host.display()
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:10: error: plugins[0].limits.timeout: 90s must be more than 0s",
            bad_host.display()
        )),
        "{}",
        lines[1]
    );
    // A file that cannot be read: one line, nothing on stdout.
    let out = check(&ws.path().join("nope.yaml"), &host, &[]);
    assert!(!out.success);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read kubelet config"),
        "{}",
        out.stderr
    );
}

/// Text from the files reaches the operator's terminal: control characters
/// are escaped, never written raw.
#[test]
fn hostile_text_in_the_configs_is_escaped() {
    let ws = Workspace::new();
    let host = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    let kubelet = ws.write(
        "kubelet.yaml",
        format!("{KUBELET_HEAD}  - name: \"evil\\e[2J\\rwasm-credential-provider: ok\\u202e\"\n    apiVersion: \"x\\e]0;title\\a\"\n    matchImages: [\"\\e[31m\"]\n    defaultCacheDuration: 10m\n    args: [\"--config\", \"{}\"]\n", host.display()),
    );
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success);
    for c in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
        assert!(!out.stdout.contains(c), "{c:?} in {}", out.stdout);
        assert!(!out.stderr.contains(c), "{c:?} in {}", out.stderr);
    }
    assert!(out.stdout.contains("Unsupported value"), "{}", out.stdout);
}

/// A kubelet config built to explode when aliases are expanded (and a
/// deeply nested one) ends in one clear finding, quickly.
#[test]
fn alias_bombs_and_deep_nesting_are_bounded() {
    let ws = Workspace::new();
    let host = ws.config(&static_plugin("static", "[\"*.registry.io\"]"));
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    bomb.push_str(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n",
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for text in [bomb, deep] {
        let kubelet = ws.write("kubelet.yaml", text);
        let started = std::time::Instant::now();
        let out = check(&kubelet, &host, &[]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(!out.success);
        let lines = findings(&out);
        assert!(!lines.is_empty(), "{}", out.stdout);
        assert!(
            lines[0].starts_with(&format!(
                "{}: error: strict decoding error: ",
                kubelet.display()
            )),
            "{}",
            lines[0]
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// `plugins/passthrough` answers with the pod's token itself: it needs
/// `tokenCacheType: Token` on both sides, and its typed config is checked
/// at its line.
#[test]
fn a_token_echoing_plugin_and_its_typed_config() {
    let ws = Workspace::new();
    let config = |cache_key_type: &str| {
        ws.config(&format!(
            "  - name: passthrough\n    module: {}\n    matchImages: [\"registry.io\"]\n    grants: {{serviceAccountToken: true}}\n    cache: {{tokenCacheType: Token}}\n    config:\n      username: oauth2\n      cacheKeyType: {cache_key_type}\n",
            artifacts::PASSTHROUGH_PLUGIN
        ))
    };
    // Precompiled with a valid config first: compile refuses a bad one.
    host_command(&config("Image"), &["compile"]);
    let host = config("Global");
    let per_sa = "    tokenAttributes: {serviceAccountTokenAudience: registry.io, cacheType: ServiceAccount, requireServiceAccount: true}\n";
    let kubelet = provider(&ws, &host, "[\"registry.io\"]", per_sa);
    let out = check(&kubelet, &host, &[]);
    assert!(!out.success);
    let lines = findings(&out);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let h = host.display();
    let want = format!(
        "{h}:14: error: plugins[0].config.cacheKeyType: plugin \"passthrough\": expected one of Image, Registry"
    );
    assert!(lines[0].starts_with(&want), "{}", lines[0]);
    let want = format!(
        "{h}:11: error: plugins[0].cache.tokenCacheType: plugin \"passthrough\" may answer with the token itself"
    );
    assert!(lines[1].starts_with(&want), "{}", lines[1]);
    // Fixed on both sides: nothing left.
    let host = config("Image");
    let per_token = per_sa.replace("cacheType: ServiceAccount", "cacheType: Token");
    let kubelet = provider(&ws, &host, "[\"registry.io\"]", &per_token);
    let out = check(&kubelet, &host, &[]);
    assert!(out.success, "{}", out.stdout);
    assert_eq!(findings(&out).len(), 0, "{}", out.stdout);
}
