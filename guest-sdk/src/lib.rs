//! Write a kubelet credential provider as a WebAssembly component for
//! wasm-credential-provider.
//!
//! A provider implements [`Provider`] and exports it with
//! [`export_provider!`]; the crate is built as a `cdylib` for
//! `wasm32-wasip2`. The host gives the component nothing but what the
//! `plugin` world imports: its own [`config`] values, a [`log`], outgoing
//! [`http`] to the destinations the operator granted, clocks, randomness
//! and the environment variables the operator granted.
//!
//! ```no_run
//! use wcp_guest_sdk::{config, image, Credentials, Provider, ProviderError, Request};
//!
//! struct Static;
//!
//! impl Provider for Static {
//!     fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
//!         let registry = image::registry_of(&request.image);
//!         Ok(Credentials::registry(registry, config::require("username")?, config::require("password")?))
//!     }
//! }
//!
//! wcp_guest_sdk::export_provider!(Static);
//! # const __WCP_CAPABILITIES: &[u8] = b"{}";
//! # fn main() {}
//! ```
//!
//! The helpers that do not touch the host ([`image`], [`jwt`],
//! [`basic_auth`], [`http::form_urlencode`], [`http::oauth`]'s parsers) also
//! work natively. With the `testing` feature, `testing::Harness` runs a
//! whole provider natively (config map, scripted HTTP exchanges, collected
//! log), so a plugin unit-tests its flow with a plain `cargo test`; outside
//! a harness run, everything that calls the host panics in a native build.
//!
//! A plugin declares what it needs with [`declare_capabilities!`], which
//! checks `capabilities.json` at compile time; [`export_provider!`] does not
//! compile without it. Invoke both at the crate root.

pub mod basic_auth;
pub mod bindings;
pub mod capabilities;
pub mod config;
mod export;
pub mod http;
pub mod identity_policy;
pub mod image;
pub mod jwt;
pub mod log;
mod provider;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
pub mod upstream_text;

#[doc(hidden)]
pub use export::{Declared, Export};
pub use provider::{
    AuthEntry, CacheKeyType, Credentials, Provider, ProviderError, Request, unix_now,
};
