//! Links the runtime as a non-PIE executable: the kubelet execs it as a
//! fresh process for every cache miss, and a PIE of its size (megabytes of
//! wasmtime) spends a measurable part of its start-up applying relative
//! relocations. The front stays position-independent, keeping ASLR for the
//! binary that reads every cached credential. This is for glibc builds
//! (`cargo build`); the node's static musl builds get the same shapes from
//! `scripts/build-node` (`-C relocation-model=static` for the runtime, the
//! target's default static PIE for the front).

fn main() {
    // `scripts/build-node` links the node's binaries with these scripts
    // (`-Wl,-T`); Cargo does not track files named in link arguments, so
    // without this a changed script would not relink them.
    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-changed=startup-extent.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bin=wasm-credential-provider-runtime=-no-pie");
    }
}
