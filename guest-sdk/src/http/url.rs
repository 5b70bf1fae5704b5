//! Splits a URL into the parts a `wasi:http` request is built from. Only
//! what a provider needs: absolute `http`/`https` URLs, no user info.

use super::HttpError;

/// Where a request goes, as `wasi:http` wants it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub https: bool,
    /// `host[:port]`
    pub authority: &'a str,
    /// Never empty: at least `/`.
    pub path_with_query: String,
}

pub(crate) fn parse(url: &str) -> Result<Target<'_>, HttpError> {
    let invalid =
        |why: &str| HttpError::InvalidRequest(format!("invalid URL {:?}: {why}", redacted(url)));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected an absolute http:// or https:// URL"))?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(invalid("only http and https are supported"));
    };
    if let Some(bad) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(&format!("{bad:?} must be percent-encoded")));
    }
    let rest = rest
        .split_once('#')
        .map_or(rest, |(before, _fragment)| before);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "user info in URLs is not supported; send credentials in a header",
        ));
    }
    let path_with_query = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    Ok(Target {
        https,
        authority,
        path_with_query,
    })
}

/// The URL for messages: without its query and user info, which may carry
/// secrets.
pub(crate) fn redacted(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(before, _)| before);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_user_info, host)) => {
            format!("{scheme}://<redacted>@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(https: bool, authority: &'static str, path: &str) -> Target<'static> {
        Target {
            https,
            authority,
            path_with_query: path.to_string(),
        }
    }

    #[test]
    fn splits_urls() {
        let cases = [
            (
                "https://sts.amazonaws.com/",
                target(true, "sts.amazonaws.com", "/"),
            ),
            (
                "https://sts.amazonaws.com",
                target(true, "sts.amazonaws.com", "/"),
            ),
            (
                "HTTP://registry.io:5000/v2/token?service=r&scope=a",
                target(false, "registry.io:5000", "/v2/token?service=r&scope=a"),
            ),
            ("https://h.io?x=1", target(true, "h.io", "/?x=1")),
            ("https://h.io/a#frag", target(true, "h.io", "/a")),
            ("http://[::1]:8080/p", target(false, "[::1]:8080", "/p")),
        ];
        for (url, want) in cases {
            assert_eq!(parse(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        let cases = [
            ("sts.amazonaws.com/", "absolute"),
            ("ftp://h.io/", "only http and https"),
            ("https:///path", "no host"),
            ("https://user:pw@h.io/", "user info"),
            ("https://h.io/a b", "percent-encoded"),
            ("https://h.io/a\nb", "percent-encoded"),
        ];
        for (url, want) in cases {
            let HttpError::InvalidRequest(message) = parse(url).unwrap_err() else {
                panic!("{url}: not an InvalidRequest");
            };
            assert!(message.contains(want), "{url} => {message}");
        }
    }

    #[test]
    fn messages_leave_out_secrets() {
        for (url, shown) in [
            ("ftp://h.io/p?token=s3cr3t", "ftp://h.io/p"),
            ("https://user:s3cr3t@h.io/p?x", "https://<redacted>@h.io/p"),
            ("https://user:s3cr3t@h.io", "https://<redacted>@h.io"),
        ] {
            let HttpError::InvalidRequest(message) = parse(url).unwrap_err() else {
                panic!("{url}: not an InvalidRequest");
            };
            assert!(
                message.contains(shown) && !message.contains("s3cr3t"),
                "{message}"
            );
        }
        assert_eq!(redacted("no-scheme?q"), "no-scheme");
    }
}
