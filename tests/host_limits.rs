//! The sandbox's bounds that live in the host rather than in wasm: state a
//! plugin makes the host hold (resource table, header maps, unsent bodies,
//! random bytes), connections in flight, the address policy behind an
//! HTTP proxy and for IP-literal grants, the `Host` header, and name
//! lookups that never answer. Each scenario is a hostile component or
//! input against the real host binary and real loopback servers.

use crate::support;

use std::net::UdpSocket;
use std::time::Duration;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestCa, TestProxy, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(1500);
/// The plugins' memory limit in these scenarios.
const MEMORY_MIB: u64 = 32;
/// What the host may hold beyond an idle call of the same component and
/// its `memoryMiB`: the resource table (512 entries, each at most a
/// 16 KiB header map or a 32 KiB unsent body), plus allocator slack.
const HOST_STATE_MIB: u64 = 24;

/// One plugin entry named `hostile` with the given module and extra YAML.
fn config(ws: &Workspace, module: &str, extra: &str) -> std::path::PathBuf {
    ws.write(
        "host-config.yaml",
        format!(
            "{}plugins:\n  - name: hostile\n    module: {module}\n    matchImages: [\"*.registry.io\"]\n    limits:\n      timeout: {}s\n      memoryMiB: {MEMORY_MIB}\n    cache: {{defaultDuration: 0s}}\n{extra}",
            ws.header(),
            DEADLINE.as_secs()
        ),
    )
}

fn request() -> RequestSpec {
    RequestSpec::new(V1, "team.registry.io/app")
}

fn within_deadline(exec: &Exec) {
    assert!(
        exec.elapsed < DEADLINE + MARGIN,
        "took {:?}, deadline {DEADLINE:?}: {exec:#?}",
        exec.elapsed
    );
}

fn password(exec: &Exec) -> String {
    assert!(exec.success, "{exec:#?}");
    let response = support::strict::decode(&exec.stdout, V1).unwrap();
    response.auth["team.registry.io"].password.clone()
}

/// Runs the host as a child of a small Python process that reports the
/// child's peak RSS (`ru_maxrss` of its children). Measured from the test
/// process itself, the figure would start at the test process's own RSS:
/// Linux carries a forking parent's high-water mark across `exec`.
pub(crate) const PEAK_RSS_PROBE: &str = "import resource, subprocess, sys\n\
p = subprocess.run(sys.argv[2:])\n\
open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
sys.exit(p.returncode)\n";

/// The exec and the host process's peak RSS in KiB.
fn host_state(ws: &Workspace, attack: &str, extra: &str) -> (Exec, u64) {
    measured(
        ws,
        artifacts::HOST_STATE,
        &format!("    config:\n      attack: {attack}\n{extra}"),
    )
}

/// The peak RSS an attack of HOST_STATE may reach: an idle exec's (the
/// second one, which loads the artifact as the attacks do; the first
/// compiles) plus `memoryMiB` plus the documented host-side state. Also
/// returns the idle figure, for the report.
fn host_state_bound_kib(ws: &Workspace) -> (u64, u64) {
    assert_eq!(password(&host_state(ws, "idle", "").0), "idle");
    let (idle, idle_kib) = host_state(ws, "idle", "");
    assert_eq!(password(&idle), "idle");
    (idle_kib + (MEMORY_MIB + HOST_STATE_MIB) * 1024, idle_kib)
}

#[test]
fn host_side_state_stays_within_memory_limit_plus_fixed_overhead() {
    let ws = Workspace::new();
    let (bound_kib, idle_kib) = host_state_bound_kib(&ws);
    for attack in ["fields", "bodies"] {
        let server = TestServer::http(|_| Reply::text(200, "never sent"));
        let (exec, peak_kib) = host_state(
            &ws,
            attack,
            &format!(
                "      target: \"{}\"\n    grants:\n      outbound: [\"http://{}\"]\n",
                server.url("/"),
                server.addr
            ),
        );
        println!("PEAK RSS {attack}: {peak_kib} KiB (idle {idle_kib} KiB, bound {bound_kib} KiB)");
        // The table fills up: the plugin traps, cleanly.
        let line = exec.assert_clean_failure("hostile");
        println!("{attack}: {line}");
        assert!(
            peak_kib <= bound_kib,
            "{attack}: peak RSS {peak_kib} KiB over {bound_kib} KiB"
        );
        assert_eq!(server.connections(), 0);
    }
}

/// Runs `module` under the peak-RSS probe with `extra` plugin YAML.
fn measured(ws: &Workspace, module: &str, extra: &str) -> (Exec, u64) {
    let config = config(ws, module, extra);
    let report = ws.path().join("peak-rss");
    let report_arg = report.display().to_string();
    let exec = Provider::new(host_binary(), &config)
        .wrapped(&["python3", "-c", PEAK_RSS_PROBE, &report_arg])
        .exec(&request());
    within_deadline(&exec);
    let kib = std::fs::read_to_string(&report)
        .expect("the probe reports the peak RSS")
        .parse()
        .unwrap();
    (exec, kib)
}

#[test]
fn all_memories_of_a_call_together_stay_within_the_limit() {
    let ws = Workspace::new();
    let static_config = "    config: {username: robot, password: pw}\n";
    // Baseline: the real plugin the hostile one is built from (second exec:
    // loading the artifact, as the hostile one does after its compile).
    measured(&ws, artifacts::STATIC_PLUGIN, static_config);
    let (plain, plain_kib) = measured(&ws, artifacts::STATIC_PLUGIN, static_config);
    assert!(plain.success, "{plain:#?}");
    // The same plugin plus 15 core instances, each with a 31 MiB memory
    // that its start function fills: 496 MiB under memoryMiB: 32.
    measured(&ws, artifacts::MULTI_MEMORY, static_config);
    let (exec, kib) = measured(&ws, artifacts::MULTI_MEMORY, static_config);
    println!("PEAK RSS multi-memory: {kib} KiB (static plugin {plain_kib} KiB)");
    exec.assert_clean_failure("exceeded its memory limit of 32 MiB");
    let bound = plain_kib + MEMORY_MIB * 1024;
    assert!(kib <= bound, "peak RSS {kib} KiB over {bound} KiB");
}

#[test]
fn strings_stored_in_unsent_requests_are_bounded() {
    let ws = Workspace::new();
    let (bound, idle_kib) = host_state_bound_kib(&ws);
    let (exec, peak_kib) = host_state(&ws, "long-strings", "");
    println!("PEAK RSS long-strings: {peak_kib} KiB (idle {idle_kib} KiB)");
    // 200 requests x 4 strings of 1 MiB (800 MiB if held): all refused.
    assert_eq!(password(&exec), "accepted=0 refused=800");
    assert!(
        peak_kib <= bound,
        "peak RSS {peak_kib} KiB over {bound} KiB"
    );
}

#[test]
fn granted_credential_variables_are_redacted() {
    let ws = Workspace::new();
    let config = config(
        &ws,
        artifacts::HOST_STATE,
        "    config: {attack: env-echo}\n    grants:\n      env: [AWS_SECRET_ACCESS_KEY, AWS_REGION]\n",
    );
    let exec = Provider::new(host_binary(), &config)
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-node-secret")
        .env("AWS_REGION", "us-west-2")
        .env("WCP_LOG", "debug")
        .exec(&request());
    assert!(!exec.success);
    assert!(!exec.stderr.contains("wJalrXUtnFEMI"), "{}", exec.stderr);
    // A variable whose name says nothing of a secret stays readable.
    assert!(exec.stderr.contains("region=us-west-2"), "{}", exec.stderr);
}

#[test]
fn a_header_list_is_refused_before_it_is_copied() {
    let ws = Workspace::new();
    let (bound, idle_kib) = host_state_bound_kib(&ws);
    let (exec, peak_kib) = host_state(&ws, "from-list", "");
    println!("PEAK RSS from-list: {peak_kib} KiB (idle {idle_kib} KiB)");
    exec.assert_clean_failure("fields list of 400000 entries exceeds the limit of 256");
    assert!(
        peak_kib <= bound,
        "peak RSS {peak_kib} KiB over {bound} KiB"
    );
}

#[test]
fn random_bytes_are_capped() {
    let ws = Workspace::new();
    let (exec, _) = host_state(&ws, "random", "");
    // Refused before the host builds the buffer, not when the plugin's
    // memory cannot take it.
    exec.assert_clean_failure("exceeds limit");
}

#[test]
fn requests_in_flight_are_bounded_per_call() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "held"));
    let (exec, _) = host_state(
        &ws,
        "parallel",
        &format!(
            "      target: \"{}\"\n      count: \"300\"\n    grants:\n      outbound: [\"http://{}\"]\n",
            server.url("/"),
            server.addr
        ),
    );
    let outcome = password(&exec);
    assert_eq!(outcome, "ok=8 refused=292", "{exec:#?}");
    assert!(
        server.most_open_at_once() <= 8,
        "{}",
        server.most_open_at_once()
    );
    assert_eq!(server.connections(), 8);
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"outbound_limit\""), "{audit}");
    // The audit trail is bounded too, not one line per refused request.
    assert!(
        audit.lines().count() <= 70,
        "{} lines",
        audit.lines().count()
    );
}

#[test]
fn host_header_names_exactly_the_checked_authority() {
    let ws = Workspace::new();
    let server = TestServer::http(|seen| {
        let host = seen
            .headers
            .iter()
            .filter(|(k, _)| k == "host")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Reply::text(200, &host)
    });
    let (exec, _) = host_state(
        &ws,
        "userinfo",
        &format!(
            "      target: \"{}\"\n    grants:\n      outbound: [\"http://{}\"]\n",
            server.url("/"),
            server.addr
        ),
    );
    assert_eq!(password(&exec), server.addr.to_string());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        !format!("{:?}", seen[0].headers).contains("secret"),
        "{:?}",
        seen[0].headers
    );
}

/// http-probe requesting `target`, with `grants` YAML.
fn probe(
    ws: &Workspace,
    name: &str,
    header: &str,
    target: &str,
    grants: &str,
) -> std::path::PathBuf {
    ws.write(
        name,
        format!(
            "{}{header}plugins:\n  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{target}\"}}\n    limits: {{timeout: {}s}}\n    grants:\n{grants}    cache: {{defaultDuration: 0s}}\n",
            ws.header(),
            artifacts::HTTP_PROBE,
            DEADLINE.as_secs()
        ),
    )
}

#[test]
fn ip_literal_grant_exempts_only_that_literal_and_port() {
    let ws = Workspace::new();
    let sidecar = TestServer::http(|_| Reply::text(200, "sidecar"));
    let other = TestServer::http(|_| Reply::text(200, "loot"));
    let grants = format!(
        "      outbound: [\"http://{}\", \"http://localhost:{}\", \"http://localhost:{}\"]\n",
        sidecar.addr,
        sidecar.addr.port(),
        other.addr.port()
    );
    let run = |target: String| {
        let config = probe(&ws, "host-config.yaml", "", &target, &grants);
        let exec = Provider::new(host_binary(), &config).exec(&request());
        within_deadline(&exec);
        exec
    };
    // The literal itself is exempt.
    assert_eq!(password(&run(sidecar.url("/"))), "sidecar");
    // A granted name resolving to that address is not, on any port.
    for server in [&sidecar, &other] {
        let line = run(server.localhost_url("/")).assert_clean_failure("destination_ip_prohibited");
        assert!(line.contains("loopback"), "{line}");
    }
    assert_eq!(sidecar.connections(), 1);
    assert_eq!(other.connections(), 0);
}

/// A UDP "name server" on loopback that reads queries and never answers,
/// and a resolv.conf that points at it with long timeouts.
struct SilentResolver {
    _socket: UdpSocket,
    resolv_conf: std::path::PathBuf,
}

impl SilentResolver {
    fn start(ws: &Workspace) -> Self {
        let socket =
            UdpSocket::bind("127.0.0.153:53").expect("bind 127.0.0.153:53 (tests run as root)");
        let resolv_conf = ws.write(
            "resolv.conf",
            "nameserver 127.0.0.153\noptions timeout:30 attempts:3\n",
        );
        Self {
            _socket: socket,
            resolv_conf,
        }
    }

    /// `unshare -m sh -c 'mount --bind <resolv.conf> /etc/resolv.conf && exec "$@"'`:
    /// the host sees the silent resolver; nothing else does.
    fn wrapper(&self) -> Vec<String> {
        vec![
            "unshare".into(),
            "-m".into(),
            "sh".into(),
            "-c".into(),
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"".into(),
            self.resolv_conf.display().to_string(),
        ]
    }
}

#[test]
fn a_resolver_that_never_answers_cannot_outlast_the_deadline() {
    let ws = Workspace::new();
    let resolver = SilentResolver::start(&ws);
    let config = probe(
        &ws,
        "host-config.yaml",
        "",
        "https://never.wcp-test.example/",
        "      outbound: [\"https://never.wcp-test.example\"]\n",
    );
    let wrapper = resolver.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let exec = Provider::new(host_binary(), &config)
        .wrapped(&wrapper)
        .exec(&request());
    println!(
        "SILENT RESOLVER: exec took {:?} (deadline {DEADLINE:?})",
        exec.elapsed
    );
    within_deadline(&exec);
    let line = exec.assert_clean_failure("never.wcp-test.example");
    assert!(
        line.contains("dns_error") || line.contains("deadline"),
        "{line}"
    );
}

/// The proxy scenarios: an HTTPS server on 127.0.0.1 whose certificate
/// names `localhost`, and a CONNECT proxy.
struct ProxySetup {
    ws: Workspace,
    bundle: std::path::PathBuf,
    server: TestServer,
}

impl ProxySetup {
    fn new() -> Self {
        let ws = Workspace::new();
        let ca = TestCa::new();
        let bundle = ca.write_bundle(ws.path());
        let server = TestServer::https(&ca, |seen| {
            let host = seen
                .headers
                .iter()
                .find(|(k, _)| k == "host")
                .map_or("", |(_, v)| v.as_str())
                .to_string();
            Reply::text(200, &format!("via-proxy host={host}"))
        });
        Self { ws, bundle, server }
    }

    fn run(&self, proxy: &TestProxy, target: &str, grants: &str, proxy_yaml: &str) -> Exec {
        let header = format!("tls:\n  caBundle: {}\n{proxy_yaml}", self.bundle.display());
        let config = probe(&self.ws, "host-config.yaml", &header, target, grants);
        let exec = Provider::new(host_binary(), &config)
            .env("HTTPS_PROXY", &format!("http://{}", proxy.addr))
            .env("HTTP_PROXY", &format!("http://{}", proxy.addr))
            .exec(&request());
        within_deadline(&exec);
        exec
    }
}

#[test]
fn behind_a_proxy_a_name_resolving_to_loopback_is_refused_before_the_proxy() {
    let s = ProxySetup::new();
    let proxy = TestProxy::start();
    let target = s.server.localhost_url("/");
    let grant = format!(
        "      outbound: [\"https://localhost:{}\"]\n",
        s.server.addr.port()
    );
    for proxy_yaml in ["", "proxy:\n  nameResolution: proxy\n"] {
        let line = s
            .run(&proxy, &target, &grant, proxy_yaml)
            .assert_clean_failure("destination_ip_prohibited");
        assert!(line.contains("loopback"), "{line}");
    }
    assert_eq!(proxy.targets(), Vec::<String>::new());
    assert_eq!(s.server.connections(), 0);
}

#[test]
fn behind_a_proxy_the_tunnel_goes_to_the_checked_address_with_the_name_kept() {
    let s = ProxySetup::new();
    let proxy = TestProxy::start();
    let port = s.server.addr.port();
    let grant = format!(
        "      outbound: [\"https://localhost:{port}\"]\n      allowPrivateNetworks: [\"127.0.0.0/8\"]\n"
    );
    let exec = s.run(&proxy, &s.server.localhost_url("/"), &grant, "");
    // TLS verified the certificate for `localhost` (SNI kept) and the
    // server saw the name in Host, while the proxy was asked for the
    // address the host checked.
    assert_eq!(password(&exec), format!("via-proxy host=localhost:{port}"));
    assert_eq!(proxy.targets(), vec![format!("127.0.0.1:{port}")]);
}

#[test]
fn behind_a_proxy_a_name_only_the_proxy_resolves_needs_the_operator_setting() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "through-proxy-dns"));
    let name = "registry.corp.invalid";
    let proxy = TestProxy::with_names(vec![(name.to_string(), server.addr)]);
    let target = format!("http://{name}:{}/", server.addr.port());
    let grant = format!(
        "      outbound: [\"http://{name}:{}\"]\n",
        server.addr.port()
    );
    let run = |proxy_yaml: &str| {
        let config = probe(&ws, "host-config.yaml", proxy_yaml, &target, &grant);
        let exec = Provider::new(host_binary(), &config)
            .env("HTTP_PROXY", &format!("http://{}", proxy.addr))
            .exec(&request());
        within_deadline(&exec);
        exec
    };
    // Default: the host resolves and checks itself, cannot, and refuses.
    let line = run("").assert_clean_failure("proxy.nameResolution: proxy");
    assert!(line.contains(name), "{line}");
    assert!(proxy.targets().is_empty());
    // The operator trusts the proxy's resolution: tunnel by name.
    let exec = run("proxy:\n  nameResolution: proxy\n");
    assert_eq!(password(&exec), "through-proxy-dns");
    assert_eq!(
        proxy.targets(),
        vec![format!("{name}:{}", server.addr.port())]
    );
    // A typo in the setting is an error naming the field.
    run("proxy:\n  nameResolution: dns\n").assert_clean_failure("proxy.nameResolution");
}
