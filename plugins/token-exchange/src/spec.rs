//! What one exchange is: a preset's shape with the operator's values on
//! top. Pure (config comes in as a lookup function), so every preset is
//! unit-tested natively.
//!
//! The endpoint is only ever the operator's `endpoint` value: no field, no
//! annotation and no part of the image can change where the pod's token is
//! sent.
//!
//! What each preset follows (shapes as summarised, with the upstream
//! providers' code, in the project's `vendor-providers.md` §4, §7, B4):
//!
//! - `jfrog`: JFrog Platform REST API, Access, "Exchange OIDC token"
//!   (`POST /access/api/v1/oidc/token`; `grant_type`, `subject_token_type`,
//!   `subject_token`, `provider_name` required; errors
//!   `{"errors":[{"code","message"}]}`), as jfrog-credentials-provider sends it;
//! - `cloudsmith`: Cloudsmith "OpenID Connect" authentication
//!   (`POST https://api.cloudsmith.io/openid/<org>/` with `oidc_token`,
//!   `service_slug`; 201 `{"token"}`; errors `{"detail"}`);
//! - `quay`: Red Hat Quay robot account federation ("keyless
//!   authentication": `GET /oauth2/federation/robot/token`, Basic
//!   `<robot>:<JWT>`; `{"token"}`, errors `{"message"}`/`{"error"}`);
//! - `yandex`: Yandex Cloud IAM workload identity federation token exchange
//!   (`POST https://auth.yandex.cloud/oauth/token`, RFC 8693 form, audience
//!   the service account id; username `iam`);
//! - `rfc8693`: RFC 8693 §2.1 (request) and §2.2 (response, RFC 6749 §5.2
//!   errors).

use std::collections::BTreeMap;

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Longest value taken from an annotation into a request.
const MAX_ANNOTATION_VALUE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Jfrog,
    Cloudsmith,
    Quay,
    Yandex,
    Rfc8693,
    Custom,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jfrog => "jfrog",
            Self::Cloudsmith => "cloudsmith",
            Self::Quay => "quay",
            Self::Yandex => "yandex",
            Self::Rfc8693 => "rfc8693",
            Self::Custom => "custom",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "jfrog" => Self::Jfrog,
            "cloudsmith" => Self::Cloudsmith,
            "quay" => Self::Quay,
            "yandex" => Self::Yandex,
            "rfc8693" => Self::Rfc8693,
            "custom" => Self::Custom,
            _ => {
                return Err(
                    "config preset must be one of jfrog, cloudsmith, quay, yandex, rfc8693, custom"
                        .into(),
                );
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Form,
    Json,
    None,
}

/// Where one value of the request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `$token`: the pod's service-account token.
    Token,
    /// `$registry`: the image's registry `host[:port]`.
    Registry,
    /// `$annotation:<key>`: a service-account annotation the kubelet forwarded.
    Annotation(String),
    /// Anything else, as written (`$$x` for a literal `$x`).
    Literal(String),
}

impl Source {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("$$") {
            return Ok(Self::Literal(format!("${rest}")));
        }
        match text {
            "$token" => Ok(Self::Token),
            "$registry" => Ok(Self::Registry),
            _ => match text.strip_prefix("$annotation:") {
                Some("") => Err("$annotation: needs an annotation key".into()),
                Some(key) => Ok(Self::Annotation(key.to_string())),
                None if text.starts_with('$') => Err(
                    "a value starting with $ must be $token, $registry or $annotation:<key> (write $$ for a literal $)"
                        .into(),
                ),
                None => Ok(Self::Literal(text.to_string())),
            },
        }
    }

    /// The value for one request.
    pub fn resolve(
        &self,
        token: &str,
        registry: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        match self {
            Self::Token => Ok(token.to_string()),
            Self::Registry => Ok(registry.to_string()),
            Self::Literal(v) => Ok(v.clone()),
            Self::Annotation(key) => {
                let value = annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!(
                        "the service account has no annotation {key:?}: annotate it and list the key in the kubelet's tokenAttributes.requiredServiceAccountAnnotationKeys (or optionalServiceAccountAnnotationKeys)"
                    )
                })?;
                if value.len() > MAX_ANNOTATION_VALUE || value.chars().any(char::is_control) {
                    return Err(format!(
                        "annotation {key:?} must be at most {MAX_ANNOTATION_VALUE} bytes without control characters"
                    ));
                }
                Ok(value.to_string())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Basic <user>:<token>` (Quay robot federation).
    Basic(Source),
    /// `Authorization: Bearer <token>`.
    Bearer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Username {
    /// A JSON pointer into the answer.
    Pointer(String),
    /// Written in the config (`iam`, `oauth2`, `token`).
    Literal(String),
    /// The Basic-auth user of the request (Quay: the robot).
    AuthUser,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Seconds from now, at this JSON pointer.
    ExpiresIn(String),
    /// The issued token's own JWT `exp`.
    Jwt,
    /// None: the host's `defaultDuration`.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub preset: Preset,
    pub endpoint: String,
    pub post: bool,
    pub encoding: Encoding,
    pub fields: Vec<(String, Source)>,
    pub auth: Auth,
    pub username: Username,
    pub password_pointer: String,
    pub expiry: Expiry,
    /// Cache per image rather than per registry.
    pub per_image: bool,
}

fn field(name: &str, value: &str) -> (String, Source) {
    (name.to_string(), Source::Literal(value.to_string()))
}

fn token_field(name: &str) -> (String, Source) {
    (name.to_string(), Source::Token)
}

impl Spec {
    /// The exchange `get` (the plugin's config, trimmed, empty as unset)
    /// describes. Errors name the config key, never its value.
    pub fn from_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let preset = match get("preset") {
            Some(p) => Preset::parse(&p)?,
            None => {
                return Err(
                    "config preset is not set: use jfrog, cloudsmith, quay, yandex, rfc8693 or custom"
                        .into(),
                );
            }
        };
        let endpoint = get("endpoint").ok_or_else(|| {
            format!(
                "config endpoint is not set: the {} token endpoint's full URL (and grant its origin in grants.outbound)",
                preset.name()
            )
        })?;
        let require = |key: &str| {
            get(key).ok_or_else(|| format!("preset {} needs config {key}", preset.name()))
        };
        let mut spec = match preset {
            // JFrog Access OIDC token exchange (B4).
            Preset::Jfrog => {
                let mut fields = vec![
                    field("grant_type", GRANT_TOKEN_EXCHANGE),
                    field("subject_token_type", TOKEN_TYPE_ID_TOKEN),
                    token_field("subject_token"),
                    (
                        "provider_name".into(),
                        Source::Literal(require("providerName")?),
                    ),
                    field("provider_type", "Generic OpenID Connect"),
                ];
                if let Some(audience) = get("audience") {
                    fields.push(("audience".into(), Source::Literal(audience)));
                }
                if let Some(project) = get("projectKey") {
                    fields.push(("project_key".into(), Source::Literal(project)));
                }
                Self::base(preset, endpoint, Encoding::Json, fields)
                    .answering("/access_token", Username::Pointer("/username".into()))
            }
            // Cloudsmith OIDC: POST /openid/<org>/ -> 201 {"token"}.
            Preset::Cloudsmith => {
                let fields = vec![
                    token_field("oidc_token"),
                    (
                        "service_slug".into(),
                        Source::Literal(require("serviceSlug")?),
                    ),
                ];
                let mut spec = Self::base(preset, endpoint, Encoding::Json, fields)
                    .answering("/token", Username::Literal("token".into()));
                spec.expiry = Expiry::Jwt;
                spec
            }
            // Quay robot federation: GET, Basic <robot>:<SA JWT> -> {"token"}.
            Preset::Quay => {
                let robot = Source::parse(&require("authUsername")?)
                    .map_err(|e| format!("config authUsername: {e}"))?;
                let mut spec = Self::base(preset, endpoint, Encoding::None, Vec::new())
                    .answering("/token", Username::AuthUser);
                spec.post = false;
                spec.auth = Auth::Basic(robot);
                spec.expiry = Expiry::Jwt;
                spec
            }
            // Yandex Cloud: RFC 8693, form, username iam.
            Preset::Yandex => {
                let fields = vec![
                    field("grant_type", GRANT_TOKEN_EXCHANGE),
                    field("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
                    ("audience".into(), Source::Literal(require("audience")?)),
                    token_field("subject_token"),
                    field("subject_token_type", TOKEN_TYPE_ID_TOKEN),
                ];
                Self::base(preset, endpoint, Encoding::Form, fields)
                    .answering("/access_token", Username::Literal("iam".into()))
            }
            // Any RFC 8693 server.
            Preset::Rfc8693 => {
                let mut fields = vec![
                    field("grant_type", GRANT_TOKEN_EXCHANGE),
                    token_field("subject_token"),
                    field("subject_token_type", TOKEN_TYPE_JWT),
                ];
                for (key, name) in [("audience", "audience"), ("scope", "scope")] {
                    if let Some(v) = get(key) {
                        fields.push((name.into(), Source::Literal(v)));
                    }
                }
                Self::base(preset, endpoint, Encoding::Form, fields)
                    .answering("/access_token", Username::Literal("oauth2".into()))
            }
            Preset::Custom => Self::base(preset, endpoint, Encoding::Json, Vec::new())
                .answering("/access_token", Username::Literal("oauth2".into())),
        };
        spec.override_with(get)?;
        if spec.fields.is_empty() && spec.auth == Auth::None {
            return Err(
                "the exchange sends no token: set config fields (e.g. {\"subject_token\": \"$token\"}) or auth".into(),
            );
        }
        let sends_token = spec.fields.iter().any(|(_, s)| *s == Source::Token)
            || matches!(spec.auth, Auth::Basic(_) | Auth::Bearer);
        if !sends_token {
            return Err(
                "the exchange never sends the service-account token: use $token in a field, or auth basic or bearer".into(),
            );
        }
        Ok(spec)
    }

    fn base(
        preset: Preset,
        endpoint: String,
        encoding: Encoding,
        fields: Vec<(String, Source)>,
    ) -> Self {
        Self {
            preset,
            endpoint,
            post: true,
            encoding,
            fields,
            auth: Auth::None,
            username: Username::Literal("oauth2".into()),
            password_pointer: "/access_token".into(),
            expiry: Expiry::ExpiresIn("/expires_in".into()),
            per_image: false,
        }
    }

    fn answering(mut self, password: &str, username: Username) -> Self {
        self.password_pointer = password.into();
        self.username = username;
        self
    }

    /// The operator's explicit settings win over the preset's.
    fn override_with(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(method) = get("method") {
            self.post = match method.as_str() {
                "POST" => true,
                "GET" => false,
                _ => return Err("config method must be POST or GET".into()),
            };
        }
        if let Some(encoding) = get("encoding") {
            self.encoding = match encoding.as_str() {
                "form" => Encoding::Form,
                "json" => Encoding::Json,
                "none" => Encoding::None,
                _ => return Err("config encoding must be form, json or none".into()),
            };
        }
        if let Some(fields) = get("fields") {
            let map: BTreeMap<String, String> = serde_json::from_str(&fields)
                .map_err(|_| "config fields must be a JSON object of strings".to_string())?;
            for (name, value) in map {
                let source =
                    Source::parse(&value).map_err(|e| format!("config fields.{name}: {e}"))?;
                match self.fields.iter_mut().find(|(n, _)| *n == name) {
                    Some(existing) => existing.1 = source,
                    None => self.fields.push((name, source)),
                }
            }
        }
        if let Some(auth) = get("auth") {
            self.auth = match auth.as_str() {
                "none" => Auth::None,
                "bearer" => Auth::Bearer,
                "basic" => {
                    let user = get("authUsername")
                        .ok_or("auth basic needs config authUsername (the Basic user; the token is the password)")?;
                    Auth::Basic(
                        Source::parse(&user).map_err(|e| format!("config authUsername: {e}"))?,
                    )
                }
                _ => return Err("config auth must be none, basic or bearer".into()),
            };
        }
        if let Some(pointer) = get("passwordPointer") {
            self.password_pointer = pointer;
        }
        if let Some(pointer) = get("usernamePointer") {
            self.username = Username::Pointer(pointer);
        } else if let Some(username) = get("username") {
            self.username = Username::Literal(username);
        }
        match get("expiry").as_deref() {
            Some("jwt") => self.expiry = Expiry::Jwt,
            Some("none") => self.expiry = Expiry::None,
            Some("expiresIn") => {
                self.expiry = Expiry::ExpiresIn(
                    get("expiresInPointer").unwrap_or_else(|| "/expires_in".into()),
                )
            }
            Some(_) => return Err("config expiry must be expiresIn, jwt or none".into()),
            None => {
                if let Some(pointer) = get("expiresInPointer") {
                    self.expiry = Expiry::ExpiresIn(pointer);
                }
            }
        }
        if let Some(kind) = get("cacheKeyType") {
            self.per_image = kind == "Image";
        }
        Ok(())
    }

    /// The origin of the endpoint, for messages (never its path or query).
    pub fn origin(&self) -> &str {
        let after = self.endpoint.find("://").map_or(0, |i| i + 3);
        let end = self.endpoint[after..]
            .find(['/', '?', '#'])
            .map_or(self.endpoint.len(), |i| after + i);
        &self.endpoint[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> Result<Spec, String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Spec::from_config(&|k| map.get(k).cloned())
    }

    fn names(spec: &Spec) -> Vec<&str> {
        spec.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn jfrog_preset_is_the_oidc_token_exchange() {
        let s = spec(&[
            ("preset", "jfrog"),
            ("endpoint", "https://acme.jfrog.io/access/api/v1/oidc/token"),
            ("providerName", "k8s-prod"),
            ("projectKey", "team"),
        ])
        .unwrap();
        assert_eq!(s.encoding, Encoding::Json);
        assert!(s.post);
        assert_eq!(
            names(&s),
            [
                "grant_type",
                "subject_token_type",
                "subject_token",
                "provider_name",
                "provider_type",
                "project_key"
            ]
        );
        assert_eq!(s.username, Username::Pointer("/username".into()));
        assert_eq!(s.expiry, Expiry::ExpiresIn("/expires_in".into()));
        assert_eq!(s.origin(), "https://acme.jfrog.io");
        let e = spec(&[("preset", "jfrog"), ("endpoint", "https://a.io/t")]).unwrap_err();
        assert_eq!(e, "preset jfrog needs config providerName");
    }

    #[test]
    fn the_other_presets() {
        let c = spec(&[
            ("preset", "cloudsmith"),
            ("endpoint", "https://api.cloudsmith.io/openid/acme/"),
            ("serviceSlug", "puller"),
        ])
        .unwrap();
        assert_eq!(names(&c), ["oidc_token", "service_slug"]);
        assert_eq!(c.expiry, Expiry::Jwt);
        assert_eq!(c.password_pointer, "/token");
        let q = spec(&[
            ("preset", "quay"),
            (
                "endpoint",
                "https://quay.example.com/oauth2/federation/robot/token",
            ),
            (
                "authUsername",
                "$annotation:quay.io/federated-robot-account",
            ),
        ])
        .unwrap();
        assert!(!q.post);
        assert_eq!(q.encoding, Encoding::None);
        assert_eq!(
            q.auth,
            Auth::Basic(Source::Annotation("quay.io/federated-robot-account".into()))
        );
        assert_eq!(q.username, Username::AuthUser);
        let y = spec(&[
            ("preset", "yandex"),
            ("endpoint", "https://auth.yandex.cloud/oauth/token"),
            ("audience", "ajelabcde12345"),
        ])
        .unwrap();
        assert_eq!(y.encoding, Encoding::Form);
        assert_eq!(y.username, Username::Literal("iam".into()));
        let r = spec(&[
            ("preset", "rfc8693"),
            ("endpoint", "https://sts.example.com/token"),
            ("scope", "pull"),
            ("username", "robot"),
            ("fields", r#"{"resource":"$registry","subject_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#),
        ])
        .unwrap();
        assert_eq!(
            names(&r),
            [
                "grant_type",
                "subject_token",
                "subject_token_type",
                "scope",
                "resource"
            ]
        );
        assert_eq!(r.fields[2].1, Source::Literal(TOKEN_TYPE_ID_TOKEN.into()));
        assert_eq!(r.username, Username::Literal("robot".into()));
    }

    #[test]
    fn custom_exchanges_must_send_the_token_somewhere() {
        let e = spec(&[("preset", "custom"), ("endpoint", "https://a.io/t")]).unwrap_err();
        assert!(e.contains("sends no token"), "{e}");
        let e = spec(&[
            ("preset", "custom"),
            ("endpoint", "https://a.io/t"),
            ("fields", r#"{"a":"b"}"#),
        ])
        .unwrap_err();
        assert!(e.contains("never sends"), "{e}");
        let s = spec(&[
            ("preset", "custom"),
            ("endpoint", "https://a.io/t"),
            ("auth", "bearer"),
            ("method", "GET"),
            ("encoding", "none"),
            ("expiry", "jwt"),
            ("passwordPointer", "/data/0/key"),
            ("cacheKeyType", "Image"),
        ])
        .unwrap();
        assert_eq!(s.auth, Auth::Bearer);
        assert!(s.per_image && !s.post);
        assert!(spec(&[("endpoint", "https://a.io/t")]).is_err());
        assert!(
            spec(&[("preset", "rfc8693")])
                .unwrap_err()
                .contains("endpoint")
        );
    }

    #[test]
    fn sources() {
        let ann: BTreeMap<String, String> = [("k".to_string(), " v ".to_string())].into();
        assert_eq!(
            Source::parse("$$token").unwrap(),
            Source::Literal("$token".into())
        );
        assert!(Source::parse("$tokn").is_err());
        assert!(Source::parse("$annotation:").is_err());
        let a = Source::parse("$annotation:k").unwrap();
        assert_eq!(a.resolve("t", "r", &ann).unwrap(), "v");
        let e = Source::parse("$annotation:x")
            .unwrap()
            .resolve("t", "r", &ann)
            .unwrap_err();
        assert!(e.contains("requiredServiceAccountAnnotationKeys"), "{e}");
        let bad: BTreeMap<String, String> = [("k".to_string(), "a\nb".to_string())].into();
        assert!(a.resolve("t", "r", &bad).is_err());
        assert_eq!(
            Source::Registry.resolve("t", "r.io:5000", &ann).unwrap(),
            "r.io:5000"
        );
    }
}
