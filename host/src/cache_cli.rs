//! `cache list` and `cache purge`: what the cache holds (never a secret)
//! and a way to drop it, e.g. after rotating a robot password.

use crate::cache::CacheStore;
use crate::serve::unix_now;
use anyhow::{Context, Result};
use std::path::Path;

/// Prints one line per entry: plugin, key kind, registry, identity, expiry.
pub fn list(config: &Path) -> Result<()> {
    let config = crate::config_file::load(config)?;
    let store = CacheStore::open(&config.cache_directory, config.cache_max_entries)?;
    let now = unix_now();
    println!(
        "{:<20} {:<9} {:<40} {:<28} {:>12}  AUTH KEYS",
        "PLUGIN", "KEY KIND", "REGISTRY", "SERVICE ACCOUNT", "EXPIRES IN"
    );
    for entry in store.entries().context("cannot list the cache")? {
        let expires = match entry.remaining(now) {
            Some(secs) => wcp_core::duration::format_go_seconds(secs),
            None => "expired".into(),
        };
        // Entries hold what a plugin answered and a kubelet sent: escape
        // control and bidi characters before they reach a terminal.
        let esc = |text: &str| wcp_core::escape::escape_controls(text).into_owned();
        println!(
            "{:<20} {:<9} {:<40} {:<28} {:>12}  {}",
            esc(&entry.plugin),
            format!("{:?}", entry.key_kind),
            esc(&entry.registry),
            esc(entry.service_account.as_deref().unwrap_or("-")),
            expires,
            esc(&entry.auth.keys().cloned().collect::<Vec<_>>().join(","))
        );
    }
    Ok(())
}

/// Removes the entries of `plugin`, or all.
pub fn purge(config: &Path, plugin: Option<&str>) -> Result<()> {
    let config = crate::config_file::load(config)?;
    let store = CacheStore::open(&config.cache_directory, config.cache_max_entries)?;
    let removed = store.purge(plugin).context("cannot purge the cache")?;
    println!("removed {removed} cache entries");
    Ok(())
}
