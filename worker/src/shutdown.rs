//! Graceful shutdown as an explicit object (as in mini-redis): a flag every loop checks, and a sleep that
//! a signal cuts short, so no thread waits longer than it must once the daemon is asked to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once by SIGTERM/SIGINT; never reset.
#[derive(Default)]
pub struct Shutdown {
    stopping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Asks every loop to stop and wakes every sleeper.
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }

    pub fn is_triggered(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps up to `wait`; returns true when shutdown has been triggered (possibly cutting the sleep short).
    pub fn sleep(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_triggered() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.wake.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}
