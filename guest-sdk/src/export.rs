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

/// The generated `Guest` implementation for provider `P`. Not for direct
/// use: [`export_provider!`](crate::export_provider) names it.
#[doc(hidden)]
pub struct Export<P>(PhantomData<P>);

impl<P: Provider> Guest for Export<P> {
    fn get_credentials(request: RawRequest) -> Result<RawCredentials, RawProviderError> {
        P::get_credentials(request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}

/// Exports a [`Provider`] implementation as this component's `provider`
/// interface. Invoke it once, at the top level of the provider's `cdylib`:
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
/// ```
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        const _: () = {
            type __WcpProviderExport = $crate::Export<$provider>;
            $crate::bindings::__export_plugin!(
                __WcpProviderExport with_types_in $crate::bindings
            );
        };
    };
}
