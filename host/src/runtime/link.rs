//! The linker for one component: only the interfaces it imports.
//!
//! Linking all of WASI p2 and wasi:http defines ~250 functions on every
//! exec (~0.2 ms of a 1.7 ms precompiled call); a provider imports a few
//! dozen of them. What gets linked is decided here from the component's
//! own import list, which the runtime has already checked against
//! `imports::classify` (so nothing unclassified is ever asked for). An
//! import this file does not know how to link makes the linker incomplete
//! and instantiation fails with wasmtime's "missing import" error: a gap
//! here refuses a component, it never widens what one gets.

use super::request_strings;
use super::state::PluginState;
use super::wit::ApiVersion;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use wasmtime::Engine;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{LinkOptions, cli, clocks, filesystem, random, sockets};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
use wasmtime_wasi_io::bindings::wasi::io;

/// `wasi:io` host functions reach only the resource table.
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

type Adder = fn(&mut Linker<PluginState>) -> wasmtime::Result<()>;

/// Every WASI interface the host can link, by unversioned name. The WASI
/// context (`runtime::run_async`) turns sockets and name lookup off and
/// preopens nothing, so linking them gives a component nothing usable;
/// they are linked only because the toolchains' adapters import them.
const WASI: &[(&str, Adder)] = &[
    ("wasi:io/error", |l| {
        io::error::add_to_linker::<_, HasIo>(l, |t| &mut t.table)
    }),
    ("wasi:io/poll", |l| {
        io::poll::add_to_linker::<_, HasIo>(l, |t| &mut t.table)
    }),
    ("wasi:io/streams", |l| {
        io::streams::add_to_linker::<_, HasIo>(l, |t| &mut t.table)
    }),
    ("wasi:clocks/wall-clock", |l| {
        clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, PluginState::clocks)
    }),
    ("wasi:clocks/monotonic-clock", |l| {
        clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, PluginState::clocks)
    }),
    ("wasi:filesystem/types", |l| {
        filesystem::types::add_to_linker::<_, WasiFilesystem>(l, PluginState::filesystem)
    }),
    ("wasi:filesystem/preopens", |l| {
        filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, PluginState::filesystem)
    }),
    ("wasi:random/random", |l| {
        random::random::add_to_linker::<_, WasiRandom>(l, PluginState::random)
    }),
    ("wasi:random/insecure", |l| {
        random::insecure::add_to_linker::<_, WasiRandom>(l, PluginState::random)
    }),
    ("wasi:random/insecure-seed", |l| {
        random::insecure_seed::add_to_linker::<_, WasiRandom>(l, PluginState::random)
    }),
    ("wasi:cli/exit", |l| {
        cli::exit::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/environment", |l| {
        cli::environment::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/stdin", |l| {
        cli::stdin::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/stdout", |l| {
        cli::stdout::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/stderr", |l| {
        cli::stderr::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/terminal-input", |l| {
        cli::terminal_input::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/terminal-output", |l| {
        cli::terminal_output::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/terminal-stdin", |l| {
        cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/terminal-stdout", |l| {
        cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:cli/terminal-stderr", |l| {
        cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, PluginState::cli)
    }),
    ("wasi:sockets/tcp-create-socket", |l| {
        sockets::tcp_create_socket::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
    ("wasi:sockets/instance-network", |l| {
        sockets::instance_network::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
    ("wasi:sockets/network", |l| {
        let options = LinkOptions::default();
        sockets::network::add_to_linker::<_, WasiSockets>(
            l,
            &(&options).into(),
            PluginState::sockets,
        )
    }),
    ("wasi:sockets/ip-name-lookup", |l| {
        sockets::ip_name_lookup::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
    ("wasi:sockets/tcp", |l| {
        sockets::tcp::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
    ("wasi:sockets/udp", |l| {
        sockets::udp::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
    ("wasi:sockets/udp-create-socket", |l| {
        sockets::udp_create_socket::add_to_linker::<_, WasiSockets>(l, PluginState::sockets)
    }),
];

/// The two wasi:http interfaces, linked together (the outgoing handler
/// takes the types' resources) through the outbound hooks.
const HTTP: [&str; 2] = ["wasi:http/types", "wasi:http/outgoing-handler"];

/// The interface part of an import name: `wasi:cli/stdout@0.2.6` ->
/// `wasi:cli/stdout`.
pub fn unversioned(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

/// A linker holding exactly what `imports` (unversioned interface names)
/// needs: the WASI interfaces among them, wasi:http (with the host's
/// bounded request setters) if either of its interfaces is imported, and
/// the provider imports of the component's API version.
pub fn linker(
    engine: &Engine,
    version: ApiVersion,
    imports: &BTreeSet<&str>,
) -> Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    for (name, add) in WASI {
        if imports.contains(name) {
            add(&mut linker)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot link {name}"))?;
        }
    }
    if HTTP.iter().any(|name| imports.contains(name)) {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi:http")?;
        request_strings::bound_setters(&mut linker).context("cannot bound wasi:http requests")?;
    }
    version.add_to_linker(&mut linker).with_context(|| {
        format!(
            "cannot link the provider world {}",
            version.package_version()
        )
    })?;
    Ok(linker)
}

/// Every interface name this file can link (for the classification test).
#[cfg(test)]
pub fn linkable() -> Vec<&'static str> {
    WASI.iter().map(|(name, _)| *name).chain(HTTP).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every WASI or wasi:http interface the import table admits can be
    /// linked, and nothing is linkable that the table does not classify.
    #[test]
    fn linkable_interfaces_match_the_import_table() {
        let linkable = linkable();
        for name in &linkable {
            assert!(
                crate::imports::classify(name).is_some(),
                "{name} is linkable but not classified"
            );
        }
        // Classified (a later WASI may add them) but not linkable by
        // wasmtime-wasi's p2 (unstable); a component importing them fails to
        // instantiate, as it did when the host linked all of WASI p2.
        let unlinkable = ["wasi:clocks/timezone"];
        for name in crate::imports::names() {
            if name.starts_with("wasi:") && !unlinkable.contains(&name) {
                assert!(
                    linkable.contains(&name),
                    "{name} is classified but never linked"
                );
            }
        }
    }

    #[test]
    fn versions_are_stripped() {
        assert_eq!(unversioned("wasi:cli/stdout@0.2.6"), "wasi:cli/stdout");
        assert_eq!(unversioned("wasi:cli/stdout"), "wasi:cli/stdout");
    }
}
