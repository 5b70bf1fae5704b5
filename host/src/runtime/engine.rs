//! The wasmtime engine, configured for one short-lived instance per process.

use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy};

/// The engine settings below, as text: part of the name of precompiled
/// artifacts, so that changing a setting invalidates them.
pub const SETTINGS: &str = "component-model,epoch-interruption,on-demand,max-wasm-stack=512KiB,no-native-unwind,no-memory-cow";

/// Builds the engine. On-demand allocation (not pooling: one instance per
/// process gains nothing from a pool and pools reserve huge address ranges);
/// epoch interruption so a spinning guest can be stopped at its deadline.
///
/// Two defaults that pay off only for long-lived processes are off, since
/// each exec loads one component once and instantiates it once:
/// - native unwind info: loading it registers every function's frame
///   description with libgcc's unwinder, on each exec. It is only there for
///   native unwinders walking through guest frames; wasmtime's own guest
///   backtraces do not use it, and no host panic unwinds through a guest
///   (release builds abort on panic; wasmtime catches a host function's
///   panic at the boundary).
/// - copy-on-write memory images: wasmtime would build each image to map
///   it into the one instance it will ever have; copying the data
///   segments into that instance's memory directly is less work. Measured
///   when artifacts were loaded from bytes (each image took a new memfd),
///   and again once artifacts were mapped from their file
///   (`crate::artifact`), where images map the file itself: a precompiled
///   miss took 1.62-1.63 ms with images against 1.59-1.65 without, so the
///   setting that keeps artifacts compatible with earlier ones stays.
pub fn new() -> Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .max_wasm_stack(512 * 1024)
        .native_unwind_info(false)
        .memory_init_cow(false);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the WebAssembly engine")
}
