//! The index's data: what it keeps of each job (`JobEntry`), the sets that order and file them, and how
//! a job is (re-)filed under its status. Only `index.rs` touches it, under its lock.
//!
//! Kept small because the index holds every job of the bucket (held by `footprint_tests.rs`: about 105
//! heap bytes a job with one host, ~89 of them the job map, ~15 its place in a status set, which is
//! repacked as it grows: `StatusSet`): the job map is a `JobMap` (`index/jobs.rs`: the entries in one
//! vector, the hash table holds 4-byte positions) and not a `HashMap`, whose table of whole entries
//! doubles at 7/8 full, so past 28,672 jobs it held 65,536 slots of 80 bytes, all touched by the rehash
//! (5 MiB of RSS for 30,000 jobs, and the old table beside it while it moved); the entries' vector grows
//! in place (`mremap`) and only its used part is resident. A status set holds a job's [`Place`] (its
//! creation time and position in the job map, 12 bytes) rather than its id and time (24); a delete moves
//! the last job into the emptied position, and `State::remove` moves its place with it.
//! A job's one host record (most jobs have one) lives in the entry (`Hosts::One`: no block of its own,
//! so nothing small and long-lived per job sits among the heap's short-lived blocks); several are an
//! exact-size slice. Host names are interned (`State::names`: one [`Name`] per host name, shared by
//! every job that names it, not a string per job; a thin pointer, 8 bytes where an `Arc<str>` takes
//! 16), ids are `Uuid`s (16 bytes), not strings, a broadcast job's expected hosts and an unfinished
//! job's timer live beside the entries (`State::expected_of`, `State::timer_of`), the deadline is kept
//! as the timeout (4 bytes), and no second ordered set repeats the status sets.

use super::jobs::JobMap;
use osapi_common::job::{HostStateHead, JobDef, WorkerInfo};
use osapi_common::operation::OperationType;
use osapi_common::status::{self, Grace, HostRecord, HostStatus, JobStatus, Timing};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// An interned host name: a thin pointer (8 bytes in every host record, where `Arc<str>` takes 16).
pub(super) type Name = Arc<String>;

/// One host's latest state record of a job.
#[derive(Debug, Clone)]
pub(super) struct HostEntry {
    /// Interned in `State::names`.
    pub(super) host: Name,
    pub(super) status: HostStatus,
    pub(super) attempts: u32,
    pub(super) updated_us: i64,
    pub(super) revision: u64,
}

/// A job's host records: the one of most jobs in place, else an exact-size slice (none: an empty one,
/// which allocates nothing). Replaced whole when one changes: a job's records change a handful of times.
#[derive(Debug, Clone)]
pub(super) enum Hosts {
    One(HostEntry),
    Many(Box<[HostEntry]>),
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts::Many(Box::default())
    }
}

impl std::ops::Deref for Hosts {
    type Target = [HostEntry];
    fn deref(&self) -> &[HostEntry] {
        match self {
            Hosts::One(host) => std::slice::from_ref(host),
            Hosts::Many(hosts) => hosts,
        }
    }
}

/// What the index keeps of one job: only what listing, filtering and counting need, kept small because
/// the index holds every job of the bucket.
#[derive(Debug, Clone)]
pub(super) struct JobEntry {
    pub(super) revision: u64,
    pub(super) created_us: i64,
    /// The deadline is `created_us` plus this (the API accepts at most 24 h; a record's longer timeout
    /// saturates at ~49 days, 4 bytes where the deadline took 8).
    timeout_ms: u32,
    pub(super) op: OperationType,
    pub(super) any: bool,
    /// One record per host.
    pub(super) hosts: Hosts,
    /// A `cancel.{id}` record exists.
    pub(super) cancelled: bool,
    /// The status it is filed under in `State::by_status` (as of its last record or timer).
    pub(super) filed: JobStatus,
}

impl JobEntry {
    /// As `JobDef::deadline_us`.
    pub(super) fn deadline_us(&self) -> i64 {
        self.created_us
            .saturating_add(i64::from(self.timeout_ms).saturating_mul(1000))
    }

    pub(super) fn records(&self) -> Vec<HostRecord<'_>> {
        self.hosts
            .iter()
            .map(|h| HostRecord {
                host: &h.host,
                status: h.status,
                attempts: h.attempts,
                updated_us: h.updated_us,
            })
            .collect()
    }

    /// The job's status by `common::status::job_status`, and when the clock alone may next change it;
    /// `expected` its hosts expected at submission (`State::expected`).
    fn status(&self, expected: &[Name], grace: Grace, now_us: i64) -> (JobStatus, Option<i64>) {
        let timing = Timing {
            deadline_us: self.deadline_us(),
            grace,
            cancelled: self.cancelled,
        };
        let expected: Vec<&str> = expected.iter().map(|h| h.as_str()).collect();
        let records = self.records();
        let status = status::job_status(self.any, &expected, &records, &timing, now_us);
        // The clock only ever turns hosts failed, so a terminal job stays terminal until a new record.
        let next = match status.is_terminal() {
            true => None,
            false => timing.next_change(&records, now_us),
        };
        (status, next)
    }
}

/// Why a watch's part of the index may be stale, or `None` when it is current.
#[derive(Debug, Clone)]
pub(super) struct Readiness {
    pub(super) problem: Option<String>,
    /// The connection's reconnect count when the watch was last known complete.
    pub(super) checked_at_reconnect: u64,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            problem: Some("loading".into()),
            checked_at_reconnect: 0,
        }
    }
}

/// A job's key in a status set: its creation time, then its position in `State::jobs` (which orders
/// jobs created in the same microsecond, and says which job it is). 12 bytes: a `(created_us, id)`
/// pair took 24, and the sets hold every job of the bucket. The creation time is kept as its high
/// (signed) and low halves, so the derived order is the `i64`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Place {
    created_hi: i32,
    created_lo: u32,
    at: u32,
}

impl Place {
    pub(super) fn new(created_us: i64, at: u32) -> Place {
        Place {
            // The two halves of the i64's bits: the casts keep them, nothing is lost.
            created_hi: (created_us >> 32) as i32,
            created_lo: created_us as u32,
            at,
        }
    }

    pub(super) fn created_us(self) -> i64 {
        (i64::from(self.created_hi) << 32) | i64::from(self.created_lo)
    }

    /// The job's position in `State::jobs`.
    pub(super) fn at(self) -> u32 {
        self.at
    }
}

/// The jobs filed under one status, in creation order.
///
/// Jobs arrive in about creation order, and a B-tree filled at its right edge keeps each leaf a little
/// over half full (a split there leaves 6 of its 11 keys behind): ~26 heap bytes a job for 12 bytes of
/// key. So a set that has grown by a quarter since it was last packed is rebuilt from its sorted keys,
/// which fills every node (~15 bytes a job): at 50,000 jobs ~0.5 MiB less, for a rebuild of a few
/// milliseconds each time the set grows by a quarter.
#[derive(Default)]
pub(super) struct StatusSet {
    keys: BTreeSet<Place>,
    /// Its length when last packed.
    packed_len: usize,
}

/// Below this length a set is never repacked (its nodes are a few KiB).
const PACK_FROM: usize = 1_024;

impl StatusSet {
    fn insert(&mut self, key: Place) {
        self.keys.insert(key);
        let len = self.keys.len();
        if len >= PACK_FROM && len >= self.packed_len + self.packed_len / 4 {
            // From sorted keys, `collect` builds the tree bottom-up with full nodes.
            self.keys = std::mem::take(&mut self.keys).into_iter().collect();
            self.packed_len = len;
        }
    }

    fn remove(&mut self, key: &Place) {
        self.keys.remove(key);
        self.packed_len = self.packed_len.min(self.keys.len());
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn iter(&self) -> std::collections::btree_set::Iter<'_, Place> {
        self.keys.iter()
    }
}

/// Shrinks a map that uses less than a quarter of its room (to twice what it holds), so that it
/// neither keeps a burst's peak for ever nor shrinks and regrows at every call.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[derive(Default)]
pub(super) struct State {
    /// Removal is `swap_remove` (order means nothing here: the status sets order).
    pub(super) jobs: JobMap<JobEntry>,
    /// The same jobs by their filed status, each set in creation order, so a filtered page and the
    /// counts never walk the bucket. Every job is in exactly one set, so together they are the jobs in
    /// creation order too (`page` without a filter merges them; a set of its own would cost 50 bytes a
    /// job).
    pub(super) by_status: BTreeMap<JobStatus, StatusSet>,
    pub(super) by_operation: BTreeMap<OperationType, usize>,
    /// Jobs whose status the clock alone may change, by when.
    pub(super) timers: BTreeSet<(i64, Uuid)>,
    /// The same timers by job: only unfinished jobs have one (a finished job's entry keeps none, 8
    /// bytes a job less).
    pub(super) timer_of: HashMap<Uuid, i64>,
    /// Broadcast jobs' expected hosts (interned): beside the entries, 8 bytes a job less in each of the
    /// others.
    pub(super) expected_of: HashMap<Uuid, Box<[Name]>>,
    /// Deleted jobs: the revision of the delete and when it was applied, until the TTL.
    pub(super) tombstones: HashMap<Uuid, (u64, i64)>,
    /// The latest `now` a caller brought: records are filed as of it.
    pub(super) now_us: i64,
    pub(super) workers: BTreeMap<String, (u64, WorkerInfo)>,
    /// Every host name the entries hold, once: they share these (`intern`); names no entry holds any
    /// more go at `forget_unused_names`.
    /// By name (the key a copy: names are few, a host's, not a job's).
    pub(super) names: HashMap<Box<str>, Name>,
    /// Highest revision applied, per source.
    pub(super) applied: [u64; 2],
    pub(super) ready: [Readiness; 2],
}

impl State {
    /// The one shared copy of a host name.
    fn intern(&mut self, name: &str) -> Name {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared = Arc::new(name.to_string());
        self.names.insert(name.into(), shared.clone());
        shared
    }

    /// Drops the interned names no entry holds (only the set's own reference is left), and gives back
    /// the room the side maps kept from a busier moment (a burst of unfinished jobs leaves `timer_of`'s
    /// table at its peak size).
    pub(super) fn forget_unused_names(&mut self) {
        self.names.retain(|_, n| Arc::strong_count(n) > 1);
        self.names.shrink_to_fit();
        shrink_if_sparse(&mut self.timer_of);
        shrink_if_sparse(&mut self.expected_of);
    }

    /// A new entry for a job definition, pending and without host records, and its expected hosts
    /// (interned; empty for all but broadcast jobs).
    pub(super) fn entry_from_def(
        &mut self,
        def: &JobDef,
        revision: u64,
    ) -> (JobEntry, Box<[Name]>) {
        let entry = JobEntry {
            revision,
            created_us: def.created_us,
            timeout_ms: u32::try_from(def.timeout_ms).unwrap_or(u32::MAX),
            op: def.operation.op_type,
            any: def.is_any_target(),
            hosts: Hosts::default(),
            cancelled: false,
            filed: JobStatus::Pending,
        };
        let expected = def.expected_hosts.iter().map(|h| self.intern(h)).collect();
        (entry, expected)
    }

    /// Broadcast jobs: the live workers that matched at submission (empty for the others).
    pub(super) fn expected(&self, id: &Uuid) -> &[Name] {
        self.expected_of.get(id).map_or(&[], |hosts| &hosts[..])
    }

    /// Job `id`'s status as of `now_us` and when the clock alone may next change it.
    pub(super) fn status_of(
        &self,
        id: &Uuid,
        grace: Grace,
        now_us: i64,
    ) -> Option<(JobStatus, Option<i64>)> {
        let entry = self.jobs.get(id)?;
        Some(entry.status(self.expected(id), grace, now_us))
    }

    /// Replaces `host`'s record of job `id` by `state` written at `revision`, or removes it (`None`);
    /// the caller re-files the job.
    pub(super) fn set_host(&mut self, id: &Uuid, host: &str, state: Option<(&HostStateHead, u64)>) {
        let record = state.map(|(s, revision)| HostEntry {
            host: self.intern(host),
            status: s.status,
            attempts: s.attempts,
            updated_us: s.updated_us,
            revision,
        });
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let others = entry.hosts.iter().filter(|h| h.host.as_str() != host);
        let mut all = others.cloned().chain(record);
        let hosts = match all.clone().count() {
            1 => all.next().map_or_else(Hosts::default, Hosts::One),
            n => {
                let mut hosts = Vec::with_capacity(n);
                hosts.extend(all);
                Hosts::Many(hosts.into_boxed_slice())
            }
        };
        entry.hosts = hosts;
    }

    /// Adds job `id` (a job it holds already is replaced: removed first, so no set keeps its place).
    pub(super) fn insert(&mut self, id: Uuid, (entry, expected): (JobEntry, Box<[Name]>)) {
        self.remove(&id);
        let (op, filed, created_us) = (entry.op, entry.filed, entry.created_us);
        self.jobs.insert(id, entry);
        // None: the map refused it (it holds u32::MAX jobs).
        let Some(at) = self.jobs.position_of(&id) else {
            return;
        };
        *self.by_operation.entry(op).or_default() += 1;
        if !expected.is_empty() {
            self.expected_of.insert(id, expected);
        }
        self.by_status
            .entry(filed)
            .or_default()
            .insert(Place::new(created_us, at));
    }

    pub(super) fn remove(&mut self, id: &Uuid) {
        let Some((at, e)) = self.jobs.swap_remove(id) else {
            return;
        };
        if let Some(set) = self.by_status.get_mut(&e.filed) {
            set.remove(&Place::new(e.created_us, at));
        }
        if let Some(n) = self.by_operation.get_mut(&e.op) {
            *n = n.saturating_sub(1);
        }
        if let Some(timer) = self.timer_of.remove(id) {
            self.timers.remove(&(timer, *id));
        }
        self.expected_of.remove(id);
        // The last job took the removed one's position: its place in its set follows.
        let from = u32::try_from(self.jobs.len()).unwrap_or(u32::MAX);
        if let Some((_, moved)) = self.jobs.at(at) {
            if let Some(set) = self.by_status.get_mut(&moved.filed) {
                set.remove(&Place::new(moved.created_us, from));
                set.insert(Place::new(moved.created_us, at));
            }
        }
    }

    /// Recomputes one job's status (as of `self.now_us`), files it under it and sets its timer.
    pub(super) fn file(&mut self, id: Uuid, grace: Grace) {
        let now_us = self.now_us;
        let Some(at) = self.jobs.position_of(&id) else {
            return;
        };
        let expected = self
            .expected_of
            .get(&id)
            .map_or(&[][..], |hosts| &hosts[..]);
        let Some(entry) = self.jobs.at_mut(at) else {
            return;
        };
        let (status, timer) = entry.status(expected, grace, now_us);
        let was = std::mem::replace(&mut entry.filed, status);
        let key = Place::new(entry.created_us, at);
        let old_timer = match timer {
            Some(t) => self.timer_of.insert(id, t),
            None => self.timer_of.remove(&id),
        };
        if old_timer != timer {
            if let Some(t) = old_timer {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = timer {
                self.timers.insert((t, id));
            }
        }
        if was != status {
            if let Some(set) = self.by_status.get_mut(&was) {
                set.remove(&key);
            }
            self.by_status.entry(status).or_default().insert(key);
        }
    }

    /// One page of ids, newest first, of the jobs filed under `filter` (every job: `None`), and how
    /// many there are: O(offset + limit) steps, each over at most one set per status.
    pub(super) fn page(
        &self,
        filter: Option<JobStatus>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Uuid>) {
        let sets: Vec<&StatusSet> = match filter {
            None => self.by_status.values().collect(),
            Some(f) => self.by_status.get(&f).into_iter().collect(),
        };
        let total = sets.iter().map(|s| s.len()).sum();
        let mut heads: Vec<_> = sets.iter().map(|s| s.iter().rev().peekable()).collect();
        // Newest first across the sets: always take the newest of their heads (keys are unique).
        let newest = std::iter::from_fn(|| {
            let (_, at) = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(n, set)| set.peek().map(|key| (**key, n)))
                .max()?;
            heads.get_mut(at)?.next()
        });
        let page = newest
            .skip(offset)
            .take(limit)
            .filter_map(|place| self.jobs.at(place.at()).map(|(id, _)| *id))
            .collect();
        (total, page)
    }

    /// The jobs created before `cutoff`.
    pub(super) fn created_before(&self, cutoff: i64) -> Vec<Uuid> {
        self.by_status
            .values()
            .flat_map(|set| set.iter().take_while(|p| p.created_us() < cutoff))
            .filter_map(|p| self.jobs.at(p.at()).map(|(id, _)| *id))
            .collect()
    }

    /// Re-files the jobs whose timer has passed: O(those jobs).
    pub(super) fn catch_up(&mut self, now_us: i64, grace: Grace) {
        self.now_us = self.now_us.max(now_us);
        while let Some(&(at, id)) = self.timers.first() {
            if at >= self.now_us {
                break;
            }
            self.timers.pop_first();
            self.timer_of.remove(&id);
            self.file(id, grace);
        }
    }
}

#[cfg(test)]
#[path = "footprint_tests.rs"]
mod footprint_tests;

#[cfg(test)]
mod status_set_tests {
    use super::{Place, StatusSet, PACK_FROM};
    use std::collections::BTreeSet;

    #[test]
    fn a_set_repacked_as_it_grows_and_shrinks_keeps_exactly_its_keys_in_order() {
        let mut set = StatusSet::default();
        let mut model = BTreeSet::new();
        // Mostly in order, some late arrivals, and removals: through several repacks.
        for n in 0..(PACK_FROM as i64 * 6) {
            let created = if n % 7 == 0 { n - 500 } else { n };
            let key = (created, n as u32);
            set.insert(Place::new(key.0, key.1));
            model.insert(key);
            if n % 3 == 0 {
                let gone = (n / 2, (n / 2) as u32);
                set.remove(&Place::new(gone.0, gone.1));
                model.remove(&gone);
            }
        }
        assert!(set.packed_len >= PACK_FROM, "the set was never repacked");
        assert_eq!(set.len(), model.len());
        assert!(set
            .iter()
            .map(|p| (p.created_us(), p.at()))
            .eq(model.iter().copied()));
    }

    /// A place orders as its `(created_us, at)` pair would, and gives both back, for any time (before
    /// 1970, across the halves' boundaries, the extremes).
    #[test]
    fn a_place_orders_and_reads_back_as_its_time_and_position() {
        let times = [
            i64::MIN,
            i64::MIN + 1,
            -(1 << 32) - 1,
            -(1 << 32),
            -1,
            0,
            1,
            u32::MAX as i64,
            1 << 32,
            (1 << 32) + 1,
            1_796_398_299_000_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        let pairs: Vec<(i64, u32)> = times
            .iter()
            .flat_map(|t| [0, 1, u32::MAX].map(|at| (*t, at)))
            .collect();
        for a in &pairs {
            let pa = Place::new(a.0, a.1);
            assert_eq!((pa.created_us(), pa.at()), *a);
            for b in &pairs {
                assert_eq!(
                    pa.cmp(&Place::new(b.0, b.1)),
                    a.cmp(b),
                    "{a:?} against {b:?}"
                );
            }
        }
        assert_eq!(std::mem::size_of::<Place>(), 12);
    }
}

#[cfg(test)]
mod side_map_tests {
    use super::shrink_if_sparse;
    use std::collections::HashMap;

    #[test]
    fn a_side_map_gives_back_a_bursts_room_but_not_room_it_uses() {
        let mut map: HashMap<u32, i64> = (0..10_000).map(|n| (n, 0)).collect();
        // Half full: kept as it is.
        map.retain(|n, _| *n < 5_000);
        let room = map.capacity();
        shrink_if_sparse(&mut map);
        assert_eq!(map.capacity(), room);
        // After the burst: back to about twice what it holds.
        map.retain(|n, _| *n < 10);
        shrink_if_sparse(&mut map);
        assert!(
            map.capacity() < 64,
            "{} slots for 10 entries",
            map.capacity()
        );
        assert_eq!(map.len(), 10);
        // A small map is left alone.
        let mut small: HashMap<u32, i64> = HashMap::with_capacity(56);
        small.insert(1, 0);
        let room = small.capacity();
        shrink_if_sparse(&mut small);
        assert_eq!(small.capacity(), room);
    }
}
