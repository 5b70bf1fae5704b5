//! Panics; with `panic = "abort"` that is a wasm trap.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};

struct Trap;

impl Provider for Trap {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        panic!("hostile component panicking on {}", request.image);
    }
}

wcp_guest_sdk::export_provider!(Trap);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
