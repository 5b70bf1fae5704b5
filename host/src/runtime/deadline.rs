//! Stopping a guest that spins in WebAssembly at its deadline: the engine
//! runs with epoch interruption, each store traps once the epoch moves,
//! and something must move it when the deadline passes. Host I/O needs
//! none of this (the async timeout around the call cuts it).
//!
//! The kubelet's exec makes one plugin call per process, so the epoch is
//! moved by a one-shot interval timer (`setitimer`, `SIGALRM`) whose handler
//! does one thing: `Engine::increment_epoch`, which wasmtime documents as
//! signal-safe (one atomic increment, no syscall, no allocation). A thread
//! that sleeps until the deadline did the same; creating it (stack mapping,
//! guard page, `clone`, its signal stack) cost about 0.1 ms of a 1.8 ms
//! precompiled miss, measured side by side.
//!
//! The timer is the process's: only one call can hold it, and its handler
//! knows one engine (the first engine to arm it, kept for the process's
//! lifetime so that a late signal never finds it freed). A call that
//! overlaps another's (the library's tests run calls on parallel threads),
//! runs on another engine, or cannot arm the timer gets the sleeping thread
//! instead; both paths stop the same guest the same way.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;
use wasmtime::Engine;

/// The engine the timer's handler moves the epoch of: a clone leaked on
/// purpose (set once, never freed), read by the handler with one atomic
/// load.
static TIMER_ENGINE: AtomicPtr<Engine> = AtomicPtr::new(std::ptr::null_mut());
/// Whether a call holds the timer now.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Whether the `SIGALRM` handler is installed (once per process).
static HANDLER: OnceLock<bool> = OnceLock::new();

/// Moves the epoch of `engine` once `timeout` has passed, until the guard
/// is dropped (the timer is then disarmed; a fallback thread is left to
/// wake and do nothing harmful: an epoch tick after the call has ended).
pub fn start(engine: &Engine, timeout: Duration) -> Guard {
    if let Some(guard) = arm_timer(engine, timeout) {
        return guard;
    }
    let engine = engine.weak();
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        if let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
        }
    });
    Guard { timer: false }
}

/// Held for the duration of one call.
#[must_use = "dropping the guard disarms the deadline"]
pub struct Guard {
    timer: bool,
}

impl Guard {
    /// Whether this call's deadline is the process's timer (for the debug
    /// log and tests).
    pub fn is_timer(&self) -> bool {
        self.timer
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.timer {
            let _ = set_timer(Duration::ZERO);
            ARMED.store(false, Ordering::Release);
        }
    }
}

fn arm_timer(engine: &Engine, timeout: Duration) -> Option<Guard> {
    if !Engine::same(timer_engine(engine), engine) {
        return None;
    }
    if !*HANDLER.get_or_init(install_handler) {
        return None;
    }
    if ARMED.swap(true, Ordering::AcqRel) {
        return None;
    }
    // The signal must reach a thread that takes it: this one, which runs
    // the guest (a mask blocking it survives `execve`).
    let unblocked = unblock_alarm();
    // A zero interval would disarm the timer instead of firing it.
    match unblocked.and_then(|()| set_timer(timeout.max(Duration::from_micros(1)))) {
        // An alarm someone else set (one can be inherited across `execve`)
        // is put back, and this call gets the thread.
        Ok(Some(previous)) => {
            let _ = restore_timer(previous);
            ARMED.store(false, Ordering::Release);
            None
        }
        Ok(None) => Some(Guard { timer: true }),
        Err(_) => {
            ARMED.store(false, Ordering::Release);
            None
        }
    }
}

/// The engine the handler serves: the first one asked for.
fn timer_engine(engine: &Engine) -> &'static Engine {
    let current = TIMER_ENGINE.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: set once below from a leaked Box, never freed.
        return unsafe { &*current };
    }
    let ours = Box::into_raw(Box::new(engine.clone()));
    match TIMER_ENGINE.compare_exchange(
        std::ptr::null_mut(),
        ours,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: `ours` is now the leaked, never-freed value.
        Ok(_) => unsafe { &*ours },
        Err(theirs) => {
            // SAFETY: `ours` was never shared; `theirs` is the leaked value.
            drop(unsafe { Box::from_raw(ours) });
            unsafe { &*theirs }
        }
    }
}

/// Runs in whichever thread the kernel delivers `SIGALRM` to, at any point
/// of its code: only signal-safe work here.
extern "C" fn on_alarm(_signal: libc::c_int) {
    let engine = TIMER_ENGINE.load(Ordering::Acquire);
    if !engine.is_null() {
        // SAFETY: a leaked, never-freed Engine (`timer_engine`).
        unsafe { (*engine).increment_epoch() };
    }
}

/// Unblocks `SIGALRM` in the calling thread.
fn unblock_alarm() -> std::io::Result<()> {
    // SAFETY: the set is initialised by sigemptyset before use; the old
    // mask is not asked for.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

fn install_handler() -> bool {
    // SAFETY: a zeroed sigaction is a valid starting value; the handler is
    // an `extern "C" fn(c_int)` that only does signal-safe work;
    // SA_RESTART keeps the host's blocking syscalls from failing with
    // EINTR, SA_ONSTACK runs it on the thread's signal stack (wasmtime
    // installs one) rather than the guest's fiber stack.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) == 0
    }
}

/// Arms (or, with zero, disarms) the process's one-shot real-time timer;
/// the time left on a timer that was already armed, if one was.
fn set_timer(after: Duration) -> std::io::Result<Option<libc::itimerval>> {
    let mut previous = itimer(Duration::ZERO);
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &itimer(after), &mut previous) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let left = previous.it_value;
    Ok((left.tv_sec != 0 || left.tv_usec != 0).then_some(previous))
}

/// Puts back a timer `set_timer` replaced.
fn restore_timer(previous: libc::itimerval) -> std::io::Result<()> {
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &previous, std::ptr::null_mut()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn itimer(after: Duration) -> libc::itimerval {
    libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: after.as_secs().min(i32::MAX as u64) as _,
            tv_usec: after.subsec_micros() as _,
        },
    }
}

// The test compiles a spinning module: builds with a compiler only.
#[cfg(all(test, feature = "compiler"))]
mod tests {
    use super::*;
    use std::time::Instant;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    /// The epoch moves once the deadline passes, by the timer or by the
    /// thread; a second call overlapping the first gets the thread.
    #[test]
    fn the_epoch_moves_at_the_deadline_on_either_path() {
        let engine = engine();
        // A store's deadline of one tick from now traps once the epoch
        // moves; `Store::epoch_deadline_trap` is what the call sets.
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(1);
        // (module (func (export "spin") (loop (br 0))))
        let spin_wasm: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
            0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
            0x03, 0x02, 0x01, 0x00, // func 0 has type 0
            0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export
            0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop br 0
        ];
        let module = wasmtime::Module::new(&engine, spin_wasm).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let first = start(&engine, Duration::from_millis(50));
        let second = start(&engine, Duration::from_millis(50));
        assert!(!second.is_timer(), "two calls cannot hold one timer");
        let started = Instant::now();
        let err = spin.call(&mut store, ()).unwrap_err();
        assert!(format!("{err:?}").contains("interrupt"), "{err:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(40),
            "interrupted early: {took:?}"
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        drop((first, second));
    }
}
