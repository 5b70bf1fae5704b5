//! Every interface a provider component may import, and why it is safe:
//! either *gated* (it works only within what the operator granted) or
//! *harmless* (it reaches nothing outside the sandbox). The runtime refuses
//! a component that imports anything not listed here, so a new import can
//! never slip in ungated, whatever the linker happens to provide.

/// How an import is controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Gated,
    Harmless,
}

/// (interface without version, class, why).
const TABLE: &[(&str, Class, &str)] = &[
    (
        "wasi:http/outgoing-handler",
        Class::Gated,
        "the only network path: declared and granted destinations, checked addresses, capped responses",
    ),
    (
        "wasi:http/types",
        Class::Harmless,
        "request/response values; nothing is sent except through outgoing-handler",
    ),
    (
        "wasi:cli/environment",
        Class::Gated,
        "only variables both declared and granted; no args, no cwd",
    ),
    ("wasi:cli/stdin", Class::Harmless, "always empty"),
    (
        "wasi:cli/stdout",
        Class::Harmless,
        "captured into the host log (stderr), capped and redacted; never the kubelet's stdout",
    ),
    (
        "wasi:cli/stderr",
        Class::Harmless,
        "captured into the host log, capped and redacted",
    ),
    (
        "wasi:cli/exit",
        Class::Harmless,
        "ends the plugin call with an error",
    ),
    (
        "wasi:cli/terminal-input",
        Class::Harmless,
        "no terminal is ever attached",
    ),
    (
        "wasi:cli/terminal-output",
        Class::Harmless,
        "no terminal is ever attached",
    ),
    (
        "wasi:cli/terminal-stdin",
        Class::Harmless,
        "no terminal is ever attached",
    ),
    (
        "wasi:cli/terminal-stdout",
        Class::Harmless,
        "no terminal is ever attached",
    ),
    (
        "wasi:cli/terminal-stderr",
        Class::Harmless,
        "no terminal is ever attached",
    ),
    ("wasi:clocks/wall-clock", Class::Harmless, "reads the time"),
    (
        "wasi:clocks/monotonic-clock",
        Class::Harmless,
        "reads the time; waits are bounded by the call deadline",
    ),
    (
        "wasi:clocks/timezone",
        Class::Harmless,
        "reads the time zone",
    ),
    ("wasi:random/random", Class::Harmless, "randomness"),
    ("wasi:random/insecure", Class::Harmless, "randomness"),
    ("wasi:random/insecure-seed", Class::Harmless, "randomness"),
    ("wasi:io/error", Class::Harmless, "stream plumbing"),
    (
        "wasi:io/poll",
        Class::Harmless,
        "stream plumbing; waits are bounded by the call deadline",
    ),
    ("wasi:io/streams", Class::Harmless, "stream plumbing"),
    (
        "wasi:filesystem/types",
        Class::Gated,
        "no directory is ever preopened, so no file can be opened",
    ),
    (
        "wasi:filesystem/preopens",
        Class::Gated,
        "always returns no directories",
    ),
    (
        "wasi:sockets/network",
        Class::Gated,
        "TCP, UDP and name lookup are disabled",
    ),
    (
        "wasi:sockets/instance-network",
        Class::Gated,
        "TCP, UDP and name lookup are disabled",
    ),
    ("wasi:sockets/tcp", Class::Gated, "TCP is disabled"),
    (
        "wasi:sockets/tcp-create-socket",
        Class::Gated,
        "TCP is disabled",
    ),
    ("wasi:sockets/udp", Class::Gated, "UDP is disabled"),
    (
        "wasi:sockets/udp-create-socket",
        Class::Gated,
        "UDP is disabled",
    ),
    (
        "wasi:sockets/ip-name-lookup",
        Class::Gated,
        "name lookup is disabled; the host resolves names for wasi:http itself",
    ),
    (
        "wcp:credential-provider/config",
        Class::Gated,
        "only config keys the plugin declared and the operator set",
    ),
    (
        "wcp:credential-provider/log",
        Class::Harmless,
        "into the host log, prefixed, capped and redacted",
    ),
    (
        "wcp:credential-provider/types",
        Class::Harmless,
        "type definitions",
    ),
];

/// Every classified interface name (for the linker's test).
#[cfg(test)]
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(name, _, _)| *name)
}

/// The class of an import such as `wasi:http/types@0.2.6`, with the reason.
pub fn classify(import: &str) -> Option<(Class, &'static str)> {
    let unversioned = import.split('@').next().unwrap_or(import);
    TABLE
        .iter()
        .find(|(name, _, _)| *name == unversioned)
        .map(|(_, class, why)| (*class, *why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every interface of every WASI package the host's WIT directory
    /// carries (what wasmtime-wasi and wasmtime-wasi-http can link) and of
    /// the provider package must be classified; unstable/p3-only or
    /// export-only interfaces are listed explicitly as not importable.
    #[test]
    fn every_linkable_interface_is_classified() {
        // Interfaces a provider never imports: exports of other worlds.
        let not_imports = [
            "wasi:cli/run",
            "wasi:http/incoming-handler",
            "wcp:credential-provider/provider",
        ];
        // Every released API version, and the test-only next one.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs: Vec<_> = std::fs::read_dir(root.join("wit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.push(root.join("tests/components/next-api/wit"));
        let mut files = Vec::new();
        for wit in &dirs {
            if let Ok(deps) = std::fs::read_dir(wit.join("deps")) {
                files.extend(deps.map(|e| e.unwrap().path()));
            }
            files.push(wit.join("provider.wit"));
        }
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("package "))
                .unwrap()
                .trim_end_matches(';')
                .split('@')
                .next()
                .unwrap()
                .to_string();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("interface ") else {
                    continue;
                };
                let name = format!("{package}/{}", rest.trim_end_matches(['{', ' ']));
                seen += 1;
                if not_imports.contains(&name.as_str()) {
                    continue;
                }
                assert!(
                    classify(&name).is_some(),
                    "{name} (from {}) is not classified",
                    file.display()
                );
            }
        }
        assert!(seen > 30, "parsed only {seen} interfaces");
    }

    #[test]
    fn versions_are_ignored_and_unknowns_refused() {
        assert_eq!(
            classify("wasi:http/outgoing-handler@0.2.6").unwrap().0,
            Class::Gated
        );
        assert_eq!(
            classify("wasi:cli/stdout@0.2.12").unwrap().0,
            Class::Harmless
        );
        assert!(classify("wasi:sockets2/tcp@0.3.0").is_none());
        assert!(classify("vendor:backdoor/exec").is_none());
    }
}
