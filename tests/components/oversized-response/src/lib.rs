//! Returns 8 MiB of "credential": the host must refuse to pass it on.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, image};

struct Oversized;

impl Provider for Oversized {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let password = "x".repeat(8 << 20);
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "user",
            password,
        ))
    }
}

wcp_guest_sdk::export_provider!(Oversized);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
