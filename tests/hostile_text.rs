//! What the host writes, against a plugin that attacks it with text: no
//! secret (the service-account token, a `configFromFile` value) reaches
//! stderr or the audit log raw, escaped, encoded or line by line; one log
//! call is one stderr line; no control or bidi character a plugin chose is
//! written as itself; declared names are validated and `inspect` escapes
//! what it prints.

use crate::support;

use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::tokens::sa_token;
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

/// A multi-line secret file with quotes, backslashes, a tab and `<&>`
/// (which Go's JSON escapes); one trailing newline, which the host drops.
const SECRET_FILE: &str = "-----BEGIN HOSTILE SECRET-----\nline-one \"quoted\" with \\backslash\\ s3cr3t-A1\nline-two\ttab & <angle> s3cr3t-B2\n-----END HOSTILE SECRET-----\n";

/// The forged line the plugin tries to print.
const FORGED: &str = "wasm-credential-provider: error: forged by the plugin";

/// Characters that must never be written as themselves (a newline only as
/// the end of a line). Spelled out here rather than taken from the host.
fn hazardous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn assert_no_hazards(what: &str, text: &str) {
    for line in text.lines() {
        if let Some(c) = line.chars().find(|&c| hazardous(c)) {
            panic!("{what}: raw {c:?} in line {line:?}");
        }
    }
    assert!(!text.contains('\r'), "{what}: raw CR");
}

/// Every form in which `secret` must not appear.
fn forms(secret: &str) -> Vec<String> {
    let inner = |quoted: String| quoted[1..quoted.len() - 1].to_string();
    let mut bases = vec![secret.to_string()];
    bases.extend(
        secret
            .lines()
            .filter(|l| l.trim().len() >= 8)
            .map(str::to_string),
    );
    let mut out = Vec::new();
    for base in bases {
        out.push(base.clone());
        out.push(inner(format!("{base:?}")));
        out.push(base.escape_debug().to_string());
        out.push(inner(serde_json::to_string(&base).unwrap()));
        out.push(escaped(&base));
        out.push(form_urlencode(&base));
    }
    out.sort();
    out.dedup();
    out
}

/// `text` with control characters escaped as the host writes them.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if hazardous(c) => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// WHATWG form encoding, as the guest SDK writes it.
fn form_urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

struct Hostile {
    ws: Workspace,
    token: String,
    secret: String,
    /// A `configFromEnv` secret short enough to be a host name label.
    label: String,
}

impl Hostile {
    fn new() -> Self {
        let ws = Workspace::new();
        ws.write("secrets/hostile", SECRET_FILE);
        Self {
            ws,
            token: sa_token("sts", "team", "puller", "uid-1", "nonce-hostile-text"),
            secret: SECRET_FILE.strip_suffix('\n').unwrap().to_string(),
            label: "lbl-7f3a9c2e5d1b8064".to_string(),
        }
    }

    fn run(&self, extra: &str, log_level: Option<&str>) -> Exec {
        let config = self.ws.config(&format!(
            "  - name: hostile\n    module: {}\n    matchImages: [\"*.registry.io\"]\n    configFromFile: {{secret: {}}}\n    configFromEnv: {{label: HOSTILE_LABEL}}\n    grants:\n      serviceAccountToken: true\n    cache: {{defaultDuration: 0s}}\n{extra}",
            artifacts::HOSTILE_TEXT,
            self.ws.path().join("secrets/hostile").display()
        ));
        let mut provider = Provider::new(host_binary(), &config).env("HOSTILE_LABEL", &self.label);
        if let Some(level) = log_level {
            provider = provider.env("WCP_LOG", level);
        }
        provider.exec(&RequestSpec::new(V1, "team.registry.io/app").token(&self.token))
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(self.ws.path().join("audit.jsonl")).unwrap_or_default()
    }

    /// Checks stderr and the audit log: no secret in any form, no raw
    /// control character, every audit line whole JSON.
    fn assert_nothing_leaked(&self, exec: &Exec) -> Vec<serde_json::Value> {
        let audit = self.audit_text();
        let events: Vec<serde_json::Value> = audit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let decoded: Vec<String> = events.iter().flat_map(strings).collect();
        for (name, secret) in [
            ("token", &self.token),
            ("secret", &self.secret),
            ("label", &self.label),
        ] {
            for form in forms(secret) {
                assert!(
                    !exec.stderr.contains(&form),
                    "{name} form {form:?} on stderr:\n{}",
                    exec.stderr
                );
                assert!(
                    !audit.contains(&form),
                    "{name} form {form:?} in the audit log:\n{audit}"
                );
                for value in &decoded {
                    assert!(
                        !value.contains(&form),
                        "{name} form {form:?} in audit value {value:?}"
                    );
                }
            }
        }
        assert_no_hazards("stderr", &exec.stderr);
        assert_no_hazards("audit log", &audit);
        for value in &decoded {
            assert!(!value.chars().any(hazardous), "audit value {value:?}");
        }
        assert!(!exec.stdout.contains(&0x1b), "ESC on stdout");
        events
    }
}

/// Every string in a JSON value, keys included.
fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn failure_line_is_one_clean_line_without_secrets() {
    let h = Hostile::new();
    // At `error`, the plugin's own (warn) log calls are filtered: only the
    // failure line remains, as the kubelet shows it.
    let exec = h.run("", Some("error"));
    let line = exec.assert_clean_failure("plugin \"hostile\": upstream failure: final error");
    assert!(
        line.starts_with("wasm-credential-provider: error: "),
        "{line}"
    );
    // The plugin's forged line, ESC and bidi override are there, escaped.
    assert!(line.contains(&format!("\\n{FORGED}")), "{line}");
    assert!(
        line.contains("\\u{1b}[2J") && line.contains("\\u{202e}"),
        "{line}"
    );
    assert!(line.contains("\\u{0}") && line.contains("\\u{7}") && line.contains("\\u{8}"));
    // The denial with the token in its host name explains the failure.
    assert!(
        line.contains("destination_not_allowed https://<redacted>.denied.example:443"),
        "{line}"
    );
    let events = h.assert_nothing_leaked(&exec);
    let denial = events
        .iter()
        .find(|e| e["event"] == "destination_not_allowed")
        .unwrap_or_else(|| panic!("no denial in {events:#?}"));
    assert_eq!(
        denial["destination"],
        "https://<redacted>.denied.example:443"
    );
    assert!(events.iter().any(|e| e["event"] == "plugin_call"));
}

#[test]
fn every_log_call_is_one_escaped_line() {
    let h = Hostile::new();
    let exec = h.run("", Some("trace"));
    assert!(!exec.success);
    h.assert_nothing_leaked(&exec);
    let lines = exec.stderr_lines();
    // Only the host's own failure line, the last one, starts like one.
    let (last, rest) = lines.split_last().unwrap();
    assert!(
        last.starts_with("wasm-credential-provider: error: "),
        "{last}"
    );
    for line in rest {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "not a host log line (forged?): {line:?}\n{}",
            exec.stderr
        );
    }
    // Each numbered log call is exactly one line.
    let mut calls = 0;
    for n in 1.. {
        let marker = format!("msg-{n:02} ");
        let count = rest.iter().filter(|l| l.contains(&marker)).count();
        if count == 0 {
            break;
        }
        assert_eq!(
            count, 1,
            "log call {n} became {count} lines:\n{}",
            exec.stderr
        );
        calls += 1;
    }
    assert!(calls > 20, "only {calls} log calls seen:\n{}", exec.stderr);
    let call = |n: usize| {
        let marker = format!("msg-{n:02} ");
        *rest.iter().find(|l| l.contains(&marker)).unwrap()
    };
    assert!(
        call(1).contains(&format!("forged next\\n{FORGED}")),
        "{}",
        call(1)
    );
    assert!(
        call(2).contains(&format!("forged after cr\\r{FORGED}")),
        "{}",
        call(2)
    );
    assert!(call(3).contains("esc \\u{1b}[2J"), "{}", call(3));
    assert!(call(4).contains("rlo \\u{202e}gnp.exe"), "{}", call(4));
    assert!(
        rest.iter()
            .any(|l| l.contains("secret raw: <redacted>") && l.contains("source=\"log\"")),
        "{}",
        exec.stderr
    );
    // Captured stdout stays line-oriented, and prefixed by the host.
    assert!(
        rest.iter().any(|l| l.contains("stdout forged next")),
        "{}",
        exec.stderr
    );
    // The config:secret endpoint is reported by key, never by value.
    let problem = rest
        .iter()
        .find(|l| l.contains("declared destination unusable"))
        .unwrap_or_else(|| panic!("no config problem line:\n{}", exec.stderr));
    assert!(problem.contains("config value \"secret\""), "{problem}");
    // The denial event is logged with the token redacted.
    assert!(
        rest.iter()
            .any(|l| l.contains("destination_not_allowed")
                && l.contains("<redacted>.denied.example")),
        "{}",
        exec.stderr
    );
}

#[test]
fn denials_of_a_successful_call_are_logged_without_the_token() {
    let h = Hostile::new();
    let exec = h.run("    config: {succeed: \"true\"}\n", None);
    assert!(exec.success, "{exec:#?}");
    support::strict::decode(&exec.stdout, V1).unwrap();
    let events = h.assert_nothing_leaked(&exec);
    assert!(
        exec.stderr_lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("https://<redacted>.denied.example:443")),
        "{}",
        exec.stderr
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "destination_not_allowed"),
        "{events:#?}"
    );
}

fn inspect(args: &[&str]) -> std::process::Output {
    std::process::Command::new(host_binary())
        .arg("inspect")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn declared_names_with_escapes_refuse_the_component() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: names\n    module: {}\n    matchImages: [\"*.registry.io\"]\n",
        artifacts::HOSTILE_NAMES
    ));
    let exec = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "trace")
        .exec(&RequestSpec::new(V1, "team.registry.io/app"));
    let lines = exec.stderr_lines();
    let last = lines.last().copied().unwrap_or_default();
    assert!(!exec.success && exec.stdout.is_empty(), "{exec:#?}");
    assert!(
        last.contains("invalid capability declaration")
            && last.contains(
                "config[0]: config key \"\\u{1b}[2J\\u{1b}[Hinnocent\\u{202e}\" is not a valid name"
            ),
        "{last}"
    );
    assert!(
        !exec.stderr.contains("hostile-names ran"),
        "{}",
        exec.stderr
    );
    assert_no_hazards("stderr", &exec.stderr);
    let exec =
        Provider::new(host_binary(), &config).exec(&RequestSpec::new(V1, "team.registry.io/app"));
    exec.assert_clean_failure("is not a valid name");

    for output in ["table", "json"] {
        let out = inspect(&[artifacts::HOSTILE_NAMES, "--output", output]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "{output}: printed a report");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_no_hazards("inspect stderr", &stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("is not a valid name"), "{stderr}");
    }
}

/// `component` with a `wcp-capabilities` custom section appended at its
/// top level, for declarations the SDK would not help build.
fn with_declaration(component: &[u8], json: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"wcp-capabilities";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(json.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend(payload);
    out
}

#[test]
fn every_declared_name_rule_refuses_the_component() {
    let ws = Workspace::new();
    let base = std::fs::read(artifacts::OTHER_WORLD_COMPONENT).unwrap();
    let many: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    let cases = [
        (
            r#"{"env":["OK","X\u001b]0;pwned\u0007"]}"#.to_string(),
            "env[1]: environment variable name \"X\\u{1b}]0;pwned\\u{7}\" is not a valid name",
        ),
        (
            r#"{"outbound":["config:a\nb"]}"#.to_string(),
            "outbound[0]: config key \"a\\nb\" is not a valid name",
        ),
        (
            format!(r#"{{"config":["{}"]}}"#, "k".repeat(129)),
            "config[0]: config key",
        ),
        (
            format!(r#"{{"config":{}}}"#, serde_json::to_string(&many).unwrap()),
            "declares 65 config keys; at most 64",
        ),
    ];
    for (i, (json, want)) in cases.iter().enumerate() {
        let module = ws.write(&format!("variant-{i}.wasm"), with_declaration(&base, json));
        let config = ws.write(
            &format!("variant-{i}.yaml"),
            format!(
                "{}plugins:\n  - name: variant\n    module: {}\n    matchImages: [\"*.registry.io\"]\n",
                ws.header(),
                module.display()
            ),
        );
        let exec = Provider::new(host_binary(), &config)
            .exec(&RequestSpec::new(V1, "team.registry.io/app"));
        let line = exec.assert_clean_failure(want);
        assert_no_hazards("stderr", &line);
        let out = inspect(&[module.to_str().unwrap()]);
        assert!(!out.status.success(), "{json}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(want), "{stderr}");
        assert_no_hazards("inspect stderr", &stderr);
    }
}

#[test]
fn inspect_escapes_what_it_prints() {
    let ws = Workspace::new();
    // The one name `inspect` prints that nothing validates: the file's.
    let dir = ws.path().join("evil\u{1b}[2J\u{202e}dir");
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("static\u{7}.wasm");
    std::fs::copy(artifacts::STATIC_PLUGIN, &module).unwrap();
    let config = ws.config(&format!(
        "  - name: static\n    module: {}\n    matchImages: [\"*.registry.io\"]\n",
        serde_json::to_string(module.to_str().unwrap()).unwrap()
    ));
    let path = module.to_str().unwrap();
    let out = inspect(&[path, "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_hazards("inspect table", &stdout);
    assert!(
        stdout.contains("evil\\u{1b}[2J\\u{202e}dir/static\\u{7}.wasm"),
        "{stdout}"
    );
    assert!(stdout.contains("GRANTED to plugin \"static\""), "{stdout}");

    let out = inspect(&[path, "--output", "json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert_no_hazards("inspect json", &stdout);
    // Escaped as JSON escapes: the same file name once decoded.
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["file"], path);
}
