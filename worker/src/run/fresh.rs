//! The `running` record of a job, written only when a reader can use it: when the job is still running
//! [`FIRST_AFTER`] after it started, then again every `refresh_every`, so the API never counts a live
//! worker's long job as lost (`common::status::Grace`). A job that ends sooner (almost all) writes only
//! its final record, which carries the `acknowledged` and `started` events too: one KV write, one watch
//! delivery to every API and one round trip less per job and host. One thread does this for the pool
//! (a thread started and joined per job was a measurable share of the worker's CPU), and a job entering
//! wakes it only when the thread would otherwise sleep past the job's first record (waking it for
//! every job was ~3% of a busy worker's CPU, plus a futex wake on the job's thread).
//!
//! Invariant: once a job's [`Guard`] has dropped, no `running` record of that job is written any more
//! (the final state written after it stays the last): the drop waits for a write in flight.

use osapi_common::job::HostState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a job runs before its `running` record is written.
pub const FIRST_AFTER: Duration = Duration::from_millis(100);

struct Entry {
    id: String,
    state: Arc<HostState>,
    /// When the record is due next; `None` once the job has ended (nothing more is written).
    due: Mutex<Option<Instant>>,
}

impl Entry {
    fn due(&self) -> MutexGuard<'_, Option<Instant>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the lock guards: the running jobs, and until when the thread sleeps.
#[derive(Default)]
struct Entries {
    jobs: HashMap<u64, Arc<Entry>>,
    /// `Some` while the thread waits (set under the lock before it waits): until then. `None` while it
    /// looks at the entries (a job entering meanwhile is seen by the `next` counter).
    sleeping_until: Option<Instant>,
}

/// The jobs whose `running` record is kept fresh.
#[derive(Default)]
pub struct Fresh {
    entries: Mutex<Entries>,
    /// Woken when a job enters whose record is due before the thread's wake-up.
    entered: Condvar,
    next: AtomicU64,
}

impl Fresh {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `id` starts running with `state` (`running`): its record is written [`FIRST_AFTER`] from now
    /// if it still runs, and kept fresh until the guard drops.
    pub fn enter(&self, id: &str, state: Arc<HostState>) -> Guard<'_> {
        let due = Instant::now() + FIRST_AFTER;
        let entry = Arc::new(Entry {
            id: id.to_string(),
            state,
            due: Mutex::new(Some(due)),
        });
        let (slot, wake) = {
            // Counted under the lock, so `run` can tell a job entered since its last look.
            let mut entries = self.entries();
            let slot = self.next.fetch_add(1, Ordering::SeqCst);
            entries.jobs.insert(slot, entry.clone());
            (slot, entries.sleeping_until.is_some_and(|t| t > due))
        };
        if wake {
            self.entered.notify_all();
        }
        Guard {
            fresh: self,
            slot,
            entry,
        }
    }

    /// Runs on its own thread for the life of the process: writes, by `write`, each record that is due,
    /// then makes it due again `every` later; sleeps until the next is due (or a job enters).
    pub fn run(&self, every: Duration, write: impl Fn(&str, &HostState)) {
        loop {
            let (entries, seen): (Vec<Arc<Entry>>, u64) = {
                let entries = self.entries();
                let seen = self.next.load(Ordering::SeqCst);
                (entries.jobs.values().cloned().collect(), seen)
            };
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for entry in entries {
                let mut due = entry.due();
                let Some(at) = *due else { continue };
                let at = if at <= now {
                    write(&entry.id, &entry.state);
                    let again = Instant::now() + every;
                    *due = Some(again);
                    again
                } else {
                    at
                };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            let mut guard = self.entries();
            let wait = match next {
                // A job entered since the look above: look again.
                _ if self.next.load(Ordering::SeqCst) != seen => Duration::ZERO,
                Some(at) => at.saturating_duration_since(Instant::now()),
                // Nothing running: sleep until a job enters (the bound only guards against a lost wake-up).
                None if guard.jobs.is_empty() => Duration::from_secs(3600),
                None => Duration::ZERO,
            };
            if !wait.is_zero() {
                guard.sleeping_until = Some(Instant::now() + wait);
                let mut guard = match self.entered.wait_timeout(guard, wait) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
                guard.sleeping_until = None;
            }
        }
    }
}

/// A job whose `running` record is kept fresh; dropping it ends that (after a rewrite in flight).
pub struct Guard<'a> {
    fresh: &'a Fresh,
    slot: u64,
    entry: Arc<Entry>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.fresh.entries().jobs.remove(&self.slot);
        *self.entry.due() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osapi_common::status::HostStatus;

    fn state() -> HostState {
        HostState {
            hostname: "h".into(),
            status: HostStatus::Running,
            attempts: 1,
            error: None,
            duration: None,
            events: Vec::new(),
            updated_us: 0,
            response: None,
        }
    }

    #[test]
    fn only_a_long_job_writes_running_records_and_none_after_its_guard_drops() {
        let fresh = Arc::new(Fresh::default());
        let writes = Arc::new(Mutex::new(Vec::<String>::new()));
        {
            let (fresh, writes) = (fresh.clone(), writes.clone());
            std::thread::spawn(move || {
                fresh.run(Duration::from_millis(100), |id, _| {
                    writes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(id.into())
                })
            });
        }
        let count = || writes.lock().unwrap_or_else(|p| p.into_inner()).len();
        let short = fresh.enter("short", Arc::new(state()));
        drop(short);
        std::thread::sleep(FIRST_AFTER * 2);
        assert_eq!(
            count(),
            0,
            "a job that ended within FIRST_AFTER writes no running record"
        );
        let long = fresh.enter("long", Arc::new(state()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while count() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(long);
        let after = count();
        assert!(after >= 2, "the long job was rewritten: {after}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(count(), after, "nothing is written after the guard dropped");
        let ids = writes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(ids.iter().all(|id| id == "long"), "{ids:?}");
    }
}
