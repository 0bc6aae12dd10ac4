//! Unit tests of the index: each case of its invariants, and a property test that the index and the job
//! view (`common::view`) agree on the status of any sequence of records.

use super::*;
use osapi_common::job::{HostState, Operation, Response};
use osapi_common::status::HostStatus;
use osapi_common::view;
use proptest::prelude::*;

const GRACE: Grace = Grace {
    running_us: 5_000,
    retryable_us: 20_000,
};

fn def(n: u128, target: &str, created_us: i64, expected: &[&str]) -> JobDef {
    JobDef {
        id: Uuid::from_u128(n).to_string(),
        operation: Operation {
            op_type: OperationType::TestPingDo,
            data: serde_json::json!({}),
        },
        target_hostname: target.into(),
        expected_hosts: expected.iter().map(|h| h.to_string()).collect(),
        created: String::new(),
        created_us,
        timeout_ms: 1000,
        retry_of: None,
        submitted_by: String::new(),
        signature: None,
    }
}

fn state(host: &str, status: HostStatus, attempts: u32, updated_us: i64) -> HostState {
    HostState {
        hostname: host.into(),
        status,
        attempts,
        error: None,
        duration: None,
        events: vec![],
        updated_us,
        response: None,
    }
}

fn put(index: &Index, key: &str, value: &impl serde::Serialize, revision: u64) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let record = Record {
        key,
        value: Some(&bytes),
        revision,
    };
    index.apply(Source::Jobs, &record, 0);
}

fn delete(index: &Index, key: &str, revision: u64, now_us: i64) {
    let record = Record {
        key,
        value: None,
        revision,
    };
    index.apply(Source::Jobs, &record, now_us);
}

fn job_key(n: u128) -> String {
    keys::job(&Uuid::from_u128(n).to_string())
}

fn state_key(n: u128, host: &str) -> String {
    keys::state(&Uuid::from_u128(n).to_string(), host)
}

#[test]
fn pages_filters_and_counts() {
    let index = Index::new(GRACE);
    for n in 1..=3 {
        let d = def(n, "_all", n as i64 * 1000, &["a", "b"]);
        put(&index, &job_key(n), &d, n as u64);
    }
    put(
        &index,
        &state_key(1, "a"),
        &state("a", HostStatus::Completed, 1, 0),
        4,
    );
    put(
        &index,
        &state_key(1, "b"),
        &state("b", HostStatus::Failed, 1, 0),
        5,
    );
    let now = 3_500;
    let (total, page) = index.page(None, 0, 2, now);
    assert_eq!(total, 3);
    assert_eq!(
        page,
        [Uuid::from_u128(3), Uuid::from_u128(2)],
        "newest first"
    );
    let (total, page) = index.page(None, 1, 10, now);
    assert_eq!(
        (total, page),
        (3, vec![Uuid::from_u128(2), Uuid::from_u128(1)]),
        "newest first across statuses (2 pending, 1 partial failure)"
    );
    let (total, page) = index.page(Some(JobStatus::PartialFailure), 0, 10, now);
    assert_eq!((total, page), (1, vec![Uuid::from_u128(1)]));
    assert_eq!(index.page(Some(JobStatus::Pending), 1, 10, now).0, 2);
    assert_eq!(
        index.stats(now).by_status.get(&JobStatus::Pending),
        Some(&2)
    );
    // Past every deadline, the silent hosts of jobs 2 and 3 count as failed.
    let late = index.stats(10_000_000);
    assert_eq!(late.by_status.get(&JobStatus::Failed), Some(&2));
    assert_eq!(index.applied(Source::Jobs), 5);
}

#[test]
fn a_deleted_job_stays_deleted_whatever_arrives_late() {
    let index = Index::new(GRACE);
    put(&index, &job_key(1), &def(1, "_all", 0, &["a"]), 1);
    delete(&index, &job_key(1), 5, 100);
    assert_eq!(index.stats(0).total, 0);
    // A replay of the old definition (revision 1 < tombstone 5) and a state written after the delete
    // by a worker that still ran it: neither brings the job back.
    put(&index, &job_key(1), &def(1, "_all", 0, &["a"]), 1);
    put(
        &index,
        &state_key(1, "a"),
        &state("a", HostStatus::Running, 1, 0),
        6,
    );
    assert_eq!(index.stats(0).total, 0, "a tombstone keeps the job out");
    assert_eq!(index.status(&Uuid::from_u128(1), 0), None);
    // Tombstones go with the bucket's TTL; with TTL 0 they stay.
    index.prune(i64::MAX / 2, Duration::ZERO);
    put(&index, &job_key(1), &def(1, "_all", 0, &["a"]), 1);
    assert_eq!(index.stats(0).total, 0, "ttl 0 keeps the tombstone");
}

#[test]
fn an_older_revision_never_overwrites_a_newer_one() {
    let index = Index::new(GRACE);
    put(&index, &job_key(1), &def(1, "web1", 0, &[]), 1);
    put(
        &index,
        &state_key(1, "web1"),
        &state("web1", HostStatus::Completed, 1, 10),
        9,
    );
    // A replayed `running` record (revision 3) after the `completed` one (9).
    put(
        &index,
        &state_key(1, "web1"),
        &state("web1", HostStatus::Running, 1, 5),
        3,
    );
    assert_eq!(
        index.status(&Uuid::from_u128(1), 0),
        Some(JobStatus::Completed)
    );
}

#[test]
fn an_unreadable_record_changes_nothing() {
    let index = Index::new(GRACE);
    put(&index, &job_key(1), &def(1, "web1", 0, &[]), 1);
    put(
        &index,
        &state_key(1, "web1"),
        &state("web1", HostStatus::Completed, 1, 10),
        2,
    );
    for (key, rev) in [(job_key(1), 3), (state_key(1, "web1"), 4)] {
        let record = Record {
            key: &key,
            value: Some(b"{not json"),
            revision: rev,
        };
        index.apply(Source::Jobs, &record, 0);
    }
    assert_eq!(
        index.status(&Uuid::from_u128(1), 0),
        Some(JobStatus::Completed)
    );
}

/// The status sets hold each job by its place in the job map, which a delete changes for the job that
/// moves into the emptied place: after deletes (first, last, every fifth), new jobs in the freed places
/// and records for moved jobs, every page and count is the model's.
#[test]
fn pages_stay_exact_through_deletes_that_move_jobs() {
    let index = Index::new(GRACE);
    // n -> (created_us, status): creation times unique and out of insertion order.
    let mut model: BTreeMap<u128, (i64, JobStatus)> = BTreeMap::new();
    let mut revision = 0;
    let mut next = || {
        revision += 1;
        revision
    };
    let record =
        |index: &Index, n: u128, rev: u64, model: &mut BTreeMap<u128, (i64, JobStatus)>| {
            let (host_status, status) = match n % 3 {
                0 => (HostStatus::Completed, JobStatus::Completed),
                _ => (HostStatus::Failed, JobStatus::Failed),
            };
            put(
                index,
                &state_key(n, "a"),
                &state("a", host_status, 1, 0),
                rev,
            );
            if let Some(job) = model.get_mut(&n) {
                job.1 = status;
            }
        };
    let check = |index: &Index, model: &BTreeMap<u128, (i64, JobStatus)>, when: &str| {
        let newest_first = |filter: Option<JobStatus>| -> Vec<Uuid> {
            let mut jobs: Vec<_> = model
                .iter()
                .filter(|(_, (_, s))| filter.is_none_or(|f| f == *s))
                .map(|(n, (created, _))| (*created, Uuid::from_u128(*n)))
                .collect();
            jobs.sort_by(|a, b| b.cmp(a));
            jobs.into_iter().map(|(_, id)| id).collect()
        };
        for filter in [
            None,
            Some(JobStatus::Pending),
            Some(JobStatus::Completed),
            Some(JobStatus::Failed),
        ] {
            let want = newest_first(filter);
            assert_eq!(
                index.page(filter, 0, 1_000, 0),
                (want.len(), want),
                "{when}: page of {filter:?}"
            );
        }
        let stats = index.stats(0);
        assert_eq!(stats.total, model.len(), "{when}: total");
        for (n, (_, status)) in model {
            assert_eq!(
                index.status(&Uuid::from_u128(*n), 0),
                Some(*status),
                "{when}: {n}"
            );
        }
    };
    for n in 1..=200u128 {
        let created_us = ((n * 37) % 211) as i64 * 1_000;
        put(
            &index,
            &job_key(n),
            &def(n, "_all", created_us, &["a"]),
            next(),
        );
        model.insert(n, (created_us, JobStatus::Pending));
        if n % 2 == 0 {
            record(&index, n, next(), &mut model);
        }
    }
    check(&index, &model, "filled");
    for n in [200, 1, 199, 2].into_iter().chain((5..200).step_by(5)) {
        delete(&index, &job_key(n), next(), 0);
        model.remove(&n);
        check(&index, &model, &format!("deleted {n}"));
    }
    // Records for jobs that moved, and new jobs in the freed places.
    let odd: Vec<u128> = (3..200)
        .step_by(2)
        .filter(|n| model.contains_key(n))
        .collect();
    for n in odd {
        record(&index, n, next(), &mut model);
    }
    for n in 300..=330u128 {
        put(
            &index,
            &job_key(n),
            &def(n, "_all", n as i64, &["a"]),
            next(),
        );
        model.insert(n, (n as i64, JobStatus::Pending));
    }
    check(&index, &model, "refilled");
    index.prune(200_000, Duration::from_millis(100));
    model.retain(|_, (created, _)| *created >= 100_000);
    assert!(model.len() > 50);
    check(&index, &model, "pruned");
}

#[test]
fn ttl_zero_never_prunes_and_a_ttl_prunes_what_expired() {
    let index = Index::new(GRACE);
    put(&index, &job_key(1), &def(1, "_all", 1_000, &[]), 1);
    put(&index, &job_key(2), &def(2, "_all", 3_000_000, &[]), 2);
    index.prune(i64::MAX / 2, Duration::ZERO);
    assert_eq!(index.stats(0).total, 2, "ttl 0: nothing expires");
    index.prune(1_000_000 + 2_500_000, Duration::from_secs(1));
    assert_eq!(
        index.stats(0).total,
        1,
        "only the job older than the TTL goes"
    );
}

#[test]
fn readiness_is_honest() {
    let index = Index::new(GRACE);
    assert!(index.readiness(0).is_err_and(|e| e.contains("loading")));
    index.set_ready(Source::Jobs, 0);
    assert!(index.readiness(0).is_err_and(|e| e.contains("heartbeat")));
    index.set_ready(Source::Workers, 0);
    assert_eq!(index.readiness(0), Ok(()));
    // NATS came back (reconnect 1) and the watches have not been checked since.
    assert!(index
        .readiness(1)
        .is_err_and(|e| e.contains("since NATS came back")));
    index.set_ready(Source::Jobs, 1);
    index.set_ready(Source::Workers, 1);
    assert_eq!(index.readiness(1), Ok(()));
    // A gap (or a lost watch) makes it stale until the re-created watch has caught up.
    index.set_not_ready(Source::Jobs, "watch skipped from delivery 4 to 6".into());
    assert!(index.readiness(1).is_err_and(|e| e.contains("skipped")));
}

#[test]
fn a_running_host_past_its_grace_fails_the_job_without_a_record() {
    let index = Index::new(GRACE);
    put(&index, &job_key(1), &def(1, "web1", 0, &[]), 1);
    put(
        &index,
        &state_key(1, "web1"),
        &state("web1", HostStatus::Running, 1, 10),
        2,
    );
    // Deadline 1,000,000 µs; grace 5,000 µs.
    assert_eq!(index.page(Some(JobStatus::Running), 0, 10, 1_005_000).0, 1);
    assert_eq!(index.page(Some(JobStatus::Failed), 0, 10, 1_005_001).0, 1);
}

#[test]
fn wait_returns_when_the_job_finishes_or_at_the_deadline() {
    let index = std::sync::Arc::new(Index::new(GRACE));
    let id = Uuid::from_u128(7);
    put(&index, &job_key(7), &def(7, "_all", 0, &["a"]), 1);
    let start = Instant::now();
    index.wait_terminal(&id, start + Duration::from_millis(50), || 0);
    assert!(start.elapsed() >= Duration::from_millis(50));
    let writer = index.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        put(
            &writer,
            &state_key(7, "a"),
            &state("a", HostStatus::Completed, 1, 0),
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
    assert!(index.wait_applied(Source::Jobs, 2, Instant::now()));
    assert!(!index.wait_applied(Source::Jobs, 3, Instant::now() + Duration::from_millis(10)));
    let _ = t.join();
}

const HOSTS: [&str; 3] = ["a", "b", "c"];

fn any_status() -> impl Strategy<Value = HostStatus> {
    prop_oneof![
        Just(HostStatus::Pending),
        Just(HostStatus::Running),
        Just(HostStatus::Completed),
        Just(HostStatus::Failed),
        Just(HostStatus::Retryable),
    ]
}

/// One state write: host index, status, attempts, when written.
fn any_write() -> impl Strategy<Value = (usize, HostStatus, u32, i64)> {
    (0..3usize, any_status(), 1..4u32, 0..1_100_000i64)
}

proptest! {
    /// Whatever the target, the expected hosts, the writes (replayed out of order too) and the clock,
    /// the index files the job under the status the job view shows.
    #[test]
    fn index_and_view_agree(
        target in prop_oneof![Just("_any"), Just("_all"), Just("a"), Just("group:web")],
        expected in proptest::sample::subsequence(HOSTS.to_vec(), 0..=3),
        writes in proptest::collection::vec(any_write(), 0..8),
        replays in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
        now_us in 0..1_200_000i64,
    ) {
        let index = Index::new(GRACE);
        let d = def(1, target, 0, &expected);
        put(&index, &job_key(1), &d, 1);
        let mut latest: BTreeMap<String, HostState> = BTreeMap::new();
        let mut log = Vec::new();
        for (n, (h, status, attempts, at)) in writes.iter().enumerate() {
            let host = HOSTS[*h];
            let s = state(host, *status, *attempts, *at);
            let rev = n as u64 + 2;
            put(&index, &state_key(1, host), &s, rev);
            log.push((host, s.clone(), rev));
            latest.insert(host.to_string(), s);
        }
        // A re-created watch may deliver records again: stale ones must change nothing.
        for pick in &replays {
            if !log.is_empty() {
                let (host, s, rev) = &log[pick.index(log.len())];
                put(&index, &state_key(1, host), s, *rev);
            }
        }
        let no_responses = BTreeMap::<String, Response>::new();
        let shown = view::detail(&d, &latest, &no_responses, GRACE, now_us);
        let id = Uuid::from_u128(1);
        prop_assert_eq!(index.status(&id, now_us), Some(shown.status));
        let (filed, _) = index.page(Some(shown.status), 0, 1, now_us);
        prop_assert_eq!(filed, 1, "filed under {}", shown.status);
    }
}

#[test]
fn a_reader_waits_for_the_writes_this_api_made_before_it() {
    let index = std::sync::Arc::new(Index::new(GRACE));
    let soon = || Instant::now() + Duration::from_millis(20);
    assert!(
        index.wait_own_writes(Source::Jobs, soon()),
        "no write: no wait"
    );
    index.wrote(Source::Jobs, 7);
    index.wrote(Source::Jobs, 5);
    put(&index, &job_key(1), &def(1, "_any", 1, &[]), 6);
    assert!(
        !index.wait_own_writes(Source::Jobs, soon()),
        "revision 7 not applied yet"
    );
    let writer = {
        let index = index.clone();
        std::thread::spawn(move || put(&index, &job_key(2), &def(2, "_any", 2, &[]), 7))
    };
    assert!(index.wait_own_writes(Source::Jobs, Instant::now() + Duration::from_secs(5)));
    assert!(writer.join().is_ok());
    assert_eq!(
        index.status(&Uuid::from_u128(2), 3),
        Some(JobStatus::Pending)
    );
}

#[test]
fn an_own_job_is_known_at_once_and_whichever_copy_comes_second_changes_nothing() {
    let index = Index::new(GRACE);
    let own = |n: u128, revision: u64| {
        let bytes = serde_json::to_vec(&def(n, "_any", 1, &[])).unwrap_or_default();
        let record = Record {
            key: &job_key(n),
            value: Some(&bytes),
            revision,
        };
        index.apply_own_job(&record, 0);
    };
    let (one, two, three) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    own(1, 5);
    assert_eq!(index.status(&one, 10), Some(JobStatus::Pending));
    assert_eq!(
        index.applied(Source::Jobs),
        0,
        "the watch's progress does not move: earlier records may still be on their way"
    );
    // The worker's final state comes through the watch, then the watch's copy of the create.
    put(
        &index,
        &state_key(1, "a"),
        &state("a", HostStatus::Completed, 1, 2),
        6,
    );
    put(&index, &job_key(1), &def(1, "_any", 1, &[]), 5);
    assert_eq!(index.status(&one, 10), Some(JobStatus::Completed));
    // The watch came first (create and final state); the API's own copy comes late.
    put(&index, &job_key(2), &def(2, "_any", 1, &[]), 7);
    put(
        &index,
        &state_key(2, "a"),
        &state("a", HostStatus::Completed, 1, 2),
        8,
    );
    own(2, 7);
    assert_eq!(index.status(&two, 10), Some(JobStatus::Completed));
    // Created and deleted before the creator got round to it: it stays deleted.
    put(&index, &job_key(3), &def(3, "_any", 1, &[]), 9);
    delete(&index, &job_key(3), 10, 10);
    own(3, 9);
    assert_eq!(index.status(&three, 10), None);
}
