//! Builds the plugin and test-component workspaces for `wasm32-wasip2`, as
//! wasmtime's `crates/test-programs/artifacts` does, and writes one path
//! constant per component to `$OUT_DIR/artifacts.rs`. The tests then run
//! the components built from the current sources, never stale copies.
//! Hostile components no toolchain emits are derived from built ones (see
//! `DERIVED`) into `<target>/wasm32-artifacts/derived/`.

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
        name: "TEMPLATE_PROVIDER",
        workspace: "templates/provider",
        file: "my_provider.wasm",
        doc: "`templates/provider`: the provider template as shipped, an RFC 8693 token exchange of the service-account token.",
    },
    Artifact {
        name: "ACR_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_acr.wasm",
        doc: "`plugins/acr`: Azure Container Registry refresh tokens via Entra ID (pod: federated client assertion; node: IMDS managed identity) and the login server's exchange.",
    },
    Artifact {
        name: "GCP_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_gcp.wasm",
        doc: "`plugins/gcp`: Google Artifact Registry / GCR tokens from the metadata server, or Google STS (workload identity), optionally impersonating a service account.",
    },
    Artifact {
        name: "TOKEN_EXCHANGE_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_token_exchange.wasm",
        doc: "`plugins/token-exchange`: one configurable service-account token exchange (JFrog, Cloudsmith, Quay robot federation, Yandex, RFC 8693).",
    },
    Artifact {
        name: "VAULT_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_vault.wasm",
        doc: "`plugins/vault`: HashiCorp Vault Kubernetes auth login and KV v2 read.",
    },
    Artifact {
        name: "PASSTHROUGH_PLUGIN",
        workspace: "plugins",
        file: "wcp_plugin_passthrough.wasm",
        doc: "`plugins/passthrough`: the service-account token as the registry password, no network.",
    },
    Artifact {
        name: "OTHER_WORLD_COMPONENT",
        workspace: "tests/components",
        file: "other-world.wasm",
        doc: "`tests/components/other-world`: a `wasi:cli` command, a component of another world.",
    },
    Artifact {
        name: "NEXT_API_COMPONENT",
        workspace: "tests/components",
        file: "wcp_test_next_api.wasm",
        doc: "`tests/components/next-api`: a provider of the test-only world `wcp:credential-provider@0.99.0`.",
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
        name: "DENIED_REQUEST",
        workspace: "tests/components",
        file: "wcp_test_denied_request.wasm",
        doc: "`tests/components/denied-request`: sends config `method` with a `bodyBytes` body to `target` and names the HttpError kind it saw.",
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

/// A component the tests need that no real toolchain emits, derived from a
/// built one by appending core modules to it (see [`append_core_instances`]).
struct Derived {
    /// The constant's name in `wcp_test_artifacts`.
    name: &'static str,
    /// The built component it extends (a `file` of [`ARTIFACTS`]).
    base: &'static str,
    /// The file written to `<target>/wasm32-artifacts/derived/`.
    file: &'static str,
    /// Appends to the base component's bytes.
    derive: fn(&[u8]) -> Result<Vec<u8>>,
    /// The constant's doc comment.
    doc: &'static str,
}

const DERIVED: &[Derived] = &[
    Derived {
        name: "SLOW_COMPILE",
        base: "wcp_plugin_static.wasm",
        file: "wcp_test_slow_compile.wasm",
        derive: slow_compile,
        doc: "hostile: `plugins/static` (answers like [`STATIC_PLUGIN`]) plus one \
              core module whose single function (a few KiB of wasm) takes Cranelift \
              seconds to compile: about 8 s of CPU in this repository's dev profile, on \
              one compiler thread however many cores there are (see `slow_compile` in \
              `tests/artifacts/build.rs`). Instantiating it runs nothing.",
    },
    Derived {
        name: "MULTI_MEMORY",
        base: "wcp_plugin_static.wasm",
        file: "wcp_test_multi_memory.wasm",
        derive: multi_memory,
        doc: "hostile: `plugins/static` plus a core module with one 31 MiB (496-page) memory \
              and a start function that fills all of it, instantiated as many times as \
              brings the component to 16 memories (the host's per-store count limit; \
              the static plugin has one, so 15 instances). Each memory is under a \
              `memoryMiB: 32` limit, their sum (~465 MiB plus the plugin's own) is not: \
              instantiation, i.e. inside the plugin's deadline, touches every page \
              (peak RSS of the host at c863971: ~500 MB).",
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
    let derived_dir = target_dir.join("derived");
    std::fs::create_dir_all(&derived_dir)
        .with_context(|| format!("cannot create {}", derived_dir.display()))?;
    for derived in DERIVED {
        let base = release_dir.join(derived.base);
        let bytes =
            std::fs::read(&base).with_context(|| format!("cannot read {}", base.display()))?;
        let out = (derived.derive)(&bytes)
            .and_then(|out| {
                wasmparser::Validator::new()
                    .validate_all(&out)
                    .context("the result does not validate")?;
                Ok(out)
            })
            .with_context(|| format!("cannot derive {} from {}", derived.name, base.display()))?;
        let path = derived_dir.join(derived.file);
        // Rewritten only when changed, so that its mtime means something.
        if std::fs::read(&path).ok().as_deref() != Some(&out[..]) {
            std::fs::write(&path, &out)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let path = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        writeln!(code, "/// {}", derived.doc)?;
        writeln!(code, "pub const {}: &str = {path:?};", derived.name)?;
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

/// Appends to `component` a core module section holding `module`, then a
/// core instance section instantiating it `instances` times with no
/// imports. Appending keeps every index the component already uses valid;
/// the new module's index is the number of core modules its top level
/// already defines. A core instance's start function runs when the
/// component is instantiated, i.e. inside the plugin's deadline; nothing
/// refers to the new instances, and the component's world is unchanged.
fn append_core_instances(
    component: &[u8],
    module: &wasm_encoder::Module,
    instances: u32,
) -> Result<Vec<u8>> {
    use wasm_encoder::{ComponentSection, Encode, InstanceSection, ModuleArg, ModuleSection};
    ensure!(
        wasmparser::Parser::is_component(component),
        "the base is not a component"
    );
    let index = core_module_count(component)?;
    let mut out = component.to_vec();
    let modules = ModuleSection(module);
    out.push(modules.id());
    modules.encode(&mut out);
    let mut section = InstanceSection::new();
    for _ in 0..instances {
        section.instantiate(index, std::iter::empty::<(&str, ModuleArg)>());
    }
    out.push(section.id());
    section.encode(&mut out);
    Ok(out)
}

/// The size of the top-level core module index space of `component`:
/// module sections, plus modules brought in by imports, aliases and exports.
fn core_module_count(component: &[u8]) -> Result<u32> {
    use wasmparser::{
        ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind, ComponentTypeRef, Payload,
    };
    let mut depth = 0usize;
    let mut count = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload?;
        let top = depth == 0;
        match payload {
            Payload::ModuleSection { .. } => {
                count += u32::from(top);
                depth += 1;
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if top => {
                for import in reader {
                    count += u32::from(matches!(import?.ty, ComponentTypeRef::Module(_)));
                }
            }
            Payload::ComponentAliasSection(reader) if top => {
                for alias in reader {
                    count += u32::from(matches!(
                        alias?,
                        ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Module,
                            ..
                        } | ComponentAlias::Outer {
                            kind: ComponentOuterAliasKind::CoreModule,
                            ..
                        }
                    ));
                }
            }
            Payload::ComponentExportSection(reader) if top => {
                for export in reader {
                    count += u32::from(export?.kind == ComponentExternalKind::Module);
                }
            }
            _ => {}
        }
    }
    Ok(count)
}

/// Linear memories defined by all core modules of `component`.
fn defined_memories(component: &[u8]) -> Result<u32> {
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::MemorySection(reader) = payload? {
            count += reader.count();
        }
    }
    Ok(count)
}

/// Nesting depth and number of `i64` locals of [`slow_compile`]'s function.
/// Compile time grows much faster than either (measured with the dev
/// profile, CPU time: 200 × 200 5 s, 200 × 240 8 s, 240 × 200 19 s,
/// 280 × 280 44 s; peak RSS 110-175 MB), so change them in small steps.
const SLOW_LOOPS: u32 = 200;
const SLOW_LOCALS: u32 = 240;

/// [`SLOW_COMPILE`]: one function of `SLOW_LOOPS` nested loops whose
/// innermost body updates each of `SLOW_LOCALS` locals from its neighbour
/// and branches back to every loop. Every local then needs a block
/// parameter at every loop header and every back edge passes all of them,
/// so the IR (and Cranelift's SSA construction and register allocation)
/// grows with at least loops × locals while the wasm stays a few KiB. It is one
/// function on purpose: the parallel compiler cannot spread it over cores,
/// so its compile time does not shrink on a bigger machine. Never called.
fn slow_compile(base: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{
        BlockType, CodeSection, Function, FunctionSection, Module, TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([(SLOW_LOCALS, ValType::I64)]);
    let mut sink = body.instructions();
    for _ in 0..SLOW_LOOPS {
        sink.loop_(BlockType::Empty);
    }
    for i in 0..SLOW_LOCALS {
        sink.local_get(i)
            .local_get((i + 1) % SLOW_LOCALS)
            .i64_mul()
            .i64_const(i64::from(i) * 2 + 1)
            .i64_add()
            .local_set(i);
    }
    for depth in 0..SLOW_LOOPS {
        sink.local_get(depth % SLOW_LOCALS).i64_eqz().br_if(depth);
    }
    for _ in 0..SLOW_LOOPS {
        sink.end();
    }
    sink.end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    append_core_instances(base, &module, 1)
}

/// Pages of each [`multi_memory`] memory: 31 MiB, under a 32 MiB limit.
const MEMORY_PAGES: u64 = 496;
/// Memories per store the host allows (`StoreLimits::memories`).
const STORE_MEMORIES: u32 = 16;

/// [`MULTI_MEMORY`]: a module with one `MEMORY_PAGES` memory whose start
/// function fills it (`memory.fill` of a non-zero byte, so every page is
/// written), instantiated until the component has `STORE_MEMORIES` memories.
fn multi_memory(base: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, MemorySection, MemoryType, Module, StartSection,
        TypeSection,
    };
    let existing = defined_memories(base)?;
    ensure!(
        existing < STORE_MEMORIES,
        "the base already has {existing} memories"
    );
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: MEMORY_PAGES,
        maximum: Some(MEMORY_PAGES),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut body = Function::new([]);
    body.instructions()
        .i32_const(0)
        .i32_const(0xa5)
        .i32_const((MEMORY_PAGES * 65536) as i32)
        .memory_fill(0)
        .end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&StartSection { function_index: 0 })
        .section(&code);
    append_core_instances(base, &module, STORE_MEMORIES - existing)
}
