//! The whole flow, natively: `cargo test`.
use super::MyProvider;
use wcp_guest_sdk::testing::Exchange;
use wcp_guest_sdk::{ProviderError, Request};

const ENDPOINT: &str = "https://sts.example.com/token";

fn request() -> Request {
    Request::new("registry.example.com/team/app").with_service_account_token("eyJhbGciOi.sa.token")
}

#[test]
fn exchanges_the_service_account_token() {
    let run = wcp_guest_sdk::harness!()
        .config("tokenEndpoint", ENDPOINT)
        .expect(Exchange::post(ENDPOINT).respond(
            200,
            r#"{"access_token":"registry-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#,
        ))
        .run::<MyProvider>(request());
    let sent = run.requests[0].form();
    assert_eq!(sent["subject_token"], "eyJhbGciOi.sa.token");
    assert_eq!(sent["audience"], "registry.example.com");
    let credentials = run.credentials();
    assert_eq!(credentials.auth[0].match_key, "registry.example.com");
    assert_eq!(credentials.auth[0].username, "oauth2");
    assert_eq!(credentials.auth[0].password, "registry-token");
    assert!(credentials.expires_at.is_some());
}

#[test]
fn a_refused_token_is_unauthorized() {
    let error = wcp_guest_sdk::harness!()
        .config("tokenEndpoint", ENDPOINT)
        .expect(Exchange::post(ENDPOINT).respond(
            400,
            r#"{"error":"invalid_grant","error_description":"audience not allowed"}"#,
        ))
        .run::<MyProvider>(request())
        .error();
    assert!(
        matches!(&error, ProviderError::Unauthorized(m) if m.contains("audience not allowed")),
        "{error}"
    );
}

#[test]
fn without_a_token_it_says_which_settings_to_check() {
    let error = wcp_guest_sdk::harness!()
        .config("tokenEndpoint", ENDPOINT)
        .run::<MyProvider>(Request::new("registry.example.com/app"))
        .error();
    assert!(
        matches!(&error, ProviderError::Config(m) if m.contains("tokenAttributes")),
        "{error}"
    );
}
