//! Links the runtime as a non-PIE executable: the kubelet execs it as a
//! fresh process for every cache miss, and a PIE of its size (megabytes of
//! wasmtime) spends a measurable part of its start-up applying relative
//! relocations. The front stays position-independent, keeping ASLR for the
//! binary that reads every cached credential; `scripts/build-node` links it
//! as a static PIE.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bin=wasm-credential-provider-runtime=-no-pie");
    }
}
