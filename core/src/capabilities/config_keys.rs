//! Config keys: which operator config values a plugin receives. The plugin
//! declares keys; the operator grants a key by setting it (under `config`,
//! `configFromFile` or `configFromEnv`). A set key the plugin did not
//! declare is withheld from it.

use super::Differences;
use crate::names::check_config_key;
use anyhow::{Context, Result};
use std::collections::BTreeSet;

/// Parses the declaration's `config` list; the first bad key refuses the
/// component.
pub(super) fn parse_declared(keys: Vec<String>) -> Result<BTreeSet<String>> {
    for (i, key) in keys.iter().enumerate() {
        check_config_key(key).with_context(|| format!("config[{i}]"))?;
    }
    Ok(keys.into_iter().collect())
}

/// Declared and set keys together.
#[derive(Debug, Clone, Default)]
pub struct ConfigKeysPermission {
    declared: BTreeSet<String>,
    set: BTreeSet<String>,
}

impl ConfigKeysPermission {
    pub(super) fn new(declared: &BTreeSet<String>, set: &BTreeSet<String>) -> Self {
        Self {
            declared: declared.clone(),
            set: set.clone(),
        }
    }

    /// Whether the plugin receives the value of `key`: declared and set.
    pub fn passes(&self, key: &str) -> bool {
        self.declared.contains(key) && self.set.contains(key)
    }

    pub(super) fn differences(&self, out: &mut Differences) {
        for key in self.declared.difference(&self.set) {
            out.declared_not_granted
                .push(format!("config {key} (not set)"));
        }
        for key in self.set.difference(&self.declared) {
            out.granted_not_declared
                .push(format!("config {key} (set, withheld)"));
        }
    }
}
