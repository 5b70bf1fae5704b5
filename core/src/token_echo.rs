//! Finds the service-account token in a plugin's answer.
//!
//! With `tokenCacheType: ServiceAccount` one answer is served to every pod
//! of a service account, so an answer carrying one pod's token hands that
//! token to the others. The kubelet only refuses a password equal to the
//! token; the host refuses the token anywhere in an answer: in any auth
//! key, username or password, verbatim (`Bearer <token>`, `x<token>`), in
//! standard or URL-safe base64 at any alignment (so also inside a larger
//! encoded value such as a Docker `auth` of `user:<token>`), and the JWT's
//! signature on its own (the part that cannot be forged). The header and
//! payload segments are not secrets and are not looked for.

use crate::answer::AuthEntry;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// Below this length a fragment could occur in an honest value by chance,
/// so it is not looked for (a token shorter than this is only compared
/// whole with each field).
const MIN_FRAGMENT: usize = 8;
/// Shortest JWT signature looked for on its own (an HMAC-SHA256 one has 43
/// characters, an RS256 one 342).
const MIN_SIGNATURE: usize = 16;

/// How the token appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Verbatim,
    Base64,
    Base64Url,
    Signature,
}

/// Which field of an auth entry held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Key,
    Username,
    Password,
}

/// Where the token was found; never the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// 1-based, in the plugin's order.
    pub entry: usize,
    pub field: Field,
    pub form: Form,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self.form {
            Form::Verbatim => "the service-account token",
            Form::Base64 => "the service-account token in base64",
            Form::Base64Url => "the service-account token in base64url",
            Form::Signature => "the signature of the service-account token",
        };
        let field = match self.field {
            Field::Key => "auth key",
            Field::Username => "username",
            Field::Password => "password",
        };
        write!(f, "{form} in the {field} of auth entry {}", self.entry)
    }
}

/// The first place `token` occurs in `auth`, in any form this module knows.
pub fn find(auth: &[AuthEntry], token: &str) -> Option<Found> {
    if token.is_empty() {
        return None;
    }
    let needles = needles(token);
    for (i, entry) in auth.iter().enumerate() {
        for (field, text) in [
            (Field::Key, &entry.match_key),
            (Field::Username, &entry.username),
            (Field::Password, &entry.password),
        ] {
            let hit = if token.len() < MIN_FRAGMENT {
                (text == token).then_some(Form::Verbatim)
            } else {
                needles
                    .iter()
                    .find(|(needle, _)| text.contains(needle.as_str()))
                    .map(|(_, form)| *form)
            };
            if let Some(form) = hit {
                return Some(Found {
                    entry: i + 1,
                    field,
                    form,
                });
            }
        }
    }
    None
}

fn needles(token: &str) -> Vec<(String, Form)> {
    let mut out = vec![(token.to_string(), Form::Verbatim)];
    for (engine, form) in [
        (STANDARD_NO_PAD, Form::Base64),
        (URL_SAFE_NO_PAD, Form::Base64Url),
    ] {
        for needle in aligned_encodings(&engine, token.as_bytes()) {
            if needle.len() >= MIN_FRAGMENT && !out.iter().any(|(n, _)| *n == needle) {
                out.push((needle, form));
            }
        }
    }
    let segments: Vec<&str> = token.split('.').collect();
    if let [_, _, signature] = segments[..]
        && signature.len() >= MIN_SIGNATURE
    {
        out.push((signature.to_string(), Form::Signature));
    }
    out
}

/// The characters that encode `bytes` whatever precedes and follows them:
/// for each of the three offsets at which `bytes` can start within a 3-byte
/// group, the encoding without the characters that also carry bits of the
/// neighbouring bytes.
fn aligned_encodings(engine: &impl Engine, bytes: &[u8]) -> Vec<String> {
    (0..3)
        .map(|offset| {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let skip = [0, 2, 3][offset];
            let end = if padded.len() % 3 == 0 {
                encoded.len()
            } else {
                encoded.len() - 1
            };
            encoded.get(skip..end).unwrap_or_default().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbTpwdWxsZXIifQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu_-x";

    fn entry(key: &str, username: &str, password: &str) -> AuthEntry {
        AuthEntry {
            match_key: key.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    fn found(auth: &[AuthEntry]) -> Option<(Field, Form)> {
        find(auth, TOKEN).map(|f| (f.field, f.form))
    }

    #[test]
    fn every_form_is_found() {
        let signature = TOKEN.rsplit('.').next().unwrap();
        let cases = [
            (entry("r.io", "u", TOKEN), Field::Password, Form::Verbatim),
            (
                entry("r.io", "u", &format!("Bearer {TOKEN}")),
                Field::Password,
                Form::Verbatim,
            ),
            (
                entry("r.io", "u", &format!("x{TOKEN}")),
                Field::Password,
                Form::Verbatim,
            ),
            (entry("r.io", TOKEN, "p"), Field::Username, Form::Verbatim),
            (
                entry(&format!("r.io/{TOKEN}"), "u", "p"),
                Field::Key,
                Form::Verbatim,
            ),
            (
                entry("r.io", "u", &STANDARD.encode(TOKEN)),
                Field::Password,
                Form::Base64,
            ),
            (
                entry("r.io", "u", &URL_SAFE.encode(TOKEN)),
                Field::Password,
                Form::Base64Url,
            ),
            (
                entry("r.io", "u", signature),
                Field::Password,
                Form::Signature,
            ),
        ];
        for (e, field, form) in cases {
            let (got_field, got_form) = found(std::slice::from_ref(&e)).expect(&e.password);
            assert_eq!(got_field, field, "{}", e.password);
            // Both alphabets agree on most characters: either name will do.
            let base64 = [Form::Base64, Form::Base64Url];
            if base64.contains(&form) {
                assert!(base64.contains(&got_form), "{}", e.password);
            } else {
                assert_eq!(got_form, form, "{}", e.password);
            }
        }
        // Inside a larger encoded value, at each alignment.
        for prefix in ["", "a", "ab", "user:", "AWS:xyz"] {
            for suffix in ["", "!", "!!", "!!!"] {
                let value = format!("{prefix}{TOKEN}{suffix}");
                for engine in [STANDARD, URL_SAFE] {
                    let encoded = engine.encode(&value);
                    assert!(
                        find(&[entry("r.io", "u", &encoded)], TOKEN).is_some(),
                        "{prefix:?}+token+{suffix:?}"
                    );
                }
            }
        }
        // Found in a later entry, with its position.
        let at = find(&[entry("r.io", "u", "p"), entry("s.io", "u", TOKEN)], TOKEN).unwrap();
        assert_eq!(at.entry, 2);
        assert_eq!(
            at.to_string(),
            "the service-account token in the password of auth entry 2"
        );
    }

    #[test]
    fn honest_answers_pass() {
        let cases = [
            entry("r.io", "AWS", "some-registry-password"),
            entry("r.io", "u", &STANDARD.encode("AWS:some-registry-password")),
            // The token's header and payload are not secrets.
            entry("r.io", "u", "eyJhbGciOiJSUzI1NiJ9"),
            entry("r.io", "u", &TOKEN[..TOKEN.len() - 5]),
        ];
        for e in cases {
            assert_eq!(found(std::slice::from_ref(&e)), None, "{}", e.password);
        }
        assert_eq!(find(&[entry("r.io", "u", TOKEN)], ""), None);
    }

    #[test]
    fn short_tokens_are_compared_whole() {
        assert!(find(&[entry("r.io", "u", "tok")], "tok").is_some());
        assert!(find(&[entry("r.io", "u", "a-tok-b")], "tok").is_none());
        assert!(find(&[entry("r.io", "u", "the-token-x")], "the-token").is_some());
    }
}
