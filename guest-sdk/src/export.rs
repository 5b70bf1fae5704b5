//! Wires a [`Provider`] to the component's `provider` export.
//!
//! wit-bindgen's export macro wants a type implementing the generated
//! `Guest` trait. [`Export`] is that type for any provider, so the
//! conversion between the raw and the SDK types lives here once instead of
//! in every provider crate.

use crate::Provider;
use crate::bindings::exports::wcp::credential_provider::provider::{
    Credentials as RawCredentials, Guest, ProviderError as RawProviderError, Request as RawRequest,
};
use std::marker::PhantomData;

/// The generated `Guest` implementation for provider `P` with the
/// declaration `D`. Not for direct use:
/// [`export_provider!`](crate::export_provider) names it.
#[doc(hidden)]
pub struct Export<P, D>(PhantomData<(P, D)>);

/// The plugin's embedded declaration, as
/// [`declare_capabilities!`](crate::declare_capabilities) defines it.
#[doc(hidden)]
pub trait Declared {
    const JSON: &'static [u8];
}

impl<P: Provider, D: Declared> Guest for Export<P, D> {
    fn get_credentials(request: RawRequest) -> Result<RawCredentials, RawProviderError> {
        crate::capabilities::__register(D::JSON);
        P::get_credentials(request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}

/// Exports a [`Provider`] implementation as this component's `provider`
/// interface. Invoke it once, at the crate root of the provider's `cdylib`,
/// beside [`declare_capabilities!`](crate::declare_capabilities) (without
/// it, the plugin does not compile):
///
/// ```no_run
/// use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request};
///
/// struct MyProvider;
///
/// impl Provider for MyProvider {
///     fn get_credentials(_: Request) -> Result<Credentials, ProviderError> {
///         Err(ProviderError::NoCredentials("not yet".into()))
///     }
/// }
///
/// wcp_guest_sdk::export_provider!(MyProvider);
/// # const __WCP_CAPABILITIES: &[u8] = b"{}";
/// # fn main() {}
/// ```
// `crate::` on purpose: the declaration lives in the calling plugin.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        const _: () = {
            struct __WcpDeclared;
            impl $crate::Declared for __WcpDeclared {
                // `declare_capabilities!` defines it at the crate root.
                const JSON: &'static [u8] = crate::__WCP_CAPABILITIES;
            }
            type __WcpProviderExport = $crate::Export<$provider, __WcpDeclared>;
            $crate::bindings::__export_plugin!(
                __WcpProviderExport with_types_in $crate::bindings
            );
        };
    };
}
