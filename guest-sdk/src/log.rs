//! Logging into the host's log. The host prefixes each line with the
//! plugin's name, writes it to stderr (stdout carries the kubelet protocol)
//! and caps the volume, so log freely but never log a secret.
//!
//! ```no_run
//! use wcp_guest_sdk::log;
//!
//! let registry = "registry.io";
//! log::info!("exchanging the token for {registry}");
//! log::warn!("token expires in {} s", 30);
//! log::log(log::Level::Debug, "a plain message");
//! ```

pub use crate::bindings::wcp::credential_provider::log::Level;

/// Writes one message at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    return crate::testing::log(level, message);
    #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
    crate::bindings::wcp::credential_provider::log::log(level, message);
}

/// Logs a `format!`-style message at `trace` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __wcp_log_trace {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `debug` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __wcp_log_debug {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `info` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __wcp_log_info {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `warn` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __wcp_log_warn {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `error` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __wcp_log_error {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+)) };
}

// `#[macro_export]` puts macros at the crate root; these re-exports give
// them their `log::info!` paths.
#[doc(inline)]
pub use crate::{
    __wcp_log_debug as debug, __wcp_log_error as error, __wcp_log_info as info,
    __wcp_log_trace as trace, __wcp_log_warn as warn,
};
