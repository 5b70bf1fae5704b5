//! `compile`: precompile every configured plugin at install time, so that
//! even the first kubelet exec loads native code instead of compiling.

use crate::artifact::ArtifactStore;
use crate::cache::CacheStore;
use crate::{module, runtime};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use wcp_core::config::HostConfig;

pub fn run(config: &Path) -> Result<()> {
    let config = HostConfig::load(config)?;
    let cache = CacheStore::open(&config.cache_directory, config.cache_max_entries)?;
    let engine = runtime::engine::new()?;
    let store = ArtifactStore::open(cache.dir(), cache.uid(), &engine)?;
    for plugin in &config.plugins {
        let module = module::load(plugin)?;
        match store.load(&engine, &module.sha256) {
            Ok(Some(_)) => {
                println!("{}: up to date ({})", plugin.name, module.sha256);
                continue;
            }
            Ok(None) => {}
            Err(e) => println!("{}: replacing unusable artifact: {e:#}", plugin.name),
        }
        let started = Instant::now();
        let code = engine
            .precompile_component(&module.bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {:?}: cannot compile {}",
                    plugin.name,
                    plugin.module.display()
                )
            })?;
        store
            .store(&module.sha256, &code)
            .with_context(|| format!("plugin {:?}: cannot store the artifact", plugin.name))?;
        println!(
            "{}: compiled {} ({} bytes of wasm -> {} bytes) in {:.0} ms",
            plugin.name,
            module.sha256,
            module.bytes.len(),
            code.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
