//! Declares a config key that clears the screen and an env name that sets
//! the terminal's title. The host must refuse the component with one clear
//! line before running it, and `inspect` must not print the names raw. If
//! it ever runs, it says so.
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
wcp_guest_sdk::declare_capabilities!("capabilities.json");
