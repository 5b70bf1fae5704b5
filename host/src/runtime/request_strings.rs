//! Bounds on the strings a plugin stores in an outgoing request before it
//! is sent. wasi-http keeps a request's method, scheme, authority and path
//! as the plugin set them, in the host, for as long as the request lives;
//! the `http` crate puts no length limit on an extension method or an
//! authority. Hundreds of requests each holding a string as large as the
//! plugin's memory would put gigabytes outside `memoryMiB`, so these four
//! setters are replaced by ones that refuse an oversized value (as
//! wasi-http refuses a malformed one) and otherwise defer to wasi-http.
//!
//! The two `fields` calls that take a list of strings (`from-list`, `set`)
//! are replaced too, for another reason: lifting such a list builds a
//! host `String`/`Vec` per element, about three times what the list
//! occupies in the plugin's memory, before wasi-http checks its size. The
//! replacements read the list in place and refuse it, as wasi-http traps
//! on an oversized map, before anything is copied.

use super::state::PluginState;
use anyhow::{Context, Result};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList, WasmStr};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{HeaderError, HostFields};
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

/// What a refused setter returns: wasi-http's own answer to a bad value.
const REFUSED: Outcome = Ok((Err(()),));

/// Whether an optional string is longer than `max` bytes.
fn too_long(value: Option<&str>, max: usize) -> bool {
    value.is_some_and(|v| v.len() > max)
}

/// Entries and bytes a list handed to `fields` may hold: what one header
/// map may hold anyway (`FIELD_BYTES`).
pub const MAX_FIELD_LIST_ENTRIES: usize = 256;

/// Checks a list's size in place and copies it only when it fits.
fn bounded_entries(
    store: &mut StoreContextMut<'_, PluginState>,
    entries: &WasmList<(WasmStr, WasmList<u8>)>,
) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
    if entries.len() > MAX_FIELD_LIST_ENTRIES {
        wasmtime::bail!(
            "fields list of {} entries exceeds the limit of {MAX_FIELD_LIST_ENTRIES}",
            entries.len()
        );
    }
    let mut owned = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    for index in 0..entries.len() {
        let Some(entry) = entries.get(&mut *store, index) else {
            break;
        };
        let (name, value) = entry?;
        let name = name.to_str(&*store)?;
        let value = value.as_le_slice(&*store);
        total = total.saturating_add(name.len() + value.len());
        if total > super::FIELD_BYTES {
            wasmtime::bail!("total size of fields exceeds limit");
        }
        owned.push((name.into_owned(), value.to_vec()));
    }
    Ok(owned)
}

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
                if too_long(value.as_deref(), MAX_AUTHORITY_BYTES) {
                    return REFUSED;
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
                if too_long(value.as_deref(), MAX_PATH_WITH_QUERY_BYTES) {
                    return REFUSED;
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
                if let Method::Other(m) = &value
                    && too_long(Some(m), MAX_TOKEN_BYTES)
                {
                    return REFUSED;
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
                if let Some(Scheme::Other(s)) = &value
                    && too_long(Some(s), MAX_TOKEN_BYTES)
                {
                    return REFUSED;
                }
                Ok((store.data_mut().http().set_scheme(request, value)?,))
            },
        )
        .map_err(anyhow::Error::from)
        .context("set-scheme")?;
    types
        .func_wrap(
            "[static]fields.from-list",
            |mut store: StoreContextMut<'_, PluginState>,
             (entries,): (WasmList<(WasmStr, WasmList<u8>)>,)|
             -> wasmtime::Result<(Result<Resource<FieldMap>, HeaderError>,)> {
                let owned = bounded_entries(&mut store, &entries)?;
                match store.data_mut().http().from_list(owned) {
                    Ok(fields) => Ok((Ok(fields),)),
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            },
        )
        .map_err(anyhow::Error::from)
        .context("fields.from-list")?;
    types
        .func_wrap(
            "[method]fields.set",
            |mut store: StoreContextMut<'_, PluginState>,
             (fields, name, values): (Resource<FieldMap>, WasmStr, WasmList<WasmList<u8>>)|
             -> wasmtime::Result<(Result<(), HeaderError>,)> {
                if values.len() > MAX_FIELD_LIST_ENTRIES {
                    wasmtime::bail!(
                        "fields.set with {} values exceeds the limit of {MAX_FIELD_LIST_ENTRIES}",
                        values.len()
                    );
                }
                let name = name.to_str(&store)?.into_owned();
                let mut owned = Vec::with_capacity(values.len());
                let mut total = name.len();
                for index in 0..values.len() {
                    let Some(value) = values.get(&mut store, index) else {
                        break;
                    };
                    let value = value?;
                    let bytes = value.as_le_slice(&store);
                    total = total.saturating_add(bytes.len());
                    if total > super::FIELD_BYTES {
                        wasmtime::bail!("total size of fields exceeds limit");
                    }
                    owned.push(bytes.to_vec());
                }
                match store.data_mut().http().set(fields, name, owned) {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            },
        )
        .map_err(anyhow::Error::from)
        .context("fields.set")?;
    linker.allow_shadowing(false);
    Ok(())
}
