//! Links the binary as a non-PIE executable: the kubelet execs it as a
//! fresh process for every cache miss, and a PIE of this size spends a
//! measurable part of its start-up applying relative relocations.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
