//! The kubelet's service-account token: handed to the plugin only if it
//! declares `serviceAccountToken` and the operator grants
//! `grants.serviceAccountToken: true`.

use super::Differences;

/// The declared and the granted flag together.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenPermission {
    declared: bool,
    granted: bool,
}

impl TokenPermission {
    pub(super) fn new(declared: bool, granted: bool) -> Self {
        Self { declared, granted }
    }

    /// Whether the plugin receives the token.
    pub fn allowed(&self) -> bool {
        self.declared && self.granted
    }

    pub fn declared(&self) -> bool {
        self.declared
    }

    pub fn granted(&self) -> bool {
        self.granted
    }

    pub(super) fn differences(&self, out: &mut Differences) {
        match (self.declared, self.granted) {
            (true, false) => out.declared_not_granted.push("serviceAccountToken".into()),
            (false, true) => out.granted_not_declared.push("serviceAccountToken".into()),
            _ => {}
        }
    }
}
