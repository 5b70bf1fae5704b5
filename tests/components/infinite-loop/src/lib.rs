//! Spins forever: the host must interrupt it at its deadline.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};

struct Spin;

impl Provider for Spin {
    fn get_credentials(_: Request) -> Result<Credentials, ProviderError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

wcp_guest_sdk::export_provider!(Spin);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
