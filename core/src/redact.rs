//! Keeps secrets out of logs and error lines. Plugin output (log calls,
//! stdout/stderr, error messages) is untrusted text that may echo the
//! service-account token or a configured password; every such line passes
//! through a [`Redactor`] before it reaches the host's stderr.

/// Replaces every occurrence of known secrets with `<redacted>`.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Secrets shorter than this are not redacted: they would blank out common
/// words and they carry little entropy anyway.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    /// Adds a secret; short or empty values are ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first so that a secret containing another is fully hidden.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every known secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
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
}
