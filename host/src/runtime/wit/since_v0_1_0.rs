//! Everything specific to `wcp:credential-provider@0.1.0`
//! (`wit/since_v0.1.0`): its bindings, its provider imports on the linker,
//! the `Host` impls that forward to version-free [`PluginState`] methods,
//! and the conversions from and to the version-free request and reply.
//! Nothing outside `runtime/wit/` names these types.

use super::{PluginRequest, Reply};
use crate::runtime::state::PluginState;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Result, Store};

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

use exports::wcp::credential_provider::provider as export;
use wcp::credential_provider as wit;

/// The package version, as the component's export names it.
pub const VERSION: &str = "0.1.0";

/// Adds this version's provider imports (`types`, `config`, `log`); WASI
/// and wasi:http are version-free and linked by the runtime.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    wit::types::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::config::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::log::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

pub async fn get_credentials(
    plugin: &Plugin,
    store: &mut Store<PluginState>,
    request: &PluginRequest<'_>,
) -> Result<Reply> {
    let request = export::Request {
        image: request.image.to_string(),
        service_account_token: request.service_account_token.map(str::to_string),
        service_account_annotations: request
            .service_account_annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let returned = plugin
        .wcp_credential_provider_provider()
        .call_get_credentials(store, &request)
        .await?;
    Ok(returned.map(answer).map_err(refusal))
}

// This version's answer and error types have the latest shape.
super::latest_shape_conversions!();

impl wit::types::Host for PluginState {}

impl wit::config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config_value(&key)
    }

    fn keys(&mut self) -> Vec<String> {
        self.config_keys()
    }
}

impl wit::log::Host for PluginState {
    fn log(&mut self, level: wit::log::Level, message: String) {
        use wit::log::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.plugin_log(level, &message);
    }
}
