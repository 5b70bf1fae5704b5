//! Bounds on the strings a plugin stores in an outgoing request before it
//! is sent. wasi-http keeps a request's method, scheme, authority and path
//! as the plugin set them, in the host, for as long as the request lives;
//! the `http` crate puts no length limit on an extension method or an
//! authority. Hundreds of requests each holding a string as large as the
//! plugin's memory would put gigabytes outside `memoryMiB`, so these four
//! setters are replaced by ones that refuse an oversized value (as
//! wasi-http refuses a malformed one) and otherwise defer to wasi-http.

use super::state::PluginState;
use anyhow::{Context, Result};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{
    HostOutgoingRequest as Setters, Method, Scheme,
};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

/// The `wasi:http/types` instance whose setters are replaced.
const INTERFACE: &str = "wasi:http/types@0.2.12";
/// A DNS name (253) with brackets, a colon and a port.
pub const MAX_AUTHORITY_BYTES: usize = 261;
pub const MAX_PATH_WITH_QUERY_BYTES: usize = 8 * 1024;
/// Extension methods and schemes.
pub const MAX_TOKEN_BYTES: usize = 32;

type Outcome = wasmtime::Result<(Result<(), ()>,)>;

/// Replaces the setters in `linker`, which already holds wasi:http.
pub fn bound_setters(linker: &mut Linker<PluginState>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker
        .instance(INTERFACE)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot find {INTERFACE} in the linker"))?;
    types
        .func_wrap(
            "[method]outgoing-request.set-authority",
            |mut store: StoreContextMut<'_, PluginState>,
             (request, value): (Resource<HostOutgoingRequest>, Option<String>)|
             -> Outcome {
                if value
                    .as_ref()
                    .is_some_and(|v| v.len() > MAX_AUTHORITY_BYTES)
                {
                    return Ok((Err(()),));
                }
                Ok((store.data_mut().http().set_authority(request, value)?,))
            },
        )
        .map_err(anyhow::Error::from)
        .context("set-authority")?;
    types
        .func_wrap(
            "[method]outgoing-request.set-path-with-query",
            |mut store: StoreContextMut<'_, PluginState>,
             (request, value): (Resource<HostOutgoingRequest>, Option<String>)|
             -> Outcome {
                if value
                    .as_ref()
                    .is_some_and(|v| v.len() > MAX_PATH_WITH_QUERY_BYTES)
                {
                    return Ok((Err(()),));
                }
                Ok((store
                    .data_mut()
                    .http()
                    .set_path_with_query(request, value)?,))
            },
        )
        .map_err(anyhow::Error::from)
        .context("set-path-with-query")?;
    types
        .func_wrap(
            "[method]outgoing-request.set-method",
            |mut store: StoreContextMut<'_, PluginState>,
             (request, value): (Resource<HostOutgoingRequest>, Method)|
             -> Outcome {
                if matches!(&value, Method::Other(m) if m.len() > MAX_TOKEN_BYTES) {
                    return Ok((Err(()),));
                }
                Ok((store.data_mut().http().set_method(request, value)?,))
            },
        )
        .map_err(anyhow::Error::from)
        .context("set-method")?;
    types
        .func_wrap(
            "[method]outgoing-request.set-scheme",
            |mut store: StoreContextMut<'_, PluginState>,
             (request, value): (Resource<HostOutgoingRequest>, Option<Scheme>)|
             -> Outcome {
                if matches!(&value, Some(Scheme::Other(s)) if s.len() > MAX_TOKEN_BYTES) {
                    return Ok((Err(()),));
                }
                Ok((store.data_mut().http().set_scheme(request, value)?,))
            },
        )
        .map_err(anyhow::Error::from)
        .context("set-scheme")?;
    linker.allow_shadowing(false);
    Ok(())
}
