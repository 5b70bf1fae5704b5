//! A plain `wasi:cli/run` command. It is a well-formed component that
//! exports no `wcp:credential-provider/provider`, so the host must refuse it
//! with a clear error instead of failing somewhere inside wasmtime.

fn main() {
    println!("hi");
}
