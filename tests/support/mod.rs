//! Test support: a kubelet stand-in that execs the host exactly as the
//! kubelet does, and a checker that applies the kubelet's strict decoding
//! rules to what the host printed.

#![allow(dead_code)]

pub mod exchanges;
pub mod kubelet;
pub mod server;
pub mod sigv4;
pub mod strict;
pub mod tokens;
pub mod vault;
pub mod workspace;
