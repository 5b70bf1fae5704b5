//! Execs the provider the way kubelet's `pkg/credentialprovider/plugin`
//! does: argv from the provider config, the kubelet's environment followed by
//! the config's `env` (later entries win), the encoded request on stdin then
//! EOF, stdout and stderr buffered and read after exit, SIGKILL at 60 s.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The kubelet's hard-coded exec timeout.
pub const KUBELET_TIMEOUT: Duration = Duration::from_secs(60);

pub const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
pub const V1BETA1: &str = "credentialprovider.kubelet.k8s.io/v1beta1";
pub const V1ALPHA1: &str = "credentialprovider.kubelet.k8s.io/v1alpha1";
pub const ALL_VERSIONS: [&str; 3] = [V1, V1BETA1, V1ALPHA1];

/// One `providers[]` entry of a kubelet `CredentialProviderConfig`.
pub struct Provider {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A command the binary runs under (`unshare ...`), if any.
    pub wrapper: Vec<String>,
}

/// What the exec produced, as the kubelet sees it.
#[derive(Debug)]
pub struct Exec {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
    pub killed: bool,
}

impl Exec {
    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Asserts the failure contract: non-zero exit, nothing on stdout, one
    /// stderr line that contains `needle`; returns that line.
    pub fn assert_clean_failure(&self, needle: &str) -> String {
        assert!(!self.success, "expected failure, got success: {self:#?}");
        assert!(!self.killed, "provider hung until the kubelet killed it");
        assert!(
            self.stdout.is_empty(),
            "stdout must be empty on failure, got {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one stderr line, got {lines:#?}"
        );
        assert!(
            lines[0].contains(needle),
            "stderr line {:?} does not contain {needle:?}",
            lines[0]
        );
        lines[0].to_string()
    }
}

impl Provider {
    /// A provider running `binary --config <config>`.
    pub fn new(binary: impl Into<PathBuf>, config: &Path) -> Self {
        Self {
            binary: binary.into(),
            args: vec!["--config".into(), config.display().to_string()],
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Runs the binary as the last arguments of `wrapper` (a command that
    /// runs it: `unshare ...`, a peak-RSS probe).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the provider on raw stdin bytes.
    pub fn exec_raw(&self, stdin: &[u8]) -> Exec {
        let mut command = match self.wrapper.split_first() {
            None => Command::new(&self.binary),
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&self.binary);
                command
            }
        };
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Hermetic: the machine's proxy settings must not steer loopback tests.
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            command.env_remove(var);
        }
        // Kubelet: os.Environ() then the config env; Go keeps the last value.
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let start = Instant::now();
        let mut child = command.spawn().expect("spawn provider");
        let mut stdin_pipe = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        // Go ignores EPIPE when the plugin does not read stdin.
        let writer = std::thread::spawn(move || {
            let _ = stdin_pipe.write_all(&input);
        });
        let pid = child.id();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let killer = std::thread::spawn(move || {
            if done_rx.recv_timeout(KUBELET_TIMEOUT).is_err() {
                // What Go does on context expiry: SIGKILL.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return true;
            }
            false
        });
        let output = child.wait_with_output().expect("wait for provider");
        let elapsed = start.elapsed();
        let _ = done_tx.send(());
        let killed = killer.join().unwrap();
        let _ = writer.join();
        Exec {
            success: output.status.success(),
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed,
            killed,
        }
    }

    /// Runs the provider on a request encoded as the kubelet encodes it.
    pub fn exec(&self, request: &RequestSpec) -> Exec {
        self.exec_raw(&request.encode())
    }
}

/// A request as kubelet would build it.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub api_version: String,
    pub image: String,
    pub token: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl RequestSpec {
    pub fn new(api_version: &str, image: &str) -> Self {
        Self {
            api_version: api_version.into(),
            image: image.into(),
            token: None,
            annotations: BTreeMap::new(),
        }
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Go `encoding/json` output as kubelet writes it: field order kind,
    /// apiVersion, image, serviceAccountToken, serviceAccountAnnotations
    /// (omitempty), map keys sorted, HTML escaping on, trailing newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":{},\"image\":{}",
            go_string(&self.api_version),
            go_string(&self.image)
        );
        if let Some(token) = &self.token {
            out.push_str(&format!(",\"serviceAccountToken\":{}", go_string(token)));
        }
        if !self.annotations.is_empty() {
            let fields: Vec<String> = self
                .annotations
                .iter()
                .map(|(k, v)| format!("{}:{}", go_string(k), go_string(v)))
                .collect();
            out.push_str(&format!(
                ",\"serviceAccountAnnotations\":{{{}}}",
                fields.join(",")
            ));
        }
        out.push_str("}\n");
        out.into_bytes()
    }
}

/// A JSON string with Go's HTML escaping of `<`, `>` and `&`.
fn go_string(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[test]
fn encodes_like_kubelet_test_vectors() {
    assert_eq!(
        RequestSpec::new(V1, "test.registry.io/foobar").encode(),
        b"{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"test.registry.io/foobar\"}\n"
    );
    assert_eq!(
        RequestSpec::new(V1, "test.registry.io/foobar")
            .token("service-account-token")
            .annotation("domain.io/annotation1", "value1")
            .encode(),
        b"{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"test.registry.io/foobar\",\"serviceAccountToken\":\"service-account-token\",\"serviceAccountAnnotations\":{\"domain.io/annotation1\":\"value1\"}}\n"
    );
}
