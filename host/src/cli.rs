//! The runtime's command line (`wasm-credential-provider-runtime`, which
//! the front hands everything but a cache hit to): serve one kubelet
//! request, or one of the operator's subcommands.

use crate::*;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "wasm-credential-provider",
    version,
    about = "Kubelet image credential provider that runs vendor logic as sandboxed WebAssembly components",
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Host config (YAML, kind CredentialProviderHostConfig). With no
    /// subcommand: serve one kubelet request from stdin.
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value, parsed once per process"
)]
enum Command {
    /// Show what a component is, what it declares and imports, and (with
    /// --config) what it was granted and where the two differ. Does not run it.
    Inspect {
        /// The plugin's .wasm file.
        wasm: PathBuf,
        /// A host config whose plugins use this file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: inspect::Output,
    },
    /// Precompile every plugin of the host config given with --config into
    /// the cache directory. Run it at install time: an exec that finds no
    /// artifact compiles in the background and fails if that does not finish
    /// within the plugin's timeout.
    Compile {
        /// Only this plugin.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// End the process after this many seconds (the bound of an exec's
        /// background compile).
        #[arg(long, value_name = "SECONDS", hide = true)]
        time_limit: Option<u64>,
    },
    /// Run one kubelet request through the host config given with
    /// --config, always calling the plugin (the credential cache is
    /// bypassed), and print what the kubelet would get plus every outbound
    /// request the plugin made. Passwords are masked unless --show-secrets.
    Run {
        /// The CredentialProviderRequest (JSON); stdin if not given.
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
        /// Print passwords in the response instead of masking them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Fetch a plugin published as a Wasm OCI artifact, check every digest
    /// (and with --plugin its pinned source and signature), and write it
    /// with its pull record. Install-time only.
    #[cfg(feature = "oci")]
    Pull(oci::PullArgs),
    /// Publish a component as a Wasm OCI artifact; prints the manifest
    /// digest to pin.
    #[cfg(feature = "oci")]
    Push {
        /// The component's .wasm file.
        wasm: PathBuf,
        /// oci://<registry>/<repository>:<tag>
        reference: String,
        #[command(flatten)]
        registry: oci::RegistryArgs,
    },
    /// Check a kubelet CredentialProviderConfig and a host config against
    /// each other (and the plugins, bin dir and precompiled artifacts they
    /// name): every problem at once, each with file, line and the fix.
    /// Fails when there is an error.
    Check {
        /// The kubelet's --image-credential-provider-config file.
        #[arg(long, value_name = "FILE")]
        kubelet_config: PathBuf,
        /// The host config the provider entry runs.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The kubelet's --image-credential-provider-bin-dir: check that
        /// every provider's executable is there.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Where the node's root filesystem is (an installer's mount):
        /// absolute paths inside both files are read below it.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
    /// Install on a node (below --root): the exec binary and the compiler
    /// in the kubelet's bin dir, the plugins and host config, the provider
    /// entry merged into the kubelet config, precompiled artifacts; then
    /// check, and print the kubelet flags. Idempotent; --dry-run shows the
    /// changes; a file changed since it was installed needs --force.
    Install(install::Options),
    /// The credential cache of the host config given with --config.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(clap::Subcommand)]
enum CacheAction {
    /// List entries: plugin, key kind, registry, service account, expiry. Never secrets.
    List,
    /// Remove entries, of one plugin or all.
    Purge {
        #[arg(long)]
        plugin: Option<String>,
    },
}

/// Runs the command line given to this process.
/// The runtime's `main`: its exit status. The binary has no Rust runtime
/// start (`crate::process_start` says why).
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    crate::process_start::run(args, run)
}

fn run(args: Vec<std::ffi::OsString>) -> u8 {
    let started = budget::start();
    // The kubelet's command line, `--config FILE` alone, is most execs:
    // it is read without building the whole command tree (clap's parser
    // costs more than the config itself). `front::serve_config` takes
    // only lines the parser would read as this; the rest go to the parser.
    if let Some(config) = crate::front::serve_config(&args) {
        logging::init();
        return finish(started, serve::serve(&config));
    }
    let cli = Cli::parse_from(args);
    logging::init();
    let result = match (cli.command, cli.config) {
        (
            Some(Command::Inspect {
                wasm,
                config,
                output,
            }),
            _,
        ) => inspect::run(&wasm, config.as_deref(), output),
        #[cfg(feature = "oci")]
        (Some(Command::Pull(args)), config) => oci::pull(&args, config.as_deref()),
        #[cfg(feature = "oci")]
        (
            Some(Command::Push {
                wasm,
                reference,
                registry,
            }),
            _,
        ) => oci::push(&wasm, &reference, &registry),
        (
            Some(Command::Check {
                kubelet_config,
                config,
                bin_dir,
                root,
            }),
            _,
        ) => check_cli::run(&check_cli::Inputs {
            kubelet_config: &kubelet_config,
            host_config: &config,
            bin_dir: bin_dir.as_deref(),
            root: &root,
        }),
        (Some(Command::Install(options)), _) => install::run(&options),
        (Some(Command::Cache { .. } | Command::Compile { .. } | Command::Run { .. }), None) => {
            Err(anyhow::anyhow!("this command needs --config <FILE>"))
        }
        (Some(Command::Compile { plugin, time_limit }), Some(config)) => compile_cli::run(
            &config,
            plugin.as_deref(),
            time_limit.map(std::time::Duration::from_secs),
        ),
        (
            Some(Command::Cache {
                action: CacheAction::List,
            }),
            Some(config),
        ) => cache_cli::list(&config),
        (
            Some(Command::Cache {
                action: CacheAction::Purge { plugin },
            }),
            Some(config),
        ) => cache_cli::purge(&config, plugin.as_deref()),
        (
            Some(Command::Run {
                request,
                show_secrets,
            }),
            Some(config),
        ) => run_cli::run(&config, request.as_deref(), show_secrets),
        (None, Some(config)) => serve::serve(&config),
        (None, None) => unreachable!("clap requires --config without a subcommand"),
    };
    finish(started, result)
}

/// Reports the exec's end: its total time, and its error as one line.
fn finish(started: std::time::Instant, result: anyhow::Result<()>) -> u8 {
    tracing::debug!(total_us = started.elapsed().as_micros() as u64, "done");
    match result {
        Ok(()) => crate::process_start::SUCCESS,
        Err(err) => {
            logging::report_failure(&err);
            crate::process_start::FAILURE
        }
    }
}
