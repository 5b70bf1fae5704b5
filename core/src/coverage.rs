//! Image patterns as sets of images: whether every image one pattern can
//! match is matched by another ([`covers`]), and whether two patterns can
//! match a common image ([`may_overlap`]).
//!
//! Both follow kubelet's `URLsMatchStr` (see [`crate::matching`]): equal
//! port strings, equal label counts, one `filepath.Match` glob per label,
//! and the pattern's path a plain string prefix of the image's path. They
//! decide which images a plugin's answer may name, so they err on the safe
//! side: [`covers`] says no when only a finer inclusion between two globs
//! would make it true, and [`may_overlap`] says yes whenever it cannot rule
//! out a label that two globs share.

use crate::matching::{UrlParts, glob_match};

/// Characters that make a label a glob for Go's `filepath.Match`.
const GLOB_META: [char; 4] = ['*', '?', '[', '\\'];

/// Whether every image `inner` matches is also matched by `outer`.
pub fn covers(outer: &UrlParts, inner: &UrlParts) -> bool {
    outer.port == inner.port
        && inner.path.starts_with(&outer.path)
        && labels_pairwise(outer, inner, label_covers)
}

/// Whether some image may be matched by both `a` and `b`; `true` when that
/// cannot be ruled out.
pub fn may_overlap(a: &UrlParts, b: &UrlParts) -> bool {
    a.port == b.port
        && (a.path.starts_with(&b.path) || b.path.starts_with(&a.path))
        && labels_pairwise(a, b, labels_may_overlap)
}

fn labels_pairwise(a: &UrlParts, b: &UrlParts, relation: fn(&str, &str) -> bool) -> bool {
    let a: Vec<&str> = a.host.split('.').collect();
    let b: Vec<&str> = b.host.split('.').collect();
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| relation(x, y))
}

fn is_literal(label: &str) -> bool {
    !label.contains(GLOB_META)
}

/// A literal label is covered when the outer glob matches it; a glob only
/// by `*` (every label) or by the very same glob.
fn label_covers(outer: &str, inner: &str) -> bool {
    if is_literal(inner) {
        glob_match(outer, inner).unwrap_or(false)
    } else {
        (!outer.is_empty() && outer.chars().all(|c| c == '*')) || outer == inner
    }
}

/// Exact when either label is literal. For two globs: every label a glob
/// matches starts with the glob's literal prefix and ends with its literal
/// suffix, so clashing prefixes or suffixes rule a shared label out;
/// otherwise one is assumed.
fn labels_may_overlap(a: &str, b: &str) -> bool {
    match (is_literal(a), is_literal(b)) {
        (true, true) => a == b,
        (true, false) => glob_match(b, a).unwrap_or(false),
        (false, true) => glob_match(a, b).unwrap_or(false),
        (false, false) => {
            let (pa, pb) = (literal_prefix(a), literal_prefix(b));
            let (sa, sb) = (literal_suffix(a), literal_suffix(b));
            (pa.starts_with(pb) || pb.starts_with(pa)) && (sa.ends_with(sb) || sb.ends_with(sa))
        }
    }
}

fn literal_prefix(glob: &str) -> &str {
    &glob[..glob.find(GLOB_META).unwrap_or(glob.len())]
}

/// What follows the last character that could belong to a glob construct
/// (`]` included: it may close a class).
fn literal_suffix(glob: &str) -> &str {
    match glob.rfind(['*', '?', '[', ']', '\\']) {
        Some(i) => &glob[i + 1..],
        None => glob,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::{parse_schemeless, urls_match};

    fn parts(text: &str) -> UrlParts {
        parse_schemeless(text).unwrap()
    }

    #[test]
    fn coverage_table() {
        // (outer pattern, inner key, covered)
        let cases = [
            ("*.registry.io", "a.registry.io", true),
            ("*.registry.io", "*.registry.io", true),
            ("*.registry.io", "registry.io", false),
            ("*.registry.io", "a.b.registry.io", false),
            ("*.registry.io", "*", false),
            ("*.registry.io", "docker.io", false),
            ("*.registry.io", "a-*.registry.io", true),
            ("a-*.registry.io", "a-*.registry.io", true),
            ("a-*.registry.io", "a-b*.registry.io", false),
            ("a-*.registry.io", "a-b.registry.io", true),
            ("a-*.registry.io", "*.registry.io", false),
            ("*.*.io", "*.registry.io", true),
            ("registry.io", "registry.io", true),
            ("registry.io", "registry.io/team", true),
            ("registry.io/team", "registry.io", false),
            ("registry.io/team", "registry.io/team-a", true),
            ("registry.io/team/", "registry.io/team-a", false),
            ("registry.io:5000", "registry.io:5000/x", true),
            ("registry.io:5000", "registry.io/x", false),
            ("registry.io", "registry.io:5000", false),
            ("registry.io", "registry.io:443", false),
            ("*", "*", true),
            ("*", "localhost", true),
            ("*", "docker.io", false),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "1.dkr.ecr.us-east-1.amazonaws.com",
                true,
            ),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "*.dkr.ecr.*.amazonaws.com",
                true,
            ),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "1.dkr.ecr.*.amazonaws.com.cn",
                false,
            ),
            ("[::1]:5000", "[::1]:5000/x", true),
            ("Registry.io", "registry.io", false),
        ];
        for (outer, inner, want) in cases {
            assert_eq!(
                covers(&parts(outer), &parts(inner)),
                want,
                "{outer} ⊇ {inner}"
            );
        }
    }

    #[test]
    fn overlap_table() {
        // (a, b, may overlap)
        let cases = [
            ("*.registry.io", "a.registry.io", true),
            ("*.registry.io", "registry.io", false),
            ("*.registry.io", "*.other.io", false),
            ("*.registry.io", "*.*.io", true),
            ("a-*.registry.io", "b-*.registry.io", false),
            ("*-prod.registry.io", "*-dev.registry.io", false),
            ("a*.registry.io", "*b.registry.io", true),
            ("registry.io/team-a", "registry.io/team-b", false),
            ("registry.io/team", "registry.io/team-a", true),
            ("registry.io", "registry.io/team", true),
            ("registry.io:5000", "registry.io", false),
            ("docker.io", "*", false),
            ("localhost", "*", true),
            ("docker.io", "*.io", true),
            // A class cannot open a host: '[' starts an IPv6 literal.
            ("x[a-c]z.io", "xbz.io", true),
            ("x[a-c]z.io", "xdz.io", false),
            ("x[a-c]z.io", "*y.io", false),
            ("x[a-c]z.io", "x*.io", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(may_overlap(&parts(a), &parts(b)), want, "{a} ∩ {b}");
            assert_eq!(may_overlap(&parts(b), &parts(a)), want, "{b} ∩ {a}");
        }
    }

    /// Soundness against kubelet's matcher on a sample of images: covered
    /// means no sample matched by the inner pattern escapes the outer one;
    /// no overlap means no sample is matched by both.
    #[test]
    fn relations_agree_with_matching() {
        let patterns = [
            "*",
            "*.io",
            "*.*.io",
            "registry.io",
            "*.registry.io",
            "a-*.registry.io",
            "*-b.registry.io",
            "a.registry.io",
            "registry.io/team",
            "registry.io/team-a",
            "registry.io:5000",
            "docker.io",
            "a[a-c]*.registry.io",
        ];
        let images = [
            "localhost/x",
            "registry.io/x",
            "registry.io/team/x",
            "registry.io/team-a/x",
            "registry.io/teamb",
            "registry.io:5000/x",
            "a.registry.io/x",
            "a-b.registry.io/x",
            "b-b.registry.io/x",
            "c.registry.io/x",
            "x.y.io/z",
            "docker.io/library/nginx",
            "a.b.registry.io/x",
            "ab.registry.io/x",
            "abz.registry.io/x",
            "io/x",
        ];
        for a in patterns {
            for b in patterns {
                let matched_by_b: Vec<&&str> = images.iter().filter(|i| urls_match(b, i)).collect();
                if covers(&parts(a), &parts(b)) {
                    for image in &matched_by_b {
                        assert!(urls_match(a, image), "{a} ⊇ {b} but not for {image}");
                    }
                }
                if !may_overlap(&parts(a), &parts(b)) {
                    for image in &matched_by_b {
                        assert!(!urls_match(a, image), "{a} ∩ {b} = ∅ but {image}");
                    }
                }
            }
        }
    }
}
