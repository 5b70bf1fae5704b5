//! Recurses without bound: the host must turn the stack overflow into a
//! clear error.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};

struct Recurse;

#[inline(never)]
#[allow(unconditional_recursion, reason = "the point of this component")]
fn descend(depth: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    descend(depth + 1, pad) + pad[(depth % 16) as usize]
}

impl Provider for Recurse {
    fn get_credentials(_: Request) -> Result<Credentials, ProviderError> {
        let n = descend(0, [1; 16]);
        Err(ProviderError::Upstream(format!("unreachable {n}")))
    }
}

wcp_guest_sdk::export_provider!(Recurse);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
