//! What a plugin's store holds: WASI and wasi:http state, the plugin's own
//! config values, its limits, and the sink for its log output.

use super::guest_log::GuestLog;
use super::limiter::CallLimiter;
use super::outbound::OutboundHooks;
use std::collections::BTreeMap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The `T` of `Store<T>` for one plugin call.
pub struct PluginState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: OutboundHooks,
    pub limits: CallLimiter,
    pub config: BTreeMap<String, String>,
    pub log: GuestLog,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What the provider imports of every API version do, version-free; each
/// `wit/since_*.rs` forwards its generated `Host` methods here.
impl PluginState {
    /// A config value the plugin declared and the operator set.
    pub fn config_value(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    /// The keys of those values.
    pub fn config_keys(&self) -> Vec<String> {
        self.config.keys().cloned().collect()
    }

    /// One line of the plugin's own log, prefixed, capped and redacted.
    pub fn plugin_log(&mut self, level: tracing::Level, message: &str) {
        self.log.emit(level, "log", message);
    }
}
