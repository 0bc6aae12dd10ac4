//! Unit tests of the detail cache, fed through `Index::apply` as the watches feed it (no NATS): what it
//! answers is the view the KV path builds from the same records; revisions, deletes, eviction, the
//! response that has not arrived, the watches' currency and the bucket's TTL.

use super::*;
use crate::index::{Index, Record, Source};
use osapi_common::job::{Operation, Response};
use osapi_common::names::keys;
use osapi_common::operation::OperationType;
use osapi_common::status::{Grace, HostStatus};
use osapi_common::view;
use std::time::Duration;

const GRACE: Grace = Grace {
    running_us: 5_000,
    retryable_us: 20_000,
};
const NOW: i64 = 1_000_000;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn def(n: u128, target: &str, expected: &[&str]) -> JobDef {
    JobDef {
        id: id(n).to_string(),
        operation: Operation {
            op_type: OperationType::TestPingDo,
            data: serde_json::json!({"n": n as u64}),
        },
        target_hostname: target.into(),
        expected_hosts: expected.iter().map(|h| h.to_string()).collect(),
        created: "2026-12-02T00:00:00Z".into(),
        created_us: NOW,
        timeout_ms: 60_000,
        retry_of: None,
        submitted_by: "alice".into(),
        signature: None,
    }
}

fn state(host: &str, status: HostStatus) -> HostState {
    HostState {
        hostname: host.into(),
        status,
        attempts: 1,
        error: None,
        duration: Some("1ms".into()),
        events: vec![],
        updated_us: NOW + 10,
        response: None,
    }
}

fn response(host: &str) -> Response {
    Response {
        status: HostStatus::Completed,
        data: serde_json::json!({"hostname": host}),
        error: None,
        hostname: host.into(),
    }
}

/// An index with a cache of `budget` bytes, both watches current at reconnect 0.
fn index(budget: usize) -> Index {
    let index = Index::with_detail_cache(GRACE, budget, Duration::from_secs(3600));
    index.set_ready(Source::Jobs, 0);
    index.set_ready(Source::Responses, 0);
    index
}

fn put(index: &Index, source: Source, key: &str, value: &impl serde::Serialize, rev: u64) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let record = Record {
        key,
        value: Some(&bytes),
        revision: rev,
    };
    index.apply(source, &record, NOW);
}

fn put_job(index: &Index, d: &JobDef, rev: u64) {
    put(index, Source::Jobs, &keys::job(&d.id), d, rev);
}

fn put_state(index: &Index, n: u128, s: &HostState, rev: u64) {
    let key = keys::state(&id(n).to_string(), &s.hostname);
    put(index, Source::Jobs, &key, s, rev);
}

fn put_response(index: &Index, n: u128, r: &Response, rev: u64) {
    let key = keys::response(&id(n).to_string(), &r.hostname);
    put(index, Source::Responses, &key, r, rev);
}

fn found(index: &Index, n: u128) -> (Box<Parts>, Vec<String>) {
    match index.detail().lookup(&id(n), NOW, 0) {
        Lookup::Found { parts, missing } => (parts, missing),
        Lookup::Miss => panic!("job {n} not answered by the cache"),
    }
}

fn is_miss(index: &Index, n: u128) -> bool {
    matches!(index.detail().lookup(&id(n), NOW, 0), Lookup::Miss)
}

fn view_json(parts: &Parts) -> String {
    let Some(def) = &parts.def else {
        return String::new();
    };
    let d = view::detail_with_cancel(
        def,
        &parts.states,
        &parts.responses,
        parts.cancel.as_ref(),
        GRACE,
        NOW,
    );
    serde_json::to_string(&d).unwrap_or_default()
}

#[test]
fn a_finished_broadcast_is_the_view_the_kv_path_builds() {
    let index = index(1 << 20);
    let d = def(1, "_all", &["a", "b", "c"]);
    put_job(&index, &d, 1);
    let sa = state("a", HostStatus::Completed);
    let sb = state("b", HostStatus::Failed);
    put_state(&index, 1, &state("a", HostStatus::Running), 2);
    put_response(&index, 1, &response("a"), 1);
    put_state(&index, 1, &sa, 3);
    put_response(&index, 1, &response("b"), 2);
    put_state(&index, 1, &sb, 4);
    let cancel = CancelRecord {
        by: "bob".into(),
        at: "2026-12-02T00:00:01Z".into(),
        at_us: NOW + 5,
    };
    put(&index, Source::Jobs, &keys::cancel(&d.id), &cancel, 5);
    let (parts, missing) = found(&index, 1);
    assert!(missing.is_empty(), "missing {missing:?}");
    // What the KV path reads for the hosts the index knows (`c` expected, no record: nothing).
    let mut kv = Parts::default();
    kv.set_def(Some(&serde_json::to_vec(&d).unwrap_or_default()));
    kv.set_cancel(Some(&serde_json::to_vec(&cancel).unwrap_or_default()));
    for (s, r) in [(&sa, response("a")), (&sb, response("b"))] {
        kv.add_state(
            &s.hostname,
            Some(&serde_json::to_vec(s).unwrap_or_default()),
        );
        kv.add_response(
            &s.hostname,
            Some(&serde_json::to_vec(&r).unwrap_or_default()),
        );
    }
    assert_eq!(
        index.hosts(&id(1)),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    assert!(!view_json(&kv).is_empty());
    assert_eq!(view_json(&parts), view_json(&kv));
    assert_eq!(index.detail().counts(), (1, 0, 0));
}

#[test]
fn a_finished_host_whose_response_has_not_arrived_is_named() {
    let index = index(1 << 20);
    put_job(&index, &def(1, "_any", &[]), 1);
    put_state(&index, 1, &state("a", HostStatus::Running), 2);
    let (_, missing) = found(&index, 1);
    assert!(
        missing.is_empty(),
        "a running host has no response to wait for"
    );
    put_state(&index, 1, &state("a", HostStatus::Completed), 3);
    let (_, missing) = found(&index, 1);
    assert_eq!(missing, vec!["a".to_string()]);
    put_response(&index, 1, &response("a"), 7);
    let (parts, missing) = found(&index, 1);
    assert!(missing.is_empty());
    assert_eq!(parts.responses.len(), 1);
    assert_eq!(index.detail().counts(), (2, 1, 0));
}

#[test]
fn a_final_state_that_carries_its_answer_is_answered_whole() {
    let index = index(1 << 20);
    let d = def(1, "_any", &[]);
    put_job(&index, &d, 1);
    let mut done = state("a", HostStatus::Completed);
    done.response = Some(response("a"));
    put_state(&index, 1, &done, 2);
    let (parts, missing) = found(&index, 1);
    assert!(missing.is_empty(), "nothing to read: {missing:?}");
    assert_eq!(parts.responses.get("a"), Some(&response("a")));
    assert_eq!(parts.states["a"].response, None, "moved to the responses");
    // An older worker's response record for the same host does not replace the answer written with
    // the final status.
    let mut other = response("a");
    other.data = serde_json::json!("from the response bucket");
    put_response(&index, 1, &other, 3);
    let (parts, _) = found(&index, 1);
    assert_eq!(parts.responses.get("a"), Some(&response("a")));
    // The KV path, reading both records, builds the same view.
    let mut kv = Parts::default();
    kv.set_def(Some(&serde_json::to_vec(&d).unwrap_or_default()));
    kv.add_state("a", Some(&serde_json::to_vec(&done).unwrap_or_default()));
    kv.add_response("a", Some(&serde_json::to_vec(&other).unwrap_or_default()));
    assert!(view_json(&kv).contains("\"hostname\":\"a\"}"));
    assert_eq!(view_json(&parts), view_json(&kv));
}

#[test]
fn an_older_revision_never_overwrites_a_newer_one() {
    let index = index(1 << 20);
    put_job(&index, &def(1, "_any", &[]), 1);
    put_state(&index, 1, &state("a", HostStatus::Completed), 5);
    put_state(&index, 1, &state("a", HostStatus::Running), 3);
    put_response(&index, 1, &response("a"), 9);
    let mut stale = response("a");
    stale.data = serde_json::json!("old");
    put_response(&index, 1, &stale, 4);
    let (parts, _) = found(&index, 1);
    assert_eq!(parts.states["a"].status, HostStatus::Completed);
    assert_eq!(
        parts.responses["a"].data,
        serde_json::json!({"hostname": "a"})
    );
}

#[test]
fn a_delete_marker_or_an_unreadable_record_drops_the_job() {
    let index = index(1 << 20);
    for n in 1..=2 {
        put_job(&index, &def(n, "_any", &[]), n as u64);
    }
    let marker = Record {
        key: &keys::job(&id(1).to_string()),
        value: None,
        revision: 3,
    };
    index.apply(Source::Jobs, &marker, NOW);
    assert!(is_miss(&index, 1));
    // A late state of the deleted job does not bring it back.
    put_state(&index, 1, &state("a", HostStatus::Completed), 4);
    assert!(is_miss(&index, 1));
    let garbled = Record {
        key: &keys::state(&id(2).to_string(), "a"),
        value: Some(b"{not json"),
        revision: 5,
    };
    index.apply(Source::Jobs, &garbled, NOW);
    assert!(is_miss(&index, 2));
    assert_eq!(index.detail().size(), (0, 0));
}

#[test]
fn it_holds_its_budget_evicting_whole_jobs_oldest_first() {
    let one = {
        let probe = index(1 << 20);
        put_job(&probe, &def(1, "_any", &[]), 1);
        put_state(&probe, 1, &state("a", HostStatus::Completed), 2);
        put_response(&probe, 1, &response("a"), 1);
        probe.detail().size().1
    };
    let index = index(one * 3 + one / 2);
    for n in 1..=10u128 {
        put_job(&index, &def(n, "_any", &[]), n as u64 * 10);
        put_state(
            &index,
            n,
            &state("a", HostStatus::Completed),
            n as u64 * 10 + 1,
        );
        put_response(&index, n, &response("a"), n as u64);
        let (jobs, used) = index.detail().size();
        assert!(used <= one * 3 + one / 2, "{used} bytes held");
        assert!(jobs <= 3);
    }
    for n in 1..=7 {
        assert!(is_miss(&index, n), "job {n} should be evicted");
    }
    for n in 8..=10 {
        assert!(found(&index, n).1.is_empty());
    }
}

#[test]
fn jobs_replayed_before_the_watch_is_current_are_not_taken_in() {
    let index = Index::with_detail_cache(GRACE, 1 << 20, Duration::from_secs(3600));
    index.set_ready(Source::Responses, 0);
    put_job(&index, &def(1, "_any", &[]), 1);
    index.set_ready(Source::Jobs, 0);
    put_job(&index, &def(2, "_any", &[]), 2);
    assert!(is_miss(&index, 1), "replayed while loading");
    assert!(!is_miss(&index, 2));
    // During a re-created watch's replay a held job still takes its records, a new one is left out.
    index.set_not_ready(Source::Jobs, "gap".into());
    put_state(&index, 2, &state("a", HostStatus::Completed), 3);
    put_job(&index, &def(3, "_any", &[]), 4);
    index.set_ready(Source::Jobs, 0);
    assert_eq!(found(&index, 2).1, vec!["a".to_string()]);
    assert!(is_miss(&index, 3));
}

#[test]
fn zero_bytes_turns_it_off() {
    let index = index(0);
    put_job(&index, &def(1, "_any", &[]), 1);
    put_state(&index, 1, &state("a", HostStatus::Running), 2);
    assert!(is_miss(&index, 1));
    assert_eq!(index.detail().size(), (0, 0));
}

#[test]
fn a_response_before_its_job_makes_the_job_a_miss() {
    let index = index(1 << 20);
    put_response(&index, 1, &response("a"), 1);
    put_job(&index, &def(1, "_any", &[]), 1);
    put_state(&index, 1, &state("a", HostStatus::Completed), 2);
    assert!(is_miss(&index, 1));
}

#[test]
fn it_answers_only_while_both_watches_are_current() {
    let index = index(1 << 20);
    put_job(&index, &def(1, "_any", &[]), 1);
    assert!(!is_miss(&index, 1));
    assert!(matches!(
        index.detail().lookup(&id(1), NOW, 1),
        Lookup::Miss
    ));
    index.set_not_ready(Source::Responses, "gap".into());
    assert!(is_miss(&index, 1));
    index.set_ready(Source::Responses, 0);
    index.set_not_ready(Source::Jobs, "gap".into());
    assert!(is_miss(&index, 1));
    index.set_ready(Source::Jobs, 0);
    assert!(!is_miss(&index, 1));
}

#[test]
fn a_job_near_its_expiry_is_read_from_kv() {
    let index = Index::with_detail_cache(GRACE, 1 << 20, Duration::from_secs(3600));
    index.set_ready(Source::Jobs, 0);
    index.set_ready(Source::Responses, 0);
    put_job(&index, &def(1, "_any", &[]), 1);
    let late = NOW + 3_600_000_000 - 30_000_000;
    assert!(matches!(
        index.detail().lookup(&id(1), late, 0),
        Lookup::Miss
    ));
    assert!(!is_miss(&index, 1));
}

#[test]
fn the_response_watch_resumes_where_the_bucket_stood() {
    let index = index(1 << 20);
    assert_eq!(index.applied(Source::Responses), 0);
    index.detail().responses_start_at(41);
    assert_eq!(index.applied(Source::Responses), 41);
    put_response(&index, 9, &response("a"), 42);
    assert_eq!(index.applied(Source::Responses), 42);
    assert_eq!(index.applied(Source::Jobs), 0);
}
