//! `check`: whether a kubelet `CredentialProviderConfig` and a host config
//! agree, reported all at once, each finding with its file, its field and
//! the fix.
//!
//! The failures users of every credential provider report most are the
//! silent ones: the kubelet never execs the provider for an image (a
//! `matchImages` that does not cover it), never sends the token (no
//! `tokenAttributes`), or drops an annotation it was not told about, and
//! the pull goes anonymous. None of these is an error either program can
//! see alone; they are visible only when both files are read together.
//!
//! Pure: the host reads the files, the modules and the bin dir and hands
//! in what it found ([`PluginFacts`], [`BinDir`]); this module decides.
//! * [`kubelet_config`]: the kubelet's own decoding and validation;
//! * [`pairing`]: the provider entry running this host against the
//!   host config's plugins;
//! * [`locate`]: field path to line, for the report.

pub mod kubelet_config;
pub mod locate;
pub mod pairing;

pub use kubelet_config::{BinDir, CredentialProviderConfig};
pub use pairing::PluginFacts;

use std::fmt;

/// How bad a finding is: an error breaks pulls or is refused by the
/// kubelet; a warning is a likely mistake that still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Which of the two files a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    /// The kubelet's `CredentialProviderConfig`.
    Kubelet,
    /// The host config.
    Host,
}

/// One thing wrong, where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub file: File,
    /// The field, e.g. `providers[0].tokenAttributes.cacheType`; empty for
    /// the whole file.
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// The findings so far, in the order they were found.
#[derive(Debug, Default)]
pub struct Findings(Vec<Finding>);

impl Findings {
    pub fn error(
        &mut self,
        file: File,
        path: impl fmt::Display,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Error, file, path, message, fix);
    }

    pub fn warning(
        &mut self,
        file: File,
        path: impl fmt::Display,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Warning, file, path, message, fix);
    }

    fn push(
        &mut self,
        severity: Severity,
        file: File,
        path: impl fmt::Display,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            severity,
            file,
            path: path.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn as_slice(&self) -> &[Finding] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.0
    }
}
