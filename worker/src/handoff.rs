//! The hand-off from the fetchers to the pool threads: a rendezvous, so jobs wait in JetStream, not in
//! RAM. A message is queued only while more pool threads wait for one than messages are queued, so each
//! queued message already has its taker; with none free the fetcher waits (bounded by its timeout).
//!
//! Why not crossbeam's `bounded(0)`: a crossbeam receiver about to block first calls `sched_yield`
//! several times, and a pool thread goes idle once per job; on a busy host each yield is a context
//! switch. A mutex and two condition variables (futexes) block at once.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why [`Offer::send_timeout`] gave the message back.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken<T> {
    /// No pool thread was free within the timeout.
    Timeout(T),
    /// No pool thread is left to take it.
    Disconnected(T),
}

struct Slots<T> {
    queued: VecDeque<T>,
    /// Pool threads blocked in [`Take::recv`].
    waiting: usize,
    /// Fetchers blocked in [`Offer::send_timeout`] (a pool thread going idle wakes one only then).
    offering: usize,
    offers: usize,
    takers: usize,
}

struct Shared<T> {
    slots: Mutex<Slots<T>>,
    for_takers: Condvar,
    for_offers: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fetchers' end; the channel closes when the last clone drops.
pub struct Offer<T> {
    shared: Arc<Shared<T>>,
}

/// The pool threads' end.
pub struct Take<T> {
    shared: Arc<Shared<T>>,
}

/// A new hand-off with one end of each kind.
pub fn channel<T>() -> (Offer<T>, Take<T>) {
    let shared = Arc::new(Shared {
        slots: Mutex::new(Slots {
            queued: VecDeque::new(),
            waiting: 0,
            offering: 0,
            offers: 1,
            takers: 1,
        }),
        for_takers: Condvar::new(),
        for_offers: Condvar::new(),
    });
    (
        Offer {
            shared: shared.clone(),
        },
        Take { shared },
    )
}

impl<T> Offer<T> {
    /// Gives `msg` to a pool thread waiting for one, waiting up to `timeout` for one to be free.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), NotTaken<T>> {
        let deadline = Instant::now() + timeout;
        let mut slots = self.shared.lock();
        loop {
            if slots.takers == 0 {
                return Err(NotTaken::Disconnected(msg));
            }
            if slots.waiting > slots.queued.len() {
                slots.queued.push_back(msg);
                drop(slots);
                self.shared.for_takers.notify_one();
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NotTaken::Timeout(msg));
            }
            slots.offering += 1;
            slots = match self.shared.for_offers.wait_timeout(slots, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
            slots.offering -= 1;
        }
    }
}

impl<T> Clone for Offer<T> {
    fn clone(&self) -> Self {
        self.shared.lock().offers += 1;
        Offer {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Offer<T> {
    fn drop(&mut self) {
        let mut slots = self.shared.lock();
        slots.offers -= 1;
        if slots.offers == 0 {
            drop(slots);
            self.shared.for_takers.notify_all();
        }
    }
}

impl<T> Take<T> {
    /// The next message; `None` once every [`Offer`] is gone and nothing is queued.
    pub fn recv(&self) -> Option<T> {
        let mut slots = self.shared.lock();
        slots.waiting += 1;
        if slots.offering > 0 {
            self.shared.for_offers.notify_one();
        }
        loop {
            if let Some(msg) = slots.queued.pop_front() {
                slots.waiting -= 1;
                return Some(msg);
            }
            if slots.offers == 0 {
                slots.waiting -= 1;
                return None;
            }
            slots = match self.shared.for_takers.wait(slots) {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
        }
    }
}

impl<T> Clone for Take<T> {
    fn clone(&self) -> Self {
        self.shared.lock().takers += 1;
        Take {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Take<T> {
    fn drop(&mut self) {
        let mut slots = self.shared.lock();
        slots.takers -= 1;
        if slots.takers == 0 {
            drop(slots);
            self.shared.for_offers.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(20);
    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn nothing_is_queued_without_a_waiting_taker() {
        let (offer, take) = channel::<u32>();
        assert_eq!(offer.send_timeout(1, SHORT), Err(NotTaken::Timeout(1)));
        let taker = std::thread::spawn(move || (take.recv(), take.recv()));
        // Each offer waits until the taker blocks in recv.
        offer.send_timeout(2, LONG).unwrap();
        offer.send_timeout(3, LONG).unwrap();
        drop(offer);
        assert_eq!(taker.join().unwrap(), (Some(2), Some(3)));
    }

    #[test]
    fn every_taker_gets_one_and_all_end_when_the_offers_go() {
        let (offer, take) = channel::<u32>();
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let take = take.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(m) = take.recv() {
                        got.push(m);
                    }
                    got
                })
            })
            .collect();
        drop(take);
        let offers: Vec<_> = (0..3)
            .map(|f| {
                let offer = offer.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        offer.send_timeout(f * 1000 + i, LONG).unwrap();
                    }
                })
            })
            .collect();
        drop(offer);
        for o in offers {
            o.join().unwrap();
        }
        let mut all: Vec<u32> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        let want: Vec<u32> = (0..3)
            .flat_map(|f| (0..100).map(move |i| f * 1000 + i))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn an_offer_without_takers_comes_back() {
        let (offer, take) = channel::<u32>();
        drop(take);
        assert_eq!(offer.send_timeout(7, LONG), Err(NotTaken::Disconnected(7)));
    }
}
