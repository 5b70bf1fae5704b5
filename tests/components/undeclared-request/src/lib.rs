//! Declares only `https://declared.example.com` but requests the URL in
//! config `target`: the declaration lock must stop it even when the
//! operator granted the target.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, http, image};

struct Undeclared;

impl Provider for Undeclared {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let target = config::require("target")?;
        let response = http::Request::get(&target).send().map_err(|e| {
            ProviderError::Upstream(format!("request to undeclared target failed: {e}"))
        })?;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "probe",
            body,
        ))
    }
}

wcp_guest_sdk::export_provider!(Undeclared);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
