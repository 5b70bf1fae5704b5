//! One line for a plugin call that did not return: over its memory limit,
//! out of time (its own deadline, or what the exec budget left of it), a
//! trap, or any other wasmtime error, with the plugin's text redacted and
//! wasmtime's wasm backtrace (addresses of third-party code) dropped.

use super::guest_log::clean;
use super::limiter::MemoryLimitExceeded;
use anyhow::anyhow;
use std::time::Duration;
use wasmtime::Trap;
use wcp_core::config::Limits;
use wcp_core::redact::Redactor;

/// "its 10s deadline", or, when the exec budget cut the call short, what
/// was left of it.
pub fn deadline_text(timeout: Duration, allowed: Duration) -> String {
    if allowed + Duration::from_millis(1) >= timeout {
        format!("its {timeout:?} deadline")
    } else {
        format!(
            "the {:.1}s left of the exec's {}s budget (its timeout is {timeout:?}; time went to waiting for a concurrent exec or a compile)",
            allowed.as_secs_f64(),
            crate::budget::EXEC_BUDGET.as_secs()
        )
    }
}

pub fn describe_failure(
    name: &str,
    limits: &Limits,
    allowed: Duration,
    err: wasmtime::Error,
    memory_refused: Option<MemoryLimitExceeded>,
    redactor: &Redactor,
) -> anyhow::Error {
    // The limiter's own flag, not wasmtime's text: a refusal ends the call.
    if memory_refused.is_some() || err.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return anyhow!(
            "plugin {name:?} exceeded its memory limit of {} MiB (all of its memories and tables together)",
            limits.memory_bytes / (1024 * 1024)
        );
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => anyhow!(
                "plugin {name:?} did not answer within {} and was interrupted",
                deadline_text(limits.timeout, allowed)
            ),
            Trap::MemoryOutOfBounds => anyhow!(
                "plugin {name:?} trapped: out-of-bounds memory access (also how a runaway recursion that exhausts the plugin's stack ends)"
            ),
            Trap::StackOverflow => {
                anyhow!("plugin {name:?} overflowed its stack (runaway recursion)")
            }
            other => anyhow!("plugin {name:?} trapped: {other}"),
        };
    }
    // The wasm backtrace wasmtime attaches is addresses of a third party's
    // code: useless in the kubelet's one line, so only the causes remain.
    let backtrace = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(ToString::to_string);
    let text = err
        .chain()
        .map(ToString::to_string)
        .filter(|cause| Some(cause) != backtrace.as_ref())
        .collect::<Vec<_>>()
        .join(": ");
    anyhow!("plugin {name:?} failed: {}", clean(redactor, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(err: wasmtime::Error, refused: Option<MemoryLimitExceeded>) -> String {
        let mut redactor = Redactor::default();
        redactor.add("hunter2-token-value");
        let limits = Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        };
        describe_failure("p", &limits, limits.timeout, err, refused, &redactor).to_string()
    }

    #[test]
    fn the_memory_limit_is_recognised_by_the_limiter_flag_whatever_the_error() {
        let refused = Some(MemoryLimitExceeded {
            limit_bytes: 32 << 20,
            wanted_bytes: 40 << 20,
        });
        // wasmtime may surface a refusal wrapped in its own words.
        let wrapped = wasmtime::Error::msg("failed to grow memory by `1` pages");
        assert!(
            line(wrapped, refused).starts_with("plugin \"p\" exceeded its memory limit of 32 MiB"),
        );
        // Text that merely mentions a limit is not a memory failure.
        let text = wasmtime::Error::msg("the memory limit was fine");
        assert!(line(text, None).starts_with("plugin \"p\" failed: "));
    }

    #[test]
    fn traps_get_their_own_words() {
        let trap = |t: Trap| line(wasmtime::Error::new(t), None);
        assert!(trap(Trap::Interrupt).contains("did not answer within its 10s deadline"));
        assert!(trap(Trap::StackOverflow).contains("overflowed its stack"));
        assert!(trap(Trap::MemoryOutOfBounds).contains("out-of-bounds memory access"));
        assert!(trap(Trap::UnreachableCodeReached).starts_with("plugin \"p\" trapped: "));
    }

    #[test]
    fn other_errors_are_redacted_and_one_line() {
        let err = wasmtime::Error::msg("echo hunter2-token-value\nsecond line")
            .context("calling the provider");
        let text = line(err, None);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("plugin \"p\" failed: calling the provider: "),
            "{text}"
        );
    }

    #[test]
    fn a_call_cut_by_the_exec_budget_says_so() {
        let s = Duration::from_secs;
        assert_eq!(deadline_text(s(10), s(10)), "its 10s deadline");
        let cut = deadline_text(s(55), Duration::from_millis(12_500));
        assert!(
            cut.starts_with("the 12.5s left of the exec's 58s budget"),
            "{cut}"
        );
    }
}
