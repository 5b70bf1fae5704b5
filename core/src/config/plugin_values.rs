//! A plugin's config checked against its component's typed declaration
//! ([`crate::capabilities::ConfigSchema`]), in the host config text itself,
//! so that the error names the line of the bad key or value.
//!
//! This runs when the host loads the plugin's module (its declaration is in
//! the module, which the config parse never opens): the config text is read
//! a second time, visiting only `plugins[index]`'s `config`,
//! `configFromFile` and `configFromEnv` keys, and the YAML parser attaches
//! the position of the first bad one to the error. Values read from files
//! or the environment are only known at exec time; [`check_resolved`]
//! checks those, naming their key.

use crate::capabilities::Declaration;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Checks the keys (and literal values) of `plugins[index]` in `text`
/// against `declaration`. The error is one line ending with the YAML
/// position (`... at line 12 column 22`); it never quotes a value.
pub fn check_plugin_config(
    text: &str,
    index: usize,
    declaration: &Declaration,
) -> Result<(), String> {
    let seed = Top { index, declaration };
    seed.deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|e| e.to_string())
}

/// [`check_plugin_config`] over a config snapshot
/// ([`super::snapshot`]) instead of the YAML text: the same keys and
/// values (a snapshot exists only for a text whose JSON form validates to
/// the same config, so every value in it is a string, as in the YAML), so
/// it passes exactly when the YAML check does. Its error has no YAML line:
/// a caller that wants the line checks the text for the message.
pub fn check_plugin_config_json(
    json: &[u8],
    index: usize,
    declaration: &Declaration,
) -> Result<(), String> {
    let seed = Top { index, declaration };
    let mut de = serde_json::Deserializer::from_slice(json);
    seed.deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

/// Checks values resolved from `configFromFile`/`configFromEnv` (their keys
/// were checked with the text). `literal` tells which keys were literal.
pub fn check_resolved(
    declaration: &Declaration,
    values: &BTreeMap<String, String>,
    literal: impl Fn(&str) -> bool,
) -> Result<(), String> {
    for (key, value) in values {
        if literal(key) {
            continue;
        }
        declaration
            .check_config(key, Some(value))
            .map_err(|e| format!("config value {key:?} (from a file or the environment): {e:#}"))?;
    }
    Ok(())
}

struct Top<'a> {
    index: usize,
    declaration: &'a Declaration,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a host config")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "plugins" {
                map.next_value_seed(Plugins {
                    index: self.index,
                    declaration: self.declaration,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Plugins<'a> {
    index: usize,
    declaration: &'a Declaration,
}

impl<'de> DeserializeSeed<'de> for Plugins<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Plugins<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of plugins")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let done = if i == self.index {
                seq.next_element_seed(Plugin {
                    declaration: self.declaration,
                })?
                .is_none()
            } else {
                seq.next_element::<IgnoredAny>()?.is_none()
            };
            if done {
                return Ok(());
            }
            i += 1;
        }
    }
}

struct Plugin<'a> {
    declaration: &'a Declaration,
}

impl<'de> DeserializeSeed<'de> for Plugin<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Plugin<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a plugin")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "config" | "configFromFile" | "configFromEnv" => map.next_value_seed(Keys {
                    literal: key == "config",
                    declaration: self.declaration,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Keys<'a> {
    literal: bool,
    declaration: &'a Declaration,
}

impl<'de> DeserializeSeed<'de> for Keys<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of config keys")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(Entry {
                key: &key,
                literal: self.literal,
                declaration: self.declaration,
            })?;
        }
        Ok(())
    }
}

/// One key's value, checked while the parser stands on it, so that the
/// error carries the value's own line.
struct Entry<'a> {
    key: &'a str,
    literal: bool,
    declaration: &'a Declaration,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        let value = self.literal.then_some(value);
        self.declaration
            .check_config(self.key, value)
            .map_err(|e| E::custom(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARATION: &str = r#"{"config":["preset","endpoint"],"configTypes":{"answer.password":"jsonPointer","endpoint":"url"},"strictConfig":true}"#;

    fn text(plugin_b: &str) -> String {
        format!(
            "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - name: a\n    module: a.wasm\n    matchImages: [x]\n    config:\n      whatever: 1\n  - name: b\n    module: b.wasm\n    matchImages: [y]\n{plugin_b}"
        )
    }

    #[test]
    fn a_bad_value_or_unknown_key_names_its_line() {
        let d = Declaration::parse(DECLARATION.as_bytes()).unwrap();
        let good = text(
            "    config:\n      preset: jfrog\n      answer.password: /token\n    configFromFile:\n      endpoint: /etc/e\n",
        );
        assert_eq!(check_plugin_config(&good, 1, &d), Ok(()));
        // plugins[0] is another plugin's business.
        let bad = text("    config:\n      preset: jfrog\n      answer.password: token\n");
        let e = check_plugin_config(&bad, 1, &d).unwrap_err();
        assert!(
            e.starts_with("plugins[1].config.answer.password: expected a JSON pointer"),
            "{e}"
        );
        assert!(e.contains("line 14"), "{e}");
        assert!(!e.contains(": token"), "{e}");
        let bad = text("    configFromEnv:\n      endpiont: E\n");
        let e = check_plugin_config(&bad, 1, &d).unwrap_err();
        assert!(
            e.starts_with("plugins[1].configFromEnv.endpiont: unknown config key"),
            "{e}"
        );
        assert!(e.contains("line 13"), "{e}");
    }

    #[test]
    fn the_snapshot_check_passes_and_fails_with_the_text_check() {
        let d = Declaration::parse(DECLARATION.as_bytes()).unwrap();
        let base = std::path::Path::new("/etc/wcp");
        let cases = [
            (
                "    config:\n      preset: jfrog\n      answer.password: /token\n    configFromFile:\n      endpoint: /etc/e\n",
                true,
            ),
            (
                "    config:\n      preset: jfrog\n      answer.password: token\n",
                false,
            ),
            ("    configFromEnv:\n      endpiont: E\n", false),
            (
                "    configFromFile:\n      endpoint: /etc/e\n    config: {}\n",
                true,
            ),
        ];
        for (plugin_b, good) in cases {
            // plugins[0]'s numeric value has no JSON form the config
            // accepts: the snapshot is made of plugin b alone.
            let text = format!(
                "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - name: b\n    module: b.wasm\n    matchImages: [y]\n{plugin_b}"
            );
            let json = super::super::snapshot::encode(&text, base).expect("a snapshot");
            let from_text = check_plugin_config(&text, 0, &d);
            let from_json = check_plugin_config_json(&json, 0, &d);
            assert_eq!(from_text.is_ok(), good, "{plugin_b}: {from_text:?}");
            assert_eq!(from_json.is_ok(), good, "{plugin_b}: {from_json:?}");
            if let (Err(t), Err(j)) = (&from_text, &from_json) {
                // The same problem; only the text's error has its path
                // and the line a user would look at.
                let problem = |e: &str| e.split(" at line ").next().unwrap().to_string();
                assert!(problem(t).ends_with(&problem(j)), "{t} / {j}");
                assert!(!j.contains("token\""), "{j}");
            }
        }
        assert!(check_plugin_config_json(b"{} trailing", 0, &d).is_err());
    }

    #[test]
    fn resolved_values_are_checked_by_key() {
        let d = Declaration::parse(DECLARATION.as_bytes()).unwrap();
        let values: BTreeMap<String, String> = [
            ("endpoint".to_string(), "not a url".to_string()),
            ("preset".to_string(), "x".to_string()),
        ]
        .into();
        let e = check_resolved(&d, &values, |k| k == "preset").unwrap_err();
        assert!(e.starts_with("config value \"endpoint\""), "{e}");
        assert!(!e.contains("not a url"), "{e}");
        assert!(check_resolved(&d, &values, |_| true).is_ok());
    }
}
