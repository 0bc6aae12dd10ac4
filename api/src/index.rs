//! The API's in-memory index of the job and heartbeat buckets, written by the KV watches alone
//! (`watch.rs`) and read by the handlers through `Store`.
//!
//! Why: listing, filtering by status, counting and finding live workers must not read every key of the
//! bucket per request (listing keys grows with the bucket: docs/nats.md). The index holds only what those
//! need (creation time, operation, timing, per-host records, heartbeats); details come from its detail
//! cache of recent jobs' records (`index/detail.rs`) or from KV for the page asked for. It is a cache:
//! JetStream stays the only state; a restarted API rebuilds it. This API's own writes are tracked by
//! revision (`wrote`), so readers that must see them wait for the watch (`wait_own_writes`).
//!
//! Invariants (ARCHITECTURE.md): only the watches write it, and this API its own job creations, each
//! once acknowledged and at the revision of the acknowledgement (`apply_own_job`); every entry
//! carries the KV revision it came from and an older revision never overwrites a newer one; a deleted
//! job leaves a tombstone (until the bucket's TTL) so no late record brings it back; `ttl 0` never
//! prunes; it says it is not ready whenever a watch is being re-created or has not been checked since
//! NATS came back. A job's status is `common::status::job_status`, the same rule the job view uses.
//! The index reads no clock: callers pass `now`.

use osapi_bus::sync::Wakeup;
use osapi_common::job::{HostStateHead, JobDef, WorkerInfo};
use osapi_common::names::keys::{self, Parsed};
use osapi_common::operation::OperationType;
use osapi_common::status::{Grace, JobStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Which bucket a record came from: each has its own watch, revisions and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Jobs,
    Workers,
    /// The response bucket: feeds only the detail cache (`index/detail.rs`), not the index.
    Responses,
}

impl Source {
    fn slot(self) -> usize {
        match self {
            Source::Jobs => 0,
            // Never indexed by the index's own arrays: `Responses` is the detail cache's.
            Source::Workers | Source::Responses => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Jobs => "job",
            Source::Workers => "heartbeat",
            Source::Responses => "response",
        }
    }
}

/// One KV record as a watch delivers it.
pub struct Record<'a> {
    pub key: &'a str,
    /// `None` for a delete or purge marker.
    pub value: Option<&'a [u8]>,
    pub revision: u64,
}

mod applied;
pub mod detail;
mod jobs;
mod state;
use detail::DetailCache;
use state::State;

/// Counts for `GET /job/status`.
pub struct Stats {
    pub total: usize,
    pub by_status: BTreeMap<JobStatus, usize>,
    pub by_operation: BTreeMap<OperationType, usize>,
}

/// Shared by the handler threads (readers) and the watch threads (the writers).
pub struct Index {
    state: Mutex<State>,
    /// Woken when a job turns terminal or goes (for `?wait=`): one condvar per shard of job ids, so a
    /// finished job wakes only the waiters of its shard, not every `?wait=` in progress (each woken
    /// waiter takes the lock, looks and sleeps again: with 16 waiters that was most of a job's wake-ups).
    finished: [Wakeup; WAIT_SHARDS],
    /// Woken at every applied record (for callers waiting on their own write). Both notify only when
    /// someone waits: most records find nobody waiting, and a notify is a system call.
    applied: Wakeup,
    grace: Grace,
    /// Recent jobs' raw records, fed here beside the index (`index/detail.rs`).
    detail: DetailCache,
    /// The highest revision this API wrote, per source (only the job bucket is written through the
    /// index's eyes): a reader that must see its own writes waits until the watch applied it.
    written: [AtomicU64; 2],
}

impl Index {
    /// An index without a detail cache.
    #[cfg(test)]
    pub fn new(grace: Grace) -> Index {
        Index::with_detail_cache(grace, 0, Duration::ZERO)
    }

    /// An index with a detail cache of at most `detail_bytes` (0 = off) for a bucket of TTL `ttl`.
    pub fn with_detail_cache(grace: Grace, detail_bytes: usize, ttl: Duration) -> Index {
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        Index {
            state: Mutex::default(),
            finished: std::array::from_fn(|_| Wakeup::new()),
            applied: Wakeup::new(),
            grace,
            detail: DetailCache::new(detail_bytes, ttl_us),
            written: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The detail cache (read by the store; fed here only).
    pub fn detail(&self) -> &DetailCache {
        &self.detail
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A job this API has just created, applied as its watch will deliver it (the record as written,
    /// at the revision its write was acknowledged with), so that its creator's next request finds it
    /// without waiting for the watch. The watch's progress does not move (other writers' earlier
    /// records may still be on their way), and the watch's own delivery of the record later changes
    /// nothing: the revision rule (an entry is replaced only by a newer revision, a tombstone holds
    /// off older ones) makes whichever comes second a no-op.
    pub fn apply_own_job(&self, record: &Record<'_>, now_us: i64) {
        let mut st = self.lock();
        st.now_us = st.now_us.max(now_us);
        let finished = self.apply_job_record(&mut st, record);
        drop(st);
        if finished {
            self.notify_finished(record.key);
        }
    }

    /// Applies one record of `source`'s bucket, as delivered by its watch, at `now_us`.
    pub fn apply(&self, source: Source, record: &Record<'_>, now_us: i64) {
        if source == Source::Responses {
            self.detail
                .apply_response(record.key, record.revision, record.value);
            return;
        }
        self.apply_locked(self.lock(), source, record, now_us);
    }

    /// [`Index::apply`] if the index is not locked by another thread; false, with nothing applied,
    /// if it is (the watch applies the record on the NATS connection's reading thread, which must not
    /// wait on a reader's lock: `watch.rs`). The response bucket's records are never applied here.
    pub fn try_apply(&self, source: Source, record: &Record<'_>, now_us: i64) -> bool {
        if source == Source::Responses {
            return false;
        }
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        self.apply_locked(st, source, record, now_us);
        true
    }

    fn apply_locked(
        &self,
        mut st: MutexGuard<'_, State>,
        source: Source,
        record: &Record<'_>,
        now_us: i64,
    ) {
        st.now_us = st.now_us.max(now_us);
        let finished = match source {
            Source::Jobs => self.apply_job_record(&mut st, record),
            Source::Workers => {
                apply_heartbeat(&mut st, record);
                false
            }
            Source::Responses => false,
        };
        let slot = &mut st.applied[source.slot()];
        *slot = (*slot).max(record.revision);
        drop(st);
        self.applied.notify_all();
        // Waiters wait for a terminal status (or the job's removal): waking them at every
        // acknowledged/started write would only make each look and sleep again.
        if finished {
            self.notify_finished(record.key);
        }
    }

    /// Wakes the waiters of the job `key` belongs to (every waiter when it names none).
    fn notify_finished(&self, key: &str) {
        match job_of(key) {
            Some(id) => self.finished[wait_shard(&id)].notify_all(),
            None => self.finished.iter().for_each(Wakeup::notify_all),
        }
    }

    /// Returns whether a job turned terminal or went away.
    fn apply_job_record(&self, st: &mut State, record: &Record<'_>) -> bool {
        let rev = record.revision;
        match (keys::parse(record.key), record.value) {
            (Parsed::Job(id), value) => {
                let Ok(id) = Uuid::parse_str(id) else {
                    return false;
                };
                if st.tombstones.get(&id).is_some_and(|(r, _)| *r >= rev)
                    || st.jobs.get(&id).is_some_and(|e| e.revision >= rev)
                {
                    return false;
                }
                let def = value.map(serde_json::from_slice::<JobDef>);
                match def {
                    Some(Err(e)) => {
                        log::warn!("unreadable job record {} ignored: {e}", record.key);
                        self.detail.drop_job(&id);
                        false
                    }
                    Some(Ok(def)) => {
                        // `insert` replaces an entry it holds (removed first, with its places).
                        let entry = st.entry_from_def(&def, rev);
                        st.insert(id, entry);
                        st.file(id, self.grace);
                        // Not while the watch replays the bucket (at start, after a gap): a start would
                        // copy every job through the cache only to evict it. Records of jobs it already
                        // holds are always applied, so what it holds stays whole.
                        if st.ready[Source::Jobs.slot()].problem.is_none() {
                            self.detail
                                .put_job(id, rev, &def, value.unwrap_or_default());
                        }
                        false
                    }
                    None => {
                        self.detail.drop_job(&id);
                        st.remove(&id);
                        let now_us = st.now_us;
                        st.tombstones.insert(id, (rev, now_us));
                        true
                    }
                }
            }
            (Parsed::State { id, host }, value) => {
                let Ok(id) = Uuid::parse_str(id) else {
                    return false;
                };
                let state = match value.map(serde_json::from_slice::<HostStateHead>) {
                    Some(Err(e)) => {
                        log::warn!("unreadable state record {} ignored: {e}", record.key);
                        self.detail.drop_job(&id);
                        return false;
                    }
                    Some(Ok(s)) => Some(s),
                    None => None,
                };
                let Some(entry) = st.jobs.get(&id) else {
                    return false;
                };
                if entry
                    .hosts
                    .iter()
                    .any(|h| h.host.as_str() == host && h.revision >= rev)
                {
                    return false;
                }
                self.detail.put_state(&id, host, rev, record.value);
                st.set_host(&id, host, state.as_ref().map(|s| (s, rev)));
                st.file(id, self.grace);
                st.jobs.get(&id).is_some_and(|e| e.filed.is_terminal())
            }
            (Parsed::Cancel(id), value) => {
                // Written once, never changed or deleted but with its job (a purge): only a value counts.
                let Ok(id) = Uuid::parse_str(id) else {
                    return false;
                };
                let Some(entry) = st.jobs.get_mut(&id) else {
                    return false;
                };
                let Some(value) = value.filter(|_| !entry.cancelled) else {
                    return false;
                };
                entry.cancelled = true;
                self.detail.put_cancel(&id, value);
                st.file(id, self.grace);
                st.jobs.get(&id).is_some_and(|e| e.filed.is_terminal())
            }
            (Parsed::Worker(_) | Parsed::Other, _) => false,
        }
    }

    /// The job's current status, or `None` when the index does not know it.
    pub fn status(&self, id: &Uuid, now_us: i64) -> Option<JobStatus> {
        self.lock()
            .status_of(id, self.grace, now_us)
            .map(|(status, _)| status)
    }

    /// The hosts that may hold records for the job: expected ones and those that wrote a state.
    pub fn hosts(&self, id: &Uuid) -> Option<Vec<String>> {
        let st = self.lock();
        st.jobs.get(id).map(|e| {
            let mut hosts: BTreeSet<String> =
                st.expected(id).iter().map(|h| h.to_string()).collect();
            hosts.extend(e.hosts.iter().map(|h| h.host.to_string()));
            hosts.into_iter().collect()
        })
    }

    /// One page of job ids, newest first, with the total that matched.
    pub fn page(
        &self,
        filter: Option<JobStatus>,
        offset: usize,
        limit: usize,
        now_us: i64,
    ) -> (usize, Vec<Uuid>) {
        let mut st = self.lock();
        st.catch_up(now_us, self.grace);
        st.page(filter, offset, limit)
    }

    pub fn stats(&self, now_us: i64) -> Stats {
        let mut st = self.lock();
        st.catch_up(now_us, self.grace);
        let mut by_status: BTreeMap<JobStatus, usize> =
            JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, set) in &st.by_status {
            by_status.insert(*status, set.len());
        }
        let by_operation = st
            .by_operation
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| (*op, *n))
            .collect();
        Stats {
            total: st.jobs.len(),
            by_status,
            by_operation,
        }
    }

    /// Workers whose heartbeat is recent.
    pub fn live_workers(&self, now_us: i64) -> Vec<WorkerInfo> {
        self.lock()
            .workers
            .values()
            .filter(|(_, w)| w.is_live(now_us))
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// Blocks until the job is terminal, gone, or `deadline` passes.
    pub fn wait_terminal(&self, id: &Uuid, deadline: Instant, now_us: impl Fn() -> i64) {
        self.wait_for(id, deadline, deadline, |st| {
            st.status_of(id, self.grace, now_us())
                .is_none_or(|(status, _)| status.is_terminal())
        });
    }

    /// Blocks until a job this API is creating is terminal or gone, `stop()` holds (its writes were
    /// refused, or their acks are overdue: see [`Index::wake_waiters`]) or `deadline` passes. Unlike
    /// [`Index::wait_terminal`] a job the index does not hold yet is waited for: the watch brings its
    /// record before any host's. Looks at `stop` again at `acks_due` (when its answer may change
    /// without a wake-up).
    pub fn wait_created(
        &self,
        id: &Uuid,
        deadline: Instant,
        acks_due: Instant,
        stop: impl Fn() -> bool,
        now_us: impl Fn() -> i64,
    ) {
        self.wait_for(id, deadline, acks_due, |st| {
            stop()
                || st.tombstones.contains_key(id)
                || st
                    .status_of(id, self.grace, now_us())
                    .is_some_and(|(status, _)| status.is_terminal())
        });
    }

    /// Blocks, woken with job `id`'s shard, until `done` holds or `deadline` passes; looks again at
    /// least every second (a silent host fails by the clock, not by a record) and at `look_at`.
    fn wait_for(
        &self,
        id: &Uuid,
        deadline: Instant,
        look_at: Instant,
        done: impl Fn(&State) -> bool,
    ) {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if done(&st) || left.is_zero() {
                return;
            }
            let mut sleep = left.min(Duration::from_secs(1));
            if look_at > now {
                sleep = sleep.min(look_at - now);
            }
            st = self.finished[wait_shard(id)].wait_timeout(st, sleep);
        }
    }

    /// Wakes whoever waits for job `id` ([`Index::wait_created`]: its creation failed). Taking the
    /// lock first orders this after a waiter's look, so the wake-up is not lost.
    pub fn wake_waiters(&self, id: &Uuid) {
        drop(self.lock());
        self.finished[wait_shard(id)].notify_all();
    }

    /// Forgets what JetStream has expired (it leaves no marker): jobs created, tombstones laid and
    /// heartbeats written more than `ttl` ago. A `ttl` of zero means records never expire: nothing goes.
    pub fn prune(&self, now_us: i64, ttl: Duration) {
        if ttl.is_zero() {
            // Deleted jobs still go: so may the host names only they held.
            self.lock().forget_unused_names();
            return;
        }
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now_us.saturating_sub(ttl_us);
        let mut st = self.lock();
        for id in st.created_before(cutoff) {
            st.remove(&id);
        }
        st.tombstones.retain(|_, (_, at)| *at >= cutoff);
        st.workers.retain(|_, (_, w)| w.last_seen_us >= cutoff);
        st.forget_unused_names();
    }
}

/// Shards of `?wait=` wake-ups ([`Index::wait_terminal`]); a waiter shares its shard with another
/// request's job rarely (16 waiters at most), and then only looks and sleeps again.
const WAIT_SHARDS: usize = 64;

fn wait_shard(id: &Uuid) -> usize {
    (id.as_u128() % WAIT_SHARDS as u128) as usize
}

/// The job a job-bucket key belongs to (`jobs.{id}`, `state.{id}.{host}`, `cancel.{id}`).
fn job_of(key: &str) -> Option<Uuid> {
    match keys::parse(key) {
        Parsed::Job(id) | Parsed::State { id, .. } | Parsed::Cancel(id) => Uuid::parse_str(id).ok(),
        Parsed::Worker(_) | Parsed::Other => None,
    }
}

fn apply_heartbeat(st: &mut State, record: &Record<'_>) {
    let Parsed::Worker(host) = keys::parse(record.key) else {
        return;
    };
    if st
        .workers
        .get(host)
        .is_some_and(|(rev, _)| *rev >= record.revision)
    {
        return;
    }
    match record
        .value
        .and_then(|v| serde_json::from_slice::<WorkerInfo>(v).ok())
    {
        Some(info) => st.workers.insert(host.to_string(), (record.revision, info)),
        None => st.workers.remove(host),
    };
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
