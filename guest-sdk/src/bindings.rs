//! Raw bindings generated from the WIT contract (`wit/since_v0.1.0`, world
//! `plugin`), including the `wasi:http`, `wasi:io`, `wasi:clocks`,
//! `wasi:random` and `wasi:cli` interfaces the world imports.
//!
//! Most providers never need this module: the crate root, [`crate::config`],
//! [`crate::log`] and [`crate::http`] wrap it. It is public so that a provider
//! can reach an interface the SDK does not wrap (for example
//! `wasi::http::types::RequestOptions` for transport timeouts).
//!
//! The generated `Debug` impls of the raw `Request` and `AuthEntry` print
//! the service-account token and the password; log the SDK's own types
//! instead, whose `Debug` redacts them.

wit_bindgen::generate!({
    world: "plugin",
    path: "wit/since_v0.1.0",
    // The world imports wasi:http and its dependencies; without this,
    // wit-bindgen asks for a `with` mapping for every foreign interface.
    generate_all,
    // Providers export through `wcp_guest_sdk::export_provider!`, which
    // expands to this macro in the provider's crate, so it must be public.
    pub_export_macro: true,
    export_macro_name: "__export_plugin",
    default_bindings_module: "wcp_guest_sdk::bindings",
});
