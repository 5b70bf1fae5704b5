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

/// Marks the start of the exec; call first thing in `main`.
pub fn start() -> Instant {
    *STARTED.get_or_init(Instant::now)
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
