//! The bounded queue between tiny_http's connection threads, the handler threads and the body readers:
//! `try_send` never waits (full: the caller answers 503 at once), a receiver sleeps on a condvar until
//! an item comes or its timeout passes, and each item wakes one receiver.
//!
//! Why not crossbeam's channel: its receiver calls `sched_yield` several times before it sleeps, and
//! on a busy host each call is a context switch; with 32 handler threads that was a tenth of the API's
//! CPU under load (`perf record` of `make bench`'s throughput phase).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Handoff<T> {
    items: Mutex<VecDeque<T>>,
    ready: Condvar,
    capacity: usize,
}

impl<T> Handoff<T> {
    pub fn new(capacity: usize) -> Handoff<T> {
        Handoff {
            items: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, or gives it back when `capacity` items are waiting.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut items = self.lock();
        if items.len() >= self.capacity {
            return Err(item);
        }
        items.push_back(item);
        drop(items);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut items = self.lock();
        loop {
            if let Some(item) = items.pop_front() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            items = self
                .ready
                .wait_timeout(items, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_fifo_that_never_blocks_a_sender() {
        let q = Handoff::new(2);
        assert!(q.try_send(1).is_ok());
        assert!(q.try_send(2).is_ok());
        assert_eq!(q.try_send(3), Err(3));
        assert_eq!(q.recv_timeout(Duration::ZERO), Some(1));
        assert_eq!(q.recv_timeout(Duration::ZERO), Some(2));
        assert_eq!(q.recv_timeout(Duration::from_millis(10)), None);
    }

    #[test]
    fn a_sleeping_receiver_gets_what_is_sent() {
        let q = Arc::new(Handoff::new(4));
        let rx = {
            let q = q.clone();
            std::thread::spawn(move || q.recv_timeout(Duration::from_secs(10)))
        };
        assert!(q.try_send(7).is_ok());
        assert_eq!(rx.join().ok().flatten(), Some(7));
    }
}
