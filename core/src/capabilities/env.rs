//! Environment variables: which of the host's variables a plugin sees.
//! The plugin declares names, the operator grants names; the plugin sees
//! the variables in both lists that are set.

use super::Differences;
use crate::config::problems::{FieldPath, Problems};
use crate::names::check_env_name;
use anyhow::{Context, Result};
use std::collections::BTreeSet;

/// Parses the declaration's `env` list; the first bad name refuses the
/// component.
pub(super) fn parse_declared(names: Vec<String>) -> Result<BTreeSet<String>> {
    for (i, name) in names.iter().enumerate() {
        check_env_name(name).with_context(|| format!("env[{i}]"))?;
    }
    Ok(names.into_iter().collect())
}

/// Validates `grants.env`, recording every bad name under `grants`.
pub(super) fn validate_granted(
    names: Vec<String>,
    grants: &FieldPath,
    problems: &mut Problems,
) -> BTreeSet<String> {
    names
        .into_iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let at = grants.at(format!("env[{i}]"));
            problems.check(&at, check_env_name(&name)).map(|()| name)
        })
        .collect()
}

/// Declared and granted variable names together.
#[derive(Debug, Clone, Default)]
pub struct EnvPermission {
    declared: BTreeSet<String>,
    granted: BTreeSet<String>,
}

impl EnvPermission {
    pub(super) fn new(declared: &BTreeSet<String>, granted: &BTreeSet<String>) -> Self {
        Self {
            declared: declared.clone(),
            granted: granted.clone(),
        }
    }

    /// Names the plugin may read: declared and granted.
    pub fn allowed(&self) -> impl Iterator<Item = &String> {
        self.declared.intersection(&self.granted)
    }

    /// Granted names the plugin did not declare (never passed).
    pub fn granted_not_declared(&self) -> impl Iterator<Item = &String> {
        self.granted.difference(&self.declared)
    }

    pub(super) fn differences(&self, out: &mut Differences) {
        for var in self.declared.difference(&self.granted) {
            out.declared_not_granted.push(format!("env {var}"));
        }
        for var in self.granted_not_declared() {
            out.granted_not_declared.push(format!("env {var}"));
        }
    }
}
