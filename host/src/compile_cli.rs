//! `compile`: precompile every configured plugin at install time, so that
//! even the first kubelet exec loads native code instead of compiling.

use anyhow::Result;
use std::path::Path;
#[cfg(feature = "compiler")]
use {
    crate::artifact::ArtifactStore,
    crate::cache::CacheStore,
    crate::{module, runtime},
    anyhow::Context,
    std::time::Instant,
    wcp_core::config::HostConfig,
};

#[cfg(not(feature = "compiler"))]
pub fn run(_config: &Path) -> Result<()> {
    anyhow::bail!(
        "this runtime-only build has no compiler: run `wasm-credential-provider-compile --config <file> compile`"
    )
}

#[cfg(feature = "compiler")]
pub fn run(config: &Path) -> Result<()> {
    let config = HostConfig::load(config)?;
    let cache = CacheStore::open(&config.cache_directory, config.cache_max_entries)?;
    let engine = runtime::engine::new()?;
    let store = ArtifactStore::open(cache.dir(), cache.uid())?;
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
