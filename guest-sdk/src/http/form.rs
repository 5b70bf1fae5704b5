//! `application/x-www-form-urlencoded`, the body format of OAuth 2.0 token
//! requests (RFC 6749) and of the query strings of registry token endpoints.

/// Serializes `pairs` as `application/x-www-form-urlencoded`, as the WHATWG
/// URL standard does: ASCII letters, digits and `*-._` stay, a space becomes
/// `+`, every other byte of the UTF-8 encoding becomes `%XX`. Also right for
/// building a URL's query string.
pub fn form_urlencode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, key.as_ref());
        out.push('=');
        encode_into(&mut out, value.as_ref());
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}

/// Decodes one form-encoded component (`+` is a space, `%XX` a byte);
/// `None` if it is malformed or not UTF-8.
pub(crate) fn decode_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_whatwg() {
        assert_eq!(
            form_urlencode(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ),
                ("scope", "repository:team/app:pull,push"),
            ]),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
        );
        assert_eq!(form_urlencode(&[("a b", "c+d&e=f")]), "a+b=c%2Bd%26e%3Df");
        assert_eq!(
            form_urlencode(&[("k", "*-._~!'()")]),
            "k=*-._%7E%21%27%28%29"
        );
        assert_eq!(form_urlencode(&[("k", "é€\n%")]), "k=%C3%A9%E2%82%AC%0A%25");
        assert_eq!(form_urlencode(&[("empty", "")]), "empty=");
    }

    #[test]
    fn takes_owned_and_borrowed_pairs() {
        let owned = vec![
            ("x".to_string(), "1".to_string()),
            ("y".to_string(), "2".to_string()),
        ];
        assert_eq!(form_urlencode(&owned), "x=1&y=2");
        assert_eq!(form_urlencode::<&str, &str>(&[]), "");
    }
}
