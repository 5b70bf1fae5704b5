//! The exec's time budget against the kubelet, which SIGKILLs a provider
//! 60 s after starting it.
//!
//! Everything an exec does before the plugin call (reading the request, the
//! config, waiting for a concurrent exec of the same registry, a first-use
//! compile) counts against [`EXEC_BUDGET`], measured from the start of the
//! process; the plugin call then gets its own `limits.timeout`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one exec may take, measured from the start of `main`: the
/// kubelet's 60 s kill minus a margin for process start-up, the instance
/// setup around the call and writing the answer.
pub const EXEC_BUDGET: Duration = Duration::from_secs(58);

static STARTED: OnceLock<Instant> = OnceLock::new();

/// How the front (`crate::front`) hands a request to the runtime:
/// `<CLOCK_MONOTONIC ns when the exec started>:<why>`, so that the time
/// the front spent counts against the same budget. It can only make the
/// budget shorter: a start in the future, or one longer ago than the
/// budget, is clamped.
pub const HANDOFF_ENV: &str = "WCP_HANDOFF";

/// Marks the start of the exec; call first thing in `main`. A process the
/// front handed a request to started when the front did.
pub fn start() -> Instant {
    *STARTED.get_or_init(|| {
        let now = Instant::now();
        std::env::var(HANDOFF_ENV)
            .ok()
            .and_then(|value| inherited_start(&value, now, monotonic_ns()))
            .unwrap_or(now)
    })
}

/// The start `value` (of [`HANDOFF_ENV`]) names, as an `Instant`; `None`
/// if it is malformed.
fn inherited_start(value: &str, now: Instant, now_ns: u64) -> Option<Instant> {
    let started_ns: u64 = value.split(':').next()?.parse().ok()?;
    let elapsed = Duration::from_nanos(now_ns.saturating_sub(started_ns)).min(EXEC_BUDGET);
    now.checked_sub(elapsed)
}

/// Why the front handed this request over, if it did (the part of
/// [`HANDOFF_ENV`] after the start time).
pub fn handoff_reason() -> Option<String> {
    let value = std::env::var(HANDOFF_ENV).ok()?;
    Some(value.split_once(':')?.1.to_string())
}

/// The value of [`HANDOFF_ENV`] for an exec that started at `started_ns`.
pub fn handoff_value(started_ns: u64, reason: &str) -> String {
    format!("{started_ns}:{reason}")
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux,
/// and one that an exec'd process shares.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// When the exec started (the first call of [`start`] or of this).
pub fn started() -> Instant {
    start()
}

/// The latest moment a first-use compile may end so that the plugin call
/// that follows it, with its own `timeout`, still ends within
/// [`EXEC_BUDGET`]; and never more than `timeout` after `now`, so that a
/// first-use exec takes at most about twice the plugin's timeout.
pub fn compile_deadline(timeout: Duration, now: Instant) -> Instant {
    let latest = (started() + EXEC_BUDGET)
        .checked_sub(timeout)
        .unwrap_or(now)
        .max(now);
    (now + timeout).min(latest)
}

/// When a plugin call starting at `now` must end: after its `timeout`, or
/// earlier if the exec budget ends first.
pub fn call_deadline(timeout: Duration, now: Instant) -> Instant {
    (now + timeout).min(started() + EXEC_BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_start_only_shortens_the_budget() {
        let now = Instant::now();
        let ns = 100_000_000_000u64;
        let ms = Duration::from_millis;
        assert_eq!(
            inherited_start("97000000000:miss", now, ns),
            Some(now - ms(3000))
        );
        // In the future: the start is now.
        assert_eq!(inherited_start("200000000000:miss", now, ns), Some(now));
        // Longer ago than the budget: clamped to it.
        assert_eq!(
            inherited_start("1:miss", now, ns),
            now.checked_sub(EXEC_BUDGET)
        );
        assert_eq!(inherited_start("soon:miss", now, ns), None);
        assert_eq!(inherited_start("", now, ns), None);
        assert_eq!(handoff_value(5, "miss"), "5:miss");
    }

    #[test]
    fn a_late_call_is_cut_to_the_budget() {
        let now = start();
        let s = Duration::from_secs;
        assert_eq!(call_deadline(s(10), now), now + s(10));
        assert_eq!(call_deadline(s(55), now + s(30)), started() + EXEC_BUDGET);
    }

    #[test]
    fn compile_and_call_fit_the_budget() {
        let now = start();
        let s = Duration::from_secs;
        // A short timeout: the compile may take as long as the call.
        assert_eq!(compile_deadline(s(2), now), now + s(2));
        assert_eq!(compile_deadline(s(10), now), now + s(10));
        // A long one: compile and call together stay within the budget.
        assert_eq!(
            compile_deadline(s(40), now),
            started() + EXEC_BUDGET - s(40)
        );
        assert_eq!(compile_deadline(s(55), now), started() + s(3));
        // Time already spent (e.g. waiting for a concurrent exec) counts.
        let later = now + s(50);
        assert_eq!(compile_deadline(s(10), later), later);
    }
}
