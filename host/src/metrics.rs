//! Prometheus metrics for a process that lives for one request: each exec
//! counts what it did, then adds it to a state file and rewrites the
//! metrics file for node-exporter's textfile collector
//! (`--collector.textfile.directory`), both under one `flock` so that
//! concurrent execs never lose a count, and both by rename so that the
//! collector only ever reads a whole file.
//!
//! What is counted comes from the audit records ([`observe`] is called for
//! every record, written or not, and matches them exhaustively, so a new
//! record cannot be logged without being counted), the outbound trace and
//! the exec's outcome. Labels are the plugin name (validated at config
//! load) and closed sets (outcomes, key kinds, event kinds, status codes):
//! never an image, a registry path or a secret, so cardinality is bounded
//! by the host config.

use crate::events::{CallOutcome, Record};
use crate::runtime::{Traced, Verdict};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The file node-exporter reads.
pub const FILE_NAME: &str = "wasm_credential_provider.prom";
const STATE_NAME: &str = ".wasm_credential_provider.state";
const LOCK_NAME: &str = ".wasm_credential_provider.lock";
/// Largest state file read; a real one is a few KiB.
const MAX_STATE_BYTES: u64 = 1 << 20;
/// How long an exec waits for the metrics lock before dropping its counts
/// (never delaying the kubelet for metrics).
const LOCK_WAIT: Duration = Duration::from_millis(500);
/// Plugin-call duration buckets, seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Name, type and help of every metric; a sample of another name is never
/// written.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "wcp_execs_total",
        "counter",
        "Kubelet execs, by plugin and outcome (cache_hit, plugin, empty, error).",
    ),
    (
        "wcp_cache_hits_total",
        "counter",
        "Answers served from the credential cache, by the key kind that hit.",
    ),
    (
        "wcp_flights_joined_total",
        "counter",
        "Cache hits that were a concurrent exec's flight this exec waited for.",
    ),
    (
        "wcp_shared_failures_total",
        "counter",
        "Execs that failed with a concurrent exec's failure instead of calling the plugin.",
    ),
    (
        "wcp_plugin_calls_total",
        "counter",
        "Plugin calls (cache misses), by outcome.",
    ),
    (
        "wcp_plugin_call_duration_seconds",
        "histogram",
        "Wall time of plugin calls.",
    ),
    (
        "wcp_components_total",
        "counter",
        "How the component of a plugin call was obtained: loaded (precompiled) or compiled.",
    ),
    (
        "wcp_denials_total",
        "counter",
        "Security events (denials and cut-offs) raised by plugins, by kind.",
    ),
    (
        "wcp_upstream_requests_total",
        "counter",
        "Outbound requests of plugins, by status (an HTTP status, refused or failed).",
    ),
    ("wcp_compiles_total", "counter", "Precompiles, by outcome."),
];

/// This process's counts, keyed by the sample's name and labels.
static TALLY: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

/// Whether this process keeps counts: only when its config has a metrics
/// directory to flush them to. Without one, counting would be all cost (a
/// plugin call's record alone is ~15 formatted sample keys, ~4% of a
/// precompiled miss's instructions) for counts nothing reads.
static KEEP: AtomicBool = AtomicBool::new(false);

/// Sets whether this process keeps counts ([`KEEP`]): called once the
/// exec's config is known, before anything is recorded.
pub fn keep_counts(keep: bool) {
    KEEP.store(keep, Ordering::Relaxed);
}

fn add(name: &str, labels: &[(&str, &str)], value: f64) {
    if !KEEP.load(Ordering::Relaxed) {
        return;
    }
    let key = sample_key(name, labels);
    if let Ok(mut tally) = TALLY.lock() {
        *tally.entry(key).or_default() += value;
    }
}

/// `name{a="x",b="y"}` with label values escaped as the text format wants.
fn sample_key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Counts one audit record.
pub fn observe(record: &Record<'_>) {
    match record {
        Record::CacheHit {
            plugin,
            key_kind,
            after_flight,
            ..
        } => {
            let kind = format!("{key_kind:?}");
            add(
                "wcp_cache_hits_total",
                &[("plugin", plugin), ("key_kind", &kind)],
                1.0,
            );
            if *after_flight {
                add("wcp_flights_joined_total", &[("plugin", plugin)], 1.0);
            }
        }
        Record::SharedFailure { plugin, .. } => {
            add("wcp_shared_failures_total", &[("plugin", plugin)], 1.0);
        }
        Record::PluginCall {
            plugin,
            outcome,
            duration_ms,
            component,
            ..
        } => {
            CALLED.store(true, Ordering::Relaxed);
            let outcome = match outcome {
                CallOutcome::Credentials => "credentials",
                CallOutcome::NoCredentials => "no_credentials",
                CallOutcome::Error => "error",
            };
            add(
                "wcp_plugin_calls_total",
                &[("plugin", plugin), ("outcome", outcome)],
                1.0,
            );
            let seconds = duration_ms / 1000.0;
            // Every bucket exists from the first call on, cumulative.
            for bound in BUCKETS {
                let le = bound.to_string();
                let hit = if seconds <= *bound { 1.0 } else { 0.0 };
                add(
                    "wcp_plugin_call_duration_seconds_bucket",
                    &[("plugin", plugin), ("le", &le)],
                    hit,
                );
            }
            add(
                "wcp_plugin_call_duration_seconds_bucket",
                &[("plugin", plugin), ("le", "+Inf")],
                1.0,
            );
            add(
                "wcp_plugin_call_duration_seconds_sum",
                &[("plugin", plugin)],
                seconds,
            );
            add(
                "wcp_plugin_call_duration_seconds_count",
                &[("plugin", plugin)],
                1.0,
            );
            if let Some(how) = component {
                let how = if how.starts_with("loaded") {
                    "loaded"
                } else {
                    "compiled"
                };
                add(
                    "wcp_components_total",
                    &[("plugin", plugin), ("how", how)],
                    1.0,
                );
            }
        }
        #[cfg(feature = "compiler")]
        Record::Compile {
            plugin, outcome, ..
        } => {
            let outcome = serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            add(
                "wcp_compiles_total",
                &[("plugin", plugin), ("outcome", &outcome)],
                1.0,
            );
        }
        Record::Security(security) => {
            add(
                "wcp_denials_total",
                &[
                    ("plugin", security.plugin),
                    ("kind", security.event.as_str()),
                ],
                1.0,
            );
        }
    }
}

/// Counts a plugin call's outbound requests by status.
pub fn observe_outbound(plugin: &str, outbound: &[Traced]) {
    for traced in outbound {
        let status = match &traced.verdict {
            Verdict::Answered(code) => code.to_string(),
            Verdict::Refused(_) => "refused".to_string(),
            Verdict::Failed(_) => "failed".to_string(),
        };
        add(
            "wcp_upstream_requests_total",
            &[("plugin", plugin), ("status", &status)],
            1.0,
        );
    }
}

/// Whether this process called a plugin (else an answer came from the cache).
static CALLED: AtomicBool = AtomicBool::new(false);

/// What one exec ended with: `answered` is `None` for a failure, else
/// whether the response carried credentials.
pub fn observe_exec(plugin: Option<&str>, answered: Option<bool>) {
    let outcome = match answered {
        None => "error",
        Some(false) => "empty",
        Some(true) if CALLED.load(Ordering::Relaxed) => "plugin",
        Some(true) => "cache_hit",
    };
    add(
        "wcp_execs_total",
        &[("plugin", plugin.unwrap_or("none")), ("outcome", outcome)],
        1.0,
    );
}

/// Adds this process's counts to `dir`'s state and rewrites the metrics
/// file. Best effort: metrics never fail or noticeably delay an exec.
pub fn flush(dir: &Path) {
    let tally = match TALLY.lock() {
        Ok(mut tally) => std::mem::take(&mut *tally),
        Err(_) => return,
    };
    if tally.is_empty() {
        return;
    }
    if let Err(e) = merge_and_write(dir, tally) {
        tracing::info!("metrics not written to {}: {e:#}", dir.display());
    }
}

fn merge_and_write(dir: &Path, tally: BTreeMap<String, f64>) -> Result<()> {
    let lock = open_file(&dir.join(LOCK_NAME), false)?;
    let started = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => anyhow::bail!("the metrics lock is busy"),
        }
    }
    let mut state = read_state(&dir.join(STATE_NAME));
    for (key, value) in tally {
        *state.entry(key).or_default() += value;
    }
    let encoded = serde_json::to_vec(&state)?;
    write_atomic(dir, STATE_NAME, &encoded)?;
    write_atomic(dir, FILE_NAME, render(&state).as_bytes())?;
    Ok(())
}

/// The state, or empty if it is missing or damaged (counters restart,
/// which Prometheus handles as a reset).
fn read_state(path: &Path) -> BTreeMap<String, f64> {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|f| f.take(MAX_STATE_BYTES).read_to_end(&mut bytes));
    if read.is_err() {
        return BTreeMap::new();
    }
    let state: BTreeMap<String, f64> = serde_json::from_slice(&bytes).unwrap_or_default();
    // Only samples of known metrics survive a hand-edited or foreign file.
    state
        .into_iter()
        .filter(|(key, v)| v.is_finite() && metric_of(key).is_some())
        .collect()
}

/// The `METRICS` entry a sample key belongs to.
fn metric_of(key: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    let name = key.split('{').next().unwrap_or(key);
    METRICS.iter().find(|(metric, kind, _)| {
        name == *metric
            || (*kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(metric)))
    })
}

/// The text exposition format, one HELP/TYPE block per metric.
fn render(state: &BTreeMap<String, f64>) -> String {
    let mut out = String::new();
    for (metric, kind, help) in METRICS {
        let mut samples: Vec<(&String, &f64)> = state
            .iter()
            .filter(|(key, _)| metric_of(key).is_some_and(|m| m.0 == *metric))
            .collect();
        // Buckets in ascending `le`, `+Inf` last, as Prometheus writes them.
        samples.sort_by(|(a, _), (b, _)| {
            (without_le(a), le_of(a))
                .partial_cmp(&(without_le(b), le_of(b)))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        if samples.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
        for (key, value) in samples {
            out.push_str(&format!("{key} {value}\n"));
        }
    }
    out
}

/// A sample key without its `le` label, to group a histogram's buckets.
fn without_le(key: &str) -> String {
    match key.find(",le=\"") {
        Some(at) => {
            let end = key[at + 5..]
                .find('"')
                .map_or(key.len(), |e| at + 5 + e + 1);
            format!("{}{}", &key[..at], &key[end..])
        }
        None => key.to_string(),
    }
}

/// The `le` of a bucket sample (`+Inf` as infinity); 0 for other samples.
fn le_of(key: &str) -> f64 {
    key.split(",le=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map_or(0.0, |le| {
            if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(0.0)
            }
        })
}

/// Opens a file of ours in the textfile directory without following a
/// symlink someone planted there; `fresh` insists on creating it. Mode 0644:
/// node-exporter may run as another user, and nothing here is secret.
fn open_file(path: &Path, fresh: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW);
    if fresh {
        options.create_new(true);
    } else {
        options.create(true);
    }
    options
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of a killed exec with our pid (or anything planted there).
    let _ = std::fs::remove_file(&tmp);
    let mut file = open_file(&tmp, true)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("cannot publish {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only unit test that touches the process-wide tally.
    #[test]
    fn counts_are_kept_only_when_the_exec_will_flush_them() {
        let count = |name: &str| TALLY.lock().unwrap().get(name).copied();
        keep_counts(false);
        add("wcp_test_kept_total", &[], 1.0);
        assert_eq!(count("wcp_test_kept_total"), None);
        keep_counts(true);
        add("wcp_test_kept_total", &[], 1.0);
        add("wcp_test_kept_total", &[], 1.0);
        assert_eq!(count("wcp_test_kept_total"), Some(2.0));
        keep_counts(false);
        TALLY.lock().unwrap().remove("wcp_test_kept_total");
    }

    #[test]
    fn samples_render_under_their_metric_and_unknown_ones_are_dropped() {
        let mut state = BTreeMap::new();
        state.insert(
            sample_key(
                "wcp_execs_total",
                &[("plugin", "ecr"), ("outcome", "error")],
            ),
            2.0,
        );
        state.insert(
            sample_key(
                "wcp_plugin_call_duration_seconds_bucket",
                &[("plugin", "ecr"), ("le", "+Inf")],
            ),
            1.0,
        );
        state.insert(
            sample_key(
                "wcp_plugin_call_duration_seconds_count",
                &[("plugin", "ecr")],
            ),
            1.0,
        );
        let text = render(&state);
        assert!(text.contains("# TYPE wcp_execs_total counter\nwcp_execs_total{plugin=\"ecr\",outcome=\"error\"} 2\n"), "{text}");
        assert!(
            text.contains("# TYPE wcp_plugin_call_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(metric_of("evil_metric{a=\"b\"}").is_none());
        let mut state = BTreeMap::new();
        for le in ["+Inf", "0.5", "10", "0.05"] {
            let key = sample_key(
                "wcp_plugin_call_duration_seconds_bucket",
                &[("plugin", "p"), ("le", le)],
            );
            state.insert(key, 1.0);
        }
        let text = render(&state);
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1))
            .collect();
        assert_eq!(
            order,
            ["0.05\"} 1", "0.5\"} 1", "10\"} 1", "+Inf\"} 1"],
            "{text}"
        );
        assert_eq!(
            sample_key("m", &[("l", "a\"b\\c\nd")]),
            "m{l=\"a\\\"b\\\\c\\nd\"}"
        );
    }
}
