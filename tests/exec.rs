//! The kubelet exec path end to end: the real host binary, exec'd as the
//! kubelet does, running real components built from `plugins/`.

use crate::support;

use support::kubelet::{ALL_VERSIONS, Provider, RequestSpec, V1, V1BETA1};
use support::strict;
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts::{OTHER_WORLD_COMPONENT, STATIC_PLUGIN};

fn static_plugin(ws: &Workspace, extra: &str) -> std::path::PathBuf {
    ws.config(&format!(
        "  - name: static\n    module: {STATIC_PLUGIN}\n    matchImages: [\"*.registry.io\", \"registry.io:5000\"]\n    config:\n      username: robot\n      password: hunter2-password\n{extra}"
    ))
}

#[test]
fn static_plugin_answers_every_api_version() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &static_plugin(&ws, ""));
    for version in ALL_VERSIONS {
        let exec = provider.exec(&RequestSpec::new(version, "team.registry.io/app/web"));
        assert!(exec.success, "{exec:#?}");
        let resp =
            strict::decode(&exec.stdout, version).unwrap_or_else(|e| panic!("{e}: {exec:#?}"));
        assert_eq!(resp.cache_key_type, "Registry");
        // No expiry known: the plugin's default duration (5m), or what is
        // left of it when a later version is answered from the cache.
        let secs = wcp_core::duration::parse_go_duration(resp.cache_duration.as_deref().unwrap())
            .unwrap()
            .as_secs();
        assert!((295..=300).contains(&secs), "{:?}", resp.cache_duration);
        let auth = &resp.auth["team.registry.io"];
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("robot", "hunter2-password")
        );
        assert_eq!(resp.auth.len(), 1);
        assert!(
            exec.stderr_lines().is_empty(),
            "stderr on success: {}",
            exec.stderr
        );
        assert!(exec.stdout.ends_with(b"}\n"));
    }
}

#[test]
fn registry_with_port_is_the_auth_key() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &static_plugin(&ws, ""));
    let exec = provider.exec(&RequestSpec::new(V1, "registry.io:5000/team/app"));
    let resp = strict::decode(&exec.stdout, V1).unwrap();
    assert!(resp.auth.contains_key("registry.io:5000"), "{resp:?}");
}

#[test]
fn service_account_fields_are_accepted_and_token_never_logged() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &static_plugin(&ws, "")).env("WCP_LOG", "trace");
    let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.sig-SECRET";
    let exec = provider.exec(
        &RequestSpec::new(V1, "a.registry.io/x")
            .token(token)
            .annotation("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/r"),
    );
    assert!(exec.success, "{exec:#?}");
    strict::decode(&exec.stdout, V1).unwrap();
    assert!(!exec.stderr.contains(token), "token leaked to stderr");
    assert!(
        !exec.stderr.contains("hunter2-password"),
        "password leaked to stderr"
    );
}

#[test]
fn no_matching_plugin_gives_empty_uncached_answer() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &static_plugin(&ws, ""));
    for version in ALL_VERSIONS {
        let exec = provider.exec(&RequestSpec::new(version, "docker.io/library/nginx"));
        assert!(exec.success, "{exec:#?}");
        let resp = strict::decode(&exec.stdout, version).unwrap();
        assert!(resp.auth.is_empty());
        assert_eq!(resp.cache_key_type, "Image");
        assert_eq!(resp.cache_duration.as_deref(), Some("0s"));
        assert!(
            exec.stderr.contains("no plugin's matchImages matches"),
            "{}",
            exec.stderr
        );
    }
}

#[test]
fn first_matching_plugin_serves() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: first\n    module: {STATIC_PLUGIN}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: first, password: p1}}\n  - name: second\n    module: {STATIC_PLUGIN}\n    matchImages: [\"*.registry.io\", \"other.io\"]\n    config: {{username: second, password: p2}}\n"
    ));
    let provider = Provider::new(host_binary(), &config);
    let exec = provider.exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert_eq!(
        strict::decode(&exec.stdout, V1).unwrap().auth["a.registry.io"].username,
        "first"
    );
    let exec = provider.exec(&RequestSpec::new(V1, "other.io/x"));
    assert_eq!(
        strict::decode(&exec.stdout, V1).unwrap().auth["other.io"].username,
        "second"
    );
}

#[test]
fn secrets_come_from_files_and_kubelet_env() {
    let ws = Workspace::new();
    ws.write("secrets/password", "from-file-secret\n");
    let config = ws.config(&format!(
        "  - name: file\n    module: {STATIC_PLUGIN}\n    matchImages: [\"file.io\"]\n    config: {{username: u}}\n    configFromFile: {{password: secrets/password}}\n  - name: env\n    module: {STATIC_PLUGIN}\n    matchImages: [\"env.io\"]\n    config: {{username: u}}\n    configFromEnv: {{password: ROBOT_PASSWORD}}\n"
    ));
    let provider = Provider::new(host_binary(), &config).env("ROBOT_PASSWORD", "from-env-secret");
    let exec = provider.exec(&RequestSpec::new(V1, "file.io/x"));
    assert_eq!(
        strict::decode(&exec.stdout, V1).unwrap().auth["file.io"].password,
        "from-file-secret"
    );
    let exec = provider.exec(&RequestSpec::new(V1, "env.io/x"));
    assert_eq!(
        strict::decode(&exec.stdout, V1).unwrap().auth["env.io"].password,
        "from-env-secret"
    );

    // A fresh cache, so that the answer above is not simply reused.
    let fresh = Workspace::new();
    let config = fresh.write(
        "host-config.yaml",
        std::fs::read_to_string(&config).unwrap().replace(
            &ws.cache_dir().display().to_string(),
            &fresh.cache_dir().display().to_string(),
        ),
    );
    let without_env = Provider::new(host_binary(), &config);
    let line = without_env
        .exec(&RequestSpec::new(V1, "env.io/x"))
        .assert_clean_failure("ROBOT_PASSWORD is not set");
    assert!(!line.contains("from-env-secret"));
}

#[test]
fn plugin_config_error_is_reported() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: static\n    module: {STATIC_PLUGIN}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: robot}}\n"
    ));
    Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "a.registry.io/x"))
        .assert_clean_failure("configuration error");
}

#[test]
fn bad_requests_fail_cleanly() {
    let ws = Workspace::new();
    let provider = Provider::new(host_binary(), &static_plugin(&ws, ""));
    let oversized = format!(
        "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"{V1}\",\"image\":\"a.registry.io/{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"kind\":".to_vec(), "malformed CredentialProviderRequest JSON"),
        (Vec::new(), "empty request"),
        (oversized.into_bytes(), "larger than"),
        (
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a.registry.io/x"}"#.to_vec(),
            "unsupported apiVersion",
        ),
        (
            br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a.registry.io/x"}"#.to_vec(),
            "expected \"CredentialProviderRequest\"",
        ),
        (
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#.to_vec(),
            "no image",
        ),
    ];
    for (stdin, needle) in cases {
        provider.exec_raw(&stdin).assert_clean_failure(needle);
    }
}

#[test]
fn bad_configs_fail_cleanly() {
    let ws = Workspace::new();
    let request = RequestSpec::new(V1, "a.registry.io/x");
    let missing = Provider::new(host_binary(), &ws.path().join("nope.yaml"));
    missing
        .exec(&request)
        .assert_clean_failure("cannot read host config");

    let unknown = static_plugin(&ws, "    timeoutSecondz: 3\n");
    let line = Provider::new(host_binary(), &unknown)
        .exec(&request)
        .assert_clean_failure("unknown field `timeoutSecondz`");
    let text = std::fs::read_to_string(&unknown).unwrap();
    let line_no = text
        .lines()
        .position(|l| l.contains("timeoutSecondz"))
        .unwrap()
        + 1;
    assert!(line.contains(&format!("line {line_no} ")), "{line}");

    let bad_pattern = ws.config(&format!(
        "  - name: s\n    module: {STATIC_PLUGIN}\n    matchImages: [\"%zz.registry.io\"]\n"
    ));
    Provider::new(host_binary(), &bad_pattern)
        .exec(&request)
        .assert_clean_failure("invalid pattern");
}

#[test]
fn bad_modules_are_refused() {
    let ws = Workspace::new();
    let request = RequestSpec::new(V1BETA1, "a.registry.io/x");
    let run = |module: &str, extra: &str| {
        let config = ws.config(&format!(
            "  - name: p\n    module: {module}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n{extra}"
        ));
        Provider::new(host_binary(), &config).exec(&request)
    };
    run("/does/not/exist.wasm", "").assert_clean_failure("cannot read module");

    let wrong_pin = format!("    sha256: {}\n", "0".repeat(64));
    run(STATIC_PLUGIN, &wrong_pin).assert_clean_failure("refusing to run it");

    let bytes = std::fs::read(STATIC_PLUGIN).unwrap();
    let right_pin = {
        use sha2::Digest;
        format!(
            "    sha256: {}\n",
            hex::encode(sha2::Sha256::digest(&bytes))
        )
    };
    assert!(run(STATIC_PLUGIN, &right_pin).success);

    let garbage = ws.write("garbage.wasm", b"this is not wasm at all");
    run(garbage.to_str().unwrap(), "").assert_clean_failure("not a WebAssembly component");

    let core_module = ws.write("core.wasm", b"\0asm\x01\0\0\0");
    run(core_module.to_str().unwrap(), "").assert_clean_failure("core WebAssembly module");

    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() / 2);
    let truncated = ws.write("truncated.wasm", truncated);
    run(truncated.to_str().unwrap(), "").assert_clean_failure("cannot parse the component");

    run(OTHER_WORLD_COMPONENT, "")
        .assert_clean_failure("does not export wcp:credential-provider/provider");
}
