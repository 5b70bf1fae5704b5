//! Getting a `Component` for a verified module: from the host's own
//! precompiled artifact when there is a valid one, else by compiling (and
//! storing the artifact for the next exec).

use crate::artifact::{ArtifactStore, Provenance};
use crate::cache::CacheStore;
use crate::module::VerifiedModule;
use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The component for `module`, and how it was obtained.
pub fn component(
    engine: &Engine,
    module: &VerifiedModule,
    cache: Option<&CacheStore>,
) -> Result<(Component, Provenance)> {
    let store = match cache.map(|c| ArtifactStore::open(c.dir(), c.uid(), engine)) {
        None => {
            return compile(
                engine,
                module,
                None,
                Provenance::Uncached("no cache directory".into()),
            );
        }
        Some(Err(e)) => {
            let why = format!("{e:#}");
            return compile(engine, module, None, Provenance::Uncached(why));
        }
        Some(Ok(store)) => store,
    };
    match store.load(engine, &module.sha256) {
        Ok(Some(component)) => Ok((component, Provenance::Loaded)),
        Ok(None) => compile(engine, module, Some(&store), Provenance::Compiled),
        Err(e) => {
            tracing::info!(sha256 = %module.sha256, "refusing precompiled artifact: {e:#}");
            compile(
                engine,
                module,
                Some(&store),
                Provenance::Recompiled(format!("{e:#}")),
            )
        }
    }
}

fn compile(
    engine: &Engine,
    module: &VerifiedModule,
    store: Option<&ArtifactStore>,
    provenance: Provenance,
) -> Result<(Component, Provenance)> {
    let code = engine
        .precompile_component(&module.bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile module")?;
    if let Some(store) = store
        && let Err(e) = store.store(&module.sha256, &code)
    {
        tracing::info!(sha256 = %module.sha256, "could not store the precompiled artifact: {e:#}");
    }
    // SAFETY: `code` was produced a moment ago by this engine in this
    // process, from a module whose digest was verified.
    let component = unsafe { Component::deserialize(engine, &code) }
        .map_err(anyhow::Error::from)
        .context("cannot load the compiled module")?;
    Ok((component, provenance))
}
