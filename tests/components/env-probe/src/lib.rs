//! Looks at the whole environment. It declared only `GRANTED_AND_DECLARED`;
//! anything else it can see is a leak, returned as the "password" so the
//! test sees it. Seeing only what it may see, it fails on purpose.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, image};

struct EnvProbe;

impl Provider for EnvProbe {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let leaked: Vec<String> = std::env::vars()
            .filter(|(k, _)| k != "GRANTED_AND_DECLARED")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if leaked.is_empty() {
            let seen = std::env::var("GRANTED_AND_DECLARED").unwrap_or_else(|_| "<unset>".into());
            return Err(ProviderError::Config(format!(
                "env probe found no ungranted variables (GRANTED_AND_DECLARED={seen})"
            )));
        }
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "leak",
            leaked.join(";"),
        ))
    }
}

wcp_guest_sdk::export_provider!(EnvProbe);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
