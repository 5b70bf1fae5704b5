//! The front (`wasm-credential-provider`, what the kubelet execs) answers
//! cache hits from the config snapshot without the runtime, and hands
//! everything else to the runtime unchanged: the same answers, the same
//! errors, never a stale config.
//!
//! "Answered by the front alone" is shown by pointing `WCP_RUNTIME` at a
//! file that does not exist: an exec that needed the runtime then fails
//! with the front's one line.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestServer};
use support::workspace::{Workspace, host_binary, runtime_binary};
use wcp_test_artifacts as artifacts;

const NO_RUNTIME: &str = "/nonexistent/wasm-credential-provider-runtime";

/// A config whose file is old enough to be snapshotted (the runtime only
/// snapshots a file whose ctime is two seconds old, see
/// `host/src/config_snapshot.rs`).
fn settle() {
    std::thread::sleep(Duration::from_millis(2100));
}

struct Setup {
    ws: Workspace,
    server: TestServer,
    config: PathBuf,
    run_dir: PathBuf,
}

impl Setup {
    /// The probe plugin against a counting token server.
    fn new(key_type: &str) -> Self {
        let ws = Workspace::new();
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = TestServer::http(move |_| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Reply::text(200, &format!("token-{n}"))
        });
        let config = ws.config(&format!(
            "  - name: probe\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\", cacheKeyType: {key_type}}}\n    grants:\n      outbound: [\"http://{}\"]\n      serviceAccountToken: true\n",
            artifacts::HTTP_PROBE,
            server.url("/token"),
            server.addr
        ));
        let run_dir = ws.path().join("run");
        Self {
            ws,
            server,
            config,
            run_dir,
        }
    }

    fn provider(&self, binary: &Path) -> Provider {
        Provider::new(binary, &self.config)
            .env("WCP_RUNTIME_DIR", &self.run_dir.display().to_string())
    }

    /// The front with no runtime to hand over to.
    fn front_alone(&self, request: &RequestSpec) -> Exec {
        self.provider(&host_binary())
            .env("WCP_RUNTIME", NO_RUNTIME)
            .exec(request)
    }

    fn front(&self, request: &RequestSpec) -> Exec {
        self.provider(&host_binary()).exec(request)
    }

    /// The runtime run directly with no snapshot to read: the config
    /// from the YAML alone, the reference the snapshot must agree with.
    fn runtime_from_file(&self, request: &RequestSpec) -> Exec {
        Provider::new(runtime_binary(), &self.config)
            .env(
                "WCP_RUNTIME_DIR",
                &self.ws.path().join("no-snapshots").display().to_string(),
            )
            .exec(request)
    }

    /// The runtime run directly with debug logging: where its config
    /// came from (`config_from` of its exec phases line).
    fn runtime_config_from(&self, request: &RequestSpec) -> (Exec, String) {
        let exec = self
            .provider(&runtime_binary())
            .env("WCP_LOG", "debug")
            .exec(request);
        let from = config_from(&exec);
        (exec, from)
    }

    /// The front as a raw command (no log level inherited, stderr piped)
    /// handing over to `runtime`, started with the descriptors in `close`
    /// closed, as a careless parent might.
    fn front_closing(&self, runtime: &Path, close: &'static [i32]) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(host_binary());
        command
            .arg("--config")
            .arg(&self.config)
            .env_remove("WCP_LOG")
            .env("WCP_RUNTIME_DIR", &self.run_dir)
            .env("WCP_RUNTIME", runtime)
            .stderr(std::process::Stdio::piped());
        // SAFETY: close(2) is async-signal-safe; nothing else runs here.
        unsafe {
            command.pre_exec(move || {
                for &fd in close {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        command
    }

    fn calls(&self) -> usize {
        self.server.seen().len()
    }

    fn snapshots(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(&self.run_dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A settled setup whose first request has been answered through the
/// front (a miss the runtime served and cached, writing the snapshot):
/// the setup, that request and its answer.
fn primed(key_type: &str) -> (Setup, RequestSpec, support::strict::Accepted) {
    let s = Setup::new(key_type);
    settle();
    let request = RequestSpec::new(V1, "a.registry.io/app").token(&token("puller", "pod-1"));
    let accepted = answer(&s.front(&request));
    (s, request, accepted)
}

fn token(name: &str, nonce: &str) -> String {
    support::tokens::sa_token("registry", "team", name, &format!("uid-{name}"), nonce)
}

/// The answer without its `cacheDuration` (it counts down between execs).
fn answer(exec: &Exec) -> support::strict::Accepted {
    assert!(exec.success, "{exec:#?}");
    let mut accepted = support::strict::decode(&exec.stdout, V1).unwrap();
    accepted.cache_duration = None;
    accepted
}

/// Where the runtime of a debug-logged exec read its config from.
fn config_from(exec: &Exec) -> String {
    let line = exec
        .stderr
        .lines()
        .find(|l| l.contains("exec phases"))
        .unwrap_or_else(|| panic!("no exec phases line: {}", exec.stderr));
    let value = line.split("config_from=").nth(1).expect("config_from");
    value
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

fn assert_needed_the_runtime(exec: &Exec) {
    exec.assert_clean_failure(&format!("cannot run the runtime {NO_RUNTIME}"));
}

#[test]
fn hits_are_answered_by_the_front_exactly_as_the_runtime_answers_them() {
    for key_type in ["Image", "Registry", "Global"] {
        let s = Setup::new(key_type);
        settle();
        let puller = token("puller", "pod-1");
        let first = RequestSpec::new(V1, "a.registry.io/app").token(&puller);
        // A miss: the front hands it over; the runtime answers and, the
        // front having found no snapshot, writes one.
        let missed = s.front(&first);
        answer(&missed);
        assert_eq!(s.calls(), 1);
        assert_eq!(s.snapshots().len(), 1, "{:?}", s.snapshots());
        let requests = [
            first.clone(),
            RequestSpec::new(V1, "a.registry.io/app").token(&token("puller", "pod-2")),
            RequestSpec::new(V1, "a.registry.io/other").token(&puller),
            RequestSpec::new(V1, "b.registry.io/app").token(&puller),
            RequestSpec::new(V1, "a.registry.io/app").token(&token("pusher", "pod-3")),
            RequestSpec::new(V1, "a.registry.io/app"),
            // No plugin matches: the empty answer needs no plugin either.
            RequestSpec::new(V1, "elsewhere.example.com/app").token(&puller),
        ];
        for request in &requests {
            let calls = s.calls();
            let alone = s.front_alone(request);
            // The runtime, run directly from the YAML, is the reference:
            // a hit there (no upstream call) is exactly a hit in the front.
            let reference = s.runtime_from_file(request);
            let hit = s.calls() == calls;
            if hit {
                assert_eq!(answer(&alone), answer(&reference), "{key_type} {request:?}");
            } else {
                assert_needed_the_runtime(&alone);
                answer(&reference);
            }
            let expected_hit = match request.image.as_str() {
                "elsewhere.example.com/app" => true,
                _ if request.token.is_none() => false,
                _ if request.token.as_deref() == Some(&token("pusher", "pod-3")) => false,
                "a.registry.io/app" => true,
                "a.registry.io/other" => key_type != "Image",
                _ => key_type == "Global",
            };
            assert_eq!(hit, expected_hit, "{key_type} {request:?}");
        }
        // The hits the front served are in the audit log like any other.
        let audit = std::fs::read_to_string(s.ws.path().join("audit.jsonl")).unwrap();
        assert!(audit.contains("\"cache_hit\""), "{audit}");
    }
}

#[test]
fn an_edited_config_is_never_answered_from_the_old_snapshot() {
    let (s, request, _) = primed("Registry");
    answer(&s.front_alone(&request));
    // Same size, same second: only the identity of the file tells.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let edited = text.replace("*.registry.io", "*.registry.xy");
    assert_eq!(text.len(), edited.len());
    std::fs::write(&s.config, &edited).unwrap();
    assert_needed_the_runtime(&s.front_alone(&request));
    // The runtime reads the edit: the image no longer matches.
    let empty = answer(&s.front(&request));
    assert!(empty.auth.is_empty(), "{empty:?}");
    // Replaced by rename (a ConfigMap update) rather than written.
    std::fs::write(s.ws.path().join("new.yaml"), &text).unwrap();
    std::fs::rename(s.ws.path().join("new.yaml"), &s.config).unwrap();
    assert_needed_the_runtime(&s.front_alone(&request));
}

#[test]
fn a_miss_runs_the_plugin_with_the_config_of_the_snapshot_and_only_while_it_is_current() {
    let (s, _, _) = primed("Registry");
    let puller = token("puller", "pod-1");
    // A miss handed over by the front: the runtime reads the snapshot,
    // not the YAML, and answers as the runtime reading the YAML does.
    let miss = RequestSpec::new(V1, "b.registry.io/app").token(&puller);
    let handed = s
        .provider(&host_binary())
        .env("WCP_LOG", "debug")
        .exec(&miss);
    assert_eq!(config_from(&handed), "snapshot", "{}", handed.stderr);
    assert!(
        handed.stderr.contains("reason=\"miss\""),
        "{}",
        handed.stderr
    );
    let calls = s.calls();
    let reference = s.runtime_from_file(&RequestSpec::new(V1, "c.registry.io/app").token(&puller));
    assert_eq!(s.calls(), calls + 1, "the reference was a miss too");
    let (mut ours, mut theirs) = (answer(&handed), answer(&reference));
    // Each miss got its own token from the counting server.
    ours.auth.clear();
    theirs.auth.clear();
    assert_eq!(ours, theirs);
    // Run directly, too.
    let (direct, from) =
        s.runtime_config_from(&RequestSpec::new(V1, "d.registry.io/app").token(&puller));
    answer(&direct);
    assert_eq!(from, "snapshot");
    // An edit the snapshot predates: the YAML, at once, in either binary.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let edited = text.replace("*.registry.io", "*.registry.xy");
    std::fs::write(&s.config, &edited).unwrap();
    let (direct, from) =
        s.runtime_config_from(&RequestSpec::new(V1, "e.registry.io/app").token(&puller));
    assert_eq!(from, "file");
    assert!(answer(&direct).auth.is_empty(), "the edit applies");
    assert!(
        direct
            .stderr
            .contains("no usable config snapshot; parsing the config file"),
        "{}",
        direct.stderr
    );
    let handed = s
        .provider(&host_binary())
        .env("WCP_LOG", "debug")
        .exec(&RequestSpec::new(V1, "f.registry.io/app").token(&puller));
    assert_eq!(config_from(&handed), "file");
    assert!(answer(&handed).auth.is_empty(), "the edit applies");
}

#[test]
fn a_plugin_config_its_module_refuses_names_its_yaml_line_when_read_from_the_snapshot() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: pass\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config:\n      username: robot\n      cacheKeyType: Everywhere\n",
        artifacts::PASSTHROUGH_PLUGIN
    ));
    settle();
    let run_dir = ws.path().join("run");
    let front = Provider::new(host_binary(), &config)
        .env("WCP_RUNTIME_DIR", &run_dir.display().to_string())
        .env("WCP_LOG", "debug");
    let request = RequestSpec::new(V1, "a.registry.io/app").token(&token("puller", "pod-1"));
    // The first exec parses the YAML (and writes the snapshot, the config
    // itself being valid); the second reads the snapshot.
    let mut lines = Vec::new();
    for want_from in ["file", "snapshot"] {
        let exec = front.exec(&request);
        assert!(!exec.success && exec.stdout.is_empty(), "{exec:#?}");
        assert_eq!(
            config_from_or_none(&exec).as_deref(),
            None,
            "failed before its phases"
        );
        let error: Vec<&str> = exec
            .stderr
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect();
        assert_eq!(error.len(), 1, "{}", exec.stderr);
        let no_snapshot = exec.stderr.contains("no usable config snapshot");
        assert_eq!(
            no_snapshot,
            want_from == "file",
            "{want_from}: {}",
            exec.stderr
        );
        lines.push(
            error[0]
                .split_once(" ERROR ")
                .map_or(error[0], |(_, l)| l)
                .to_string(),
        );
    }
    // The same line both times: the key's path and the YAML line.
    assert_eq!(lines[0], lines[1]);
    assert!(
        lines[0].contains("plugins[0].config.cacheKeyType: expected one of Image, Registry"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("at line 12 column"), "{}", lines[0]);
    assert!(!lines[0].contains("Everywhere"), "{}", lines[0]);
}

/// [`config_from`] of an exec that may have failed before its phases line.
fn config_from_or_none(exec: &Exec) -> Option<String> {
    exec.stderr
        .lines()
        .any(|l| l.contains("exec phases"))
        .then(|| config_from(exec))
}

/// Drops `path` from the page cache; whether its first page is now out
/// (a file system that keeps everything in memory, tmpfs, cannot). Asked
/// with `mincore`, which starts no readahead (a `RWF_NOWAIT` read would).
fn evict(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: advice on an open descriptor; a one-page read-only shared
    // mapping of it, asked about and unmapped, never touched.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let map = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        let mut resident = [0u8; 1];
        assert_eq!(libc::mincore(map, page, resident.as_mut_ptr()), 0);
        libc::munmap(map, page);
        resident[0] & 1 == 0
    }
}

/// Whether an executable's first page holds the start-up extent note
/// (`host/startup-extent.ld`: name "WCP", an 8-byte descriptor, type
/// 0x57435031), matched byte for byte rather than by the parser under test.
fn has_startup_extent_record(path: &Path) -> bool {
    let mut head = vec![0u8; 4096];
    let n = std::io::Read::read(&mut std::fs::File::open(path).unwrap(), &mut head).unwrap();
    let header: &[u8] = b"\x04\0\0\0\x08\0\0\0\x31\x50\x43\x57WCP\0";
    head[..n].windows(header.len()).any(|w| w == header)
}

#[test]
fn an_evicted_runtime_and_artifact_are_read_in_part_and_a_warm_exec_reads_nothing() {
    let (s, _, _) = primed("Registry");
    // The runtime's own copy: no other test's exec keeps it mapped (a
    // mapped page cannot be dropped).
    let runtime = s.ws.path().join("wasm-credential-provider-runtime");
    std::fs::copy(runtime_binary(), &runtime).unwrap();
    let artifact = std::fs::read_dir(s.ws.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("the primed exec compiled an artifact");
    let front = s
        .provider(&host_binary())
        .env("WCP_RUNTIME", &runtime.display().to_string())
        .env("WCP_LOG", "debug");
    let puller = token("puller", "pod-1");
    // A runtime linked with the start-up extent record (the node build's
    // `host/startup-extent.ld`) is read in part, one without it whole.
    let has_record = has_startup_extent_record(&runtime);
    let binary_line = "runtime was not in the page cache; read what an exec of it touches";
    let artifact_line = "artifact was not in the page cache; read it in one pass";
    // A miss once the artifact is old enough to be stamped: later execs
    // map it without reading it for its MAC first.
    settle();
    answer(&front.exec(&RequestSpec::new(V1, "z.registry.io/app").token(&puller)));
    let evicted = evict(&runtime) & evict(&artifact);
    let cold = front.exec(&RequestSpec::new(V1, "b.registry.io/app").token(&puller));
    assert!(cold.stderr.contains("mac=\"stamp\""), "{}", cold.stderr);
    answer(&cold);
    if evicted {
        let size = std::fs::metadata(&runtime).unwrap().len();
        let read: u64 = cold
            .stderr
            .lines()
            .find(|l| l.contains(binary_line) && l.contains(&format!(" of={size} ")))
            .and_then(|l| l.split("bytes=").nth(1)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no fill line: {}", cold.stderr));
        if has_record {
            assert!(read > 0 && read < size / 2, "read {read} of {size}");
        } else {
            assert_eq!(read, size);
        }
        assert!(cold.stderr.contains(artifact_line), "{}", cold.stderr);
    } else {
        eprintln!("this file system keeps files in memory: only the warm case is checked");
    }
    let warm = front.exec(&RequestSpec::new(V1, "c.registry.io/app").token(&puller));
    answer(&warm);
    assert!(!warm.stderr.contains(binary_line), "{}", warm.stderr);
    assert!(!warm.stderr.contains(artifact_line), "{}", warm.stderr);
}

#[test]
fn a_fifo_or_a_directory_in_the_runtimes_place_fails_with_one_line_and_never_hangs() {
    let (s, _, _) = primed("Registry");
    let fifo = s.ws.path().join("fifo-runtime");
    let path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a NUL-terminated path, a plain mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o755) }, 0);
    for runtime in [fifo.clone(), s.ws.path().to_path_buf()] {
        let exec = s
            .provider(&host_binary())
            .env("WCP_RUNTIME", &runtime.display().to_string())
            .exec(&RequestSpec::new(V1, "q.registry.io/app").token(&token("puller", "pod-1")));
        assert!(!exec.killed, "{} held the exec", runtime.display());
        exec.assert_clean_failure("cannot run the runtime");
    }
}

/// A way to damage the snapshot, by name.
type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>);

#[test]
fn a_snapshot_in_any_doubt_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let (s, request, _) = primed("Registry");
    answer(&s.front_alone(&request));
    let snapshot = s.snapshots().pop().unwrap();
    let original = std::fs::read(&snapshot).unwrap();
    let header_end = original.iter().position(|b| *b == b'\n').unwrap() + 1;
    let restore = || {
        let _ = std::fs::remove_file(&snapshot);
        std::fs::write(&snapshot, &original).unwrap();
        std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&s.run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        answer(&s.front_alone(&request));
    };
    let mut planted = original[..header_end].to_vec();
    planted.extend_from_slice(b"{\"apiVersion\": [");
    let cases: Vec<Damage<'_>> = vec![
        (
            "group-writable snapshot",
            Box::new(|| {
                std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o620)).unwrap()
            }),
        ),
        (
            "world-readable directory",
            Box::new(|| {
                std::fs::set_permissions(&s.run_dir, std::fs::Permissions::from_mode(0o755))
                    .unwrap()
            }),
        ),
        (
            "symlinked snapshot",
            Box::new(|| {
                let elsewhere = s.ws.write("elsewhere.json", &original);
                std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::fs::remove_file(&snapshot).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &snapshot).unwrap();
            }),
        ),
        (
            "malformed JSON under a valid header",
            Box::new(|| std::fs::write(&snapshot, &planted).unwrap()),
        ),
        (
            "another file's header",
            Box::new(|| {
                let mut other = original.clone();
                other[header_end - 2] ^= 1;
                std::fs::write(&snapshot, &other).unwrap()
            }),
        ),
        (
            "oversized",
            Box::new(|| {
                let mut big = original.clone();
                big.resize(original.len() + 9 * 1024 * 1024, b' ');
                std::fs::write(&snapshot, &big).unwrap()
            }),
        ),
    ];
    for (name, damage) in cases {
        damage();
        assert_needed_the_runtime(&s.front_alone(&request));
        // The runtime run directly does not read it either.
        let (direct, from) = s.runtime_config_from(&request);
        answer(&direct);
        assert_eq!(from, "file", "{name}");
        // With the runtime: answered as ever, and the snapshot written again.
        let answered = s.front(&request);
        answer(&answered);
        assert!(answered.stderr.is_empty(), "{name}: {}", answered.stderr);
        restore();
    }
}

#[test]
fn the_runtime_gets_the_request_and_the_command_line_the_front_got() {
    let s = Setup::new("Registry");
    // Requests the front cannot decode reach the runtime byte for byte:
    // its error line is the exec's one line.
    for (input, needle) in [
        (b"{not json".to_vec(), "malformed CredentialProviderRequest"),
        (vec![b' '; 1024 * 1024 + 10], "larger than"),
    ] {
        let exec = s.provider(&host_binary()).exec_raw(&input);
        let line = exec.assert_clean_failure(needle);
        let direct = s.provider(&runtime_binary()).exec_raw(&input);
        assert_eq!(direct.stderr_lines(), vec![line.as_str()]);
    }
    // A request near the limit is handed over whole.
    let mut big = RequestSpec::new(V1, "a.registry.io/app");
    big = big.annotation("example.com/pad", &"x".repeat(900 * 1024));
    answer(&s.front(&big));
    // Subcommands and help go to the runtime as given.
    let out = std::process::Command::new(host_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wasm-credential-provider "));
    // Without the runtime beside it, a miss is one clear line.
    let missing = s
        .provider(&host_binary())
        .env("WCP_RUNTIME", NO_RUNTIME)
        .exec(&RequestSpec::new(V1, "a.registry.io/app"));
    assert_needed_the_runtime(&missing);
}

/// What the kubelet execs on a hit must not carry the runtime: no
/// WebAssembly engine, compiler, WASI, TLS stack, async runtime, HTTP
/// client or YAML parser is linked. Read from the defined symbols (`nm`),
/// which the linker keeps only for code it kept; the runtime must have
/// each, or the test looks for the wrong names. (wasmtime's `libcalls`,
/// exported for compiled code, do stay: a few KiB, no relocations.)
#[test]
fn the_front_links_no_runtime() {
    let symbols = |binary: PathBuf| {
        let out = std::process::Command::new("nm")
            .args(["--defined-only", "-C"])
            .arg(&binary)
            .output()
            .expect("nm (binutils) is installed with gcc");
        assert!(out.status.success(), "nm {}", binary.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let front = symbols(host_binary());
    // The runtime, and the compiler beside it when the runtime is the
    // runtime-only build (a node's layout: Cranelift is only there).
    let mut runtime = symbols(runtime_binary());
    let compiler = host_binary().with_file_name("wasm-credential-provider-compile");
    if compiler.exists() {
        runtime.push_str(&symbols(compiler));
    }
    for name in [
        "wasmtime::engine::",
        "wasmtime::runtime::component::linker",
        "cranelift_codegen::",
        "wasmtime_wasi::",
        "rustls::",
        "tokio::",
        "hyper::",
        "serde_yaml_ng::",
        "marked_yaml::",
    ] {
        assert!(runtime.contains(name), "the runtime has no {name}");
        assert!(!front.contains(name), "the front links {name}");
    }
}

/// The front skips Rust's runtime start (`host/src/bin/front.rs`), so it
/// must do what that start did for it. With stdout and stderr closed by
/// its parent, every file the front opens (the snapshot, the cache entry,
/// the audit log it appends to) takes descriptor 1 or 2 unless they are
/// filled first; none of them may receive the response or a log line. (The
/// front closes each file before it writes to stdout today, so this half
/// holds with or without the fill; it is the guard for the day one stays
/// open; the fill itself is shown by the next test.) With stdout a pipe nobody reads, SIGPIPE would kill the front
/// silently; it must fail with its one line instead. Both are served as
/// hits, by the front alone.
#[test]
fn the_front_owns_its_standard_streams() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let (s, request, primed) = primed("Image");
    let files_before = workspace_files(s.ws.path());
    let front = |stdout: Stdio, close: &'static [i32]| {
        let mut command = s.front_closing(Path::new(NO_RUNTIME), close);
        command.stdin(Stdio::piped()).stdout(stdout);
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&request.encode())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    // stdout and stderr closed: they are /dev/null for the front (as
    // for any Rust binary), so the hit "succeeds" into nothing, and no
    // file of the host's has grown a response.
    let closed = front(Stdio::null(), &[1, 2]);
    assert_eq!(closed.status.code(), Some(0), "{closed:?}");
    for (path, after) in workspace_files(s.ws.path()) {
        let before = files_before.get(&path).map_or(0, Vec::len);
        let grown = &after[before.min(after.len())..];
        let text = String::from_utf8_lossy(grown);
        assert!(
            !text.contains("CredentialProviderResponse") && !text.contains("token-1"),
            "{} took the response: {text}",
            path.display()
        );
    }
    // The snapshot and the cache it read are intact: the next hit is the same.
    assert_eq!(answer(&s.front_alone(&request)), primed);

    // stdout a pipe whose reader is gone: EPIPE, one line, exit 1.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let broken = front(Stdio::from(writer), &[]);
    assert_eq!(broken.status.signal(), None, "killed: {broken:?}");
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot write the response to stdout"),
        "{stderr}"
    );
}

/// The descriptors the front hands over are its own: with stdin and stdout
/// closed by its parent, the front fills them with `/dev/null` before it
/// opens anything, so the runtime it execs gets the request on stdin and
/// `/dev/null` as stdout. Unfilled, the request's memfd would take
/// descriptor 0 and stdout would reach the runtime closed, free for the
/// first file the runtime opens. A stand-in runtime records what its
/// descriptors are.
#[test]
fn closed_standard_streams_are_filled_before_anything_is_opened() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("Image");
    let record = s.ws.path().join("fds");
    let runtime = s.ws.write(
        "record-fds.sh",
        format!(
            // Read into a variable first: a redirection would itself be
            // fd 1 while readlink runs.
            "#!/bin/sh\nfds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 2>&1)\nprintf '%s\\n' \"$fds\" > {}\nexit 3\n",
            record.display()
        ),
    );
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.front_closing(&runtime, &[0, 1]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let fds = std::fs::read_to_string(&record).unwrap();
    let fds: Vec<&str> = fds.lines().collect();
    assert!(
        fds.first()
            .is_some_and(|l| l.starts_with("/memfd:wcp-request")),
        "{fds:?}"
    );
    assert_eq!(fds.get(1), Some(&"/dev/null"), "{fds:?}");
}

/// Every file under `dir` with its contents.
fn workspace_files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}
