//! Every problem of a host config at once, each with the field it is about.
//!
//! An operator who fixes one typo, reruns and meets the next is slowed down
//! for nothing: validation goes on after a problem and reports them all, in
//! the order of the file (as kubelet's `field.ErrorList` does). The kubelet
//! shows one stderr line, so [`ConfigError`] joins them with `"; "`.

use std::fmt;

/// Where a problem is: the fields from the top of the file down, e.g.
/// `plugins[1]`, `limits`, `timeout`. Shown as `plugins[1].limits.timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// The top of the file.
    pub fn root() -> Self {
        Self::default()
    }

    /// The field (or `name[index]`, or `map.key`) `segment` below this one.
    pub fn at(&self, segment: impl Into<String>) -> Self {
        let mut path = self.0.clone();
        path.push(segment.into());
        Self(path)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// One thing wrong with the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    path: FieldPath,
    message: String,
    /// The message is a sentence that names the field itself ("apiVersion
    /// is ..."), so it is shown without the path in front.
    names_its_field: bool,
}

impl Problem {
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The text operators have always seen: the path's fields joined by `": "`
/// in front of the message, e.g. `plugins[1]: limits: timeout: ...`.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.names_its_field {
            for segment in &self.path.0 {
                write!(f, "{segment}: ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// The problems found so far, in the order they were found.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records `message` (an error is shown with its whole cause chain).
    pub fn push(&mut self, path: &FieldPath, message: impl fmt::Display) {
        self.0.push(Problem {
            path: path.clone(),
            message: format!("{message:#}"),
            names_its_field: false,
        });
    }

    /// Records a sentence that already names its field.
    pub fn push_sentence(&mut self, path: &FieldPath, sentence: impl Into<String>) {
        self.0.push(Problem {
            path: path.clone(),
            message: sentence.into(),
            names_its_field: true,
        });
    }

    /// The value of `result`, or `None` after recording its error at `path`.
    pub fn check<T>(&mut self, path: &FieldPath, result: anyhow::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(path, format!("{e:#}"))).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many were recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `value` if nothing was recorded, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// Why a config text is not a valid host config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not YAML of the expected shape (syntax, unknown or missing field,
    /// duplicate key); the parser stops at the first, naming its line.
    Syntax(String),
    /// Well-formed, but with these problems (never empty), in file order.
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems found after parsing; empty for a syntax error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Syntax(_) => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(text) => f.write_str(text),
            ConfigError::Invalid(problems) => {
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_show_their_path_both_ways() {
        let mut problems = Problems::default();
        let limits = FieldPath::root().at("plugins[0]").at("limits");
        problems.push(&limits.at("timeout"), "too long");
        problems.push_sentence(&FieldPath::root().at("kind"), "kind is \"Foo\"");
        let err = problems.into_result(()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugins[0]: limits: timeout: too long; kind is \"Foo\""
        );
        assert_eq!(
            err.problems()[0].path().to_string(),
            "plugins[0].limits.timeout"
        );
        assert_eq!(err.problems()[1].path().to_string(), "kind");
    }
}
