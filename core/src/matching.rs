//! Kubelet's image matching (`matchImages` against the request image),
//! restated from `pkg/credentialprovider/keyring.go` `URLsMatchStr`:
//!
//! * both sides are parsed as URLs after prefixing `https://`;
//! * ports must be equal strings (no port is not 443);
//! * hostnames must have the same number of `.` labels, each matched with
//!   Go's `filepath.Match` (`*` globs within one label, case-sensitive);
//! * the pattern's path is a plain string prefix of the image's path.

use anyhow::{Result, bail};

/// An image or pattern split the way kubelet splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub host: String,
    pub port: String,
    pub path: String,
}

/// A validated `matchImages` entry. Parsing once at config load means a bad
/// pattern is an operator error at startup, not a silent non-match later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern {
    original: String,
    parts: UrlParts,
}

impl ImagePattern {
    /// Parses and validates a pattern; errors say what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self> {
        let parts = parse_schemeless(pattern)?;
        for label in parts.host.split('.') {
            validate_glob(label)
                .map_err(|why| anyhow::anyhow!("label {label:?} is not a valid glob: {why}"))?;
        }
        Ok(Self {
            original: pattern.to_string(),
            parts,
        })
    }

    /// The pattern as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Hostname, port and path, as matching compares them.
    pub fn parts(&self) -> &UrlParts {
        &self.parts
    }

    /// Whether this pattern selects `image`, exactly as kubelet decides.
    pub fn matches(&self, image: &str) -> bool {
        match parse_schemeless(image) {
            Ok(target) => parts_match(&self.parts, &target),
            Err(_) => false,
        }
    }
}

/// Kubelet's `URLsMatchStr(pattern, image)`; any parse error is a non-match.
pub fn urls_match(pattern: &str, image: &str) -> bool {
    match (parse_schemeless(pattern), parse_schemeless(image)) {
        (Ok(p), Ok(t)) => parts_match(&p, &t),
        _ => false,
    }
}

fn parts_match(pattern: &UrlParts, target: &UrlParts) -> bool {
    if pattern.port != target.port {
        return false;
    }
    let pattern_labels: Vec<&str> = pattern.host.split('.').collect();
    let target_labels: Vec<&str> = target.host.split('.').collect();
    if pattern_labels.len() != target_labels.len() {
        return false;
    }
    if !target.path.starts_with(&pattern.path) {
        return false;
    }
    pattern_labels
        .iter()
        .zip(&target_labels)
        .all(|(p, t)| glob_match(p, t).unwrap_or(false))
}

/// Parses `value` as Go's `url.Parse("https://" + value)` would, keeping only
/// what matching uses: hostname, port and path.
pub fn parse_schemeless(value: &str) -> Result<UrlParts> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        bail!("invalid control character {c:?} in URL");
    }
    // Fragment, then query, are cut first; the authority ends at the first '/'.
    let without_fragment = value.split('#').next().unwrap_or_default();
    let without_query = without_fragment.split('?').next().unwrap_or_default();
    let (authority, path) = match without_query.find('/') {
        Some(i) => without_query.split_at(i),
        None => (without_query, ""),
    };
    check_escapes(path)?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    check_host(host_port)?;
    let (host, port) = split_host_port(host_port);
    Ok(UrlParts {
        host,
        port,
        path: path.to_string(),
    })
}

/// Go's `net.SplitHostPort`, falling back to (whole, "") when there is no port.
fn split_host_port(host_port: &str) -> (String, String) {
    if let Some(rest) = host_port.strip_prefix('[') {
        if let Some((inside, after)) = rest.split_once(']')
            && let Some(port) = after.strip_prefix(':')
        {
            return (inside.to_string(), port.to_string());
        }
        return (host_port.to_string(), String::new());
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.to_string()),
        _ => (host_port.to_string(), String::new()),
    }
}

fn check_escapes(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                let end = (i + 3).min(text.len());
                bail!("invalid URL escape {:?}", &text[i..end]);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn check_host(host_port: &str) -> Result<()> {
    check_escapes(host_port)?;
    // Port: after the last ':' outside brackets, digits only.
    let after_bracket = host_port
        .rfind(']')
        .map_or(host_port, |i| &host_port[i + 1..]);
    if host_port.starts_with('[') {
        if !host_port.contains(']') {
            bail!("missing ']' in host");
        }
        if !after_bracket.is_empty() && !after_bracket.starts_with(':') {
            bail!("invalid port {after_bracket:?} after host");
        }
    }
    if !host_port.starts_with('[') {
        if let Some((_, port)) = host_port.rsplit_once(':')
            && !port.chars().all(|c| c.is_ascii_digit())
        {
            bail!("invalid port \":{port}\" after host");
        }
        if let Some(c) = host_port.chars().find(|c| {
            c.is_whitespace() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`')
        }) {
            bail!("invalid character {c:?} in host name");
        }
    }
    Ok(())
}

/// Checks a pattern the way `filepath.Match` would when it reaches each part.
fn validate_glob(pattern: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("trailing backslash");
                }
                i += 2;
            }
            '[' => {
                let (_, next) = parse_class(&chars, i, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `path/filepath.Match` for one DNS label (no separators inside).
/// `Err` means the pattern is malformed, which kubelet treats as no match.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    validate_glob(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    Ok(glob_from(&p, 0, &n, 0))
}

fn glob_from(p: &[char], mut pi: usize, n: &[char], mut ni: usize) -> bool {
    while pi < p.len() {
        match p[pi] {
            '*' => {
                while pi < p.len() && p[pi] == '*' {
                    pi += 1;
                }
                return (ni..=n.len()).any(|start| glob_from(p, pi, n, start));
            }
            '?' => {
                if ni >= n.len() {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
            '[' => {
                let Some(&c) = n.get(ni) else { return false };
                match parse_class(p, pi, Some(c)) {
                    Ok((true, next)) => {
                        pi = next;
                        ni += 1;
                    }
                    _ => return false,
                }
            }
            '\\' => {
                if n.get(ni) != p.get(pi + 1) {
                    return false;
                }
                pi += 2;
                ni += 1;
            }
            literal => {
                if n.get(ni) != Some(&literal) {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
        }
    }
    ni == n.len()
}

/// Parses the character class starting at `p[start] == '['`; returns whether
/// `c` (if given) is in it and the index after the closing `]`.
fn parse_class(p: &[char], start: usize, c: Option<char>) -> Result<(bool, usize), &'static str> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut count = 0;
    loop {
        let Some(&ch) = p.get(i) else {
            return Err("unterminated character class");
        };
        if ch == ']' && count > 0 {
            i += 1;
            break;
        }
        let (lo, after_lo) = class_char(p, i)?;
        let (hi, after) = if p.get(after_lo) == Some(&'-') {
            class_char(p, after_lo + 1)?
        } else {
            (lo, after_lo)
        };
        if lo > hi {
            return Err("bad range in character class");
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
        count += 1;
        i = after;
    }
    Ok((matched != negated, i))
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), &'static str> {
    match p.get(i) {
        None => Err("unterminated character class"),
        Some('-') | Some(']') => Err("bad character class"),
        Some('\\') => p
            .get(i + 1)
            .map(|&c| (c, i + 2))
            .ok_or("trailing backslash in class"),
        Some(&c) => Ok((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases from kubelet's keyring_test.go / plugin_test.go as restated in
    // the kubelet contract reference.
    #[test]
    fn kubelet_match_table() {
        let cases = [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.io", "prefix.kubernetes.io", true),
            ("*.*.io", "kubernetes.io", false),
            ("kubernetes.io", "kubernetes.io", true),
            ("kubernetes.io", "prefix.kubernetes.io", false),
            ("*.io", "kubernetes.io", true),
            ("*.io", "prefix.kubernetes.io", false),
            ("registry.io:5000", "registry.io:5000/foo", true),
            ("registry.io:5000", "registry.io/foo", false),
            ("registry.io", "registry.io:5000/foo", false),
            ("registry.io:443", "registry.io/foo", false),
            ("registry.io/foo", "registry.io/foo/bar", true),
            ("registry.io/foo", "registry.io/foobar", true),
            ("registry.io/foo/", "registry.io/foobar", false),
            ("registry.io/*", "registry.io/foo", false),
            ("registry.io/*", "registry.io/*x", true),
            ("*.registry.io", "test.registry.io/foo/bar", true),
            ("docker.io", "docker.io/library/nginx", true),
            ("nginx", "docker.io/library/nginx", false),
            ("Registry.io", "registry.io/x", false),
            ("https://registry.io", "registry.io/foo", false),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
                true,
            ),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app",
                false,
            ),
            ("[::1]:5000", "[::1]:5000/img", true),
            ("%invalid%", "registry.io/foo", false),
        ];
        for (pattern, image, want) in cases {
            assert_eq!(urls_match(pattern, image), want, "{pattern} vs {image}");
        }
    }

    #[test]
    fn glob_semantics() {
        assert_eq!(glob_match("a*c", "abbbc"), Ok(true));
        assert_eq!(glob_match("a?c", "abc"), Ok(true));
        assert_eq!(glob_match("a?c", "ac"), Ok(false));
        assert_eq!(glob_match("[a-c]x", "bx"), Ok(true));
        assert_eq!(glob_match("[^a-c]x", "bx"), Ok(false));
        assert_eq!(glob_match("\\*", "*"), Ok(true));
        assert_eq!(glob_match("\\*", "a"), Ok(false));
        assert!(glob_match("[a-", "a").is_err());
        assert!(glob_match("ab\\", "ab").is_err());
        assert!(glob_match("[]", "a").is_err());
    }

    #[test]
    fn pattern_validation_names_the_problem() {
        assert!(ImagePattern::parse("*.registry.io").is_ok());
        assert!(ImagePattern::parse("registry.io:5000/team").is_ok());
        let err = ImagePattern::parse("%invalid%").unwrap_err().to_string();
        assert!(err.contains("invalid URL escape"), "{err}");
        let err = ImagePattern::parse("registry.io:50x0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid port"), "{err}");
        let err = ImagePattern::parse("reg istry.io").unwrap_err().to_string();
        assert!(err.contains("invalid character"), "{err}");
        let err = ImagePattern::parse("ab\\").unwrap_err().to_string();
        assert!(err.contains("not a valid glob"), "{err}");
    }

    #[test]
    fn parse_parts() {
        let p = parse_schemeless("registry.io:5000/a/b?x#y").unwrap();
        assert_eq!(p.host, "registry.io");
        assert_eq!(p.port, "5000");
        assert_eq!(p.path, "/a/b");
        let p = parse_schemeless("[::1]/x").unwrap();
        assert_eq!(p.host, "[::1]");
        assert_eq!(p.port, "");
    }
}
