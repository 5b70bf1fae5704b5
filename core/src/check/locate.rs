//! The line of a field in a YAML (or JSON) file, so that every finding of
//! `check` says where to look. Findings name fields by path
//! (`providers[1].tokenAttributes.cacheType`); this maps a path to the
//! line of its key (or list item), falling back to the nearest ancestor
//! that exists: a missing field is reported on the line of the object that
//! lacks it.

use marked_yaml::Node;

/// The lines of one file's fields.
pub struct Locator {
    root: Option<Node>,
}

impl Locator {
    /// Indexes `text`; a text that does not parse locates nothing (its
    /// syntax error is a finding of its own, with the parser's line).
    pub fn new(text: &str) -> Self {
        Self {
            root: marked_yaml::parse_yaml(0, text).ok(),
        }
    }

    /// The 1-based line of `path` (`a.b[2].c`), or of its nearest ancestor
    /// found; `None` for the root or an unparsable file.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut node = self.root.as_ref()?;
        let mut line = None;
        for step in steps(path) {
            let found = match (&step, node) {
                (Step::Key(key), Node::Mapping(map)) => map
                    .iter()
                    .find(|(k, _)| k.as_str() == key.as_str())
                    .map(|(k, v)| (k.span().start().map(|m| m.line()), v)),
                (Step::Index(i), Node::Sequence(seq)) => seq
                    .get(*i)
                    .map(|item| (item.span().start().map(|m| m.line()), item)),
                _ => None,
            };
            let Some((at, next)) = found else { break };
            line = at.or(line);
            node = next;
        }
        line
    }
}

enum Step {
    Key(String),
    Index(usize),
}

/// `providers[1].tokenAttributes` as keys and indexes; a segment that is
/// not `name[index]` is a key as written.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut rest = segment;
        let key_end = rest.find('[').unwrap_or(rest.len());
        if key_end > 0 {
            out.push(Step::Key(rest[..key_end].to_string()));
        }
        rest = &rest[key_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            match inner[..close].parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => break,
            }
            rest = &inner[close + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    matchImages: [\"x.io\"]\n  - name: b\n    tokenAttributes:\n      cacheType: Pod\n    matchImages:\n      - \"y.io\"\n      - \"z.io\"\n";

    #[test]
    fn finds_keys_items_and_the_nearest_ancestor() {
        let at = Locator::new(TEXT);
        assert_eq!(at.line("kind"), Some(2));
        assert_eq!(at.line("providers"), Some(3));
        assert_eq!(at.line("providers[0]"), Some(4));
        assert_eq!(at.line("providers[1].name"), Some(6));
        assert_eq!(at.line("providers[1].tokenAttributes.cacheType"), Some(8));
        assert_eq!(at.line("providers[1].matchImages[1]"), Some(11));
        // Missing: the object that lacks it.
        assert_eq!(at.line("providers[1].defaultCacheDuration"), Some(6));
        assert_eq!(at.line("providers[7].name"), Some(3));
        assert_eq!(at.line(""), None);
    }

    #[test]
    fn json_and_broken_text() {
        let at = Locator::new(
            "{\n  \"kind\": \"X\",\n  \"providers\": [\n    {\"name\": \"a\"}\n  ]\n}\n",
        );
        assert_eq!(at.line("providers[0].name"), Some(4));
        assert_eq!(Locator::new("a: [").line("a"), None);
    }
}
