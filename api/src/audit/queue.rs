//! The audit trail's way to NATS: handlers put entries in a bounded queue that never blocks (a full one
//! drops the entry, counted and logged), and one publisher thread writes them to the `AUDIT` stream.

use super::{Entry, DRAIN_WITHIN, DROP_LOG_EVERY, POLL};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use osapi_bus::Bus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The handlers' side of the publisher: a bounded queue that never blocks, and what it turned away.
pub(super) struct Queue {
    tx: Sender<Entry>,
    /// Entries dropped since start.
    dropped: AtomicU64,
    /// Entries dropped since the last log line about them.
    unlogged: AtomicU64,
    /// When that line was logged, in ms after `epoch` plus one; 0 = never.
    logged_at: AtomicU64,
    epoch: Instant,
}

impl Queue {
    pub(super) fn new(depth: usize) -> (Queue, Receiver<Entry>) {
        let (tx, rx) = bounded(depth);
        let queue = Queue {
            tx,
            dropped: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        (queue, rx)
    }

    /// Hands `entry` to the publisher; when the queue is full (or the publisher is gone) drops and
    /// counts it instead. Never waits. `true` when the entry was queued.
    pub(super) fn offer(&self, entry: Entry) -> bool {
        let why = match self.tx.try_send(entry) {
            Ok(()) => return true,
            Err(TrySendError::Full(_)) => "the audit queue is full (NATS slow or down)",
            Err(TrySendError::Disconnected(_)) => "the audit publisher has stopped",
        };
        let total = self.dropped.fetch_add(1, Ordering::SeqCst) + 1;
        self.unlogged.fetch_add(1, Ordering::SeqCst);
        crate::metrics::audit_dropped();
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.logged_at.load(Ordering::SeqCst);
        let due = last == 0 || now.saturating_sub(last) >= DROP_LOG_EVERY.as_millis() as u64;
        // One thread wins the right to log; the others count and go on.
        if due
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let n = self.unlogged.swap(0, Ordering::SeqCst);
            log::warn!("{n} audit entries dropped ({total} since start): {why}");
        }
        false
    }
}

/// The one thread that writes entries to NATS.
pub(super) struct Publisher {
    pub(super) bus: Bus,
    pub(super) subject: String,
    pub(super) rx: Receiver<Entry>,
    pub(super) closing: Arc<AtomicBool>,
}

impl Publisher {
    pub(super) fn run(&self) {
        while !self.closing.load(Ordering::SeqCst) {
            match self.rx.recv_timeout(POLL) {
                Ok(entry) => self.write(&entry),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let deadline = Instant::now() + DRAIN_WITHIN;
        while let Ok(entry) = self.rx.try_recv() {
            if Instant::now() < deadline {
                self.write(&entry);
            } else {
                log::warn!(
                    "audit entry not written (shutting down): {}",
                    encode(&entry)
                );
            }
        }
    }

    /// Writes one entry (bounded by the request timeout); a failure is logged with the entry itself, so
    /// the record survives in the API's log when NATS did not take it.
    fn write(&self, entry: &Entry) {
        let text = encode(entry);
        if let Err(e) = self
            .bus
            .js_publish(&self.subject, &entry.id, text.as_bytes())
        {
            log::warn!("audit entry not written ({e}): {text}");
        }
    }
}

fn encode(entry: &Entry) -> String {
    serde_json::to_string(entry)
        .unwrap_or_else(|e| format!("(entry {} not encoded: {e})", entry.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn an_entry(n: usize) -> Entry {
        Entry {
            id: n.to_string(),
            timestamp: String::new(),
            user: String::new(),
            roles: Vec::new(),
            method: "POST".into(),
            path: format!("/flood/{n}"),
            code: 401,
            duration_ms: 0,
            source: String::new(),
            job_id: None,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // Nobody reads `rx`: the publisher is stuck on a slow NATS.
        let (queue, rx) = Queue::new(2);
        let offered: Vec<bool> = (0..5).map(|n| queue.offer(an_entry(n))).collect();
        assert_eq!(offered, [true, true, false, false, false]);
        assert_eq!(queue.dropped.load(Ordering::SeqCst), 3);
        // The queue kept the first entries; the dropped ones are not in it.
        let kept: Vec<String> = rx.try_iter().map(|e| e.id).collect();
        assert_eq!(kept, ["0", "1"]);
        // Room again: taken again.
        assert!(queue.offer(an_entry(5)));
        // A publisher that is gone is the same as a full queue: counted, never an error.
        drop(rx);
        assert!(!queue.offer(an_entry(6)));
        assert_eq!(queue.dropped.load(Ordering::SeqCst), 4);
    }
}
