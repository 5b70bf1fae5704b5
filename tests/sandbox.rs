//! The capability sandbox against hostile components: each scenario must
//! end in a non-zero exit, one clear stderr line and empty stdout, within the
//! plugin's deadline plus a small margin; denials are recorded in the audit
//! log; forbidden servers see zero connections.

use crate::support;

use std::time::Duration;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

/// The deadline the scenarios run under, and the slack allowed past it.
const DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(1500);

struct Scenario {
    ws: Workspace,
}

impl Scenario {
    fn new() -> Self {
        Self {
            ws: Workspace::new(),
        }
    }

    /// Runs `module` with the given extra plugin YAML (grants, config).
    fn run(&self, module: &str, extra: &str) -> Exec {
        self.run_logged(module, extra, "warn")
    }

    /// [`Self::run`] with the host's log at `level`.
    fn run_logged(&self, module: &str, extra: &str, level: &str) -> Exec {
        self.run_wrapped(module, extra, level, &[])
    }

    /// [`Self::run_logged`], the host started by `wrapper` (a command that
    /// execs its last arguments).
    fn run_wrapped(&self, module: &str, extra: &str, level: &str, wrapper: &[&str]) -> Exec {
        let config = self.ws.write(
            "host-config.yaml",
            format!(
                "{}plugins:\n  - name: hostile\n    module: {module}\n    matchImages: [\"*.registry.io\"]\n    limits:\n      timeout: {}s\n      memoryMiB: 32\n      maxHttpResponseBytes: 1048576\n{extra}",
                self.ws.header(),
                DEADLINE.as_secs()
            ),
        );
        let exec = Provider::new(host_binary(), &config)
            .wrapped(wrapper)
            .env("AWS_SECRET_ACCESS_KEY", "node-secret-must-not-leak")
            .env("GRANTED_AND_DECLARED", "visible")
            .env("WCP_LOG", level)
            .exec(&RequestSpec::new(V1, "team.registry.io/app"));
        assert!(
            exec.elapsed < DEADLINE + MARGIN,
            "took {:?}, deadline {DEADLINE:?}: {exec:#?}",
            exec.elapsed
        );
        exec
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        let path = self.ws.path().join("audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    fn audit_has(&self, event: &str) -> serde_json::Value {
        let events = self.audit();
        events
            .iter()
            .find(|e| e["event"] == event)
            .cloned()
            .unwrap_or_else(|| panic!("no {event} in audit log: {events:#?}"))
    }
}

fn report(name: &str, exec: &Exec, line: &str) {
    // Measured figures for the issue note: run with --nocapture to see them.
    println!("SCENARIO {name}: {:?} :: {line}", exec.elapsed);
}

#[test]
fn infinite_loop_is_interrupted_at_the_deadline() {
    let s = Scenario::new();
    let exec = s.run(artifacts::INFINITE_LOOP, "");
    let line = exec.assert_clean_failure("did not answer within its 2s deadline");
    assert!(exec.elapsed >= DEADLINE);
    report("infinite loop", &exec, &line);
}

/// Checks that a spinning guest's exec (logged at debug) failed cleanly at
/// its deadline, its deadline armed `by` the timer or the thread.
fn assert_stopped_at_deadline(exec: &Exec, by: &str, what: &str) {
    assert!(!exec.success && exec.stdout.is_empty(), "{what}: {exec:#?}");
    assert!(exec.elapsed >= DEADLINE, "{what}: {:?}", exec.elapsed);
    let armed = exec
        .stderr
        .lines()
        .find(|l| l.contains("guest deadline armed"))
        .unwrap_or_else(|| panic!("{what}: {}", exec.stderr));
    assert!(armed.contains(&format!("by=\"{by}\"")), "{what}: {armed}");
    let last = exec.stderr.lines().last().unwrap();
    assert!(
        last.contains("did not answer within its 2s deadline"),
        "{what}: {}",
        exec.stderr
    );
}

/// The exec's one call holds the process's interval timer
/// (`host/src/runtime/deadline.rs`), not a sleeping thread: the path the
/// kubelet's execs take is the one this checks.
#[test]
fn the_exec_interrupts_a_spinning_guest_by_its_timer() {
    let s = Scenario::new();
    let exec = s.run_logged(artifacts::INFINITE_LOOP, "", "debug");
    assert_stopped_at_deadline(&exec, "timer", "plain exec");
}

/// What the process that execs the host may hand down across `execve`:
/// SIGALRM blocked, or ignored, or an alarm already pending. The spinning
/// guest is stopped at its deadline all the same; a pending alarm is put
/// back as it was and the call uses the deadline thread instead.
#[test]
fn a_spinning_guest_is_stopped_whatever_alarm_state_the_exec_inherits() {
    for (setup, by) in [
        (
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])",
            "timer",
        ),
        ("signal.signal(signal.SIGALRM, signal.SIG_IGN)", "timer"),
        ("signal.setitimer(signal.ITIMER_REAL, 30)", "thread"),
    ] {
        let s = Scenario::new();
        let code = format!("import os, signal, sys; {setup}; os.execv(sys.argv[1], sys.argv[1:])");
        let wrapper = ["python3", "-c", &code];
        let exec = s.run_wrapped(artifacts::INFINITE_LOOP, "", "debug", &wrapper);
        assert_stopped_at_deadline(&exec, by, setup);
    }
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let s = Scenario::new();
    let exec = s.run(artifacts::MEMORY_BOMB, "");
    let line = exec.assert_clean_failure("exceeded its memory limit of 32 MiB");
    report("memory bomb", &exec, &line);
}

#[test]
fn deep_recursion_overflows_cleanly() {
    let s = Scenario::new();
    let exec = s.run(artifacts::DEEP_RECURSION, "");
    // A Rust guest keeps its stack in linear memory: overflowing it is an
    // out-of-bounds access, unless wasm's own call stack overflows first.
    let line = exec.assert_clean_failure("trapped");
    assert!(
        line.contains("runaway recursion") || line.contains("overflowed its stack"),
        "{line}"
    );
    report("deep recursion", &exec, &line);
}

#[test]
fn panic_is_a_clean_trap() {
    let s = Scenario::new();
    let exec = s.run(artifacts::TRAP, "");
    let line = exec.assert_clean_failure("trapped");
    report("panic/trap", &exec, &line);
}

#[test]
fn oversized_response_is_refused() {
    let s = Scenario::new();
    let exec = s.run(artifacts::OVERSIZED_RESPONSE, "");
    let line = exec.assert_clean_failure("more than the limit");
    report("oversized response", &exec, &line);
}

#[test]
fn undeclared_destination_is_denied_even_when_granted() {
    let s = Scenario::new();
    let server = TestServer::http(|_| Reply::text(200, "loot"));
    let exec = s.run(
        artifacts::UNDECLARED_REQUEST,
        &format!(
            "    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
            server.url("/"),
            server.addr
        ),
    );
    let line = exec.assert_clean_failure("not declared");
    assert_eq!(server.connections(), 0);
    let event = s.audit_has("destination_not_allowed");
    assert_eq!(event["plugin"], "hostile");
    report("undeclared host", &exec, &line);
}

#[test]
fn declared_but_not_granted_destination_is_denied() {
    let s = Scenario::new();
    let server = TestServer::http(|_| Reply::text(200, "loot"));
    let exec = s.run(
        artifacts::HTTP_PROBE,
        &format!("    config: {{target: \"{}\"}}\n", server.url("/")),
    );
    let line = exec.assert_clean_failure("not granted");
    assert!(line.contains(&format!("http://{}", server.addr)), "{line}");
    assert_eq!(server.connections(), 0);
    s.audit_has("destination_not_allowed");
    report("declared, not granted", &exec, &line);
}

#[test]
fn metadata_ip_is_denied() {
    let s = Scenario::new();
    let exec = s.run(
        artifacts::HTTP_PROBE,
        "    config: {target: \"http://169.254.169.254/latest/meta-data/iam/security-credentials/\"}\n    grants:\n      outbound: [\"http://*.amazonaws.com\"]\n",
    );
    let line = exec.assert_clean_failure("169.254.169.254");
    s.audit_has("destination_not_allowed");
    report("metadata IP", &exec, &line);
}

#[test]
fn name_resolving_to_loopback_is_refused_after_dns() {
    let s = Scenario::new();
    let server = TestServer::http(|_| Reply::text(200, "loot"));
    let exec = s.run(
        artifacts::HTTP_PROBE,
        &format!(
            "    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://localhost:{}\"]\n",
            server.localhost_url("/"),
            server.addr.port()
        ),
    );
    let line = exec.assert_clean_failure("destination_ip_prohibited");
    assert!(line.contains("loopback"), "{line}");
    assert_eq!(server.connections(), 0);
    let event = s.audit_has("destination_ip_prohibited");
    assert!(event["address"].as_str().unwrap().contains("127.0.0.1") || event["address"] == "::1");
    report("name resolving to 127.0.0.1", &exec, &line);
}

#[test]
fn redirect_to_a_disallowed_host_is_not_followed() {
    let s = Scenario::new();
    let forbidden = TestServer::http(|_| Reply::text(200, "loot"));
    let location = forbidden.url("/loot");
    let allowed = TestServer::http(move |_| Reply::Redirect(location.clone()));
    let exec = s.run(
        artifacts::HTTP_PROBE,
        &format!(
            "    config: {{target: \"{}\", followRedirect: \"true\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
            allowed.url("/start"),
            allowed.addr
        ),
    );
    let line = exec.assert_clean_failure("redirected request failed");
    assert_eq!(allowed.connections(), 1);
    assert_eq!(forbidden.connections(), 0);
    s.audit_has("destination_not_allowed");
    report("redirect to disallowed host", &exec, &line);
}

#[test]
fn env_probe_sees_only_declared_and_granted_names() {
    let s = Scenario::new();
    let exec = s.run(
        artifacts::ENV_PROBE,
        "    grants:\n      env: [GRANTED_AND_DECLARED, AWS_SECRET_ACCESS_KEY]\n",
    );
    let line = exec.assert_clean_failure("no ungranted variables (GRANTED_AND_DECLARED=visible)");
    assert!(!exec.stderr.contains("node-secret-must-not-leak"));
    report("env probe", &exec, &line);
}

#[test]
fn fs_probe_finds_no_files() {
    let s = Scenario::new();
    let exec = s.run(artifacts::FS_PROBE, "");
    let line = exec.assert_clean_failure("every file access was refused");
    assert!(!std::path::Path::new("/tmp/wcp-fs-probe").exists());
    report("filesystem probe", &exec, &line);
}

#[test]
fn socket_probe_cannot_connect() {
    let s = Scenario::new();
    let server = TestServer::http(|_| Reply::text(200, "loot"));
    let exec = s.run(
        artifacts::SOCKET_PROBE,
        &format!("    config: {{target: \"{}\"}}\n", server.addr),
    );
    let line = exec.assert_clean_failure("sockets and name lookup were refused");
    assert_eq!(server.connections(), 0);
    report("socket probe", &exec, &line);
}

#[test]
fn dripping_upstream_is_cut_at_the_deadline() {
    let s = Scenario::new();
    let server = TestServer::http(|_| Reply::Drip {
        chunk: b"x".to_vec(),
        interval: Duration::from_millis(100),
    });
    let exec = s.run(
        artifacts::HTTP_PROBE,
        &format!(
            "    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
            server.url("/drip"),
            server.addr
        ),
    );
    let line = exec.assert_clean_failure("deadline");
    assert_eq!(server.connections(), 1);
    report("slow drip upstream", &exec, &line);
}

#[test]
fn huge_body_is_cut_off() {
    for announce_length in [false, true] {
        let s = Scenario::new();
        let server = TestServer::http(move |_| Reply::Huge {
            bytes: 100 << 20,
            announce_length,
        });
        let exec = s.run(
            artifacts::HTTP_PROBE,
            &format!(
                "    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n",
                server.url("/huge"),
                server.addr
            ),
        );
        let line = exec.assert_clean_failure("response_too_large");
        s.audit_has("response_too_large");
        report(
            &format!("100 MiB body (content-length announced: {announce_length})"),
            &exec,
            &line,
        );
    }
}

#[test]
fn granted_https_destination_works_with_operator_ca() {
    let s = Scenario::new();
    let ca = TestCa::new();
    let bundle = ca.write_bundle(s.ws.path());
    let server = TestServer::https(&ca, |seen| {
        Reply::text(200, &format!("hello {}", seen.path))
    });
    let config = s.ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"https://{}\"]\n    cache: {{defaultDuration: 0s}}\n",
            s.ws.header(),
            bundle.display(),
            artifacts::HTTP_PROBE,
            server.url("/token"),
            server.addr
        ),
    );
    let exec = Provider::new(host_binary(), &config).exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth["a.registry.io"].password, "hello /token");
    assert_eq!(server.seen().len(), 1);

    // Without the CA the certificate is not trusted.
    let untrusted = s.ws.write(
        "untrusted.yaml",
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&format!("tls:\n  caBundle: {}\n", bundle.display()), ""),
    );
    Provider::new(host_binary(), &untrusted)
        .exec(&RequestSpec::new(V1, "a.registry.io/x"))
        .assert_clean_failure("tls");
}

#[test]
fn https_proxy_tunnels_granted_requests_only() {
    use support::server::TestProxy;
    let ws = Workspace::new();
    let ca = TestCa::new();
    let bundle = ca.write_bundle(ws.path());
    let server = TestServer::https(&ca, |_| Reply::text(200, "via-proxy"));
    let proxy = TestProxy::start();
    let plugin = |target: &str, grant: &str| {
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{target}\"}}\n    grants:\n      outbound: [\"{grant}\"]\n    cache: {{defaultDuration: 0s}}\n",
            ws.header(),
            bundle.display(),
            artifacts::HTTP_PROBE,
        )
    };
    let granted = ws.write(
        "granted.yaml",
        plugin(&server.url("/"), &format!("https://{}", server.addr)),
    );
    let request = RequestSpec::new(V1, "a.registry.io/x");
    let via = |config: &std::path::Path, no_proxy: &str| {
        Provider::new(host_binary(), config)
            .env("HTTPS_PROXY", &format!("http://{}", proxy.addr))
            .env("NO_PROXY", no_proxy)
            .exec(&request)
    };
    let exec = via(&granted, "");
    assert!(exec.success, "{exec:#?}");
    assert_eq!(
        support::strict::decode(&exec.stdout, V1).unwrap().auth["a.registry.io"].password,
        "via-proxy"
    );
    assert_eq!(proxy.targets(), vec![server.addr.to_string()]);

    // NO_PROXY bypasses the proxy (and the address checks apply again).
    let exec = via(&granted, "127.0.0.1");
    assert!(exec.success, "{exec:#?}");
    assert_eq!(proxy.targets().len(), 1);

    // A destination the plugin may not reach never reaches the proxy either.
    let denied = ws.write(
        "denied.yaml",
        plugin(&server.url("/"), "https://other.example.com"),
    );
    via(&denied, "").assert_clean_failure("not granted");
    assert_eq!(proxy.targets().len(), 1);
}

#[test]
fn unresolvable_name_fails_with_one_line() {
    let s = Scenario::new();
    let exec = s.run(
        artifacts::HTTP_PROBE,
        "    config: {target: \"https://no-such-host.invalid/\"}\n    grants:\n      outbound: [\"https://no-such-host.invalid\"]\n",
    );
    let line = exec.assert_clean_failure("dns_error");
    assert!(line.contains("no-such-host.invalid"), "{line}");
    s.audit_has("dns_error");
}

/// The host names itself and the plugin to the upstream (vendors' audit
/// logs see who called), unless the plugin sets its own `User-Agent`.
#[test]
fn outbound_requests_carry_the_host_user_agent_unless_the_plugin_sets_one() {
    let s = Scenario::new();
    let server = TestServer::http(|seen| {
        let agent = seen
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("|");
        Reply::text(200, &agent)
    });
    let grant = format!(
        "    config: {{target: \"{}\"EXTRA}}\n    grants:\n      outbound: [\"http://{}\"]\n    cache: {{defaultDuration: 0s}}\n",
        server.url("/"),
        server.addr
    );
    let agent_of = |exec: &Exec| {
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        resp.auth["team.registry.io"].password.clone()
    };
    let exec = s.run(artifacts::HTTP_PROBE, &grant.replace("EXTRA", ""));
    assert_eq!(
        agent_of(&exec),
        format!(
            "wasm-credential-provider/{} (plugin hostile)",
            env!("CARGO_PKG_VERSION")
        )
    );
    let exec = s.run(
        artifacts::HTTP_PROBE,
        &grant.replace("EXTRA", ", userAgent: \"vendor-provider/2.1\""),
    );
    assert_eq!(agent_of(&exec), "vendor-provider/2.1");
}

#[test]
fn ungranted_destination_is_denied_for_get_and_post_alike() {
    // Declared (config:target) but not granted: GET, an empty POST, a small
    // POST and a POST body streamed in many writes must all come back to the
    // plugin as HttpError::Denied, never as a body-write transport error.
    for (method, body_bytes) in [("GET", 0), ("POST", 0), ("POST", 100), ("POST", 20_000)] {
        let s = Scenario::new();
        let server = TestServer::http(|_| Reply::text(200, "loot"));
        let exec = s.run(
            artifacts::DENIED_REQUEST,
            &format!(
                "    config: {{target: \"{}\", method: {method}, bodyBytes: \"{body_bytes}\"}}\n",
                server.url("/token")
            ),
        );
        let line = exec.assert_clean_failure("the SDK returned HttpError::Denied");
        assert!(
            line.contains("not granted"),
            "{method} {body_bytes}: {line}"
        );
        assert!(
            !line.contains("another error"),
            "{method} {body_bytes}: {line}"
        );
        assert_eq!(server.connections(), 0);
        s.audit_has("destination_not_allowed");
        report(
            &format!("ungranted {method} ({body_bytes} B)"),
            &exec,
            &line,
        );
    }
}
