//! The bounded queue between tiny_http's connection threads, the handler threads and the body readers:
//! `try_send` never waits (full: the caller answers 503 at once), a receiver sleeps on a condvar of its
//! own until an item comes or its timeout passes, and each item wakes one receiver: the one that went to
//! sleep last.
//!
//! Why not crossbeam's channel: its receiver calls `sched_yield` several times before it sleeps, and
//! on a busy host each call is a context switch; with 32 handler threads that was a tenth of the API's
//! CPU under load (`perf record` of `make bench`'s throughput phase).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Handoff<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

struct Inner<T> {
    items: VecDeque<T>,
    /// The receivers asleep in [`Receiver::recv_timeout`] (or between two calls), the one that came
    /// last at the end: an item wakes that one. So the work goes to the fewest threads, the ones that
    /// ran last: the others stay asleep with cold stacks and empty malloc caches (with 32 handlers
    /// woken in turn, each touched ~32 KiB of stack; under a load of 16 clients half of them now
    /// never run).
    idle: Vec<Arc<Condvar>>,
}

/// One receiving thread's place in the queue of sleepers; made once per thread by
/// [`Handoff::receiver`].
pub struct Receiver<'a, T> {
    handoff: &'a Handoff<T>,
    wake: Arc<Condvar>,
}

impl<T> Handoff<T> {
    pub fn new(capacity: usize) -> Handoff<T> {
        Handoff {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                idle: Vec::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiving thread's handle.
    pub fn receiver(&self) -> Receiver<'_, T> {
        Receiver {
            handoff: self,
            wake: Arc::new(Condvar::new()),
        }
    }

    /// Queues `item`, or gives it back when `capacity` items are waiting; `Ok(true)` when it woke a
    /// sleeping receiver, `Ok(false)` when none slept (the item waits for a busy one).
    pub fn try_send(&self, item: T) -> Result<bool, T> {
        let mut inner = self.lock();
        if inner.items.len() >= self.capacity {
            return Err(item);
        }
        inner.items.push_back(item);
        let sleeper = inner.idle.pop();
        drop(inner);
        Ok(sleeper.map(|s| s.notify_one()).is_some())
    }
}

impl<T> Receiver<'_, T> {
    /// The oldest item, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.handoff.lock();
        loop {
            if let Some(item) = inner.items.pop_front() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Still asleep as far as senders know, and in its place: it is back at once.
                return None;
            }
            if !inner.idle.iter().any(|w| Arc::ptr_eq(w, &self.wake)) {
                inner.idle.push(self.wake.clone());
            }
            inner = self
                .wake
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl<T> Receiver<'_, T> {
    /// Stops receiving if nothing is queued, calling `leaving` under the queue's lock (so a sender
    /// that finds no sleeper sees what it did); false, and nothing done, when an item waits.
    pub fn leave_if_empty(&self, leaving: impl FnOnce()) -> bool {
        let mut inner = self.handoff.lock();
        if !inner.items.is_empty() {
            return false;
        }
        inner.idle.retain(|w| !Arc::ptr_eq(w, &self.wake));
        leaving();
        true
    }
}

impl<T> Drop for Receiver<'_, T> {
    /// A thread that stops receiving is no sleeper to wake.
    fn drop(&mut self) {
        self.handoff
            .lock()
            .idle
            .retain(|w| !Arc::ptr_eq(w, &self.wake));
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
        let rx = q.receiver();
        assert_eq!(rx.recv_timeout(Duration::ZERO), Some(1));
        assert!(!rx.leave_if_empty(|| unreachable!("an item waits")));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Some(2));
        assert_eq!(rx.recv_timeout(Duration::from_millis(10)), None);
        let mut left = false;
        assert!(rx.leave_if_empty(|| left = true));
        assert!(left);
        assert_eq!(q.try_send(4), Ok(false), "nobody sleeps after leaving");
    }

    #[test]
    fn a_sleeping_receiver_gets_what_is_sent() {
        let q = Arc::new(Handoff::new(4));
        let rx = {
            let q = q.clone();
            std::thread::spawn(move || q.receiver().recv_timeout(Duration::from_secs(10)))
        };
        assert!(q.try_send(7).is_ok());
        assert_eq!(rx.join().ok().flatten(), Some(7));
    }

    impl<T> Handoff<T> {
        fn sleepers(&self) -> usize {
            self.lock().idle.len()
        }
    }

    fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "{what} within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_item_wakes_the_receiver_that_went_to_sleep_last() {
        let q = Arc::new(Handoff::new(4));
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for name in ["first", "last"] {
            let (mine, got_tx) = (q.clone(), got_tx.clone());
            threads.push(std::thread::spawn(move || {
                let rx = mine.receiver();
                let item = rx.recv_timeout(Duration::from_secs(10));
                let _ = got_tx.send((name, item));
            }));
            let asleep = threads.len();
            until("the receiver sleeps", || q.sleepers() == asleep);
        }
        assert!(q.try_send(1).is_ok());
        assert_eq!(
            got_rx.recv_timeout(Duration::from_secs(10)),
            Ok(("last", Some(1)))
        );
        assert!(q.try_send(2).is_ok());
        assert_eq!(
            got_rx.recv_timeout(Duration::from_secs(10)),
            Ok(("first", Some(2)))
        );
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(q.sleepers(), 0, "a receiver that is gone is no sleeper");
    }
}
