//! A test-only world version, `wcp:credential-provider@0.99.0`
//! (`tests/components/next-api/wit`), never compiled into the binary. It
//! is the proof that a version is one file like this plus one entry in
//! [`super::ApiVersion`]: its request carries the registry and no
//! annotations, and its config interface has no `keys`; the runtime
//! outside `runtime/wit/` does not change to run it.

use super::{PluginRequest, Reply};
use crate::runtime::state::PluginState;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Result, Store};

wasmtime::component::bindgen!({
    path: "../tests/components/next-api/wit",
    world: "wcp:credential-provider/plugin",
    exports: { default: async },
});

use exports::wcp::credential_provider::provider as export;
use wcp::credential_provider as wit;

pub const VERSION: &str = "0.99.0";

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    wit::types::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::config::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

pub async fn get_credentials(
    plugin: &Plugin,
    store: &mut Store<PluginState>,
    request: &PluginRequest<'_>,
) -> Result<Reply> {
    let request = export::Request {
        image: request.image.to_string(),
        registry: wcp_core::image::registry_of(request.image).to_string(),
        service_account_token: request.service_account_token.map(str::to_string),
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
}
