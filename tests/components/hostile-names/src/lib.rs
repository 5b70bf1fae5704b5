//! Declares a config key that clears the screen and an env name that sets
//! the terminal's title. The host must refuse the component with one clear
//! line before running it, and `inspect` must not print the names raw. If
//! it ever runs, it says so. The SDK's `declare_capabilities!` would refuse
//! these names at build time, so the section is embedded by hand.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};

struct HostileNames;

impl Provider for HostileNames {
    fn get_credentials(_request: Request) -> Result<Credentials, ProviderError> {
        Err(ProviderError::Config(
            "hostile-names ran: its declaration was accepted".into(),
        ))
    }
}

wcp_guest_sdk::export_provider!(HostileNames);

// `declare_capabilities!` refuses these names at compile time, so a hostile
// component embeds its section by hand, as any non-SDK toolchain can.
const __WCP_CAPABILITIES: &[u8] = include_bytes!("../capabilities.json");
#[used]
#[unsafe(link_section = "wcp-capabilities")]
static WCP_CAPABILITIES: [u8; __WCP_CAPABILITIES.len()] = {
    let mut out = [0u8; __WCP_CAPABILITIES.len()];
    let mut i = 0;
    while i < __WCP_CAPABILITIES.len() {
        out[i] = __WCP_CAPABILITIES[i];
        i += 1;
    }
    out
};
