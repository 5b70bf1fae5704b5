//! Builds the plugin and test-component workspaces for `wasm32-wasip2`, as
//! wasmtime's `crates/test-programs/artifacts` does, and writes one path
//! constant per component to `$OUT_DIR/artifacts.rs`. The tests then run
//! the components built from the current sources, never stale copies.

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One component the tests use. To add one: add the crate to its
/// workspace's `members`, then add a line here.
struct Artifact {
    /// The constant's name in `wcp_test_artifacts`.
    name: &'static str,
    /// The cargo workspace that builds it, relative to the repository root.
    workspace: &'static str,
    /// The file cargo writes to `wasm32-wasip2/release/`.
    file: &'static str,
    /// The constant's doc comment.
    doc: &'static str,
}

const ARTIFACTS: &[Artifact] = &[
    Artifact {
        name: "STATIC_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_static.wasm",
        doc: "`plugins/static`: a fixed username and password from the plugin's config.",
    },
    Artifact {
        name: "ECR_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_ecr.wasm",
        doc: "`plugins/ecr`: AWS ECR tokens via STS web identity, static keys or IMDSv2, signed with SigV4.",
    },
    Artifact {
        name: "OTHER_WORLD_COMPONENT",
        workspace: "tests/components",
        file: "other-world.wasm",
        doc: "`tests/components/other-world`: a `wasi:cli` command, a component of another world.",
    },
    Artifact {
        name: "INFINITE_LOOP",
        workspace: "tests/components",
        file: "wcp_test_infinite_loop.wasm",
        doc: "`tests/components/infinite-loop`: hostile, spins forever.",
    },
    Artifact {
        name: "MEMORY_BOMB",
        workspace: "tests/components",
        file: "wcp_test_memory_bomb.wasm",
        doc: "`tests/components/memory-bomb`: hostile, allocates until memory runs out.",
    },
    Artifact {
        name: "DEEP_RECURSION",
        workspace: "tests/components",
        file: "wcp_test_deep_recursion.wasm",
        doc: "`tests/components/deep-recursion`: hostile, recurses until the stack overflows.",
    },
    Artifact {
        name: "TRAP",
        workspace: "tests/components",
        file: "wcp_test_trap.wasm",
        doc: "`tests/components/trap`: hostile, panics (a wasm trap).",
    },
    Artifact {
        name: "OVERSIZED_RESPONSE",
        workspace: "tests/components",
        file: "wcp_test_oversized_response.wasm",
        doc: "`tests/components/oversized-response`: hostile, returns an 8 MiB credential.",
    },
    Artifact {
        name: "HOST_STATE",
        workspace: "tests/components",
        file: "wcp_test_host_state.wasm",
        doc: "`tests/components/host-state`: hostile, raw wasi:http: floods header maps and unsent bodies, parallel requests, user info in the authority.",
    },
    Artifact {
        name: "HTTP_PROBE",
        workspace: "tests/components",
        file: "wcp_test_http_probe.wasm",
        doc: "`tests/components/http-probe`: hostile, requests config `target`, optionally following one redirect.",
    },
    Artifact {
        name: "UNDECLARED_REQUEST",
        workspace: "tests/components",
        file: "wcp_test_undeclared_request.wasm",
        doc: "`tests/components/undeclared-request`: hostile, requests a URL it did not declare.",
    },
    Artifact {
        name: "ENV_PROBE",
        workspace: "tests/components",
        file: "wcp_test_env_probe.wasm",
        doc: "`tests/components/env-probe`: hostile, looks for environment variables it was not granted.",
    },
    Artifact {
        name: "FS_PROBE",
        workspace: "tests/components",
        file: "wcp_test_fs_probe.wasm",
        doc: "`tests/components/fs-probe`: hostile, tries to read and write files.",
    },
    Artifact {
        name: "SOCKET_PROBE",
        workspace: "tests/components",
        file: "wcp_test_socket_probe.wasm",
        doc: "`tests/components/socket-probe`: hostile, tries raw TCP and name lookup around wasi:http.",
    },
    Artifact {
        name: "ANSWER_FORGE",
        workspace: "tests/components",
        file: "wcp_test_answer_forge.wasm",
        doc: "`tests/components/answer-forge`: hostile, answers with the auth keys, cacheKeyType and token placement of its config.",
    },
    Artifact {
        name: "HOSTILE_TEXT",
        workspace: "tests/components",
        file: "wcp_test_hostile_text.wasm",
        doc: "`tests/components/hostile-text`: hostile, forges lines, prints control and bidi characters, and echoes the token and a secret in many forms.",
    },
    Artifact {
        name: "HOSTILE_NAMES",
        workspace: "tests/components",
        file: "wcp_test_hostile_names.wasm",
        doc: "`tests/components/hostile-names`: hostile, declares a config key and an env name carrying terminal escapes.",
    },
];

/// Other inputs of the components besides their workspaces.
const SHARED_INPUTS: &[&str] = &["guest-sdk", "wit"];

const TARGET: &str = "wasm32-wasip2";

/// The preamble of a binary component (as opposed to a core module):
/// magic, then version 0x0d and layer 1.
const COMPONENT_PREAMBLE: [u8; 8] = *b"\0asm\x0d\0\x01\0";

/// Variables the outer build sets that must not steer the nested one: flags
/// and wrappers meant for the host target (`cargo clippy` sets
/// `RUSTC_WORKSPACE_WRAPPER`, coverage tools set `RUSTFLAGS`), the outer
/// target directory and target, and the outer build script's own
/// environment. The jobserver (`CARGO_MAKEFLAGS`) is inherited on purpose,
/// as wasmtime does: the nested build then shares the outer build's jobs
/// instead of adding its own.
const CLEARED_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];
const CLEARED_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_CFG_", "CARGO_FEATURE_", "DEP_"];

fn main() {
    // One line with the whole cause chain, without the backtrace anyhow's
    // `Debug` adds under `RUST_BACKTRACE`.
    if let Err(error) = run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .context("tests/artifacts is not two levels below the repository root")?
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let target_dir = artifacts_target_dir(&out_dir);

    let workspaces: BTreeSet<&str> = ARTIFACTS.iter().map(|a| a.workspace).collect();
    for input in workspaces.iter().chain(SHARED_INPUTS) {
        rerun_if_changed(&root.join(input))?;
    }

    check_target_installed()?;
    for workspace in &workspaces {
        build_workspace(&root.join(workspace).join("Cargo.toml"), &target_dir)?;
    }

    let release_dir = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    for artifact in ARTIFACTS {
        let path = release_dir.join(artifact.file);
        check_component(&path).with_context(|| {
            format!(
                "{} (built by {}) is not usable",
                path.display(),
                artifact.workspace
            )
        })?;
        let path = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        writeln!(code, "/// {}", artifact.doc)?;
        writeln!(code, "pub const {}: &str = {path:?};", artifact.name)?;
    }
    let generated = out_dir.join("artifacts.rs");
    std::fs::write(&generated, code)
        .with_context(|| format!("cannot write {}", generated.display()))?;
    Ok(())
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("cargo did not set {name}"))
}

/// `<target>/wasm32-artifacts` for OUT_DIR `<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`:
/// the same directory for every profile of the outer build, so that
/// `cargo build` and `cargo test --release` reuse one nested build.
fn artifacts_target_dir(out_dir: &Path) -> PathBuf {
    let base = out_dir
        .ancestors()
        .find(|dir| dir.file_name() == Some(OsStr::new("build")))
        .and_then(|build| build.parent()?.parent());
    match base {
        Some(base) => base.join("wasm32-artifacts"),
        // An unfamiliar layout: still correct, just not shared.
        None => out_dir.join("wasm32-artifacts"),
    }
}

/// Fails early and clearly when the target's standard library is missing,
/// instead of leaving the operator with cargo's "can't find crate for `core`".
fn check_target_installed() -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .with_context(|| format!("cannot run {rustc}"))?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        bail!(
            "the {TARGET} Rust target is not installed; the plugins and test components are \
             built for it. Run `rustup target add {TARGET}` (scripts/setup.sh does this)."
        );
    }
    Ok(())
}

fn build_workspace(manifest: &Path, target_dir: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        // Build-script stdout is cargo's instruction channel: keep the
        // nested cargo's output off it.
        .stdout(Stdio::from(std::io::stderr()));
    for var in CLEARED_VARS {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let leaked = var
            .to_str()
            .is_some_and(|var| CLEARED_PREFIXES.iter().any(|p| var.starts_with(p)));
        if leaked {
            command.env_remove(var);
        }
    }
    command.env("CARGO_TARGET_DIR", target_dir);
    eprintln!("running: {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    ensure!(
        status.success(),
        "building {} for {TARGET} failed ({status}); see the cargo output above",
        manifest.display()
    );
    Ok(())
}

/// Cargo's output for a `cdylib` or `bin` on `wasm32-wasip2` is already a
/// component; checking the preamble catches a core module (e.g. a
/// `wasm32-wasip1` mix-up) here rather than as a confusing test failure.
fn check_component(path: &Path) -> Result<()> {
    let mut preamble = [0u8; 8];
    let mut file = std::fs::File::open(path).context("cannot open it; was it renamed?")?;
    std::io::Read::read_exact(&mut file, &mut preamble).context("cannot read its preamble")?;
    ensure!(
        preamble == COMPONENT_PREAMBLE,
        "it is not a WebAssembly component (preamble {preamble:02x?})"
    );
    Ok(())
}

/// Names every file below `dir`. Naming `dir` itself would be shorter, but
/// cargo then watches everything below it, including the `target/` of
/// someone who ran cargo inside a plugin workspace, and would rebuild on
/// every run; so build output and hidden entries are skipped.
fn rerun_if_changed(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            rerun_if_changed(&path)?;
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Ok(())
}
