//! The OS trust store is parsed once and kept as a snapshot in the cache
//! directory (`host/src/trust_roots.rs`); these tests make the "OS store"
//! a directory of the test's own (`SSL_CERT_DIR`, as OpenSSL and
//! rustls-native-certs read it) and attack the snapshot.

use crate::support;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const SNAPSHOT: &str = "trust-roots.snapshot";

enum Layout {
    /// The root as a plain file in the directory.
    Files,
    /// The root behind two symlinks, the last one out of the directory.
    Debian,
}

struct Store {
    ws: Workspace,
    certs: std::path::PathBuf,
    config: std::path::PathBuf,
    server: TestServer,
}

impl Store {
    /// A server whose CA is trusted only through the fake OS store (no
    /// `tls.caBundle`), and a plugin that fetches from it.
    fn new() -> Self {
        Self::with_layout(Layout::Files)
    }

    fn with_layout(layout: Layout) -> Self {
        let ws = Workspace::new();
        let ca = TestCa::new();
        let certs = ws.path().join("os-certs");
        std::fs::create_dir(&certs).unwrap();
        match layout {
            Layout::Files => std::fs::write(certs.join("test-ca.pem"), &ca.ca_pem).unwrap(),
            // As Debian's `update-ca-certificates` leaves it: a hash link
            // to a readable name, itself a link to the file elsewhere.
            Layout::Debian => {
                let shared = ws.path().join("share").join("ca-certificates");
                std::fs::create_dir_all(&shared).unwrap();
                std::fs::write(shared.join("Test_CA.crt"), &ca.ca_pem).unwrap();
                std::os::unix::fs::symlink(shared.join("Test_CA.crt"), certs.join("Test_CA.pem"))
                    .unwrap();
                std::os::unix::fs::symlink("Test_CA.pem", certs.join("1a2b3c4d.0")).unwrap();
            }
        }
        let server = TestServer::https(&ca, |_| Reply::text(200, "secret-from-server"));
        let config = ws.write(
            "host-config.yaml",
            format!(
                "{}plugins:\n  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"https://{}\"]\n    cache: {{defaultDuration: 0s, shareFailuresFor: 0s}}\n",
                ws.header(),
                artifacts::HTTP_PROBE,
                server.url("/token"),
                server.addr
            ),
        );
        // A store changed within the last 2 s is parsed but not snapshotted.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        Self {
            ws,
            certs,
            config,
            server,
        }
    }

    fn exec(&self) -> Exec {
        self.exec_at("debug")
    }

    fn exec_at(&self, level: &str) -> Exec {
        Provider::new(host_binary(), &self.config)
            .env("SSL_CERT_DIR", self.certs.to_str().unwrap())
            .env(
                "SSL_CERT_FILE",
                self.ws.path().join("no-bundle").to_str().unwrap(),
            )
            .env("WCP_LOG", level)
            .exec(&RequestSpec::new(V1, "a.registry.io/x"))
    }

    fn snapshot(&self) -> std::path::PathBuf {
        self.ws.cache_dir().join(SNAPSHOT)
    }
}

fn source(exec: &Exec) -> &'static str {
    let log = exec.stderr.as_str();
    if log.contains("source=Snapshot") {
        "snapshot"
    } else if log.contains("source=Parsed") {
        "parsed"
    } else {
        panic!("no OS trust roots line in\n{log}")
    }
}

fn answered(exec: &Exec) {
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth["a.registry.io"].password, "secret-from-server");
}

#[test]
fn the_os_store_is_parsed_once_and_a_removed_root_is_distrusted_at_once() {
    let s = Store::new();
    let first = s.exec();
    answered(&first);
    assert_eq!(source(&first), "parsed");
    // Read ahead of the first request, as for every plugin granted HTTPS.
    assert!(
        first.stderr.contains("trust roots warm-up started"),
        "{}",
        first.stderr
    );
    let meta = std::fs::symlink_metadata(s.snapshot()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let second = s.exec();
    answered(&second);
    assert_eq!(source(&second), "snapshot", "{}", second.stderr);

    // The operator removes the root: the very next exec no longer trusts it.
    std::fs::remove_file(s.certs.join("test-ca.pem")).unwrap();
    let third = s.exec_at("warn");
    third.assert_clean_failure("tls");
    let fourth = s.exec();
    assert!(!fourth.success);
    assert_eq!(
        source(&fourth),
        "parsed",
        "a store changed just now is never snapshotted"
    );
    assert_eq!(
        s.server.seen().len(),
        2,
        "no request past a failed handshake"
    );
}

/// The check behind a snapshot stats the files the links reach, not the
/// links (`trust_roots::Link`): a root rewritten where it lies, with
/// nothing in the certificate directory touched, is distrusted at once.
#[test]
fn a_root_rewritten_behind_its_symlinks_is_distrusted_at_once() {
    let s = Store::with_layout(Layout::Debian);
    let first = s.exec();
    answered(&first);
    assert_eq!(source(&first), "parsed");
    let second = s.exec();
    answered(&second);
    assert_eq!(source(&second), "snapshot", "{}", second.stderr);
    assert!(second.stderr.contains("links=1"), "{}", second.stderr);

    // Another CA's certificate written over the file, in place.
    let target = s.ws.path().join("share/ca-certificates/Test_CA.crt");
    std::fs::write(&target, TestCa::new().ca_pem).unwrap();
    let third = s.exec();
    assert!(!third.success);
    assert_eq!(source(&third), "parsed", "{}", third.stderr);
    s.exec_at("warn").assert_clean_failure("tls");
    assert_eq!(s.server.seen().len(), 2);
}

#[test]
fn a_planted_or_modified_snapshot_is_refused_and_rebuilt() {
    let s = Store::new();
    answered(&s.exec());
    let good = std::fs::read(s.snapshot()).unwrap();

    // One flipped byte in the body (say, an attacker's own root).
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(s.snapshot(), &bad).unwrap();
    let exec = s.exec();
    answered(&exec);
    assert_eq!(source(&exec), "parsed");
    assert!(exec.stderr.contains("integrity check"), "{}", exec.stderr);
    assert_eq!(std::fs::read(s.snapshot()).unwrap().len(), good.len());

    // A symlink to a file elsewhere is not followed.
    let elsewhere = s.ws.write("elsewhere", &good);
    std::fs::remove_file(s.snapshot()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.snapshot()).unwrap();
    let exec = s.exec();
    answered(&exec);
    assert_eq!(source(&exec), "parsed");

    // Readable by others: refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::remove_file(s.snapshot()).unwrap();
    std::fs::write(s.snapshot(), &good).unwrap();
    std::fs::set_permissions(s.snapshot(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let exec = s.exec();
    answered(&exec);
    assert_eq!(source(&exec), "parsed");

    // A huge file is not read whole.
    std::fs::remove_file(s.snapshot()).unwrap();
    let f = std::fs::File::create(s.snapshot()).unwrap();
    f.set_len(1 << 30).unwrap();
    std::fs::set_permissions(s.snapshot(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let exec = s.exec();
    answered(&exec);
    assert_eq!(source(&exec), "parsed");
    assert!(exec.stderr.contains("too large"), "{}", exec.stderr);
}

/// The roots are read ahead of the first HTTPS request, on a thread of
/// their own (`TlsClient::warm_up`), only for a plugin that may make one:
/// a plugin granted plain HTTP alone never reads the OS store.
#[test]
fn a_plugin_without_https_never_reads_the_trust_roots() {
    let ws = Workspace::new();
    let server = TestServer::http(|_| Reply::text(200, "plain-token"));
    let config = ws.write(
        "host-config.yaml",
        format!(
            "{}plugins:\n  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\"}}\n    grants:\n      outbound: [\"http://{}\"]\n    cache: {{defaultDuration: 0s}}\n",
            ws.header(),
            artifacts::HTTP_PROBE,
            server.url("/token"),
            server.addr
        ),
    );
    let exec = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "debug")
        .exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert!(exec.success, "{exec:#?}");
    // The warm-up is logged before its thread starts, so its absence is
    // not a thread that had no time to log.
    assert!(
        !exec.stderr.contains("trust roots warm-up started"),
        "{}",
        exec.stderr
    );
    assert!(!exec.stderr.contains("OS trust roots"), "{}", exec.stderr);
    assert!(!ws.cache_dir().join(SNAPSHOT).exists());
}
