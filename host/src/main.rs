//! `wasm-credential-provider`: the binary the kubelet execs as an image
//! credential provider. It reads one `CredentialProviderRequest` on stdin,
//! runs the configured WebAssembly provider in a sandbox and writes one
//! `CredentialProviderResponse` on stdout.
//!
//! Contract with the kubelet: stdout carries exactly one JSON response or
//! nothing; every diagnostic goes to stderr; any failure exits non-zero with
//! one line on stderr.

mod audit;
mod logging;
mod manifest;
mod module;
mod runtime;
mod sandbox;
mod serve;
mod tls;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "wasm-credential-provider",
    version,
    about = "Kubelet image credential provider that runs vendor logic as sandboxed WebAssembly components"
)]
struct Cli {
    /// Host config (YAML, kind CredentialProviderHostConfig).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    match serve::serve(&cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::report_failure(&err);
            ExitCode::FAILURE
        }
    }
}
