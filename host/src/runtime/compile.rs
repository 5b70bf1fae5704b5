//! Getting a `Component` for a verified module: from the host's own
//! precompiled artifact when there is a valid one, else by compiling it (in
//! process, or in a runtime-only build through the separate compiler
//! binary) and storing the artifact for the next exec.

use crate::artifact::{ArtifactStore, Provenance};
use crate::cache::CacheStore;
use crate::module::VerifiedModule;
use anyhow::{Context, Result};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The component for `module`, and how it was obtained. `config_path` is
/// the host config, for a runtime-only build's external compiler.
pub fn component(
    engine: &Engine,
    module: &VerifiedModule,
    cache: Option<&CacheStore>,
    config_path: &Path,
) -> Result<(Component, Provenance)> {
    let store = match cache.map(|c| ArtifactStore::open(c.dir(), c.uid())) {
        None => {
            let why = "no cache directory".to_string();
            return compile(engine, module, None, Provenance::Uncached(why), config_path);
        }
        Some(Err(e)) => {
            let why = format!("{e:#}");
            return compile(engine, module, None, Provenance::Uncached(why), config_path);
        }
        Some(Ok(store)) => store,
    };
    match store.load(engine, &module.sha256) {
        Ok(Some(component)) => Ok((component, Provenance::Loaded)),
        Ok(None) => compile(
            engine,
            module,
            Some(&store),
            Provenance::Compiled,
            config_path,
        ),
        Err(e) => {
            tracing::info!(sha256 = %module.sha256, "refusing precompiled artifact: {e:#}");
            let how = Provenance::Recompiled(format!("{e:#}"));
            compile(engine, module, Some(&store), how, config_path)
        }
    }
}

/// Compiles in process and stores the artifact.
#[cfg(feature = "compiler")]
fn compile(
    engine: &Engine,
    module: &VerifiedModule,
    store: Option<&ArtifactStore>,
    provenance: Provenance,
    _config_path: &Path,
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

/// Runtime-only build: the compiler is a separate binary that writes the
/// artifact with the same host key; load what it wrote.
#[cfg(not(feature = "compiler"))]
fn compile(
    engine: &Engine,
    module: &VerifiedModule,
    store: Option<&ArtifactStore>,
    provenance: Provenance,
    config_path: &Path,
) -> Result<(Component, Provenance)> {
    let Some(store) = store else {
        anyhow::bail!(
            "this runtime-only build loads precompiled plugins from the cache directory, which is unusable ({})",
            provenance.as_str()
        );
    };
    let compiler = std::env::var_os("WCP_COMPILER")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .map(|exe| exe.with_file_name("wasm-credential-provider-compile"))
        })
        .context("cannot locate the compiler binary")?;
    let output = std::process::Command::new(&compiler)
        .arg("--config")
        .arg(config_path)
        .arg("compile")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run the compiler {}", compiler.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the compiler {} failed: {}",
        compiler.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let component = store
        .load(engine, &module.sha256)?
        .context("the compiler wrote no artifact this runtime can load")?;
    Ok((component, provenance))
}
