//! The host's code, shared by its two kubelet-facing binaries (see
//! `src/front.rs` and `src/main.rs`): the small front the kubelet execs,
//! which answers cache hits without WebAssembly, TLS, an async runtime or
//! YAML, and the runtime it hands every other request to.

mod artifact;
mod audit;
mod budget;
mod cache;
mod cache_cli;
mod check_cli;
pub mod cli;
mod compile_cli;
mod config_file;
mod config_snapshot;
mod declaration_section;
mod events;
mod exec;
pub mod front;
pub mod heap;
mod imports;
mod inspect;
mod install;
mod invoke;
mod logging;
mod metrics;
mod module;
#[cfg(feature = "oci")]
mod oci;
mod page_cache;
mod process_start;
/// For `c_main!`, which the binaries expand: not an API.
#[doc(hidden)]
pub use process_start::command_line as __command_line;
mod run_cli;
mod runtime;
mod sandbox;
mod secrets;
mod serve;
#[cfg(feature = "compiler")]
mod signature;
mod stamp;
mod startup_extent;
mod tls;
mod trust;
mod trust_roots;
