//! The rules for names a component declares and an operator grants: config
//! keys and environment variable names. They end up in log lines, error
//! messages and `inspect`'s table, and a component is untrusted, so a name
//! must be short, printable and boring; anything else is refused before the
//! component runs.
//!
//! * environment variables: POSIX-style `[A-Za-z_][A-Za-z0-9_]*`;
//! * config keys: letters, digits, `_`, `.` and `-`, not starting with `.`
//!   or `-`;
//! * each at most [`MAX_NAME_LEN`] bytes, and at most [`MAX_DECLARED`] of
//!   each kind (outbound entries, config keys, env names) per declaration.

use crate::escape::escape_controls;
use anyhow::{Result, bail};

/// Longest config key or environment variable name.
pub const MAX_NAME_LEN: usize = 128;
/// Most entries in each list of a declaration.
pub const MAX_DECLARED: usize = 64;

/// Checks a config key (a key under `config`, `configFromFile` or
/// `configFromEnv`, or declared by a component).
pub fn check_config_key(key: &str) -> Result<()> {
    let first_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if key.len() > MAX_NAME_LEN || !first_ok || !rest_ok {
        bail!(
            "config key {} is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', starting with a letter, digit or '_'",
            shown(key)
        );
    }
    Ok(())
}

/// Checks an environment variable name.
pub fn check_env_name(name: &str) -> Result<()> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.len() > MAX_NAME_LEN || !first_ok || !rest_ok {
        bail!(
            "environment variable name {} is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits and '_', not starting with a digit",
            shown(name)
        );
    }
    Ok(())
}

/// Checks the length of one list of a declaration.
pub fn check_count(what: &str, count: usize) -> Result<()> {
    if count > MAX_DECLARED {
        bail!("declares {count} {what}; at most {MAX_DECLARED} are allowed");
    }
    Ok(())
}

/// A rejected name for an error message: quoted, control characters
/// escaped, and cut so that a huge name cannot flood the line.
pub fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    let mut end = name.len().min(SHOWN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < name.len() { "..." } else { "" };
    format!("\"{}{cut}\"", escape_controls(&name[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::is_hazardous;

    #[test]
    fn config_keys() {
        for good in [
            "password",
            "roleArn",
            "sts.endpoint",
            "a-b_c.d",
            "_x",
            "0",
            "k".repeat(128).as_str(),
        ] {
            check_config_key(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a b",
            "a/b",
            "a:b",
            "\u{1b}[2Jevil",
            "key\n",
            "ke\u{202e}y",
            "ключ",
            "k".repeat(129).as_str(),
        ] {
            let err = check_config_key(bad).unwrap_err().to_string();
            assert!(err.contains("is not a valid name"), "{bad:?}: {err}");
            assert!(!err.chars().any(is_hazardous), "{err:?}");
        }
    }

    #[test]
    fn env_names() {
        for good in ["AWS_REGION", "_X", "a1", "x".repeat(128).as_str()] {
            check_env_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "1X",
            "A-B",
            "A.B",
            "A=B",
            "A\u{1b}]0;pwned\u{7}",
            "\u{0}",
            "X".repeat(129).as_str(),
        ] {
            let err = check_env_name(bad).unwrap_err().to_string();
            assert!(err.contains("is not a valid name"), "{bad:?}: {err}");
            assert!(!err.chars().any(is_hazardous), "{err:?}");
        }
    }

    #[test]
    fn rejected_names_are_shown_escaped_and_short() {
        assert_eq!(shown("a\u{1b}b"), "\"a\\u{1b}b\"");
        let long = "é".repeat(100);
        let s = shown(&long);
        assert!(s.len() < 80 && s.ends_with("...\""), "{s}");
        assert!(check_count("config keys", 64).is_ok());
        assert!(check_count("config keys", 65).is_err());
    }
}
