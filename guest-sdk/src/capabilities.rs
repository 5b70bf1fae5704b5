//! Declaring what a provider needs.
//!
//! The host enforces two locks: a capability works only if the component
//! *declares* it and the operator *grants* it. The declaration is a JSON
//! file beside the plugin, embedded at build time into a custom section
//! named `wcp-capabilities` that the host and `inspect` read without
//! running the component:
//!
//! ```json
//! {
//!   "outbound": ["https://sts.amazonaws.com", "https://*.amazonaws.com", "config:stsEndpoint"],
//!   "config": ["roleArn", "stsEndpoint"],
//!   "env": ["AWS_REGION"],
//!   "serviceAccountToken": true
//! }
//! ```
//!
//! * `outbound`: `scheme://host[:port]` destinations (a leading `*.` matches
//!   one or more labels, never the bare domain; no IP addresses), or
//!   `config:<key>` for "wherever the operator points that config value".
//! * `config`: the config keys the plugin reads; others are withheld.
//! * `env`: environment variable names the plugin reads.
//! * `serviceAccountToken`: whether the plugin needs the pod's token.
//!
//! Anything not declared is denied, whatever the operator grants. Names
//! must be well formed or the host refuses the component: config keys are
//! letters, digits, `_`, `.` and `-` (not starting with `.` or `-`), env names
//! `[A-Za-z_][A-Za-z0-9_]*`, each at most 128 bytes, at most 64 per list.

/// Embeds a capability declaration (a path relative to the plugin crate's
/// `Cargo.toml`) into the component. Use it once per plugin:
///
/// ```ignore
/// wcp_guest_sdk::declare_capabilities!("capabilities.json");
/// ```
#[macro_export]
macro_rules! declare_capabilities {
    ($path:literal) => {
        const _: () = {
            const DECLARATION: &[u8] =
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
            #[used]
            #[unsafe(link_section = "wcp-capabilities")]
            static WCP_CAPABILITIES: [u8; DECLARATION.len()] = {
                let mut out = [0u8; DECLARATION.len()];
                let mut i = 0;
                while i < DECLARATION.len() {
                    out[i] = DECLARATION[i];
                    i += 1;
                }
                out
            };
        };
    };
}
