//! The audit trail's way to NATS: handlers put entries in a bounded queue that never blocks (a full one
//! drops the entry, counted and logged), and one publisher thread writes them to the `AUDIT` stream,
//! everything waiting (up to [`BATCH_ENTRIES`] and [`BATCH_BYTES`]) as one message, so under load the
//! trail costs NATS one stored write per batch rather than per request (`batch.rs`); woken by an entry,
//! it waits [`LINGER`] for more first.

use super::batch::{self, BATCH_BYTES, BATCH_ENTRIES};
use super::{Entry, DRAIN_WITHIN, DROP_LOG_EVERY, POLL};
// std's channel: crossbeam's receiver yields the CPU (`sched_yield`) a few times before it sleeps, a
// context switch each on a busy host.
use osapi_bus::{Bus, BusError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel as bounded, Receiver, RecvTimeoutError, SyncSender as Sender, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How often one batch is re-numbered and retried when another API appended first: each API that
/// keeps writing wins the next race (it knows the tail), so the other backs off a random moment of up
/// to [`CONFLICT_BACKOFF_MAX`] and reads only the message the conflict named.
const CONFLICTS_MAX: usize = 64;
const CONFLICT_BACKOFF_MAX: Duration = Duration::from_millis(4);

/// How long the publisher, woken by an entry, waits for more before it writes: one sequential client's
/// requests (a job every 2-3 ms) then cost one wake-up of this thread, one NATS write and one stored
/// message per two or three entries instead of each, and an entry reaches the trail at most this late.
const LINGER: Duration = Duration::from_millis(5);

/// The one thread that writes entries to NATS.
pub(super) struct Publisher {
    pub(super) bus: Bus,
    pub(super) stream: String,
    pub(super) subject: String,
    pub(super) rx: Receiver<Entry>,
    pub(super) closing: Arc<AtomicBool>,
}

/// Where the stream ends, as last seen: its last sequence and the number its next entry gets.
#[derive(Clone, Copy)]
struct Tail {
    last_seq: u64,
    next: u64,
}

impl Publisher {
    pub(super) fn run(self) {
        let mut tail = None;
        let mut carry = None;
        while !self.closing.load(Ordering::SeqCst) {
            let first = match carry.take() {
                Some(e) => e,
                None => match self.rx.recv_timeout(POLL) {
                    Ok(entry) => {
                        // Woken by one entry: let the next few come without waking this thread
                        // (a sender wakes only a thread blocked in `recv`), and write them together.
                        std::thread::sleep(LINGER);
                        entry
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            let (entries, rest) = self.take_batch(first);
            carry = rest;
            self.write(&entries, &mut tail);
        }
        let deadline = Instant::now() + DRAIN_WITHIN;
        let mut next = carry.or_else(|| self.rx.try_recv().ok());
        while let Some(first) = next {
            let (entries, rest) = self.take_batch(first);
            if Instant::now() < deadline {
                self.write(&entries, &mut tail);
            } else {
                for entry in &entries {
                    log::warn!("audit entry not written (shutting down): {}", encode(entry));
                }
            }
            next = rest.or_else(|| self.rx.try_recv().ok());
        }
    }

    /// `first` and whatever else is already queued, up to [`BATCH_ENTRIES`] and [`BATCH_BYTES`]; an
    /// entry taken that does not fit comes back second, for the next batch.
    fn take_batch(&self, first: Entry) -> (Vec<Entry>, Option<Entry>) {
        let mut bytes = encode(&first).len();
        let mut entries = vec![first];
        while entries.len() < BATCH_ENTRIES {
            let Ok(entry) = self.rx.try_recv() else { break };
            let size = encode(&entry).len();
            if bytes + size > BATCH_BYTES {
                return (entries, Some(entry));
            }
            bytes += size;
            entries.push(entry);
        }
        (entries, None)
    }

    /// Writes one batch after the stream's last message (each NATS call bounded by the request
    /// timeout; re-numbered and retried when another API appended first); a failure is logged with the
    /// entries themselves, so the record survives in the API's log when NATS did not take it.
    fn write(&self, entries: &[Entry], tail: &mut Option<Tail>) {
        let Some(first) = entries.first() else { return };
        let mut why = String::new();
        for _ in 0..CONFLICTS_MAX {
            let t = match tail.map_or_else(|| self.read_tail(), Ok) {
                Ok(t) => t,
                Err(e) => {
                    why = e.to_string();
                    break;
                }
            };
            let body = match batch::encode(t.next, entries) {
                Ok(b) => b,
                Err(e) => {
                    why = format!("not encoded: {e}");
                    break;
                }
            };
            match self
                .bus
                .js_publish_after(&self.subject, &first.id, t.last_seq, &body)
            {
                Ok((seq, false)) => {
                    *tail = Some(Tail {
                        last_seq: seq,
                        next: t.next + entries.len() as u64,
                    });
                    return;
                }
                // Already stored (an id seen before, which a fresh entry id never is): whatever it
                // was numbered, the tail is read again next time.
                Ok((_, true)) => {
                    *tail = None;
                    return;
                }
                Err(BusError::Conflict(e)) => {
                    std::thread::sleep(backoff());
                    // "wrong last sequence: N": the tail is message N (else read the stream's).
                    *tail = match e.rsplit(':').next().map(|n| n.trim().parse::<u64>()) {
                        Some(Ok(last_seq)) if last_seq > 0 => self.read_tail_at(last_seq).ok(),
                        _ => None,
                    };
                    why = e;
                }
                Err(e) => {
                    *tail = None;
                    why = e.to_string();
                    break;
                }
            }
        }
        for entry in entries {
            log::warn!("audit entry not written ({why}): {}", encode(entry));
        }
    }

    /// The stream's last message and the number after its last entry. A stream emptied by age keeps
    /// its last sequence: numbering goes on from there (a number is never below its sequence minus one).
    fn read_tail(&self) -> Result<Tail, BusError> {
        let b = self.bus.stream_bounds(&self.stream)?;
        if b.last_seq == 0 {
            return Ok(Tail {
                last_seq: 0,
                next: 0,
            });
        }
        self.read_tail_at(b.last_seq)
    }

    /// The tail when message `last_seq` is the stream's last: the number after its entries (after
    /// `last_seq` itself when it is gone: a number is never below its sequence minus one).
    fn read_tail_at(&self, last_seq: u64) -> Result<Tail, BusError> {
        let last = self
            .bus
            .stream_get_many(&self.stream, &[last_seq])
            .pop()
            .unwrap_or(Ok(None))?;
        let next = match last {
            Some(bytes) => batch::decode(last_seq, &bytes).end(),
            None => last_seq,
        };
        Ok(Tail { last_seq, next })
    }
}

/// A random pause of up to [`CONFLICT_BACKOFF_MAX`], so two APIs that collided do not collide again.
fn backoff() -> Duration {
    let r = u64::from(uuid::Uuid::new_v4().as_bytes()[0]);
    CONFLICT_BACKOFF_MAX * (r as u32) / 256
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
