//! The pure core of wasm-credential-provider.
//!
//! Everything here is deterministic and free of wasmtime, so that the parts
//! the kubelet depends on exactly (wire protocol, image matching, config
//! validation) can be tested on their own. The host crate uses this crate;
//! this crate never uses the host.

// Pure logic needs none: the compiler holds this crate to it.
#![forbid(unsafe_code)]

pub mod answer;
pub mod answer_scope;
pub mod cache_entry;
pub mod cache_key;
pub mod cache_policy;
pub mod capabilities;
pub mod check;
pub mod config;
pub mod coverage;
pub mod destination;
pub mod duration;
pub mod escape;
pub mod image;
pub mod install;
pub mod matching;
pub mod names;
pub mod protocol;
pub mod provenance;
pub mod proxy;
pub mod redact;
pub mod sa_token;
pub mod shared_failure;
pub mod token_echo;
