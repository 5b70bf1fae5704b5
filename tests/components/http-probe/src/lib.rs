//! Requests the URL in config `target` and, if config `followRedirect` is
//! `true`, follows one redirect itself (the host never follows redirects,
//! so the second hop is checked like any request). Success means the
//! sandbox let it through: it returns what it read as the password.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, http, image};

struct Probe;

impl Provider for Probe {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let target = config::require("target")?;
        let follow = config::get("followRedirect").as_deref() == Some("true");
        let mut response = http::Request::get(&target)
            .max_body_bytes(256 << 20)
            .send()
            .map_err(|e| ProviderError::Upstream(format!("request to target failed: {e}")))?;
        if follow && (300..400).contains(&response.status) {
            let location = response
                .header("location")
                .ok_or_else(|| ProviderError::Upstream("redirect without location".into()))?
                .to_string();
            response = http::Request::get(&location)
                .max_body_bytes(256 << 20)
                .send()
                .map_err(|e| ProviderError::Upstream(format!("redirected request failed: {e}")))?;
        }
        let body = String::from_utf8_lossy(&response.body).into_owned();
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "probe",
            body,
        ))
    }
}

wcp_guest_sdk::export_provider!(Probe);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
