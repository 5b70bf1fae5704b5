//! Makes untrusted text safe to print. A plugin controls its log calls,
//! stdout/stderr, error messages and the URLs it requests; the names in a
//! component's declaration are plugin-written too. Printed raw, a newline
//! would forge a line that looks like the host's own (`wasm-credential-
//! provider: error: ...`), terminal escapes (ESC, BEL, BS) would repaint what
//! an operator sees, NUL would cut the line in some readers, and bidi
//! overrides would make text read differently than it is. Every such
//! character is written as a visible escape (`\n`, `\u{1b}`), so one piece of
//! text is always exactly one line of printable characters.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a log line as itself: C0
/// controls (newline and tab included), DEL, C1 controls, the bidi
/// embedding, override and isolate controls, the directional marks, and the
/// Unicode line and paragraph separators.
pub fn is_hazardous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `text` with every [hazardous](is_hazardous) character replaced by a
/// visible escape: `\n`, `\r`, `\t`, else `\u{XX}` (lower-case hex, as Rust
/// writes it). Other text, backslashes included, is kept as it is, so the
/// result is readable and escaping it again changes nothing.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazardous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hazardous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_visibly() {
        assert_eq!(
            escape_controls("a\nwasm-credential-provider: error: forged"),
            "a\\nwasm-credential-provider: error: forged"
        );
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{7}\u{8}\0\r\t"),
            "\\u{1b}[31mred\\u{7}\\u{8}\\u{0}\\r\\t"
        );
        assert_eq!(
            escape_controls("\u{7f}\u{85}\u{9b}"),
            "\\u{7f}\\u{85}\\u{9b}"
        );
    }

    #[test]
    fn escapes_bidi_and_separators() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}', '\u{61c}',
        ] {
            let text = format!("x{c}y");
            let escaped = escape_controls(&text);
            assert_eq!(escaped, format!("x\\u{{{:x}}}y", c as u32));
            assert!(!escaped.chars().any(is_hazardous));
        }
    }

    #[test]
    fn leaves_ordinary_text_alone_and_is_idempotent() {
        let plain = "plain text, ünïcödé, 日本語, emoji 🙂, back\\slash \"quoted\"";
        assert!(matches!(escape_controls(plain), Cow::Borrowed(_)));
        let once = escape_controls("a\u{1b}b\nc\u{202e}d").into_owned();
        assert_eq!(escape_controls(&once), once);
    }

    #[test]
    fn no_hazardous_character_survives() {
        let every: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let escaped = escape_controls(&every);
        assert!(!escaped.chars().any(is_hazardous));
        assert!(!escaped.contains('\n'));
    }
}
