//! The real OCI distribution registry (Debian's `docker-registry`, the
//! CNCF distribution project's `registry`), run on 127.0.0.1 for one test:
//! TLS with a certificate from a test-time CA and htpasswd (bcrypt) auth.
//! `scripts/setup.sh` installs it; where it cannot be installed the tests
//! that need it say so and skip.

use super::server::TestCa;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
pub const USER: &str = "vendor";
pub const PASSWORD: &str = "s3cret-registry-password";

pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub ca_file: PathBuf,
    /// Where the registry keeps its blobs (`docker/registry/v2/...`).
    pub storage: PathBuf,
    pub password_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry, or `None` (with a line on stderr saying why)
    /// if the binary is missing.
    pub fn start() -> Option<Self> {
        if !Path::new(REGISTRY_BINARY).exists() {
            eprintln!(
                "SKIPPED: {REGISTRY_BINARY} is not installed (Debian package docker-registry; scripts/setup.sh installs it when run as root with apt-get)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = ca.write_bundle(dir.path());
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, &ca.server_cert_pem).unwrap();
        std::fs::write(&key, &ca.server_key_pem).unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        // A free port: bind, note, release (the registry binds it next).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: wcp-test\n    path: {}\n",
                storage.display(),
                cert.display(),
                key.display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Self {
            child,
            addr,
            ca,
            ca_file,
            storage,
            password_file,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `oci://127.0.0.1:<port>/<path>`.
    pub fn oci(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.addr)
    }

    /// The file holding the blob `digest` (`sha256:<hex>`) in the
    /// registry's storage, to tamper with.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Credentials flags for our `push`/`pull`.
    pub fn auth_args(&self) -> Vec<String> {
        vec![
            "--ca-file".into(),
            self.ca_file.display().to_string(),
            "--username".into(),
            USER.into(),
            "--password-file".into(),
            self.password_file.display().to_string(),
        ]
    }

    /// Runs the tests' independent client (PyPI `oras`, see
    /// `oras_tool.py`) and returns its stdout.
    pub fn oras(&self, args: &[&str]) -> String {
        let python = oras_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/oras_tool.py");
        let out = Command::new(&python)
            .arg(script)
            .args(args)
            .env("WCP_TEST_CA", &self.ca_file)
            .env("WCP_TEST_USER", USER)
            .env("WCP_TEST_PASSWORD", PASSWORD)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "oras {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that has `oras`: `WCP_ORAS_PYTHON`, else the venv
/// `scripts/setup.sh` (`ensure_oci_tools`) installs it into.
fn oras_python() -> PathBuf {
    if let Some(python) = std::env::var_os("WCP_ORAS_PYTHON") {
        return python.into();
    }
    let venv = match std::env::var_os("WCP_ORAS_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/wasm-credential-provider/oras-venv"),
    };
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the OCI tests need PyPI's oras, which is not installed: no WCP_ORAS_PYTHON and no {}. \
         `./scripts/test` installs it; before a plain cargo test run `source scripts/setup.sh && ensure_oci_tools`",
        python.display()
    );
    python
}
