//! A loopback HashiCorp Vault (TLS, test-time CA): Kubernetes auth login
//! and KV v2 reads, in Vault's real answer and error shapes. Each role
//! binds one namespace (as `bound_service_account_namespaces` does) and
//! its policy reads `secret/data/registry/<that namespace>/*` only. The
//! fake checks every field and header and reports what it did not like.

use super::exchanges::{exp_of, header, json, now};
use super::server::{Reply, Seen, TestCa, TestServer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The client tokens' lease.
pub const LEASE: u64 = 1800;

#[derive(Default)]
struct State {
    /// client token -> the namespace its role is bound to.
    tokens: BTreeMap<String, String>,
    problems: Vec<String>,
}

pub struct FakeVault {
    pub server: TestServer,
    state: Arc<Mutex<State>>,
    sealed: Arc<AtomicBool>,
}

impl FakeVault {
    /// `roles`: role -> bound namespace; `secrets`: KV path (under
    /// `secret/`) -> (username, password); `namespace`: the Vault
    /// Enterprise namespace every request must carry, if any.
    pub fn start(
        ca: &TestCa,
        roles: &[(&str, &str)],
        secrets: &[(&str, &str, &str)],
        namespace: Option<&str>,
    ) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let sealed = Arc::new(AtomicBool::new(false));
        let roles: BTreeMap<String, String> = roles
            .iter()
            .map(|(r, n)| (r.to_string(), n.to_string()))
            .collect();
        let secrets: BTreeMap<String, (String, String)> = secrets
            .iter()
            .map(|(p, u, pw)| (p.to_string(), (u.to_string(), pw.to_string())))
            .collect();
        let namespace = namespace.map(str::to_string);
        let (st, seal) = (state.clone(), sealed.clone());
        let server = TestServer::https(ca, move |seen| {
            if header(seen, "x-vault-namespace") != namespace.as_deref() {
                st.lock().unwrap().problems.push(format!(
                    "{} {}: X-Vault-Namespace {:?}",
                    seen.method,
                    seen.path,
                    header(seen, "x-vault-namespace")
                ));
                return errors(404, &["no handler for route"]);
            }
            if seal.load(Ordering::SeqCst) {
                return errors(503, &["Vault is sealed"]);
            }
            let mut state = st.lock().unwrap();
            if seen.method == "POST" && seen.path == "/v1/auth/kubernetes/login" {
                login(&mut state, &roles, seen)
            } else if seen.method == "GET" && seen.path.starts_with("/v1/secret/data/") {
                read(&mut state, &secrets, seen)
            } else {
                state
                    .problems
                    .push(format!("unexpected {} {}", seen.method, seen.path));
                errors(404, &[])
            }
        });
        Self {
            server,
            state,
            sealed,
        }
    }

    pub fn address(&self) -> String {
        self.server.url("")
    }

    pub fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
    }

    /// (logins, reads).
    pub fn calls(&self) -> (usize, usize) {
        let seen = self.server.seen();
        let logins = seen.iter().filter(|s| s.path.contains("/auth/")).count();
        (logins, seen.len() - logins)
    }

    /// The paths read, in order.
    pub fn reads(&self) -> Vec<String> {
        self.server
            .seen()
            .into_iter()
            .filter(|s| s.method == "GET")
            .map(|s| s.path)
            .collect()
    }

    pub fn client_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.keys().cloned().collect()
    }

    pub fn assert_no_problems(&self) {
        let state = self.state.lock().unwrap();
        assert!(
            state.problems.is_empty(),
            "the fake Vault saw: {:#?}",
            state.problems
        );
    }
}

fn errors(status: u16, messages: &[&str]) -> Reply {
    json(status, serde_json::json!({ "errors": messages }))
}

/// The `kubernetes.io` claims of a token: (namespace, service account).
fn coordinates(jwt: &str) -> Option<(String, String)> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let k = claims.get("kubernetes.io")?;
    Some((
        k.get("namespace")?.as_str()?.to_string(),
        k.get("serviceaccount")?.get("name")?.as_str()?.to_string(),
    ))
}

fn login(state: &mut State, roles: &BTreeMap<String, String>, seen: &Seen) -> Reply {
    if header(seen, "content-type") != Some("application/json") {
        state.problems.push(format!(
            "login content-type {:?}",
            header(seen, "content-type")
        ));
    }
    if header(seen, "x-vault-token").is_some() {
        state.problems.push("login carries a Vault token".into());
    }
    let body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&seen.body).unwrap_or_default();
    let keys: Vec<&String> = body.keys().collect();
    if keys != ["jwt", "role"] {
        state.problems.push(format!("login fields {keys:?}"));
        return errors(400, &["missing role"]);
    }
    let role = body["role"].as_str().unwrap_or_default();
    let jwt = body["jwt"].as_str().unwrap_or_default();
    let Some(bound) = roles.get(role) else {
        return errors(400, &[format!("invalid role name \"{role}\"").as_str()]);
    };
    if exp_of(jwt).is_none_or(|exp| exp <= now()) {
        return errors(403, &["permission denied"]);
    }
    let Some((namespace, account)) = coordinates(jwt) else {
        return errors(403, &["permission denied"]);
    };
    if &namespace != bound {
        return errors(
            403,
            &[format!(
                "namespace not authorized: service account namespace {namespace:?} is not bound to role {role:?}"
            )
            .as_str()],
        );
    }
    let token = format!("hvs.CAESIJ{}fake{}", state.tokens.len(), namespace.len());
    state.tokens.insert(token.clone(), namespace.clone());
    json(
        200,
        serde_json::json!({
            "request_id": "5fe2b0c3-1ad7-4a1f-9e0c-3c6e1f2a9b10",
            "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
            "wrap_info": null, "warnings": null,
            "auth": {
                "client_token": token,
                "accessor": "hmac-accessor",
                "policies": ["default", format!("registry-{namespace}")],
                "token_policies": ["default", format!("registry-{namespace}")],
                "metadata": {"role": role, "service_account_name": account, "service_account_namespace": namespace, "service_account_secret_name": "", "service_account_uid": "uid-1"},
                "lease_duration": LEASE, "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true
            }
        }),
    )
}

fn read(state: &mut State, secrets: &BTreeMap<String, (String, String)>, seen: &Seen) -> Reply {
    let Some(bound) = header(seen, "x-vault-token")
        .and_then(|t| state.tokens.get(t))
        .cloned()
    else {
        return errors(403, &["permission denied"]);
    };
    let path = seen.path.trim_start_matches("/v1/secret/data/");
    if !path.starts_with(&format!("registry/{bound}/")) {
        return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    let Some((username, password)) = secrets.get(path) else {
        return errors(404, &[]);
    };
    json(
        200,
        serde_json::json!({
            "request_id": "0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5",
            "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {
                "data": {"username": username, "password": password},
                "metadata": {"created_time": "2026-11-30T10:00:00.000000Z", "custom_metadata": null, "deletion_time": "", "destroyed": false, "version": 2}
            },
            "wrap_info": null, "warnings": null, "auth": null
        }),
    )
}
