//! Jobs whose final record is sent and whose notification the record's ack settles. A pool thread that
//! finished a job sends the `completed` record and goes on to its next job without waiting for the ack
//! (one sleep and one wake-up a job less): the connection's reading thread acks the notification when
//! the record's ack comes and says it was stored. What goes wrong is left to this module's own thread:
//! a refused record, or an ack missing at the request timeout, is handed to `resolve`, which does what
//! the pool thread did before (fail the job, or nak it for redelivery).
//!
//! Invariant: a notification is settled once, by whichever of the two claims its entry first, and only
//! after its record was stored or given up on; so, as before, no job is acked whose answer is not in
//! KV. The entry is registered before the record is sent (its ack may come before the send returns).

use osapi_bus::sync::Wakeup;
use osapi_bus::{BusError, JsMessage, PendingWrites};
use osapi_common::job::HostState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the reading thread runs for a record's acks ([`osapi_bus::Bus::send_writes`]).
pub type Callback = Box<dyn Fn() + Send + Sync>;

/// How long the thread sleeps with no record sent whose ack could be overdue.
const IDLE: Duration = Duration::from_secs(3600);

/// A job whose final record is on its way: what settling it, or failing it, takes.
pub struct Final {
    pub id: String,
    pub target: String,
    pub msg: Arc<JsMessage>,
    /// The state before the final record (the failure path adds to it).
    pub state: HostState,
    pub took: String,
}

struct Entry {
    job: Final,
    /// Attached once sent; the thread looks only at entries that have it.
    pending: Option<PendingWrites>,
}

#[derive(Default)]
struct Entries {
    jobs: HashMap<u64, Entry>,
    /// `Some` while the thread waits (set under the lock before it waits): until then.
    sleeping_until: Option<Instant>,
    /// Jobs the thread took out and is settling now.
    resolving: usize,
}

impl Entries {
    fn settled(&self) -> bool {
        self.jobs.is_empty() && self.resolving == 0
    }
}

/// The jobs between their final record's send and its ack.
#[derive(Default)]
pub struct Settling {
    entries: Mutex<Entries>,
    /// Wakes the thread: a record refused, or one sent whose ack is due before the thread's wake-up.
    changed: Wakeup,
    /// A waiter in [`Settling::wait_empty`]: the last entry went.
    emptied: Wakeup,
    next: AtomicU64,
}

impl Settling {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `job`'s final record by `send` (a [`osapi_bus::Bus::send_writes`] of it, given the
    /// callbacks to pass: refused, stored) and returns: the reading thread acks the notification when
    /// the record is stored, this module's thread takes it when refused or overdue. When nothing could
    /// be sent the job comes back with the error, for the caller to settle.
    pub fn send(
        self: &Arc<Self>,
        job: Final,
        send: impl FnOnce(Callback, Callback) -> Result<PendingWrites, BusError>,
    ) -> Option<(Final, BusError)> {
        // Registered first: the ack may come before `send` returns.
        let key = self.enter(job);
        let (on_refused, on_stored) = (self.clone(), self.clone());
        let refused: Callback = Box::new(move || on_refused.refused());
        let stored: Callback = Box::new(move || {
            if let Some(done) = on_stored.claim(key) {
                if let Err(e) = done.msg.ack_unflushed() {
                    log::warn!(
                        "job {} (ack): could not settle the notification: {e}",
                        done.id
                    );
                }
            }
        });
        match send(refused, stored) {
            Ok(pending) => {
                self.attach(key, pending);
                None
            }
            // Nothing was sent, so nobody else can have claimed it.
            Err(e) => self.claim(key).map(|job| (job, e)),
        }
    }

    /// Registers `job` before its record is sent; the key names it to the other calls.
    fn enter(&self, job: Final) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries()
            .jobs
            .insert(key, Entry { job, pending: None });
        key
    }

    /// The record of `key` was sent: its acks are `pending`. Nothing to keep when the ack came already.
    /// Wakes the thread when the record was refused already, or when the thread sleeps past the
    /// deadline of its ack (it sleeps until the earliest: under load no entry wakes it).
    fn attach(&self, key: u64, pending: PendingWrites) {
        let (refused, deadline) = (pending.given_up(), pending.deadline());
        let mut entries = self.entries();
        let Some(entry) = entries.jobs.get_mut(&key) else {
            return;
        };
        entry.pending = Some(pending);
        let wake = refused || entries.sleeping_until.is_some_and(|t| t > deadline);
        drop(entries);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Takes `key`'s job out (the caller settles it); `None` when another did.
    fn claim(&self, key: u64) -> Option<Final> {
        let mut entries = self.entries();
        let entry = entries.jobs.remove(&key)?;
        let settled = entries.settled();
        drop(entries);
        if settled {
            self.emptied.notify_all();
        }
        Some(entry.job)
    }

    /// On the reading thread: a record of this module was refused; the thread looks. (Taking the lock
    /// orders the wake-up after the thread's look, so none is lost: the refusal is marked in the
    /// record's acks before this runs.)
    fn refused(&self) {
        drop(self.entries());
        self.changed.notify_all();
    }

    /// Runs on its own thread for the life of the process: each job whose record was refused, or whose
    /// ack is missing at the request timeout, goes to `resolve` with the record's outcome.
    pub fn run(&self, resolve: impl Fn(Final, Result<u64, BusError>)) {
        loop {
            for (job, pending) in self.given_up() {
                let outcome = pending
                    .acks()
                    .pop()
                    .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())));
                resolve(job, outcome);
                let mut entries = self.entries();
                entries.resolving -= 1;
                let settled = entries.settled();
                drop(entries);
                if settled {
                    self.emptied.notify_all();
                }
            }
        }
    }

    /// Waits until a record was refused or an ack is overdue, and takes those jobs out.
    fn given_up(&self) -> Vec<(Final, PendingWrites)> {
        let mut entries = self.entries();
        loop {
            let out: Vec<u64> = entries
                .jobs
                .iter()
                .filter(|(_, e)| e.pending.as_ref().is_some_and(PendingWrites::given_up))
                .map(|(key, _)| *key)
                .collect();
            if !out.is_empty() {
                let taken: Vec<_> = out
                    .into_iter()
                    .filter_map(|key| entries.jobs.remove(&key))
                    .filter_map(|e| e.pending.map(|p| (e.job, p)))
                    .collect();
                // Settled only once `resolve` is done with them (`run`).
                entries.resolving += taken.len();
                return taken;
            }
            let next = entries
                .jobs
                .values()
                .filter_map(|e| e.pending.as_ref().map(PendingWrites::deadline))
                .min();
            // Just past it: an ack is overdue only once its deadline has passed.
            let until = next.map_or(Instant::now() + IDLE, |at| at + Duration::from_millis(1));
            entries.sleeping_until = Some(until);
            let wait = until.saturating_duration_since(Instant::now());
            entries = self.changed.wait_timeout(entries, wait);
            entries.sleeping_until = None;
        }
    }

    /// Waits until every job is settled (a refused or overdue one too: its nak sent, or its failure
    /// written), or `deadline`; whether none is left.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        let entries = self.entries();
        self.emptied
            .wait_until(entries, deadline, Entries::settled)
            .1
    }
}
