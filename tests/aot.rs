//! Precompiled artifacts: produced by the host, verified before use, and
//! never trusted when modified, swapped, truncated or foreign. The artifact
//! cache never fails a request.

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::kubelet::{Provider, RequestSpec, V1};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

struct Setup {
    ws: Workspace,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let ws = Workspace::new();
        // No credential caching: every exec runs the plugin.
        let config = ws.config(&format!(
            "  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    cache: {{defaultDuration: 0s}}\n  - name: probe\n    module: {}\n    matchImages: [\"probe.io\"]\n    config: {{target: \"http://127.0.0.1:9\"}}\n",
            artifacts::STATIC_PLUGIN,
            artifacts::HTTP_PROBE
        ));
        Self { ws, config }
    }

    /// Runs the static plugin; returns how its component was obtained.
    fn run(&self) -> String {
        let exec = Provider::new(host_binary(), &self.config)
            .exec(&RequestSpec::new(V1, "a.registry.io/x"));
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        assert_eq!(resp.auth["a.registry.io"].password, "p");
        let audit = std::fs::read_to_string(self.ws.path().join("audit.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        last["component"].as_str().unwrap().to_string()
    }

    fn artifacts(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.ws.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    }

    fn static_artifact(&self) -> PathBuf {
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                std::fs::read(artifacts::STATIC_PLUGIN).unwrap(),
            ))
        };
        self.artifacts()
            .into_iter()
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&sha))
            .expect("static plugin artifact")
    }

    fn compile(&self) -> String {
        support::workspace::host_command(&self.config, &["compile"])
    }
}

#[test]
fn first_use_compiles_then_loads() {
    let s = Setup::new();
    assert_eq!(s.run(), "compiled");
    assert_eq!(s.run(), "loaded");
    let artifact = s.static_artifact();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&artifact).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = s.ws.cache_dir().join("host.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
}

#[test]
fn compile_command_precompiles_every_plugin() {
    let s = Setup::new();
    let out = s.compile();
    assert!(out.contains("static: compiled"), "{out}");
    assert!(out.contains("probe: compiled"), "{out}");
    assert_eq!(s.artifacts().len(), 2);
    assert_eq!(s.run(), "loaded");
    assert!(s.compile().contains("static: up to date"));
}

type Tamper = (&'static str, fn(&Setup, &std::path::Path));

fn tamper_cases() -> [Tamper; 9] {
    // An artifact is `code ‖ record ‖ record length ‖ tag ‖ format tag`
    // (host/src/artifact.rs): the code is all but the last few hundred bytes.
    const TRAILER: usize = 4 + 32 + 16;
    [
        ("flipped code byte", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() / 2;
            b[i] ^= 0x40;
            std::fs::write(p, b).unwrap();
        }),
        ("flipped provenance record byte", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() - TRAILER - 2;
            b[i] ^= 0x01;
            std::fs::write(p, b).unwrap();
        }),
        ("record length past the start of the file", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            let at = b.len() - TRAILER;
            let past = (b.len() as u32).to_le_bytes();
            b[at..at + 4].copy_from_slice(&past);
            std::fs::write(p, b).unwrap();
        }),
        ("bytes appended", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            b.extend_from_slice(&[0u8; 100]);
            std::fs::write(p, b).unwrap();
        }),
        ("truncated", |_, p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() / 3]).unwrap();
        }),
        ("swapped with another module's artifact", |s, p| {
            let other = s.artifacts().into_iter().find(|a| a != p).unwrap();
            std::fs::copy(other, p).unwrap();
        }),
        ("foreign format version", |_, p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() - 16 + 11;
            assert_eq!(
                &b[i - 11..i],
                b"wcp-cwasm-v",
                "the format tag ends the file"
            );
            b[i] = b'9';
            std::fs::write(p, b).unwrap();
        }),
        ("produced under another host key", |s, _| {
            std::fs::write(s.ws.cache_dir().join("host.key"), [7u8; 32]).unwrap();
        }),
        ("world-writable", |_, p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
        }),
    ]
}

/// The same attacks on an artifact that earlier execs already verified
/// and stamped (`host/src/stamp.rs`): the stamp never vouches for the
/// changed file.
#[test]
fn tampered_artifacts_are_never_executed_after_a_stamp_either() {
    let setups: Vec<(Tamper, Setup)> = tamper_cases()
        .into_iter()
        .map(|case| {
            let s = Setup::new();
            s.compile();
            (case, s)
        })
        .collect();
    // Files changed within the last 2 s are never stamped.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for ((name, tamper), s) in setups {
        assert_eq!(s.run(), "loaded", "{name}: checked and stamped");
        assert_eq!(s.run(), "loaded", "{name}: loaded on the stamp");
        let stamps = std::fs::read_dir(s.ws.cache_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "stamp")
            })
            .count();
        assert!(
            stamps >= 2,
            "{name}: the module and the artifact are stamped"
        );
        let artifact = s.static_artifact();
        tamper(&s, &artifact);
        let how = s.run();
        assert!(how.starts_with("recompiled: "), "{name}: {how}");
    }
}

#[test]
fn tampered_artifacts_are_never_executed() {
    let cases = tamper_cases();
    for (name, tamper) in cases {
        let s = Setup::new();
        s.compile();
        let artifact = s.static_artifact();
        tamper(&s, &artifact);
        let how = s.run();
        assert!(how.starts_with("recompiled: "), "{name}: {how}");
        println!("{name}: {how}");
        // The replacement is good again.
        assert_eq!(s.run(), "loaded", "{name}");
    }
}

#[test]
fn unusable_cache_directory_still_answers() {
    let s = Setup::new();
    std::fs::create_dir_all(s.ws.cache_dir()).unwrap();
    std::os::unix::fs::chown(s.ws.cache_dir(), Some(65534), Some(65534)).unwrap();
    let exec =
        Provider::new(host_binary(), &s.config).exec(&RequestSpec::new(V1, "a.registry.io/x"));
    assert!(exec.success, "{exec:#?}");
}

/// The plugin timeout of the first-use compile tests, and the slack allowed
/// past it (process start-up of a debug build on a loaded machine).
const SHORT: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(2500);

/// A host config running `SLOW_COMPILE` (a real static provider whose
/// compile takes several seconds) with a 2 s timeout, caching nothing.
fn slow_config(ws: &Workspace) -> PathBuf {
    ws.config(&format!(
        "  - name: slow\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    limits: {{timeout: {}s}}\n    cache: {{defaultDuration: 0s}}\n",
        artifacts::SLOW_COMPILE,
        SHORT.as_secs()
    ))
}

fn audit(ws: &Workspace) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ws.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(ws: &Workspace, kind: &str) -> Vec<serde_json::Value> {
    audit(ws)
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// Whether some process holds a compile lock in the cache directory.
fn compile_running(ws: &Workspace) -> bool {
    let Ok(dir) = std::fs::read_dir(ws.cache_dir()) else {
        return false;
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".compile.lock"))
        .any(|p| {
            let file = std::fs::File::open(&p).unwrap();
            matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
        })
}

fn has_artifact(ws: &Workspace) -> bool {
    std::fs::read_dir(ws.cache_dir()).is_ok_and(|d| {
        d.map(|e| e.unwrap().path())
            .any(|p| p.extension().is_some_and(|e| e == "cwasm"))
    })
}

/// Polls `done` every 50 ms for at most `within`; returns how long it took.
fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn exec_image(config: &std::path::Path, image: &str) -> support::kubelet::Exec {
    Provider::new(host_binary(), config).exec(&RequestSpec::new(V1, image))
}

#[test]
fn slow_first_use_compile_ends_within_the_deadline_and_completes_in_the_background() {
    let ws = Workspace::new();
    let config = slow_config(&ws);

    // An exec the kubelet kills: its whole process group, harder than the
    // kubelet (which kills the one process), once its compile has started.
    let mut killed = std::process::Command::new(host_binary());
    killed
        .arg("--config")
        .arg(&config)
        .env("WCP_LOG", "info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut killed, 0);
    let mut killed = killed.spawn().unwrap();
    let request = RequestSpec::new(V1, "killed.registry.io/app").encode();
    std::io::Write::write_all(killed.stdin.as_mut().unwrap(), &request).unwrap();
    drop(killed.stdin.take());
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let stderr = killed.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap_or_default();
            if line.contains("first-use compile started") {
                let pid = line.split_whitespace().find_map(|w| w.strip_prefix("pid="));
                let _ = pid_tx.send(pid.unwrap().parse::<u32>().unwrap());
            }
        }
    });
    let compiler = pid_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    wait_until(
        "the first exec starts a compile",
        Duration::from_secs(30),
        || compile_running(&ws),
    );
    // The compile child: its own session, bounded memory, no core dump.
    let limits = std::fs::read_to_string(format!("/proc/{compiler}/limits")).unwrap();
    let limit = |name: &str| {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().rev().nth(2).unwrap().to_string()
    };
    assert_eq!(limit("Max data size"), (2u64 << 30).to_string(), "{limits}");
    assert_eq!(limit("Max core file size"), "0", "{limits}");
    let session = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<String> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect();
        fields[3].clone()
    };
    assert_eq!(
        session(compiler),
        compiler.to_string(),
        "the compile leads its own session"
    );
    let group = format!("-{}", killed.id());
    std::process::Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    killed.wait().unwrap();

    // Cold execs while that compile runs: each ends within its deadline,
    // with one clean line; none starts another compile.
    let execs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let config = &config;
                s.spawn(move || exec_image(config, &format!("r{i}.registry.io/app")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for exec in &execs {
        let line = exec.assert_clean_failure(&format!(
            "the first-use compile of plugin \"slow\" did not finish within {}.0s",
            SHORT.as_secs()
        ));
        assert!(line.contains("it continues in the background"), "{line}");
        assert!(
            line.contains(&format!(
                "--config {} compile` at install time",
                config.display()
            )),
            "{line}"
        );
        assert!(
            exec.elapsed < SHORT + MARGIN,
            "took {:?} with a {SHORT:?} timeout: {exec:#?}",
            exec.elapsed
        );
        println!("cold exec during the compile: {:?} :: {line}", exec.elapsed);
    }

    // The compile, started by the killed exec, completes once.
    let took = wait_until(
        "the background compile completes",
        Duration::from_secs(180),
        || has_artifact(&ws) && !compile_running(&ws),
    );
    println!("background compile ended {took:?} after the cold execs");
    let compiles = events(&ws, "compile");
    assert_eq!(compiles.len(), 1, "{compiles:#?}");
    assert_eq!(compiles[0]["outcome"], "compiled", "{compiles:#?}");
    assert_eq!(compiles[0]["background"], true, "{compiles:#?}");
    println!(
        "SLOW_COMPILE compile time (background, debug build): {} ms",
        compiles[0]["durationMs"]
    );

    // The next exec loads it and answers within the plugin's deadline.
    let exec = exec_image(&config, "r0.registry.io/app");
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth["r0.registry.io"].password, "p");
    assert!(exec.elapsed < SHORT + MARGIN, "{exec:#?}");
    let calls = events(&ws, "plugin_call");
    assert_eq!(calls.last().unwrap()["component"], "loaded", "{calls:#?}");
}

#[test]
fn slow_compile_without_a_cache_directory_is_bounded_too() {
    let ws = Workspace::new();
    let config = slow_config(&ws);
    std::fs::create_dir_all(ws.cache_dir()).unwrap();
    std::os::unix::fs::chown(ws.cache_dir(), Some(65534), Some(65534)).unwrap();
    let exec = exec_image(&config, "a.registry.io/app");
    let line = exec.assert_clean_failure("compiling plugin \"slow\" did not finish within 2.0s");
    assert!(line.contains("no usable cache directory"), "{line}");
    assert!(line.contains("compile` at install time"), "{line}");
    assert!(exec.elapsed < SHORT + MARGIN, "{exec:#?}");
}

#[test]
fn concurrent_cold_execs_start_one_compile() {
    let s = Setup::new();
    let execs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let config = &s.config;
                scope.spawn(move || exec_image(config, &format!("c{i}.registry.io/app")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, exec) in execs.iter().enumerate() {
        assert!(exec.success, "{exec:#?}");
        let resp = support::strict::decode(&exec.stdout, V1).unwrap();
        assert_eq!(resp.auth[&format!("c{i}.registry.io")].password, "p");
    }
    let components: Vec<String> = events(&s.ws, "plugin_call")
        .iter()
        .map(|e| e["component"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(components.len(), 8);
    let compiled = components.iter().filter(|c| *c == "compiled").count();
    assert_eq!(compiled, 1, "{components:#?}");
    assert!(
        components.iter().all(
            |c| ["compiled", "loaded", "loaded after a concurrent compile"].contains(&c.as_str())
        ),
        "{components:#?}"
    );
    assert_eq!(events(&s.ws, "compile").len(), 1);
}

#[test]
fn failed_first_use_compile_is_reported_and_not_retried_at_once() {
    let ws = Workspace::new();
    // The static plugin plus a core module that parses but does not
    // validate (a `() -> ()` function leaving an i32 on the stack): it
    // passes every check before the compiler.
    let mut bytes = std::fs::read(artifacts::STATIC_PLUGIN).unwrap();
    let module: &[u8] =
        b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x0a\x06\x01\x04\0\x41\0\x0b";
    bytes.push(1);
    bytes.push(module.len() as u8);
    bytes.extend_from_slice(module);
    let wasm = ws.write("bad.wasm", &bytes);
    let config = ws.config(&format!(
        "  - name: bad\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n",
        wasm.display()
    ));
    let first = exec_image(&config, "a.registry.io/app");
    let line = first.assert_clean_failure("the first-use compile of plugin \"bad\" failed: ");
    assert!(line.contains("cannot compile"), "{line}");
    let again = exec_image(&config, "a.registry.io/app");
    let line = again.assert_clean_failure("the first-use compile of plugin \"bad\" failed ");
    assert!(line.contains("compile` at install time"), "{line}");
    println!("{line}");
    let compiles = events(&ws, "compile");
    assert_eq!(compiles.len(), 1, "{compiles:#?}");
    assert_eq!(compiles[0]["outcome"], "failed");
}

#[test]
fn multi_memory_component_compiles() {
    // MULTI_MEMORY is for the summed memory limit's tests; here only: the
    // engine accepts it.
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: mm\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    config: {{username: u, password: p}}\n    limits: {{memoryMiB: 32}}\n",
        artifacts::MULTI_MEMORY
    ));
    let out = support::workspace::host_command(&config, &["compile"]);
    assert!(out.contains("mm: compiled"), "{out}");
}

#[test]
fn background_compile_ends_at_its_time_limit() {
    // The watchdog of a background compile (300 s in an exec's child),
    // here with 1 s.
    let ws = Workspace::new();
    let config = slow_config(&ws);
    let started = Instant::now();
    let out = std::process::Command::new(host_binary())
        .arg("--config")
        .arg(&config)
        .args(["compile", "--plugin", "slow", "--time-limit", "1"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(elapsed < Duration::from_secs(1) + MARGIN, "{elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not finish within the 1s limit of a background compile"),
        "{stderr}"
    );
    let compiles = events(&ws, "compile");
    assert_eq!(compiles.len(), 1, "{compiles:#?}");
    assert_eq!(compiles[0]["outcome"], "time_limit");
    assert!(!has_artifact(&ws));
}
