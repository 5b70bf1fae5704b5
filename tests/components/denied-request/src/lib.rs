//! Sends `method` (`GET` or `POST`) to the URL in config `target`, with a
//! body of `bodyBytes` bytes (streamed in several writes when large), and
//! fails with a message naming the `HttpError` kind the SDK returned, so
//! that a test can tell a denial from a transport error whatever the method
//! and body.
use wcp_guest_sdk::http::{self, HttpError, Method};
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, image};

struct Denied;

impl Provider for Denied {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let target = config::require("target")?;
        let method = match config::get("method").as_deref() {
            Some("POST") => Method::Post,
            _ => Method::Get,
        };
        let body_bytes = config::get("bodyBytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut outgoing = http::Request::new(method, &target);
        if body_bytes > 0 {
            outgoing = outgoing
                .header("content-type", "application/octet-stream")
                .body(vec![b'x'; body_bytes]);
        }
        match outgoing.send() {
            Ok(response) => Ok(Credentials::registry(
                image::registry_of(&request.image),
                "probe",
                response.status.to_string(),
            )),
            Err(HttpError::Denied(m)) => Err(ProviderError::Config(format!(
                "the SDK returned HttpError::Denied: {m}"
            ))),
            Err(other) => Err(ProviderError::Upstream(format!(
                "the SDK returned another error: {other:?}"
            ))),
        }
    }
}

wcp_guest_sdk::export_provider!(Denied);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
