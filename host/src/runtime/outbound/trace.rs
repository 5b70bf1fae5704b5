//! What each outbound request of one call was and what became of it, for
//! `run` (the vendor's and the operator's "what did the plugin try?"):
//! method, URL, allowed or denied, status or failure, time. Bounded like
//! the security events; the URL drops its query (where tokens travel) and
//! has its control characters escaped here, its secrets scrubbed where it
//! is printed.

use crate::events::EventKind;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wcp_core::escape::escape_controls;

/// Requests one call keeps in its trace.
pub const MAX_TRACED: usize = 64;

/// One outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub method: String,
    /// `scheme://host:port/path`, with `?…` in place of a query.
    pub url: String,
    pub verdict: Verdict,
    /// From the request to the response head, or to the refusal.
    pub elapsed: Duration,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refused by the host before anything was sent; the matching security
    /// event says why.
    Refused(EventKind),
    /// Sent; the upstream answered with this status.
    Answered(u16),
    /// Allowed, but no response came (the error as wasi:http reports it).
    Failed(String),
}

/// Shared between the outbound hooks and the runtime.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<Traced>>>);

impl Trace {
    pub fn push(&self, method: &str, url: &str, verdict: Verdict, started: Instant) {
        let Ok(mut traced) = self.0.lock() else {
            return;
        };
        if traced.len() >= MAX_TRACED {
            return;
        }
        traced.push(Traced {
            method: clean(method),
            url: clean(url),
            verdict,
            elapsed: started.elapsed(),
        });
    }

    pub fn take(&self) -> Vec<Traced> {
        self.0
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }
}

/// `scheme://host:port` plus the path of `uri`, its query elided.
pub fn url_of(destination: &str, uri: &http::Uri) -> String {
    let path = uri.path();
    match uri.query() {
        Some(_) => format!("{destination}{path}?…"),
        None => format!("{destination}{path}"),
    }
}

fn clean(text: &str) -> String {
    match escape_controls(text) {
        Cow::Borrowed(text) => text.to_string(),
        Cow::Owned(text) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_bounded_and_keeps_no_query() {
        let trace = Trace::default();
        let uri: http::Uri = "https://sts.example.com/token?X-Amz-Security-Token=secret"
            .parse()
            .unwrap();
        let url = url_of("https://sts.example.com:443", &uri);
        assert_eq!(url, "https://sts.example.com:443/token?…");
        for _ in 0..MAX_TRACED + 10 {
            trace.push("POST", &url, Verdict::Answered(200), Instant::now());
        }
        trace.push("GET\u{1b}[2J", "x", Verdict::Answered(200), Instant::now());
        let traced = trace.take();
        assert_eq!(traced.len(), MAX_TRACED);
        assert!(!traced[0].url.contains("secret"));
        let trace = Trace::default();
        trace.push("GET\u{1b}[2J", "x", Verdict::Answered(200), Instant::now());
        assert!(!trace.take()[0].method.contains('\u{1b}'));
    }
}
