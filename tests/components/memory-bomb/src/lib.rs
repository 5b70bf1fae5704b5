//! Allocates (and touches) memory until it runs out: the host's memory cap
//! must stop it with a clear error.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};

struct Bomb;

impl Provider for Bomb {
    fn get_credentials(_: Request) -> Result<Credentials, ProviderError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

wcp_guest_sdk::export_provider!(Bomb);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
