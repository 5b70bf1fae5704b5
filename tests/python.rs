//! A second language: `plugins-py/token-exchange`, an RFC 8693 token
//! exchange written in Python and built with componentize-py against the
//! same WIT (`wit/since_v0.1.0`, world `plugin`), end to end through the
//! real host against a loopback TLS token endpoint that checks every form
//! field.
//!
//! The component is built here, once per test process, by
//! `plugins-py/token-exchange/build.py` with the interpreter in `WCP_PYTHON`
//! (set by `scripts/setup.sh`, which installs the pinned componentize-py into
//! a venv) or else that venv's default location; without one these tests
//! fail and say how to install it. The build is cached under the target
//! directory by a digest of its inputs, and compiled once with the host's
//! `compile` subcommand into a template cache directory whose host key and
//! artifact each test's cache directory links, so every exec loads the
//! precompiled artifact. The host runs it with its default limits.

use crate::support;

use sha2::{Digest, Sha256};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, Seen, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};

const REGISTRY: &str = "registry.example.com";
const TOKEN_PATH: &str = "/oauth2/token";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN: &str = "registry-access-token-9f3c";
const LIFETIME: u64 = 3600;
/// Where `scripts/setup.sh` puts the venv unless `WCP_PY_VENV` says otherwise.
const DEFAULT_VENV: &str = ".cache/wasm-credential-provider/py-venv";

/// The built component and the template cache directory holding its
/// precompiled artifact.
struct Built {
    wasm: PathBuf,
    sha256: String,
    template_cache: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin_dir() -> PathBuf {
    repo_root().join("plugins-py/token-exchange")
}

/// The Python that has componentize-py.
fn python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("WCP_PYTHON") {
        return Ok(python.into());
    }
    let venv = match std::env::var_os("WCP_PY_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(DEFAULT_VENV),
    };
    let python = venv.join("bin/python");
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "the Python provider tests need componentize-py, which is not installed: no \
             WCP_PYTHON and no {}. `./scripts/test` installs the pinned version into that \
             venv; before a plain cargo test run `source scripts/setup.sh && \
             ensure_componentize_py`, or set WCP_PYTHON to a python that has it",
            python.display()
        ))
    }
}

fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file below `dir` but documentation (`.md`) and `__pycache__`, sorted.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                files_below(&path, out);
            }
        } else if path.extension().is_none_or(|e| e != "md") {
            out.push(path);
        }
    }
    out.sort();
}

fn build() -> Result<Built, String> {
    let python = python()?;
    let version =
        run(Command::new(&python).args(["-m", "componentize_py", "--version"])).or_else(|_| {
            let beside = python.with_file_name("componentize-py");
            run(Command::new(beside).arg("--version"))
        })?;
    // The inputs: the provider, the WIT and the toolchain's version.
    let mut inputs = Vec::new();
    files_below(&plugin_dir(), &mut inputs);
    files_below(&repo_root().join("wit/since_v0.1.0"), &mut inputs);
    let mut hasher = Sha256::new();
    hasher.update(version.as_bytes());
    for input in &inputs {
        let name = input
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        let bytes = std::fs::read(input).unwrap();
        for part in [name.as_bytes(), &bytes[..]] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    let key = hex::encode(&hasher.finalize()[..8]);
    // <target>/debug/python-artifacts
    let out_dir = host_binary().parent().unwrap().join("python-artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let wasm = out_dir.join(format!("token-exchange-{key}.wasm"));
    if !wasm.exists() {
        let started = Instant::now();
        run(Command::new(&python)
            .arg(plugin_dir().join("build.py"))
            .arg(&wasm))?;
        println!(
            "PYTHON built {} with {} in {:?}",
            wasm.display(),
            version.trim(),
            started.elapsed()
        );
        // Earlier builds of other inputs.
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("token-exchange-") && name.ends_with(".wasm") && path != wasm {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let bytes = std::fs::read(&wasm).unwrap();
    let sha256 = sha256_hex(&bytes);

    // Compile once into the template cache; `compile` says "up to date"
    // when an earlier test run already did.
    let template_cache = out_dir.join("cache");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&template_cache)
        .unwrap();
    for entry in std::fs::read_dir(&template_cache).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".cwasm") && !name.starts_with(&sha256) {
            let _ = std::fs::remove_file(&path);
        }
    }
    let config = out_dir.join("compile.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\ncache:\n  directory: {}\nplugins:\n  - name: token-exchange\n    module: {}\n    matchImages: [\"{REGISTRY}\"]\n",
            template_cache.display(),
            wasm.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let said = run(Command::new(host_binary())
        .arg("--config")
        .arg(&config)
        .arg("compile"))?;
    println!(
        "PYTHON compile: {} ({:?} wall, {} bytes of wasm)",
        said.trim(),
        started.elapsed(),
        bytes.len()
    );
    Ok(Built {
        wasm,
        sha256,
        template_cache,
    })
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(built) => built,
        Err(why) => panic!("{why}"),
    }
}

/// Gives `ws` a cache directory holding the precompiled artifact: the
/// template's host key and artifact, hard-linked (copied across
/// filesystems), so that the artifact's MAC verifies there too.
fn seed_cache(ws: &Workspace) {
    let built = built();
    let cache = ws.cache_dir();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&cache)
        .unwrap();
    for entry in std::fs::read_dir(&built.template_cache).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "host.key" || (name.starts_with(&built.sha256) && name.ends_with(".cwasm")) {
            // A copy, not a hard link: every link to one inode changes its
            // ctime, and the host refuses an artifact whose identity
            // changes while it loads it (tests seeding in parallel would
            // make each other's first exec wait and load again).
            let to = cache.join(&name);
            std::fs::copy(&path, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// A host config for the provider pointed at `endpoint`, with the cache
/// seeded; `config` adds YAML flow-map entries to its `config`.
fn host_config(ws: &Workspace, ca: &TestCa, endpoint: &TestServer, config: &str) -> PathBuf {
    seed_cache(ws);
    let bundle = ca.write_bundle(ws.path());
    ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: token-exchange\n    module: {}\n    matchImages: [\"{REGISTRY}\"]\n    config: {{tokenEndpoint: \"{}\"{config}}}\n    grants: {{outbound: [\"{}\"], serviceAccountToken: true}}\n",
            ws.header(),
            bundle.display(),
            built().wasm.display(),
            endpoint.url(TOKEN_PATH),
            endpoint.url(""),
        ),
    )
}

fn sa_token(nonce: &str) -> String {
    support::tokens::sa_token("registry.example.com", "team", "puller", "uid-1", nonce)
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes `application/x-www-form-urlencoded`, keeping order.
fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    Reply::Full(
        status,
        vec![("content-type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

/// What the token endpoint answers to a well-formed exchange.
#[derive(Clone)]
enum Answer {
    Token,
    /// RFC 6749 §5.2 error: `error`, `error_description`.
    OauthError(&'static str, &'static str),
    Status(u16),
}

/// A loopback TLS token endpoint that checks every form field of an RFC
/// 8693 exchange of one of `tokens` (with `audience` when given), and
/// records every violation.
struct TokenEndpoint {
    ca: TestCa,
    server: TestServer,
    problems: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start(tokens: Vec<String>, audience: Option<&'static str>, answer: Answer) -> Self {
        let ca = TestCa::new();
        let problems = Arc::new(Mutex::new(Vec::new()));
        let report = problems.clone();
        let server = TestServer::https(&ca, move |seen| {
            let mut wrong = Vec::new();
            if seen.method != "POST" || seen.path != TOKEN_PATH {
                wrong.push(format!("{} {}", seen.method, seen.path));
            }
            if header(seen, "content-type") != Some("application/x-www-form-urlencoded") {
                wrong.push(format!("content-type {:?}", header(seen, "content-type")));
            }
            if header(seen, "content-length") != Some(&seen.body.len().to_string()) {
                wrong.push(format!(
                    "content-length {:?}",
                    header(seen, "content-length")
                ));
            }
            let fields = form_decode(&seen.body);
            let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            names.sort();
            let mut want = vec!["grant_type", "subject_token", "subject_token_type"];
            want.extend(audience.map(|_| "audience"));
            want.sort();
            if names != want {
                wrong.push(format!("form fields {names:?}, want {want:?}"));
            }
            for (name, value) in &fields {
                let ok = match name.as_str() {
                    "grant_type" => value == GRANT_TYPE,
                    "subject_token_type" => value == JWT_TYPE,
                    "subject_token" => tokens.contains(value),
                    "audience" => Some(value.as_str()) == audience,
                    _ => false,
                };
                if !ok {
                    // Never echo the token, even into a test failure.
                    wrong.push(format!("form field {name} has the wrong value"));
                }
            }
            if !wrong.is_empty() {
                report.lock().unwrap().extend(wrong.clone());
                return json_reply(
                    400,
                    serde_json::json!({"error": "invalid_request", "error_description": wrong.join("; ")}),
                );
            }
            match &answer {
                Answer::Token => json_reply(
                    200,
                    serde_json::json!({
                        "access_token": ACCESS_TOKEN,
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": LIFETIME,
                    }),
                ),
                Answer::OauthError(error, description) => json_reply(
                    400,
                    serde_json::json!({"error": error, "error_description": description}),
                ),
                Answer::Status(status) => Reply::text(*status, "upstream is having a bad day"),
            }
        });
        Self {
            ca,
            server,
            problems,
        }
    }

    fn assert_no_problems(&self) {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "the token endpoint saw: {problems:#?}");
    }
}

fn credential(exec: &Exec) -> (String, support::strict::Auth, support::strict::Accepted) {
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth.len(), 1, "{:?}", resp.auth);
    let (key, auth) = resp.auth.iter().next().unwrap();
    (key.clone(), auth.clone(), resp)
}

fn duration_secs(resp: &support::strict::Accepted) -> u64 {
    wcp_core::duration::parse_go_duration(resp.cache_duration.as_deref().unwrap())
        .unwrap()
        .as_secs()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs `provider` on `request` under the peak-RSS probe of
/// `host_limits`; returns the exec and the host's peak RSS in KiB.
fn measured(ws: &Workspace, provider: Provider, request: &RequestSpec) -> (Exec, u64) {
    let report = ws.path().join("peak-rss");
    let report_arg = report.display().to_string();
    let exec = provider
        .wrapped(&[
            "python3",
            "-c",
            crate::host_limits::PEAK_RSS_PROBE,
            &report_arg,
        ])
        .exec(request);
    let kib = std::fs::read_to_string(&report)
        .expect("the probe reports the peak RSS")
        .parse()
        .unwrap();
    (exec, kib)
}

#[test]
fn token_exchange_end_to_end_and_figures() {
    let token = sa_token("pod-1");
    let endpoint = TokenEndpoint::start(vec![token.clone()], None, Answer::Token);
    let ws = Workspace::new();
    let config = host_config(&ws, &endpoint.ca, &endpoint.server, "");
    let provider = || Provider::new(host_binary(), &config);
    let request = |image: &str| RequestSpec::new(V1, image).token(&token);

    // Cold: the precompiled artifact is loaded, the plugin exchanges over TLS.
    let (first, peak_kib) = measured(&ws, provider(), &request(&format!("{REGISTRY}/team/app")));
    let (key, auth, resp) = credential(&first);
    assert_eq!(key, REGISTRY);
    assert_eq!(auth.username, "oauth2accesstoken");
    assert_eq!(auth.password, ACCESS_TOKEN);
    assert_eq!(resp.cache_key_type, "Registry");
    // expires_in minus the host's 60 s margin.
    let secs = duration_secs(&resp);
    assert!(
        (LIFETIME - 62..=LIFETIME - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert_eq!(endpoint.server.seen().len(), 1);
    endpoint.assert_no_problems();
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#""component":"loaded""#), "{audit}");

    // More cold calls: another forwarded annotation is another cache key.
    let mut cold = Vec::new();
    for i in 0..3 {
        let exec = provider().exec(
            &request(&format!("{REGISTRY}/team/app"))
                .annotation("example.com/nonce", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
    }
    assert_eq!(endpoint.server.seen().len(), 4);
    // Cache hits: other images of the registry, same service account.
    let mut hits = Vec::new();
    for i in 0..3 {
        let exec = provider().exec(&request(&format!("{REGISTRY}/team/app-{i}")));
        assert_eq!(credential(&exec).1.password, ACCESS_TOKEN);
        hits.push(exec.elapsed);
    }
    assert_eq!(endpoint.server.seen().len(), 4);
    endpoint.assert_no_problems();
    println!(
        "PYTHON token-exchange, debug host, default limits: {} bytes of wasm; first cold exec \
         (precompiled artifact) {:?}, peak RSS {peak_kib} KiB; cold median {:?} {cold:?}; \
         cache hit median {:?} {hits:?}",
        std::fs::metadata(&built().wasm).unwrap().len(),
        first.elapsed,
        median(cold.clone()),
        median(hits.clone())
    );
}

#[test]
fn invalid_grant_is_one_unauthorized_line_with_the_description() {
    let token = sa_token("pod-1");
    let endpoint = TokenEndpoint::start(
        vec![token.clone()],
        Some("registry.example.com"),
        Answer::OauthError("invalid_grant", "The subject token is expired"),
    );
    let ws = Workspace::new();
    let config = host_config(
        &ws,
        &endpoint.ca,
        &endpoint.server,
        ", audience: \"registry.example.com\"",
    );
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    let line = exec.assert_clean_failure("invalid_grant: The subject token is expired");
    println!("invalid_grant: {line}");
    assert!(line.contains("unauthorized"), "{line}");
    assert_eq!(endpoint.server.seen().len(), 1);
    endpoint.assert_no_problems();
}

#[test]
fn server_errors_are_upstream_failures() {
    let token = sa_token("pod-1");
    let endpoint = TokenEndpoint::start(vec![token.clone()], None, Answer::Status(503));
    let ws = Workspace::new();
    let config = host_config(&ws, &endpoint.ca, &endpoint.server, "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    let line = exec.assert_clean_failure("upstream");
    println!("503: {line}");
    assert!(line.contains("503"), "{line}");
    endpoint.assert_no_problems();

    // Without a service-account token: a configuration error naming both settings.
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    let line = exec.assert_clean_failure("grants.serviceAccountToken");
    println!("no token: {line}");
    assert!(line.contains("tokenAttributes"), "{line}");
    assert_eq!(endpoint.server.seen().len(), 1);
}

#[test]
fn the_service_account_token_never_appears_in_logs_at_debug() {
    let token = sa_token("pod-1");
    let signature = token.rsplit('.').next().unwrap().to_string();
    // Refused first, then a fresh endpoint and cache for a success with a
    // configured username.
    let refusing = TokenEndpoint::start(
        vec![token.clone()],
        None,
        Answer::OauthError("invalid_grant", "subject token rejected"),
    );
    let ws = Workspace::new();
    let config = host_config(&ws, &refusing.ca, &refusing.server, "");
    let request = RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token);
    let failed = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    assert!(!failed.success, "{failed:#?}");

    let granting = TokenEndpoint::start(vec![token.clone()], None, Answer::Token);
    let ok_ws = Workspace::new();
    let ok_config = host_config(&ok_ws, &granting.ca, &granting.server, ", username: robot");
    let ok = Provider::new(host_binary(), &ok_config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    let (_, auth, _) = credential(&ok);
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("robot", ACCESS_TOKEN)
    );
    for (what, text) in [
        ("debug stderr on failure", failed.stderr.clone()),
        ("debug stderr on success", ok.stderr.clone()),
        (
            "audit log on failure",
            std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
        (
            "audit log on success",
            std::fs::read_to_string(ok_ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
    ] {
        assert!(
            !text.contains(&token) && !text.contains(&signature),
            "the token appears in the {what}:\n{text}"
        );
    }
    // The plugin's own debug line made it through, so debug logging was on.
    assert!(
        ok.stderr.contains("exchanging the service-account token"),
        "{}",
        ok.stderr
    );
    // The call's linear-memory peak, for the report.
    let phases = ok
        .stderr
        .lines()
        .find(|l| l.contains("memory_peak_bytes="))
        .unwrap_or_default();
    println!("PYTHON call phases: {phases}");
    refusing.assert_no_problems();
    granting.assert_no_problems();
}

#[test]
fn an_ungranted_token_endpoint_is_a_configuration_error() {
    let token = sa_token("pod-1");
    let endpoint = TokenEndpoint::start(vec![token.clone()], None, Answer::Token);
    let ws = Workspace::new();
    let config = host_config(&ws, &endpoint.ca, &endpoint.server, "");
    // The operator granted another origin than the configured endpoint's.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("outbound: [\"{}\"]", endpoint.server.url("")),
        "outbound: [\"https://127.0.0.1:1\"]",
    );
    std::fs::write(&config, text).unwrap();
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    let line = exec.assert_clean_failure("configuration error");
    println!("not granted: {line}");
    assert!(line.contains("grants.outbound"), "{line}");
    assert_eq!(endpoint.server.connections(), 0);
}
