//! The exec path's cache rules against fakes: no wasm, no disk, a fixed
//! clock. Each test names the kubelet behaviour (or host rule) it pins.

use super::*;
use crate::events::Record;
use base64::Engine;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use wcp_core::answer::{Answer, AuthEntry};
use wcp_core::cache_entry::Entry;
use wcp_core::cache_key::{ServiceAccountKey, TokenCacheType, encode_key};
use wcp_core::protocol::{ApiVersion, AuthConfig};
use wcp_core::shared_failure::SharedFailure;

const NOW: u64 = 1_700_000_000;
const IMAGE: &str = "registry.io/team/app";

fn config(plugin_extra: &str) -> HostConfig {
    HostConfig::parse(
        &format!(
            "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - name: p\n    module: p.wasm\n    matchImages: [\"registry.io\"]\n{plugin_extra}"
        ),
        Path::new("/"),
    )
    .unwrap()
}

fn request(image: &str, token: Option<&str>) -> Request {
    Request {
        api_version: ApiVersion::V1,
        image: image.into(),
        service_account_token: token.map(str::to_string),
        service_account_annotations: BTreeMap::from([("role".to_string(), "puller".to_string())]),
    }
}

/// A token shaped like a projected service-account token.
fn sa_token(namespace: &str, name: &str, uid: &str) -> String {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let claims = serde_json::json!({
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
    });
    format!("{}.{}.sig", b64("{}"), b64(&claims.to_string()))
}

fn answer(password: &str, kind: CacheKeyType, expires_at: Option<u64>) -> Answer {
    Answer {
        auth: vec![AuthEntry {
            match_key: "registry.io".into(),
            username: "u".into(),
            password: password.into(),
        }],
        cache_key_type: kind,
        expires_at,
    }
}

/// A plugin that gives one answer and counts its calls.
struct Scripted {
    answer: Answer,
    calls: Cell<usize>,
    /// Calls that fail before the answer comes.
    failing: Cell<usize>,
}

impl Scripted {
    fn new(answer: Answer) -> Self {
        Self {
            answer,
            calls: Cell::new(0),
            failing: Cell::new(0),
        }
    }

    fn failing_first(self, calls: usize) -> Self {
        self.failing.set(calls);
        self
    }
}

impl PluginCall for Scripted {
    fn call(&self, _: &PluginConfig, _: &Request) -> Result<Outcome> {
        self.calls.set(self.calls.get() + 1);
        if self.failing.get() > 0 {
            self.failing.set(self.failing.get() - 1);
            return Err(anyhow::Error::new(PluginFailed(anyhow::anyhow!(
                "plugin \"p\": upstream failure: STS answered 503"
            ))));
        }
        Ok(Outcome::Answer(self.answer.clone()))
    }
}

/// An in-memory cache recording what was asked of it. `on_lock` is an
/// entry a concurrent exec stores while this one waits for the flight.
#[derive(Default)]
struct Memory {
    entries: RefCell<BTreeMap<(String, Vec<u8>), Entry>>,
    asked: RefCell<Vec<Vec<u8>>>,
    locks: RefCell<Vec<String>>,
    on_lock: RefCell<Option<Entry>>,
    failures: RefCell<BTreeMap<String, SharedFailure>>,
    /// A failure the holder records while this exec waits.
    on_lock_failure: RefCell<Option<SharedFailure>>,
}

impl Memory {
    fn insert(&self, entry: Entry) {
        let key = hex::decode(&entry.key).unwrap();
        self.entries
            .borrow_mut()
            .insert((entry.scope.clone(), key), entry);
    }

    fn stored(&self) -> Vec<Entry> {
        self.entries.borrow().values().cloned().collect()
    }
}

impl CredentialCache for Memory {
    fn get(&self, scope: &str, key: &[u8], now: u64) -> Option<Entry> {
        self.asked.borrow_mut().push(key.to_vec());
        self.entries
            .borrow()
            .get(&(scope.to_string(), key.to_vec()))
            .filter(|e| e.remaining(now).is_some())
            .cloned()
    }

    fn put(&self, entry: &Entry, _now: u64) -> Result<()> {
        self.insert(entry.clone());
        Ok(())
    }

    fn lock(&self, flight: &str, _deadline: Instant) -> Option<Flight> {
        self.locks.borrow_mut().push(flight.to_string());
        if let Some(entry) = self.on_lock.borrow_mut().take() {
            self.insert(entry);
        }
        if let Some(failure) = self.on_lock_failure.borrow_mut().take() {
            self.put_failure(flight, &failure);
        }
        Some(Box::new(()))
    }

    fn failure(&self, flight: &str) -> Option<SharedFailure> {
        self.failures.borrow().get(flight).cloned()
    }

    fn put_failure(&self, flight: &str, failure: &SharedFailure) {
        self.failures
            .borrow_mut()
            .insert(flight.to_string(), failure.clone());
    }
}

struct Fixed(u64);

impl Clock for Fixed {
    fn now(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Recorded(RefCell<Vec<serde_json::Value>>);

impl Audit for Recorded {
    fn record(&self, record: &Record<'_>) {
        self.0
            .borrow_mut()
            .push(serde_json::to_value(record).unwrap());
    }
}

/// One exec against the fakes; the response as the kubelet reads it.
/// [`run`] at another time, in milliseconds after `NOW`.
fn run_later(
    config: &HostConfig,
    request: &Request,
    plugin: &Scripted,
    cache: &Memory,
    later_ms: u64,
) -> Result<serde_json::Value> {
    let clock = FixedMs(NOW * 1000 + later_ms);
    let audit = Recorded::default();
    let deps = Deps {
        plugin,
        cache,
        clock: &clock,
        audit: &audit,
    };
    let response = respond(config, request, &deps)?;
    Ok(serde_json::from_slice(&response.encode()).unwrap())
}

struct FixedMs(u64);

impl Clock for FixedMs {
    fn now(&self) -> u64 {
        self.0 / 1000
    }

    fn now_ms(&self) -> u64 {
        self.0
    }
}

/// [`run`] with an audit log nobody reads.
fn unaudited(
    config: &HostConfig,
    request: &Request,
    plugin: &Scripted,
    cache: &Memory,
) -> Result<serde_json::Value> {
    run(config, request, plugin, cache, &Recorded::default())
}

fn run(
    config: &HostConfig,
    request: &Request,
    plugin: &Scripted,
    cache: &Memory,
    audit: &Recorded,
) -> Result<serde_json::Value> {
    let deps = Deps {
        plugin,
        cache,
        clock: &Fixed(NOW),
        audit,
    };
    let response = respond(config, request, &deps)?;
    Ok(serde_json::from_slice(&response.encode()).unwrap())
}

/// A stored entry of plugin `p` (of `config`) under `kind`, with password
/// `password`, expiring `life` seconds from [`NOW`].
fn entry(config: &HostConfig, kind: CacheKeyType, password: &str, life: u64) -> Entry {
    let partition = Partition::new(
        config.plugins[0].cache_scope(),
        None,
        &BTreeMap::new(),
        TokenCacheType::ServiceAccount,
    )
    .unwrap();
    let auth = BTreeMap::from([(
        "registry.io".to_string(),
        AuthConfig {
            username: "u".into(),
            password: password.into(),
        },
    )]);
    Entry::new("p", &partition, kind, IMAGE, auth, NOW - 10, life + 10).unwrap()
}

fn password(response: &serde_json::Value) -> &str {
    response["auth"]["registry.io"]["password"]
        .as_str()
        .unwrap()
}

#[test]
fn lookup_order_is_image_then_registry_then_global() {
    let config = config("");
    let plugin = Scripted::new(answer("fresh", CacheKeyType::Registry, None));
    let cache = Memory::default();
    let audit = Recorded::default();
    run(&config, &request(IMAGE, None), &plugin, &cache, &audit).unwrap();
    let expected = [IMAGE, "registry.io", "<global>"].map(|base| encode_key(base, &[]).unwrap());
    // Looked up in kubelet's order, then again after taking the flight lock.
    assert_eq!(
        *cache.asked.borrow(),
        [&expected[..], &expected[..]].concat()
    );
    assert_eq!(plugin.calls.get(), 1);

    // The first key that holds an entry wins.
    for (stored, served) in [
        (
            vec![(CacheKeyType::Global, "g"), (CacheKeyType::Registry, "r")],
            "r",
        ),
        (
            vec![(CacheKeyType::Registry, "r"), (CacheKeyType::Image, "i")],
            "i",
        ),
        (vec![(CacheKeyType::Global, "g")], "g"),
    ] {
        let cache = Memory::default();
        for (kind, pw) in stored {
            cache.insert(entry(&config, kind, pw, 100));
        }
        let response = run(&config, &request(IMAGE, None), &plugin, &cache, &audit).unwrap();
        assert_eq!(password(&response), served);
        assert_eq!(response["cacheDuration"], "1m40s");
    }
    assert_eq!(plugin.calls.get(), 1, "hits never call the plugin");
    let hit = audit.0.borrow().last().cloned().unwrap();
    assert_eq!(
        hit,
        serde_json::json!({"event": "cache_hit", "plugin": "p", "keyKind": "Global",
                           "registry": "registry.io", "remainingSeconds": 100})
    );
}

#[test]
fn an_expired_entry_is_not_served() {
    let config = config("");
    let plugin = Scripted::new(answer("fresh", CacheKeyType::Registry, None));
    let cache = Memory::default();
    cache.insert(entry(&config, CacheKeyType::Image, "old", 0));
    let response = unaudited(&config, &request(IMAGE, None), &plugin, &cache).unwrap();
    assert_eq!(password(&response), "fresh");
    assert_eq!(plugin.calls.get(), 1);
}

#[test]
fn an_answer_echoing_the_token_is_refused() {
    let config = config("");
    let token = sa_token("ns", "sa", "uid-1");
    let plugin = Scripted::new(answer(&token, CacheKeyType::Registry, None));
    let cache = Memory::default();
    let err = unaudited(&config, &request(IMAGE, Some(&token)), &plugin, &cache).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.starts_with("plugin \"p\": plugin returned"), "{text}");
    assert!(text.contains("tokenCacheType: Token"), "{text}");
    assert!(!text.contains(&token), "{text}");
    assert!(cache.stored().is_empty());

    // Cached per token, the echo is the plugin's business.
    let per_token = self::config("    cache: {tokenCacheType: Token}\n");
    let response = unaudited(&per_token, &request(IMAGE, Some(&token)), &plugin, &cache).unwrap();
    assert_eq!(password(&response), token);
}

#[test]
fn a_zero_duration_is_not_stored() {
    let cases = [
        // No expiry, and the operator's default lifetime is zero.
        (config("    cache: {defaultDuration: 0s}\n"), None),
        // Expires within the safety margin.
        (config(""), Some(NOW + 30)),
    ];
    for (config, expires_at) in cases {
        let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, expires_at));
        let cache = Memory::default();
        let response = unaudited(&config, &request(IMAGE, None), &plugin, &cache).unwrap();
        assert_eq!(response["cacheDuration"], "0s");
        assert_eq!(password(&response), "pw");
        assert!(cache.stored().is_empty(), "{expires_at:?}");
    }
}

#[test]
fn the_flight_recheck_serves_what_a_concurrent_exec_stored() {
    let config = config("");
    let plugin = Scripted::new(answer("fresh", CacheKeyType::Registry, None));
    let cache = Memory::default();
    *cache.on_lock.borrow_mut() = Some(entry(&config, CacheKeyType::Registry, "theirs", 200));
    let audit = Recorded::default();
    let response = run(&config, &request(IMAGE, None), &plugin, &cache, &audit).unwrap();
    assert_eq!(password(&response), "theirs");
    assert_eq!(plugin.calls.get(), 0);
    // One flight per (plugin, registry, identity).
    let partition = Partition::new(
        config.plugins[0].cache_scope(),
        None,
        &BTreeMap::new(),
        TokenCacheType::ServiceAccount,
    )
    .unwrap();
    assert_eq!(*cache.locks.borrow(), [partition.flight(IMAGE).unwrap()]);
    assert_eq!(audit.0.borrow()[0]["event"], "cache_hit");
}

#[test]
fn a_fresh_answer_is_stored_under_its_identity_and_clock() {
    let config = config("");
    let token = sa_token("team-a", "puller", "uid-7");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, Some(NOW + 3600)));
    let cache = Memory::default();
    let request = request(IMAGE, Some(&token));
    let response = unaudited(&config, &request, &plugin, &cache).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry");
    assert_eq!(response["cacheDuration"], "59m0s");
    let stored = cache.stored();
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    let sa = ServiceAccountKey::new(
        "team-a",
        "puller",
        "uid-7",
        &request.service_account_annotations,
        &token,
    )
    .encode(TokenCacheType::ServiceAccount)
    .unwrap();
    assert_eq!(e.plugin, "p");
    assert_eq!(e.scope, config.plugins[0].cache_scope());
    assert_eq!(e.key, hex::encode(encode_key("registry.io", &sa).unwrap()));
    assert_eq!(e.key_kind, CacheKeyType::Registry);
    assert_eq!(e.registry, "registry.io");
    assert_eq!(e.service_account.as_deref(), Some("team-a/puller"));
    assert_eq!((e.created_at, e.expires_at), (NOW, NOW + 3540));
    assert_eq!(e.auth["registry.io"].password, "pw");

    // Another service account misses that entry and gets its own.
    let other = self::request(IMAGE, Some(&sa_token("team-b", "puller", "uid-8")));
    unaudited(&config, &other, &plugin, &cache).unwrap();
    assert_eq!(plugin.calls.get(), 2);
    assert_eq!(cache.stored().len(), 2);
    // The same one hits it.
    unaudited(&config, &request, &plugin, &cache).unwrap();
    assert_eq!(plugin.calls.get(), 2);
}

#[test]
fn an_image_no_plugin_matches_answers_empty_without_the_plugin() {
    let config = config("");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None));
    let cache = Memory::default();
    let audit = Recorded::default();
    let response = run(
        &config,
        &request("elsewhere.io/app", None),
        &plugin,
        &cache,
        &audit,
    )
    .unwrap();
    assert_eq!(response["auth"], serde_json::json!({}));
    assert_eq!(response["cacheDuration"], "0s");
    assert_eq!(plugin.calls.get(), 0);
    assert!(cache.asked.borrow().is_empty() && cache.locks.borrow().is_empty());
    assert!(audit.0.borrow().is_empty());
}

#[test]
fn an_unreadable_service_account_identity_is_not_cached() {
    let config = config("");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None));
    let cache = Memory::default();
    for _ in 0..2 {
        let response = unaudited(
            &config,
            &request(IMAGE, Some("opaque-token")),
            &plugin,
            &cache,
        )
        .unwrap();
        // The kubelet is still told how long it may keep the answer.
        assert_eq!(response["cacheDuration"], "5m0s");
    }
    assert_eq!(plugin.calls.get(), 2);
    assert!(cache.asked.borrow().is_empty());
    assert!(cache.locks.borrow().is_empty());
    assert!(cache.stored().is_empty());
}

#[test]
fn the_told_key_type_is_what_is_stored() {
    // Two plugins share the host: a Global answer would serve the other
    // plugin's images, so it is narrowed, and stored narrowed.
    let config = HostConfig::parse(
        "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n  - {name: p, module: p.wasm, matchImages: [\"registry.io\"]}\n  - {name: q, module: q.wasm, matchImages: [\"other.io\"]}\n",
        Path::new("/"),
    )
    .unwrap();
    let plugin = Scripted::new(answer("pw", CacheKeyType::Global, None));
    let cache = Memory::default();
    let response = unaudited(&config, &request(IMAGE, None), &plugin, &cache).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry");
    assert_eq!(cache.stored()[0].key_kind, CacheKeyType::Registry);
}

#[test]
fn a_failed_flight_is_shared_until_its_window_ends() {
    let config = config("");
    let token = sa_token("ns", "puller", "uid-1");
    let plugin =
        Scripted::new(answer("pw", CacheKeyType::Registry, Some(NOW + 3600))).failing_first(1);
    let cache = Memory::default();
    let request = request(IMAGE, Some(&token));
    let first = run_later(&config, &request, &plugin, &cache, 0).unwrap_err();
    assert_eq!(
        format!("{first:#}"),
        "plugin \"p\": upstream failure: STS answered 503"
    );
    assert_eq!(cache.failures.borrow().len(), 1);
    // Another image of the registry, 2.5 s later: the same line, shared,
    // and no call.
    let other = self::request("registry.io/team/other", Some(&token));
    let shared = run_later(&config, &other, &plugin, &cache, 2_500).unwrap_err();
    assert_eq!(
        format!("{shared:#}"),
        "plugin \"p\": upstream failure: STS answered 503 (shared: the same request by a concurrent exec failed 2.5s ago; not retried until the failure expires)"
    );
    assert_eq!(plugin.calls.get(), 1);
    // After the default 5 s window the next exec calls and recovers.
    let response = run_later(&config, &request, &plugin, &cache, 5_000).unwrap();
    assert_eq!(password(&response), "pw");
    assert_eq!(plugin.calls.get(), 2);
}

#[test]
fn a_waiter_gets_the_failure_of_the_flight_it_waited_for() {
    let config = config("");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None));
    let cache = Memory::default();
    *cache.on_lock_failure.borrow_mut() = Some(SharedFailure::new(
        "plugin \"p\": upstream failure: 503",
        NOW * 1000 + 100,
        &super::settings_digest(&config),
    ));
    let err = run_later(&config, &request(IMAGE, None), &plugin, &cache, 900).unwrap_err();
    assert!(format!("{err:#}").contains("(shared: "), "{err:#}");
    assert_eq!(plugin.calls.get(), 0);
}

#[test]
fn failures_are_never_shared_across_identities_or_when_disabled() {
    let config = config("");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None)).failing_first(1);
    let cache = Memory::default();
    let a = sa_token("ns", "a", "uid-a");
    let b = sa_token("ns", "b", "uid-b");
    assert!(run_later(&config, &request(IMAGE, Some(&a)), &plugin, &cache, 0).is_err());
    let response = run_later(&config, &request(IMAGE, Some(&b)), &plugin, &cache, 100).unwrap();
    assert_eq!(password(&response), "pw");
    assert_eq!(plugin.calls.get(), 2);

    let disabled = self::config("    cache: {shareFailuresFor: 0s}\n");
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None)).failing_first(1);
    let cache = Memory::default();
    assert!(run_later(&disabled, &request(IMAGE, None), &plugin, &cache, 0).is_err());
    assert!(cache.failures.borrow().is_empty());
    assert!(run_later(&disabled, &request(IMAGE, None), &plugin, &cache, 100).is_ok());
}

#[test]
fn a_failure_before_the_plugin_ran_or_under_other_settings_is_not_shared() {
    struct Broken;
    impl PluginCall for Broken {
        fn call(&self, _: &PluginConfig, _: &Request) -> Result<Outcome> {
            anyhow::bail!("plugin \"p\": the first-use compile of plugin \"p\" failed")
        }
    }
    let config = config("");
    let cache = Memory::default();
    let deps = Deps {
        plugin: &Broken,
        cache: &cache,
        clock: &Fixed(NOW),
        audit: &Recorded::default(),
    };
    assert!(respond(&config, &request(IMAGE, None), &deps).is_err());
    assert!(cache.failures.borrow().is_empty());

    // A shared failure recorded under other settings (the operator has
    // changed the config since) is not served.
    let plugin = Scripted::new(answer("pw", CacheKeyType::Registry, None));
    let cache = Memory::default();
    *cache.on_lock_failure.borrow_mut() = Some(SharedFailure::new(
        "plugin \"p\": upstream failure: 503",
        NOW * 1000,
        "settings-before-the-fix",
    ));
    let response = run_later(&config, &request(IMAGE, None), &plugin, &cache, 100).unwrap();
    assert_eq!(password(&response), "pw");
}
