//! The per-call bound on outbound requests: how many may be in flight at
//! once (from the hook until their connection closes, so a plugin holding
//! unread responses holds its slots) and how many one call may start in
//! all. Each open connection costs host memory (socket, TLS and hyper
//! buffers) outside the plugin's `memoryMiB`, and a provider needs a
//! handful of sequential requests, not hundreds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests one call may have in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Requests (denied ones included) one call may start in all.
pub const MAX_PER_CALL: usize = 64;

/// Shared by the hook and every connection task of one call.
#[derive(Clone, Default)]
pub struct Flights(Arc<Counters>);

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    started: AtomicUsize,
}

/// Which bound a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    InFlight,
    PerCall,
}

impl Limit {
    pub fn describe(self) -> String {
        match self {
            Limit::InFlight => format!(
                "more than {MAX_IN_FLIGHT} requests in flight at once; a provider may hold at most {MAX_IN_FLIGHT} open requests"
            ),
            Limit::PerCall => {
                format!("more than {MAX_PER_CALL} requests in one call; the host refuses the rest")
            }
        }
    }
}

/// One in-flight request; dropping it frees the slot.
pub struct Slot(Arc<Counters>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Flights {
    /// Takes a slot, or says which bound refuses the request.
    pub fn start(&self) -> Result<Slot, Limit> {
        let counters = &self.0;
        if counters.started.fetch_add(1, Ordering::SeqCst) >= MAX_PER_CALL {
            return Err(Limit::PerCall);
        }
        if counters.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Limit::InFlight);
        }
        Ok(Slot(counters.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_flight_and_total() {
        let flights = Flights::default();
        let held: Vec<Slot> = (0..MAX_IN_FLIGHT)
            .map(|_| flights.start().unwrap())
            .collect();
        assert_eq!(flights.start().err(), Some(Limit::InFlight));
        drop(held);
        // Slots come back, the total does not.
        let mut started = MAX_IN_FLIGHT + 1;
        while started < MAX_PER_CALL {
            drop(flights.start().unwrap());
            started += 1;
        }
        assert_eq!(flights.start().err(), Some(Limit::PerCall));
    }
}
