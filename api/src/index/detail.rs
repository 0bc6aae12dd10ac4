//! A bounded cache of the raw KV records of recent jobs (`jobs.{id}`, `cancel.{id}`, each host's
//! `state.{id}.{host}`, whose final record carries the host's answer, and, from workers of before
//! that, the response `{id}.{host}`), so `GET /job/{id}` and list pages of recent jobs are answered
//! without a KV read.
//!
//! Why: reading a job's detail from KV costs 2 + 2 per host `STREAM.MSG.GET`s, and the API's watches
//! deliver every one of those records anyway (the job bucket's for the index, the response bucket's for
//! this cache alone). Rules (ARCHITECTURE.md): only the watches feed it (through `Index::apply`, after
//! the index accepted the record, so the index's tombstones guard it too; new jobs only once the job
//! watch is current, not during a replay of the bucket); per key an older revision
//! never overwrites a newer one; a delete marker or an unreadable record drops the job; it holds at most
//! `api.server.detail_cache_bytes` (0 = off) and evicts whole jobs, oldest first. It answers a job only
//! when it can answer it completely, while both watches are current, and before the job could have
//! expired from the bucket; a host's answer comes in its final state, and a host that finished without
//! one (a worker of before that wrote its response to the response bucket, before the final state)
//! whose response has not arrived yet is named, so the store reads just that response. The same parse and the
//! same `view::detail_with_cancel` as the KV path make the answer the same view.

use osapi_common::job::{CancelRecord, HostState, JobDef, Response};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// What the bookkeeping of one record costs beside its bytes (its vector slot, the allocator's header
/// and rounding): an estimate, so the budget tracks what the process holds.
const RECORD_OVERHEAD: usize = 64;
/// The same for a job (its map slot at the map's load, its node in the eviction order, its vector).
const JOB_OVERHEAD: usize = 256;
/// Ids of responses that came before their job (remembered so the job is never answered without them).
const UNPLACED_MAX: usize = 1024;
/// The cache does not answer a job this close to its expiry by the bucket's TTL (clock skew between the
/// API and nats-server): the KV path answers, and says 404 once JetStream has expired it.
const EXPIRY_MARGIN_US: i64 = 60_000_000;

/// The records of one job, parsed exactly as the KV path parses them (an unreadable state or response
/// is left out, an unreadable cancel counts as none).
#[derive(Debug, Default)]
pub struct Parts {
    pub def: Option<JobDef>,
    pub cancel: Option<CancelRecord>,
    pub states: BTreeMap<String, HostState>,
    pub responses: BTreeMap<String, Response>,
}

impl Parts {
    pub fn set_def(&mut self, raw: Option<&[u8]>) {
        self.def = raw.and_then(|v| serde_json::from_slice(v).ok());
    }
    pub fn set_cancel(&mut self, raw: Option<&[u8]>) {
        self.cancel = raw.and_then(|v| serde_json::from_slice(v).ok());
    }
    /// A host's state; the answer it carries (a final record) is the host's response.
    pub fn add_state(&mut self, host: &str, raw: Option<&[u8]>) {
        if let Some(mut s) = raw.and_then(|v| serde_json::from_slice::<HostState>(v).ok()) {
            if let Some(r) = s.response.take() {
                self.responses.insert(host.to_string(), r);
            }
            self.states.insert(host.to_string(), s);
        }
    }
    /// A record of the response bucket (workers before answers went into the final state), unless
    /// the host's state carried its answer: that one was written with the final status.
    pub fn add_response(&mut self, host: &str, raw: Option<&[u8]>) {
        if self.responses.contains_key(host) {
            return;
        }
        if let Some(r) = raw.and_then(|v| serde_json::from_slice::<Response>(v).ok()) {
            self.responses.insert(host.to_string(), r);
        }
    }
}

/// What the cache could say about a job.
#[derive(Debug)]
pub enum Lookup {
    /// Not held (evicted, never seen, incomplete, near expiry) or a watch not current: read KV.
    Miss,
    /// Every record, except the responses of `missing` hosts (finished, response not yet delivered).
    Found {
        parts: Box<Parts>,
        missing: Vec<String>,
    },
}

/// One record of a host, its state or its response: the host name and the raw value in one
/// allocation (`bytes` = host then value), so a record costs one block of the allocator.
struct Rec {
    revision: u64,
    host_len: u32,
    response: bool,
    bytes: Box<[u8]>,
}

impl Rec {
    fn new(response: bool, host: &str, revision: u64, value: &[u8]) -> Rec {
        let mut bytes = Vec::with_capacity(host.len() + value.len());
        bytes.extend_from_slice(host.as_bytes());
        bytes.extend_from_slice(value);
        Rec {
            revision,
            host_len: u32::try_from(host.len()).unwrap_or(u32::MAX),
            response,
            bytes: bytes.into_boxed_slice(),
        }
    }

    fn host(&self) -> &str {
        let host = self.bytes.get(..self.host_len as usize).unwrap_or_default();
        std::str::from_utf8(host).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.bytes.get(self.host_len as usize..).unwrap_or_default()
    }

    fn is(&self, response: bool, host: &str) -> bool {
        self.response == response && self.host() == host
    }

    fn cost(&self) -> usize {
        self.bytes.len() + RECORD_OVERHEAD
    }
}

struct Job {
    revision: u64,
    created_us: i64,
    /// Broadcast jobs' expected hosts (the KV path reads their records too).
    expected: Box<[Box<str>]>,
    def: Box<[u8]>,
    cancel: Option<Box<[u8]>>,
    /// Each host's latest state and response.
    recs: Vec<Rec>,
    /// A response for it arrived before it did: the cache cannot vouch for its responses.
    incomplete: bool,
    cost: usize,
}

#[derive(Default)]
struct Inner {
    budget: usize,
    used: usize,
    jobs: HashMap<Uuid, Job>,
    /// Eviction order: by the revision of the job record, oldest first.
    order: BTreeSet<(u64, Uuid)>,
    unplaced: VecDeque<Uuid>,
    unplaced_set: HashSet<Uuid>,
    /// The reconnect count at which each watch (0 = job bucket, 1 = responses) was last known current.
    current: [Option<u64>; 2],
    /// Highest response revision applied (where a re-created response watch resumes).
    responses_applied: u64,
}

/// Which watch [`DetailCache::set_current`] speaks of.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    Jobs = 0,
    Responses = 1,
}

/// The cache (own lock: readers never take the index's).
pub struct DetailCache {
    inner: Mutex<Inner>,
    ttl_us: i64,
    hits: AtomicU64,
    partial: AtomicU64,
    misses: AtomicU64,
}

impl DetailCache {
    /// `budget` bytes at most (0 = off); `ttl_us` the bucket's TTL (0 = records never expire).
    pub fn new(budget: usize, ttl_us: i64) -> DetailCache {
        DetailCache {
            inner: Mutex::new(Inner {
                budget,
                ..Inner::default()
            }),
            ttl_us,
            hits: AtomicU64::new(0),
            partial: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `feed`'s watch is current as of reconnect `reconnects` (`None`: it is not).
    pub fn set_current(&self, feed: Feed, reconnects: Option<u64>) {
        self.lock().current[feed as usize] = reconnects;
    }

    /// The job record `jobs.{id}` at `revision` (accepted by the index: newer than what it had).
    pub fn put_job(&self, id: Uuid, revision: u64, def: &JobDef, raw: &[u8]) {
        let mut c = self.lock();
        if c.budget == 0 {
            return;
        }
        c.drop_job(&id);
        let job = Job {
            revision,
            created_us: def.created_us,
            expected: def
                .expected_hosts
                .iter()
                .map(|h| h.as_str().into())
                .collect(),
            def: raw.into(),
            cancel: None,
            recs: Vec::new(),
            incomplete: c.unplaced_set.contains(&id),
            cost: JOB_OVERHEAD + raw.len(),
        };
        c.used += job.cost;
        c.order.insert((revision, id));
        c.jobs.insert(id, job);
        c.evict();
    }

    /// The job is gone (a delete marker) or cannot be vouched for (an unreadable record).
    pub fn drop_job(&self, id: &Uuid) {
        self.lock().drop_job(id);
    }

    /// The job's cancel record (written once).
    pub fn put_cancel(&self, id: &Uuid, raw: &[u8]) {
        let mut c = self.lock();
        let Some(job) = c.jobs.get_mut(id) else {
            return;
        };
        if job.cancel.is_some() {
            return;
        }
        job.cancel = Some(raw.into());
        job.cost += raw.len() + RECORD_OVERHEAD;
        c.used += raw.len() + RECORD_OVERHEAD;
        c.evict();
    }

    /// A host's state record (`None`: a delete marker), accepted by the index.
    pub fn put_state(&self, id: &Uuid, host: &str, revision: u64, raw: Option<&[u8]>) {
        self.lock().put_host(id, host, revision, raw, false);
    }

    /// One record of the response bucket, as its watch delivers it: key `{id}.{host}`.
    pub fn apply_response(&self, key: &str, revision: u64, raw: Option<&[u8]>) {
        let mut c = self.lock();
        c.responses_applied = c.responses_applied.max(revision);
        if c.budget == 0 {
            return;
        }
        let Some((id, host)) = key.split_once('.') else {
            return;
        };
        let Ok(id) = Uuid::parse_str(id) else {
            return;
        };
        if !c.jobs.contains_key(&id) {
            // Its job has not arrived yet (the other watch lags), or was evicted: never answer it
            // without this response.
            if c.unplaced_set.insert(id) {
                c.unplaced.push_back(id);
                if c.unplaced.len() > UNPLACED_MAX {
                    if let Some(old) = c.unplaced.pop_front() {
                        c.unplaced_set.remove(&old);
                    }
                }
            }
            return;
        }
        c.put_host(&id, host, revision, raw, true);
    }

    /// Highest response revision applied.
    pub fn responses_applied(&self) -> u64 {
        self.lock().responses_applied
    }

    /// A re-created response watch starts after `revision` (where the bucket stood when it first began).
    pub fn responses_start_at(&self, revision: u64) {
        let mut c = self.lock();
        c.responses_applied = c.responses_applied.max(revision);
    }

    /// What the cache holds of job `id` at `now_us`, while the connection is at reconnect `reconnects`.
    pub fn lookup(&self, id: &Uuid, now_us: i64, reconnects: u64) -> Lookup {
        let found = self.find(id, now_us, reconnects);
        let counter = match &found {
            Lookup::Miss => &self.misses,
            Lookup::Found { missing, .. } if missing.is_empty() => &self.hits,
            Lookup::Found { .. } => &self.partial,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn find(&self, id: &Uuid, now_us: i64, reconnects: u64) -> Lookup {
        let c = self.lock();
        if c.current != [Some(reconnects); 2] {
            return Lookup::Miss;
        }
        let Some(job) = c.jobs.get(id) else {
            return Lookup::Miss;
        };
        let expires_soon = self.ttl_us > 0
            && now_us
                > job
                    .created_us
                    .saturating_add(self.ttl_us)
                    .saturating_sub(EXPIRY_MARGIN_US);
        if job.incomplete || expires_soon {
            return Lookup::Miss;
        }
        let mut parts = Parts::default();
        parts.set_def(Some(&job.def));
        if parts.def.is_none() {
            return Lookup::Miss;
        }
        parts.set_cancel(job.cancel.as_deref());
        // The hosts the KV path reads: expected ones and those that wrote a state.
        let mut hosts: BTreeSet<&str> = job.expected.iter().map(|h| &**h).collect();
        hosts.extend(job.recs.iter().filter(|r| !r.response).map(Rec::host));
        let mut missing = Vec::new();
        for host in hosts {
            let state = job.recs.iter().find(|r| r.is(false, host));
            parts.add_state(host, state.map(Rec::value));
            if parts.responses.contains_key(host) {
                continue;
            }
            match job.recs.iter().find(|r| r.is(true, host)) {
                Some(r) => parts.add_response(host, Some(r.value())),
                // A final state without its answer: a worker of before answers went into the final
                // state wrote it to the response bucket first, and it may be on the way. (A host
                // cancelled before it started wrote none; reading tells.)
                None if parts
                    .states
                    .get(host)
                    .is_some_and(|s| s.status.is_terminal()) =>
                {
                    missing.push(host.to_string())
                }
                None => {}
            }
        }
        Lookup::Found {
            parts: Box::new(parts),
            missing,
        }
    }

    /// (hits, partial hits, misses) since start.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.partial.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// (jobs held, bytes accounted).
    pub fn size(&self) -> (usize, usize) {
        let c = self.lock();
        (c.jobs.len(), c.used)
    }
}

impl Inner {
    fn drop_job(&mut self, id: &Uuid) {
        if let Some(job) = self.jobs.remove(id) {
            self.order.remove(&(job.revision, *id));
            self.used = self.used.saturating_sub(job.cost);
        }
    }

    fn put_host(&mut self, id: &Uuid, host: &str, revision: u64, raw: Option<&[u8]>, resp: bool) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let recs = &mut job.recs;
        let old = recs.iter().position(|r| r.is(resp, host));
        if let Some(i) = old {
            if recs[i].revision >= revision {
                return;
            }
            let gone = recs.swap_remove(i).cost();
            job.cost -= gone;
            self.used = self.used.saturating_sub(gone);
        }
        if let Some(value) = raw {
            let rec = Rec::new(resp, host, revision, value);
            job.cost += rec.cost();
            self.used += rec.cost();
            recs.push(rec);
        }
        self.evict();
    }

    /// Drops whole jobs, oldest first, until the budget holds.
    fn evict(&mut self) {
        while self.used > self.budget {
            let Some((_, id)) = self.order.pop_first() else {
                self.used = 0;
                return;
            };
            if let Some(job) = self.jobs.remove(&id) {
                self.used = self.used.saturating_sub(job.cost);
            }
        }
    }
}

#[cfg(test)]
#[path = "detail_tests.rs"]
mod tests;
