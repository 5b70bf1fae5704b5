//! What a plugin's answer may tell the kubelet: auth keys only for images
//! the host selects that plugin for, a `cacheKeyType` whose kubelet cache
//! entry only serves such images, and never the service-account token
//! unless credentials are cached per token. Hostile answers come from
//! `tests/components/answer-forge`; cache hits are counted with
//! `tests/components/http-probe` against a counting token server.

use crate::support;

use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, TestServer};
use support::strict::{self, Accepted};
use support::workspace::{Workspace, host_binary, host_command};
use wcp_test_artifacts::{ANSWER_FORGE, HTTP_PROBE, STATIC_PLUGIN};

fn sa_token(nonce: &str) -> String {
    support::tokens::sa_token("registry", "team", "puller", "uid-1", nonce)
}

/// The forge plugin `name` selected by `match_images` (YAML flow list),
/// with `config` (YAML flow mapping body) and `extra` plugin YAML.
fn forge(name: &str, match_images: &str, config: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    module: {ANSWER_FORGE}\n    matchImages: {match_images}\n    config: {{{config}}}\n    grants: {{serviceAccountToken: true}}\n{extra}"
    )
}

/// A static plugin `name` for `match_images`, standing for "another plugin".
fn other(name: &str, match_images: &str) -> String {
    format!(
        "  - name: {name}\n    module: {STATIC_PLUGIN}\n    matchImages: {match_images}\n    config: {{username: robot, password: other-password}}\n"
    )
}

fn exec(config: &std::path::Path, request: &RequestSpec) -> Exec {
    Provider::new(host_binary(), config).exec(request)
}

fn accepted(exec: &Exec) -> Accepted {
    assert!(exec.success, "{exec:#?}");
    strict::decode(&exec.stdout, V1).unwrap_or_else(|e| panic!("{e}: {exec:#?}"))
}

fn entries(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.cache_dir())
        .map(|dir| {
            dir.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "entry")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn keys_beyond_the_plugins_images_refuse_the_whole_answer() {
    // (keys, part of the error line)
    let cases = [
        ("*", "\"*\", which its matchImages"),
        ("docker.io", "\"docker.io\", which its matchImages"),
        (
            "https://index.docker.io/v1/",
            "answer with docker.io instead",
        ),
        ("other.io", "\"other.io\", which its matchImages"),
        ("team.registry.io", "plugin \"other\""),
        ("*.io", "\"*.io\", which its matchImages"),
        ("registry.io", "\"registry.io\", which its matchImages"),
        ("a.registry.io:5000", "do not cover"),
        // The earlier plugin is selected for team.registry.io.
        (
            "*.registry.io",
            "plugin \"other\" (matchImages \"team.registry.io\")",
        ),
        // One bad key among good ones: nothing is answered.
        ("{registry},b.registry.io,docker.io", "\"docker.io\""),
        ("user@a.registry.io", "not a registry key"),
    ];
    for (keys, needle) in cases {
        let ws = Workspace::new();
        let config = ws.config(&format!(
            "{}{}",
            other("other", "[\"other.io\", \"team.registry.io\"]"),
            forge(
                "forge",
                "[\"*.registry.io\"]",
                &format!("keys: \"{keys}\", cacheKeyType: Global"),
                ""
            )
        ));
        let line = exec(&config, &RequestSpec::new(V1, "a.registry.io/app"))
            .assert_clean_failure("plugin \"forge\" returned the auth key");
        assert!(line.contains(needle), "{keys}: {line}");
        assert_eq!(entries(&ws), 0, "{keys}: a refused answer was cached");
    }
}

#[test]
fn keys_within_the_plugins_images_pass_through() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "{}{}",
        other("other", "[\"other.io\"]"),
        forge(
            "forge",
            "[\"*.registry.io\", \"registry.io/team\"]",
            "keys: \"{registry},*.registry.io,https://b.registry.io/v2/,registry.io/team-a\"",
            ""
        )
    ));
    let resp = accepted(&exec(&config, &RequestSpec::new(V1, "a.registry.io/app")));
    let keys: Vec<&str> = resp.auth.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "*.registry.io",
            "a.registry.io",
            "https://b.registry.io/v2/",
            "registry.io/team-a"
        ]
    );
    assert_eq!(resp.cache_key_type, "Registry");
}

/// The probe answering `cacheKeyType: Global` under `*.registry.io`, after
/// the plugins in `before`.
struct Probe {
    ws: Workspace,
    server: TestServer,
}

impl Probe {
    fn new() -> Self {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = TestServer::http(move |_| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Reply::text(200, &format!("token-{n}"))
        });
        Self {
            ws: Workspace::new(),
            server,
        }
    }

    /// Writes the host config: `before`, then the probe.
    fn config(&self, before: &str) -> std::path::PathBuf {
        self.ws.config(&format!(
            "{before}  - name: probe\n    module: {HTTP_PROBE}\n    matchImages: [\"*.registry.io\"]\n    config: {{target: \"{}\", cacheKeyType: Global}}\n    grants:\n      outbound: [\"http://{}\"]\n",
            self.server.url("/token"),
            self.server.addr
        ))
    }

    /// (password, cacheKeyType) for `image`.
    fn pull(&self, config: &std::path::Path, image: &str) -> (String, String) {
        let exec = Provider::new(host_binary(), config)
            .env("WCP_LOG", "info")
            .exec(&RequestSpec::new(V1, image));
        let resp = accepted(&exec);
        let password = resp
            .auth
            .values()
            .next()
            .expect("a credential")
            .password
            .clone();
        (password, resp.cache_key_type)
    }

    fn calls(&self) -> usize {
        self.server.seen().len()
    }

    fn listing(&self, config: &std::path::Path) -> String {
        host_command(config, &["cache", "list"])
    }
}

#[test]
fn a_single_plugin_may_answer_global() {
    let p = Probe::new();
    let config = p.config("");
    assert_eq!(
        p.pull(&config, "a.registry.io/app"),
        ("token-1".into(), "Global".into())
    );
    // One entry for every image of the plugin, as the kubelet keeps it.
    assert_eq!(
        p.pull(&config, "b.registry.io/app"),
        ("token-1".into(), "Global".into())
    );
    assert_eq!(p.calls(), 1);
    assert!(p.listing(&config).contains("Global"));
}

#[test]
fn global_is_downgraded_to_registry_beside_other_plugins() {
    let p = Probe::new();
    let config = p.config(&other("other", "[\"other.io\"]"));
    let exec = Provider::new(host_binary(), &config)
        .env("WCP_LOG", "info")
        .exec(&RequestSpec::new(V1, "a.registry.io/app"));
    let resp = accepted(&exec);
    assert_eq!(resp.cache_key_type, "Registry");
    assert!(
        exec.stderr
            .contains("cacheKeyType Registry instead of Global: the host config has 2 plugins"),
        "{}",
        exec.stderr
    );
    // The host's own entry follows: per registry, not global.
    let listing = p.listing(&config);
    assert!(listing.contains("Registry"), "{listing}");
    assert!(!listing.contains("Global"), "{listing}");
    assert_eq!(
        p.pull(&config, "a.registry.io/other"),
        ("token-1".into(), "Registry".into())
    );
    assert_eq!(
        p.pull(&config, "b.registry.io/app"),
        ("token-2".into(), "Registry".into())
    );
    assert_eq!(p.calls(), 2);
}

#[test]
fn a_cached_global_entry_is_served_narrowed_once_another_plugin_joins() {
    let p = Probe::new();
    let alone = p.config("");
    assert_eq!(
        p.pull(&alone, "a.registry.io/app"),
        ("token-1".into(), "Global".into())
    );
    // Same probe settings, so the same cache partition, now behind another plugin.
    let shared = p.config(&other("other", "[\"other.io\"]"));
    assert_eq!(
        p.pull(&shared, "b.registry.io/app"),
        ("token-1".into(), "Registry".into())
    );
    assert_eq!(p.calls(), 1);
    // Behind a plugin that owns the entry's auth key, it is not served at all.
    let owned = p.config(&other("other", "[\"a.registry.io\"]"));
    let exec =
        Provider::new(host_binary(), &owned).exec(&RequestSpec::new(V1, "c.registry.io/app"));
    // A fresh call: its own key c.registry.io is fine.
    let resp = accepted(&exec);
    assert_eq!(resp.auth["c.registry.io"].password, "token-2");
    assert_eq!(p.calls(), 2);
}

#[test]
fn registry_is_narrowed_to_image_when_plugins_split_a_registry() {
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "  - name: team-a\n    module: {STATIC_PLUGIN}\n    matchImages: [\"registry.io/team-a\"]\n    config: {{username: robot, password: team-a-password, matchKey: registry.io/team-a}}\n{}",
        forge(
            "team-b",
            "[\"registry.io/team-b\"]",
            "keys: \"registry.io/team-b\", cacheKeyType: Registry",
            ""
        )
    ));
    let resp = accepted(&exec(
        &config,
        &RequestSpec::new(V1, "registry.io/team-b/app"),
    ));
    assert_eq!(resp.cache_key_type, "Image");
    let listing = host_command(&config, &["cache", "list"]);
    assert!(listing.contains("Image"), "{listing}");
    // The other plugin still serves its own images.
    let resp = accepted(&exec(
        &config,
        &RequestSpec::new(V1, "registry.io/team-a/app"),
    ));
    assert_eq!(resp.auth["registry.io/team-a"].password, "team-a-password");
    assert_eq!(resp.cache_key_type, "Image");
    // Its registry host as the key would also name team-b's images.
    let host_key = ws.config(&format!(
        "  - name: team-a\n    module: {STATIC_PLUGIN}\n    matchImages: [\"registry.io/team-a\"]\n    config: {{username: robot, password: team-a-password}}\n"
    ));
    exec(&host_key, &RequestSpec::new(V1, "registry.io/team-a/app")).assert_clean_failure(
        "\"registry.io\", which its matchImages [\"registry.io/team-a\"] do not cover",
    );
}

/// Token placements the forge supports; each hands the token on.
const PLACEMENTS: [&str; 9] = [
    "password",
    "bearer",
    "prefix",
    "username",
    "key",
    "base64",
    "base64url",
    "dockerAuth",
    "signature",
];

#[test]
fn the_token_anywhere_in_an_answer_needs_token_cache_type() {
    let token = sa_token("pod-1");
    for placement in PLACEMENTS {
        let ws = Workspace::new();
        let config = ws.config(&forge(
            "forge",
            "[\"*.registry.io\"]",
            &format!("token: {placement}"),
            "",
        ));
        let exec = exec(
            &config,
            &RequestSpec::new(V1, "a.registry.io/app").token(&token),
        );
        let line = exec.assert_clean_failure("tokenCacheType: Token");
        assert!(line.contains("plugin \"forge\""), "{placement}: {line}");
        assert!(!line.contains(&token), "{placement}: token in {line}");
        assert_eq!(entries(&ws), 0, "{placement}: a refused answer was cached");
    }
}

#[test]
fn the_token_may_be_returned_with_token_cache_type() {
    let token = sa_token("pod-1");
    for placement in PLACEMENTS {
        let ws = Workspace::new();
        let config = ws.config(&forge(
            "forge",
            "[\"*.registry.io\"]",
            &format!("token: {placement}"),
            "    cache: {tokenCacheType: Token}\n",
        ));
        let resp = accepted(&exec(
            &config,
            &RequestSpec::new(V1, "a.registry.io/app").token(&token),
        ));
        assert_eq!(resp.auth.len(), 1, "{placement}");
        // Cached per token: another pod's token misses.
        let other_pod = sa_token("pod-2");
        let again = accepted(&exec(
            &config,
            &RequestSpec::new(V1, "a.registry.io/app").token(&other_pod),
        ));
        assert_ne!(again.auth, resp.auth, "{placement}");
    }
}

#[test]
fn a_refused_key_never_prints_the_token() {
    let token = sa_token("pod-1");
    let ws = Workspace::new();
    let config = ws.config(&forge(
        "forge",
        "[\"*.registry.io\"]",
        "keys: docker.io, token: key",
        "    cache: {tokenCacheType: Token}\n",
    ));
    let line = exec(
        &config,
        &RequestSpec::new(V1, "a.registry.io/app").token(&token),
    )
    .assert_clean_failure("\"docker.io/<redacted>\"");
    assert!(!line.contains(&token[..40]), "{line}");
}
