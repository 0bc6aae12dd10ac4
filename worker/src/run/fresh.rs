//! Keeps the `running` record of long jobs fresh: one thread for the whole pool rewrites the record of
//! every job running longer than `refresh_every` since its last write, so the API never counts a live
//! worker's long job as lost (`common::status::Grace`). One thread instead of one per job: most jobs end
//! in milliseconds, and a thread started and joined per job was a measurable share of the worker's CPU.
//!
//! Invariant: once a job's [`Guard`] has dropped, no `running` record of that job is written any more
//! (the final state written after it stays the last): the drop waits for a rewrite in flight.

use osapi_common::job::HostState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shortest pause between two looks at the running jobs.
const TICK_MIN: Duration = Duration::from_millis(25);

struct Entry {
    id: String,
    state: HostState,
    /// When the record was last written; `None` once the job has ended (nothing more is written).
    written: Mutex<Option<Instant>>,
}

impl Entry {
    fn written(&self) -> MutexGuard<'_, Option<Instant>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The jobs whose `running` record is kept fresh.
#[derive(Default)]
pub struct Fresh {
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    next: AtomicU64,
}

impl Fresh {
    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `id` has just written `state` (`running`): keep it fresh until the guard drops.
    pub fn enter(&self, id: &str, state: &HostState) -> Guard<'_> {
        let entry = Arc::new(Entry {
            id: id.to_string(),
            state: state.clone(),
            written: Mutex::new(Some(Instant::now())),
        });
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries().insert(slot, entry.clone());
        Guard {
            fresh: self,
            slot,
            entry,
        }
    }

    /// Runs on its own thread for the life of the process: every `every / 4` (at least [`TICK_MIN`])
    /// rewrites, by `write`, each record last written `every` ago or more. A job is thus rewritten at
    /// most `every * 1.25` after its last write.
    pub fn run(&self, every: Duration, write: impl Fn(&str, &HostState)) {
        let tick = (every / 4).max(TICK_MIN);
        loop {
            std::thread::sleep(tick);
            let due: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
            for entry in due {
                let mut written = entry.written();
                if written.is_some_and(|at| at.elapsed() >= every) {
                    write(&entry.id, &entry.state);
                    *written = Some(Instant::now());
                }
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
        self.fresh.entries().remove(&self.slot);
        *self.entry.written() = None;
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
        }
    }

    #[test]
    fn a_long_job_is_rewritten_and_nothing_after_its_guard_drops() {
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
        let short = fresh.enter("short", &state());
        drop(short);
        let long = fresh.enter("long", &state());
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
