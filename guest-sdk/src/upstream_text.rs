//! Upstream text made fit for one error line: control characters (and the
//! bidi and line-separator characters the host would escape) become
//! spaces, whitespace runs collapse, and the length is bounded.

/// At most this many characters of upstream text go into a message.
pub const MAX_CHARS: usize = 300;

pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            let invisible = matches!(
                c,
                '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
            ) || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c);
            if c.is_control() || invisible { ' ' } else { c }
        })
        .collect();
    let line = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// Replaces every occurrence of each secret (of at least 8 bytes) in `text`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(secret, "<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clean_bounded_line() {
        assert_eq!(one_line("a\r\n  b\tc\u{1b}[31m d"), "a b c [31m d");
        assert_eq!(one_line("x\u{202e}y\u{2028}z"), "x y z");
        let long = "é".repeat(400);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_CHARS + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn redacts_secrets() {
        assert_eq!(
            redact("a eyJsecret-token b", &["eyJsecret-token", "short"]),
            "a <redacted> b"
        );
    }
}
