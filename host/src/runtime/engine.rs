//! The wasmtime engine, configured for one short-lived instance per process.

use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy};

/// The engine settings below, as text: part of the name of precompiled
/// artifacts, so that changing a setting invalidates them.
pub const SETTINGS: &str = "component-model,epoch-interruption,on-demand,max-wasm-stack=512KiB";

/// Builds the engine. On-demand allocation (not pooling: one instance per
/// process gains nothing from a pool and pools reserve huge address ranges);
/// epoch interruption so a spinning guest can be stopped at its deadline.
pub fn new() -> Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .max_wasm_stack(512 * 1024);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the WebAssembly engine")
}
