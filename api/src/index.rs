//! The API's in-memory index of the job bucket, fed by a KV watch (see `watch.rs`).
//!
//! Why: listing, filtering by status, counting and finding live workers must not read every key of the
//! bucket per request (NATS-NOTES trap 4). The index holds only what those need (creation time,
//! operation, deadline, per-host statuses, heartbeats); details are read from KV for the page asked for.
//! It is a cache: JetStream stays the only state, and a restarted API rebuilds it from the watch.

use osapi_common::job::{HostState, JobDef, WorkerInfo};
use osapi_common::names::keys::{self, Parsed};
use osapi_common::operation::OperationType;
use osapi_common::status::{self, HostStatus, JobStatus};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What the index keeps of one job: only what listing, filtering and counting need, kept small
/// (about 100 bytes a job) because the index holds every job of the bucket.
#[derive(Debug, Clone)]
struct JobEntry {
    created_us: i64,
    deadline_us: i64,
    op: OperationType,
    /// Broadcast jobs: the live workers that matched at submission.
    expected: Box<[Box<str>]>,
    /// `_any` jobs: one host decides (see `status::any_target_decider`).
    any: bool,
    /// Hosts that wrote a state, with its status and attempt number.
    hosts: Vec<(Box<str>, HostStatus, u32)>,
    /// The status it is filed under in `State::by_status` (as of its last record, or its deadline).
    filed: JobStatus,
}

impl JobEntry {
    fn from_def(def: &JobDef) -> JobEntry {
        JobEntry {
            created_us: def.created_us,
            deadline_us: def.deadline_us(),
            op: def.operation.op_type,
            expected: def
                .expected_hosts
                .iter()
                .map(|h| h.as_str().into())
                .collect(),
            any: def.is_any_target(),
            hosts: Vec::new(),
            filed: JobStatus::Pending,
        }
    }

    /// The same aggregation as `common::view` (expected hosts plus those that answered; silent ones
    /// fail after the deadline), without building the detail.
    fn status(&self, now_us: i64) -> JobStatus {
        let past = now_us > self.deadline_us;
        if self.any {
            let written = self.hosts.iter().map(|(h, s, a)| (&**h, *s, *a));
            let decider = status::any_target_decider(written);
            let statuses: Vec<HostStatus> = self
                .hosts
                .iter()
                .filter(|(h, _, _)| Some(&**h) == decider)
                .map(|(_, s, _)| *s)
                .collect();
            return status::aggregate(&statuses, past);
        }
        let mut statuses: Vec<HostStatus> = self.hosts.iter().map(|(_, s, _)| *s).collect();
        for host in self.expected.iter() {
            if !self.hosts.iter().any(|(h, _, _)| h == host) {
                statuses.push(status::effective_host_status(None, past));
            }
        }
        status::aggregate(&statuses, past)
    }
}

#[derive(Default)]
struct State {
    jobs: HashMap<Uuid, JobEntry>,
    by_created: BTreeSet<(i64, Uuid)>,
    /// The same jobs by their filed status, so a filtered page and the counts never walk the bucket:
    /// a status changes only with a record of the job, or once, when its deadline passes.
    by_status: BTreeMap<JobStatus, BTreeSet<(i64, Uuid)>>,
    by_operation: BTreeMap<OperationType, usize>,
    /// Jobs whose deadline was ahead when filed, soonest first: the clock alone may yet change their status.
    deadlines: BTreeSet<(i64, Uuid)>,
    /// The latest `now` a reader brought (the index reads no clock): records are filed as of it.
    now_us: i64,
    workers: BTreeMap<String, WorkerInfo>,
    /// The watch has delivered every record that existed when it started.
    ready: bool,
    /// Highest bucket sequence applied, to resume a watch without gaps.
    last_seq: u64,
}

impl State {
    fn insert(&mut self, id: Uuid, entry: JobEntry) {
        let now_us = self.now_us;
        self.by_created.insert((entry.created_us, id));
        *self.by_operation.entry(entry.op).or_default() += 1;
        if entry.deadline_us >= now_us {
            self.deadlines.insert((entry.deadline_us, id));
        }
        self.by_status
            .entry(entry.filed)
            .or_default()
            .insert((entry.created_us, id));
        self.jobs.insert(id, entry);
        self.file(id);
    }

    fn remove(&mut self, id: &Uuid) {
        let Some(e) = self.jobs.remove(id) else {
            return;
        };
        self.by_created.remove(&(e.created_us, *id));
        if let Some(set) = self.by_status.get_mut(&e.filed) {
            set.remove(&(e.created_us, *id));
        }
        if let Some(n) = self.by_operation.get_mut(&e.op) {
            *n = n.saturating_sub(1);
        }
        self.deadlines.remove(&(e.deadline_us, *id));
    }

    /// Recomputes one job's status (as of `self.now_us`) and files it under it.
    fn file(&mut self, id: Uuid) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        let now = entry.status(self.now_us);
        let was = std::mem::replace(&mut entry.filed, now);
        if was == now {
            return;
        }
        let key = (entry.created_us, id);
        if let Some(set) = self.by_status.get_mut(&was) {
            set.remove(&key);
        }
        self.by_status.entry(now).or_default().insert(key);
    }

    /// Re-files the jobs whose deadline has passed since they were last filed: O(those jobs).
    fn catch_up(&mut self, now_us: i64) {
        self.now_us = self.now_us.max(now_us);
        while let Some(&(deadline_us, id)) = self.deadlines.first() {
            if deadline_us >= self.now_us {
                break;
            }
            self.deadlines.pop_first();
            self.file(id);
        }
    }
}

/// Counts for `GET /job/status`.
pub struct Stats {
    pub total: usize,
    pub by_status: BTreeMap<JobStatus, usize>,
    pub by_operation: BTreeMap<OperationType, usize>,
}

/// Shared by the handler threads (readers) and the watch thread (the writer).
#[derive(Default)]
pub struct Index {
    state: Mutex<State>,
    changed: Condvar,
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a job (idempotent: the API inserts what it creates, the watch delivers it again).
    pub fn insert_job(&self, def: &JobDef) {
        let Ok(id) = Uuid::parse_str(&def.id) else {
            return;
        };
        let mut st = self.lock();
        if st.jobs.contains_key(&id) {
            return;
        }
        st.insert(id, JobEntry::from_def(def));
    }

    pub fn remove_job(&self, id: &Uuid) {
        self.lock().remove(id);
        self.changed.notify_all();
    }

    /// Applies one record of the job bucket, as delivered by the watch.
    pub fn apply(&self, key: &str, value: Option<&[u8]>, seq: u64) {
        match (keys::parse(key), value) {
            (Parsed::Job(_), Some(v)) => {
                if let Ok(def) = serde_json::from_slice::<JobDef>(v) {
                    self.insert_job(&def);
                }
            }
            (Parsed::Job(id), None) => {
                if let Ok(id) = Uuid::parse_str(id) {
                    self.remove_job(&id);
                }
            }
            (Parsed::State { id, host }, v) => {
                let Ok(id) = Uuid::parse_str(id) else { return };
                let status = v
                    .and_then(|v| serde_json::from_slice::<HostState>(v).ok())
                    .map(|s| (s.status, s.attempts));
                let mut st = self.lock();
                let mut finished = false;
                if let Some(entry) = st.jobs.get_mut(&id) {
                    entry.hosts.retain(|(h, _, _)| &**h != host);
                    if let Some((status, attempts)) = status {
                        entry.hosts.push((host.into(), status, attempts));
                    }
                    st.file(id);
                    finished = st.jobs.get(&id).is_some_and(|e| e.filed.is_terminal());
                }
                drop(st);
                // Waiters wait for a terminal status (or the job's removal): waking every one of them
                // at each acknowledged/started write only makes each look and sleep again.
                if finished {
                    self.changed.notify_all();
                }
            }
            (Parsed::Worker(host), v) => {
                let info = v.and_then(|v| serde_json::from_slice::<WorkerInfo>(v).ok());
                let mut st = self.lock();
                match info {
                    Some(info) => st.workers.insert(host.to_string(), info),
                    None => st.workers.remove(host),
                };
            }
            (Parsed::Other, _) => {}
        }
        let mut st = self.lock();
        st.last_seq = st.last_seq.max(seq);
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    pub fn set_ready(&self) {
        self.lock().ready = true;
    }

    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Whether the job is known, and its current status.
    pub fn status(&self, id: &Uuid, now_us: i64) -> Option<JobStatus> {
        self.lock().jobs.get(id).map(|e| e.status(now_us))
    }

    /// The hosts that may hold records for the job: expected ones and those that wrote a state.
    pub fn hosts(&self, id: &Uuid) -> Option<Vec<String>> {
        self.lock().jobs.get(id).map(|e| {
            let mut hosts: BTreeSet<String> = e.expected.iter().map(|h| h.to_string()).collect();
            hosts.extend(e.hosts.iter().map(|(h, _, _)| h.to_string()));
            hosts.into_iter().collect()
        })
    }

    /// One page of job ids, newest first, with the total that matched.
    pub fn page(
        &self,
        filter: Option<JobStatus>,
        offset: usize,
        limit: Option<usize>,
        now_us: i64,
    ) -> (usize, Vec<Uuid>) {
        let mut st = self.lock();
        st.catch_up(now_us);
        let limit = limit.unwrap_or(usize::MAX);
        let empty = BTreeSet::new();
        let set = match filter {
            None => &st.by_created,
            Some(f) => st.by_status.get(&f).unwrap_or(&empty),
        };
        let page = set
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|(_, id)| *id)
            .collect();
        (set.len(), page)
    }

    pub fn stats(&self, now_us: i64) -> Stats {
        let mut st = self.lock();
        st.catch_up(now_us);
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
            .filter(|w| w.is_live(now_us))
            .cloned()
            .collect()
    }

    /// Blocks until the job is terminal, gone, or `deadline` passes.
    pub fn wait_terminal(&self, id: &Uuid, deadline: Instant, now_us: impl Fn() -> i64) {
        let mut st = self.lock();
        loop {
            let done = st
                .jobs
                .get(id)
                .is_none_or(|e| e.status(now_us()).is_terminal());
            let left = deadline.saturating_duration_since(Instant::now());
            if done || left.is_zero() {
                return;
            }
            // Wake at least every second: a silent host turns `no response` by the clock, not by a record.
            let (guard, _) = self
                .changed
                .wait_timeout(st, left.min(Duration::from_secs(1)))
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
        }
    }

    /// Forgets jobs older than the bucket's TTL (JetStream expires them without a marker).
    pub fn prune(&self, now_us: i64, ttl: Duration) {
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now_us.saturating_sub(ttl_us);
        let mut st = self.lock();
        let old: Vec<(i64, Uuid)> = st
            .by_created
            .iter()
            .take_while(|(created, _)| *created < cutoff)
            .copied()
            .collect();
        for (_, id) in old {
            st.remove(&id);
        }
        st.workers.retain(|_, w| w.last_seen_us >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osapi_common::job::{HostState, Operation};

    fn def(n: u128, created_us: i64, expected: &[&str]) -> JobDef {
        JobDef {
            id: Uuid::from_u128(n).to_string(),
            operation: Operation {
                op_type: OperationType::TestPingDo,
                data: serde_json::json!({}),
            },
            target_hostname: "_all".into(),
            expected_hosts: expected.iter().map(|h| h.to_string()).collect(),
            created: String::new(),
            created_us,
            timeout_ms: 1000,
            retry_of: None,
            submitted_by: String::new(),
            signature: None,
        }
    }

    fn put(index: &Index, key: &str, value: &impl serde::Serialize, seq: u64) {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        index.apply(key, Some(&bytes), seq);
    }

    fn state(host: &str, status: HostStatus) -> HostState {
        HostState {
            hostname: host.into(),
            status,
            attempts: 1,
            error: None,
            duration: None,
            events: vec![],
        }
    }

    #[test]
    fn pages_filters_counts_and_forgets() {
        let index = Index::default();
        for n in 1..=3 {
            put(
                &index,
                &keys::job(&Uuid::from_u128(n).to_string()),
                &def(n, n as i64 * 1000, &["a", "b"]),
                n as u64,
            );
        }
        let id1 = Uuid::from_u128(1).to_string();
        put(
            &index,
            &keys::state(&id1, "a"),
            &state("a", HostStatus::Completed),
            4,
        );
        put(
            &index,
            &keys::state(&id1, "b"),
            &state("b", HostStatus::Failed),
            5,
        );
        let now = 3_500;
        let (total, page) = index.page(None, 0, Some(2), now);
        assert_eq!(total, 3);
        assert_eq!(
            page,
            [Uuid::from_u128(3), Uuid::from_u128(2)],
            "newest first"
        );
        let (total, page) = index.page(Some(JobStatus::PartialFailure), 0, Some(10), now);
        assert_eq!((total, page), (1, vec![Uuid::from_u128(1)]));
        assert_eq!(index.page(Some(JobStatus::Pending), 1, Some(10), now).0, 2);
        let stats = index.stats(now);
        assert_eq!(stats.total, 3);
        assert_eq!(stats.by_status.get(&JobStatus::Pending), Some(&2));
        // Past every deadline, the silent hosts of jobs 2 and 3 count as failed.
        assert_eq!(
            index.stats(10_000_000).by_status.get(&JobStatus::Failed),
            Some(&2)
        );
        assert_eq!(index.last_seq(), 5);
        index.apply(&keys::job(&id1), None, 6);
        assert_eq!(index.stats(now).total, 2, "a purged job leaves the index");
        index.prune(1_000_000 + 2_500, Duration::from_secs(1));
        assert_eq!(
            index.stats(now).total,
            1,
            "jobs older than the TTL are forgotten"
        );
    }

    #[test]
    fn wait_returns_when_the_job_finishes_or_at_the_deadline() {
        let index = std::sync::Arc::new(Index::default());
        let id = Uuid::from_u128(7);
        put(&index, &keys::job(&id.to_string()), &def(7, 0, &["a"]), 1);
        let start = Instant::now();
        index.wait_terminal(&id, start + Duration::from_millis(50), || 0);
        assert!(start.elapsed() >= Duration::from_millis(50));
        let writer = index.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            put(
                &writer,
                &keys::state(&id.to_string(), "a"),
                &state("a", HostStatus::Completed),
                2,
            );
        });
        let start = Instant::now();
        index.wait_terminal(&id, start + Duration::from_secs(10), || 0);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken by the state change"
        );
        assert_eq!(index.status(&id, 0), Some(JobStatus::Completed));
        let _ = t.join();
    }
}
