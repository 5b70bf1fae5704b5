//! The central cache: kubelet's key semantics on disk, shared by processes,
//! one upstream call per key, never failing a request.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

fn sa_token(namespace: &str, name: &str, uid: &str, nonce: &str) -> String {
    support::tokens::sa_token("registry", namespace, name, uid, nonce)
}

/// A token server that counts calls and answers `token-<n>`.
fn token_server() -> TestServer {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    TestServer::http(move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Reply::text(200, &format!("token-{n}"))
    })
}

struct Setup {
    ws: Workspace,
    server: TestServer,
    config: std::path::PathBuf,
}

impl Setup {
    /// The probe plugin against a counting token server; `extra` adds YAML
    /// to the plugin (config values, cache settings).
    fn new(config_values: &str, extra: &str) -> Self {
        let ws = Workspace::new();
        let server = token_server();
        let config = ws.config(&format!(
            "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"{config_values}}}\n    grants:\n      outbound: [\"http://{}\"]\n      serviceAccountToken: true\n{extra}",
            artifacts::HTTP_PROBE,
            server.url("/token"),
            server.addr
        ));
        Self { ws, server, config }
    }

    fn exec(&self, request: &RequestSpec) -> Exec {
        Provider::new(host_binary(), &self.config).exec(request)
    }

    fn password(&self, request: &RequestSpec) -> (String, support::strict::Accepted) {
        let exec = self.exec(request);
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        // A Registry or Global answer cached for one image serves others
        // as is, whatever its auth keys (kubelet does the same).
        let password = resp
            .auth
            .values()
            .next()
            .expect("one credential")
            .password
            .clone();
        (password, resp)
    }

    fn calls(&self) -> usize {
        self.server.seen().len()
    }

    fn entries(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.ws.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "entry"))
            .collect()
    }
}

fn secs(resp: &support::strict::Accepted) -> u64 {
    wcp_core::duration::parse_go_duration(resp.cache_duration.as_deref().unwrap())
        .unwrap()
        .as_secs()
}

/// (mode, cache config YAML, first token, second token, same SA key expected)
type Mode<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, bool);
/// (name, how to damage an entry file)
type Damage = (&'static str, fn(&Path));

#[test]
fn key_types_by_service_account_mode() {
    // (cacheKeyType, second image, expect a hit)
    let kinds = [
        ("Image", "a.registry.io/app", true),
        ("Image", "a.registry.io/other", false),
        ("Registry", "a.registry.io/other", true),
        ("Registry", "b.registry.io/app", false),
        ("Global", "b.registry.io/app", true),
    ];
    let t1 = sa_token("team", "puller", "uid-1", "pod-1");
    let t1b = sa_token("team", "puller", "uid-1", "pod-2");
    let t2 = sa_token("team", "pusher", "uid-2", "pod-3");
    for (kind, second, hit) in kinds {
        let modes: [Mode; 5] = [
            ("no SA", "", None, None, true),
            ("SA, same SA", "", Some(&t1), Some(&t1b), true),
            ("SA, other SA", "", Some(&t1), Some(&t2), false),
            (
                "Token, same token",
                "    cache: {tokenCacheType: Token}\n",
                Some(&t1),
                Some(&t1),
                true,
            ),
            (
                "Token, other token",
                "    cache: {tokenCacheType: Token}\n",
                Some(&t1),
                Some(&t1b),
                false,
            ),
        ];
        for (mode, extra, first_token, second_token, same_key) in modes {
            let s = Setup::new(&format!(", cacheKeyType: {kind}"), extra);
            let mut first = RequestSpec::new(V1, "a.registry.io/app");
            let mut then = RequestSpec::new(V1, second);
            if let Some(t) = first_token {
                first = first.token(t);
            }
            if let Some(t) = second_token {
                then = then.token(t);
            }
            let (p1, r1) = s.password(&first);
            assert_eq!(r1.cache_key_type, kind);
            let (p2, _) = s.password(&then);
            let expect_hit = hit && same_key;
            assert_eq!(
                p1 == p2,
                expect_hit,
                "{kind} / {mode} / {second}: first {p1}, then {p2}"
            );
            assert_eq!(s.calls(), if expect_hit { 1 } else { 2 }, "{kind} / {mode}");
        }
    }
}

#[test]
fn annotations_split_the_cache() {
    let s = Setup::new("", "");
    let token = sa_token("team", "puller", "uid-1", "pod-1");
    let a = RequestSpec::new(V1, "a.registry.io/app")
        .token(&token)
        .annotation("role", "a");
    let b = RequestSpec::new(V1, "a.registry.io/app")
        .token(&token)
        .annotation("role", "b");
    s.password(&a);
    s.password(&b);
    s.password(&a);
    assert_eq!(s.calls(), 2);
}

#[test]
fn fifty_concurrent_execs_of_one_registry_make_one_call() {
    let s = Setup::new("", "");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let config = s.config.clone();
            std::thread::spawn(move || {
                Provider::new(host_binary(), &config)
                    .exec(&RequestSpec::new(V1, &format!("a.registry.io/app-{i}")))
            })
        })
        .collect();
    let mut passwords = BTreeMap::new();
    for h in handles {
        let exec = h.join().unwrap();
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        *passwords
            .entry(resp.auth["a.registry.io"].password.clone())
            .or_insert(0) += 1;
    }
    println!("50 concurrent execs: {} upstream call(s)", s.calls());
    assert_eq!(s.calls(), 1, "{passwords:?}");
    assert_eq!(passwords.get("token-1"), Some(&50));
}

#[test]
fn expiry_sets_the_duration_and_hits_return_the_remaining_lifetime() {
    let s = Setup::new(", expiresIn: \"3600\"", "");
    let (_, first) = s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert!(
        (3538..=3540).contains(&secs(&first)),
        "{:?}",
        first.cache_duration
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, hit) = s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert!(
        secs(&hit) < secs(&first),
        "{:?} then {:?}",
        first.cache_duration,
        hit.cache_duration
    );
    assert_eq!(s.calls(), 1);

    // Expiring within the safety margin: "0s" to the kubelet, not cached.
    let short = Setup::new(", expiresIn: \"30\"", "");
    let (_, resp) = short.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_eq!(resp.cache_duration.as_deref(), Some("0s"));
    short.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_eq!(short.calls(), 2);
    assert!(short.entries().is_empty());

    // The per-plugin maximum caps a long-lived credential.
    let capped = Setup::new(", expiresIn: \"86400\"", "    cache: {maxDuration: 10m}\n");
    let (_, resp) = capped.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_eq!(resp.cache_duration.as_deref(), Some("10m0s"));
}

#[test]
fn token_as_password_needs_token_cache_type() {
    let token = sa_token("team", "puller", "uid-1", "pod-1");
    let s = Setup::new(", echoToken: \"true\"", "");
    let exec = s.exec(&RequestSpec::new(V1, "a.registry.io/app").token(&token));
    let line = exec.assert_clean_failure("tokenCacheType: Token");
    assert!(!line.contains(&token));
    assert!(s.entries().is_empty());
    let ok = Setup::new(
        ", echoToken: \"true\"",
        "    cache: {tokenCacheType: Token}\n",
    );
    let (password, _) = ok.password(&RequestSpec::new(V1, "a.registry.io/app").token(&token));
    assert_eq!(password, token);
}

#[test]
fn files_are_private_and_atomic() {
    let s = Setup::new("", "");
    s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    let dir = std::fs::metadata(s.ws.cache_dir()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let entries = s.entries();
    assert_eq!(entries.len(), 1);
    let meta = std::fs::metadata(&entries[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), dir.uid());
    let leftovers: Vec<_> = std::fs::read_dir(s.ws.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The token server's answer is on disk (root-only), never in the audit log.
    let audit = std::fs::read_to_string(s.ws.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains("token-1"), "{audit}");
}

#[test]
fn damaged_entries_are_ignored_and_replaced() {
    let damages: [Damage; 5] = [
        ("truncated", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("garbage", |p| {
            std::fs::write(p, b"\x00\xffnot an entry").unwrap()
        }),
        ("foreign version", |p| {
            let text = std::fs::read_to_string(p).unwrap();
            let body = text
                .split_once('\n')
                .unwrap()
                .1
                .replace("wcp-cache/v1", "wcp-cache/v9");
            use sha2::Digest;
            let sum = hex::encode(sha2::Sha256::digest(body.as_bytes()));
            std::fs::write(p, format!("{sum}\n{body}")).unwrap();
        }),
        ("world-readable", |p| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap()
        }),
        ("empty", |p| std::fs::write(p, b"").unwrap()),
    ];
    for (name, damage) in damages {
        let s = Setup::new("", "");
        let request = RequestSpec::new(V1, "a.registry.io/app");
        s.password(&request);
        let entries = s.entries();
        damage(&entries[0]);
        // A writer killed mid-write leaves at most a temp file behind.
        std::fs::write(s.ws.cache_dir().join(".deadbeef.1.1.tmp"), b"half an ent").unwrap();
        let (password, _) = s.password(&request);
        assert_eq!(
            password, "token-2",
            "{name}: the damaged entry must not be served"
        );
        let (password, _) = s.password(&request);
        assert_eq!(password, "token-2", "{name}: the replacement is served");
        assert_eq!(s.calls(), 2, "{name}");
    }
}

#[test]
fn writer_killed_mid_call_leaves_readers_unharmed() {
    let ws = Workspace::new();
    let slow = TestServer::http(|_| Reply::Drip {
        chunk: b"x".to_vec(),
        interval: std::time::Duration::from_millis(200),
    });
    let config = ws.config(&format!(
        "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
        artifacts::HTTP_PROBE,
        slow.url("/"),
        slow.addr
    ));
    let mut child = Command::new(host_binary())
        .args(["--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&RequestSpec::new(V1, "a.registry.io/app").encode())
        .unwrap();
    while slow.connections() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL while it holds the flight lock
    child.wait().unwrap();
    // The lock died with the process: a reader with a working upstream
    // proceeds at once and caches a whole entry.
    let good = token_server();
    let config2 = ws.config(&format!(
        "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
        artifacts::HTTP_PROBE,
        good.url("/"),
        good.addr
    ));
    let exec =
        Provider::new(host_binary(), &config2).exec(&RequestSpec::new(V1, "a.registry.io/app"));
    assert!(exec.success, "{exec:#?}");
    assert!(
        exec.elapsed < std::time::Duration::from_secs(3),
        "{:?}",
        exec.elapsed
    );
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth["a.registry.io"].password, "token-1");
}

#[test]
fn unusable_cache_directory_never_fails_a_request() {
    let s = Setup::new("", "");
    std::fs::create_dir_all(s.ws.cache_dir()).unwrap();
    std::os::unix::fs::chown(s.ws.cache_dir(), Some(65534), Some(65534)).unwrap();
    let (p1, _) = s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    let (p2, _) = s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_eq!(
        (p1.as_str(), p2.as_str()),
        ("token-1", "token-2"),
        "no caching in a foreign directory"
    );
}

#[test]
fn list_and_purge() {
    let s = Setup::new("", "");
    let token = sa_token("team", "puller", "uid-1", "pod-1");
    s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    s.password(&RequestSpec::new(V1, "b.registry.io/app").token(&token));
    let run = |args: &[&str]| support::workspace::host_command(&s.config, args);
    let listing = run(&["cache", "list"]);
    assert!(listing.contains("a.registry.io"), "{listing}");
    assert!(listing.contains("team/puller"), "{listing}");
    assert!(listing.contains("Registry"), "{listing}");
    assert!(!listing.contains("token-"), "secrets in listing: {listing}");
    assert!(run(&["cache", "purge", "--plugin", "other"]).contains("removed 0"));
    assert!(run(&["cache", "purge", "--plugin", "probe"]).contains("removed 2"));
    assert!(s.entries().is_empty());
    s.password(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_eq!(s.calls(), 3);
}

/// A flight's holder SIGKILLed mid-call leaves no answer and no failure:
/// the kernel releases its lock and the exec waiting on it calls the plugin
/// itself and succeeds, well before its own deadline.
#[test]
fn a_holder_killed_mid_flight_lets_the_waiter_call() {
    use std::io::Write;
    let ws = Workspace::new();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let server = TestServer::http(move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            // The holder's request never finishes.
            Reply::Drip {
                chunk: b"x".to_vec(),
                interval: std::time::Duration::from_millis(200),
            }
        } else {
            Reply::text(200, "after-the-kill")
        }
    });
    let config = ws.config(&format!(
        "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
        artifacts::HTTP_PROBE,
        server.url("/"),
        server.addr
    ));
    let request = RequestSpec::new(V1, "team.registry.io/app");
    let mut holder = Command::new(host_binary())
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    holder
        .stdin
        .take()
        .unwrap()
        .write_all(&request.encode())
        .unwrap();
    let started = std::time::Instant::now();
    while server.connections() == 0 {
        assert!(started.elapsed().as_secs() < 20, "the holder never called");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let waiter = {
        let config = config.clone();
        let request = request.clone();
        std::thread::spawn(move || Provider::new(host_binary(), &config).exec(&request))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let exec = waiter.join().unwrap();
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth["team.registry.io"].password, "after-the-kill");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    println!(
        "waiter done {:?} after the holder started",
        started.elapsed()
    );
}
