//! Host bindings of the provider world, one module per supported API
//! version. A new `wit/since_vX.Y.Z` directory gets a sibling module here;
//! old versions stay so that components built against them keep working.

/// `wcp:credential-provider@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "wcp:credential-provider/plugin",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        },
    });

    /// The provider interface's export name without its version.
    pub const EXPORT_PREFIX: &str = "wcp:credential-provider/provider@";
}

use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

/// API versions of the provider world this host runs, as `major.minor`.
pub const SUPPORTED: &[&str] = &["0.1"];

/// Checks that `component` targets a provider world this host supports, so
/// that a wrong component fails with a clear line instead of a linker error.
pub fn check_world(engine: &Engine, component: &Component) -> Result<()> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(version) = exports
        .iter()
        .find_map(|name| name.strip_prefix(v0_1::EXPORT_PREFIX))
    else {
        bail!(
            "component does not export wcp:credential-provider/provider (it exports: [{}]); \
             it was not built against this host's provider world",
            exports.join(", ")
        );
    };
    let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    if !SUPPORTED.contains(&major_minor.as_str()) {
        bail!(
            "component targets wcp:credential-provider@{version}, but this host supports only {}",
            SUPPORTED
                .iter()
                .map(|v| format!("{v}.x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
