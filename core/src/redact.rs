//! Keeps secrets out of logs and error lines. Plugin output (log calls,
//! stdout/stderr, error messages) is untrusted text that may echo the
//! service-account token or a configured password, and host-written text
//! (denials, config problems) can carry what a plugin put in a URL; every
//! line passes through a [`Redactor`] before it reaches the host's stderr or
//! the audit log.
//!
//! A secret rarely leaks only as itself: logging frameworks print strings
//! `Debug`- or JSON-escaped, URLs carry them percent-encoded, and line-based
//! capture splits a multi-line secret (a PEM key, a kubeconfig) into lines.
//! So each secret is redacted in all these forms: raw; Rust `Debug` and
//! `escape_debug`; JSON as serde and JavaScript write it, with Go's HTML
//! escapes, and all-ASCII as Python writes it; the host's own control
//! escapes ([`crate::escape`]); percent-encoded (RFC 3986 in upper and
//! lower case hex, and both form encodings); and, for a multi-line secret, each line of at least
//! [`MIN_LINE_LEN`] bytes in each of those forms. Other encodings (base64,
//! hex, reversed text) are not recognised: a plugin that holds a secret can
//! always encode it on purpose, so the sandbox's job is to keep the secret
//! from the plugin unless granted, and this one is to catch accidents.

use crate::escape::escape_controls;
use std::fmt::Write as _;

/// Replaces every occurrence of known secrets, in every form it knows,
/// with `<redacted>`.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Every form of every secret, longest first.
    patterns: Vec<String>,
}

/// Secrets shorter than this are not redacted: they would blank out common
/// words and they carry little entropy anyway.
pub const MIN_SECRET_LEN: usize = 4;
/// Lines of a multi-line secret shorter than this are not redacted on their
/// own (a lone `}` or `-----` line is no secret); the whole secret still is.
pub const MIN_LINE_LEN: usize = 8;

/// What a secret is replaced with.
pub const MARKER: &str = "<redacted>";

impl Redactor {
    /// An empty redactor (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            patterns: Vec::new(),
        }
    }

    /// Whether nothing would be redacted.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds a secret in all its forms; short or empty values are ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut bases = vec![secret.to_string()];
        if secret.contains(['\n', '\r']) {
            for line in secret.split(['\n', '\r']) {
                for part in [line, line.trim()] {
                    if part.len() >= MIN_LINE_LEN && !bases.iter().any(|b| b == part) {
                        bases.push(part.to_string());
                    }
                }
            }
        }
        let mut added = false;
        for base in &bases {
            for form in forms(base) {
                if form.len() >= MIN_SECRET_LEN && !self.patterns.contains(&form) {
                    self.patterns.push(form);
                    added = true;
                }
            }
        }
        if added {
            // Longest first so that a secret containing another (or a whole
            // secret containing its own lines) is fully hidden.
            self.patterns.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every known secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for pattern in &self.patterns {
            if out.contains(pattern.as_str()) {
                out = out.replace(pattern.as_str(), MARKER);
            }
        }
        out
    }

    /// Whether `text` holds a known secret in any known form.
    pub fn finds_secret_in(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| text.contains(p.as_str()))
    }
}

/// The forms in which `secret` may be printed.
fn forms(secret: &str) -> Vec<String> {
    let debug = format!("{secret:?}");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let inner = |quoted: &str| {
        quoted
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(quoted)
            .to_string()
    };
    let json = inner(&json);
    let go_json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    vec![
        secret.to_string(),
        inner(&debug),
        secret.escape_debug().to_string(),
        json,
        go_json,
        ascii_json(secret),
        escape_controls(secret).into_owned(),
        percent_encode(secret, Percent::Uri, true),
        percent_encode(secret, Percent::Uri, false),
        percent_encode(secret, Percent::Form, true),
        percent_encode(secret, Percent::Whatwg, true),
    ]
}

/// JSON string contents with everything outside printable ASCII written as
/// `\uXXXX` (Python's `json.dumps` default).
fn ascii_json(secret: &str) -> String {
    let mut out = String::with_capacity(secret.len());
    for c in secret.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out
}

/// Which percent-encoding.
#[derive(Clone, Copy)]
enum Percent {
    /// RFC 3986: every byte but the unreserved `A-Za-z0-9-._~` as `%XX`.
    Uri,
    /// The same with a space as `+`.
    Form,
    /// WHATWG `application/x-www-form-urlencoded`: keeps `*-._`, space `+`.
    Whatwg,
}

/// `secret` percent-encoded; `upper` picks the case of the hex digits.
fn percent_encode(secret: &str, how: Percent, upper: bool) -> String {
    let mut out = String::with_capacity(secret.len());
    for byte in secret.bytes() {
        let kept = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_')
            || match how {
                Percent::Uri | Percent::Form => byte == b'~',
                Percent::Whatwg => byte == b'*',
            };
        if kept {
            out.push(byte as char);
        } else if byte == b' ' && !matches!(how, Percent::Uri) {
            out.push('+');
        } else if upper {
            let _ = write!(out, "%{byte:02X}");
        } else {
            let _ = write!(out, "%{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_every_occurrence() {
        let mut r = Redactor::default();
        r.add("hunter22");
        r.add("ab");
        r.add("hunter22-long");
        assert_eq!(
            r.redact("pw=hunter22 again hunter22-long ab"),
            "pw=<redacted> again <redacted> ab"
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    /// A secret with quotes, backslashes, a tab, non-ASCII and several lines.
    const SECRET: &str =
        "first \"line\" of\\the key\nsecond\tline & <more>\r\nthird line: pässwörd\n}";

    fn redactor() -> Redactor {
        let mut r = Redactor::new();
        r.add(SECRET);
        r
    }

    fn assert_hidden(r: &Redactor, printed: &str) {
        let out = r.redact(&format!("before {printed} after"));
        assert!(out.starts_with("before "), "{out}");
        assert!(out.ends_with(" after"), "{out}");
        for line in SECRET.lines().filter(|l| l.trim().len() >= MIN_LINE_LEN) {
            assert!(!out.contains(line), "line {line:?} survives in {out:?}");
        }
        assert!(!r.finds_secret_in(&out), "{out:?}");
        assert!(out.contains(MARKER), "{printed:?} => {out:?}");
    }

    #[test]
    fn hides_escaped_forms() {
        let r = redactor();
        assert_hidden(&r, SECRET);
        assert_hidden(&r, &format!("{SECRET:?}"));
        assert_hidden(&r, &SECRET.escape_debug().to_string());
        assert_hidden(&r, &serde_json::to_string(SECRET).unwrap());
        assert_hidden(&r, &serde_json::json!({ "k": SECRET }).to_string());
        assert_hidden(&r, &escape_controls(SECRET));
        assert_hidden(&r, &ascii_json(SECRET));
        let go = serde_json::to_string(SECRET)
            .unwrap()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        assert_hidden(&r, &go);
        // Debug of a struct holding it, as `{:?}` on a config type prints.
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder<'a> {
            password: &'a str,
        }
        assert_hidden(&r, &format!("{:?}", Holder { password: SECRET }));
    }

    #[test]
    fn hides_percent_encoded_forms() {
        let r = redactor();
        assert_hidden(&r, &percent_encode(SECRET, Percent::Uri, true));
        assert_hidden(&r, &percent_encode(SECRET, Percent::Uri, false));
        assert_hidden(&r, &percent_encode(SECRET, Percent::Form, true));
        assert_hidden(&r, &percent_encode(SECRET, Percent::Whatwg, true));
        let mut r = Redactor::new();
        r.add("p@ss word/+x~*");
        assert_eq!(
            r.redact(
                "q=p%40ss%20word%2F%2Bx~%2A&f=p%40ss+word%2F%2Bx%7E*&l=p%40ss%20word%2f%2bx~%2a"
            ),
            "q=<redacted>&f=<redacted>&l=<redacted>"
        );
    }

    #[test]
    fn hides_a_multi_line_secret_line_by_line() {
        let r = redactor();
        for line in SECRET.lines() {
            let out = r.redact(line);
            if line.trim().len() >= MIN_LINE_LEN {
                assert_eq!(out, MARKER, "{line:?}");
            } else {
                // Too short to be told apart from ordinary text.
                assert_eq!(out, line);
            }
        }
        // Each line escaped on its own, as a logger prints captured lines.
        for line in SECRET.lines().filter(|l| l.len() >= MIN_LINE_LEN) {
            assert_eq!(r.redact(&format!("{line:?}")), format!("\"{MARKER}\""));
            let json = serde_json::to_string(line).unwrap();
            assert_eq!(r.redact(&json), format!("\"{MARKER}\""));
        }
    }

    #[test]
    fn short_secrets_and_plain_text_are_left_alone() {
        let mut r = Redactor::new();
        r.add("");
        r.add("abc");
        assert!(r.is_empty());
        r.add("line one is long\nab\n");
        assert_eq!(r.redact("ab abc"), "ab abc");
    }
}
