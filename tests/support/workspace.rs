//! A throwaway directory holding a host config and whatever files a test
//! points it at.

use std::path::{Path, PathBuf};

/// The host the tests exec, as the kubelet does (the front, which hands
/// misses to the runtime beside it): the debug build of this crate, or
/// `WCP_TEST_HOST` (a release build, for the timing tests' numbers).
pub fn host_binary() -> PathBuf {
    std::env::var_os("WCP_TEST_HOST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wasm-credential-provider")))
}

/// The runtime beside [`host_binary`].
pub fn runtime_binary() -> PathBuf {
    host_binary().with_file_name("wasm-credential-provider-runtime")
}

pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` inside the workspace and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes a host config with the given `plugins:` YAML body, caching
    /// in this workspace.
    pub fn config(&self, plugins_yaml: &str) -> PathBuf {
        self.write(
            "host-config.yaml",
            format!("{}plugins:\n{plugins_yaml}", self.header()),
        )
    }

    /// The config's `apiVersion`, `kind`, `cache` and `auditLog` lines.
    pub fn header(&self) -> String {
        format!(
            "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\ncache:\n  directory: {}\nauditLog: {}\n",
            self.cache_dir().display(),
            self.path().join("audit.jsonl").display()
        )
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("cache")
    }
}

/// Runs `wasm-credential-provider --config <config> <args>` (a CLI
/// subcommand, not the kubelet path); asserts success and returns stdout.
pub fn host_command(config: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(host_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
