use super::*;
use crate::operation::OperationType;
use crate::status::WORKER_LOST;

const CREATED_US: i64 = 1_000_000;
const GRACE: Grace = Grace {
    running_us: 500_000,
    retryable_us: 800_000,
};

/// No host has answered: a map that outlives the details borrowing it.
static NO_RESPONSES: BTreeMap<String, Response> = BTreeMap::new();

fn def(target: &str, expected: &[&str]) -> JobDef {
    JobDef {
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        operation: Operation {
            op_type: OperationType::TestPingDo,
            data: serde_json::json!({}),
        },
        target_hostname: target.into(),
        expected_hosts: expected.iter().map(|s| s.to_string()).collect(),
        created: format_micros(CREATED_US),
        created_us: CREATED_US,
        timeout_ms: 1000,
        retry_of: None,
        submitted_by: String::new(),
        signature: None,
    }
}

fn state(host: &str, status: HostStatus, error: Option<&str>) -> (String, HostState) {
    let ev = |name: &str, at: i64| Event {
        timestamp: format_micros(at),
        event: name.into(),
        hostname: host.into(),
        message: String::new(),
        error: None,
    };
    let mut events = vec![
        ev(event::ACKNOWLEDGED, 1_100_000),
        ev(event::STARTED, 1_100_001),
    ];
    if status == HostStatus::Completed {
        events.push(ev(event::COMPLETED, 1_200_000));
    }
    (
        host.to_string(),
        HostState {
            hostname: host.into(),
            status,
            attempts: 1,
            error: error.map(String::from),
            duration: Some("0.1s".into()),
            events,
            updated_us: 1_100_001,
            response: None,
        },
    )
}

fn response(host: &str, data: Value) -> (String, Response) {
    (
        host.to_string(),
        Response {
            status: HostStatus::Completed,
            data,
            error: None,
            hostname: host.into(),
        },
    )
}

#[test]
fn single_host_completed() {
    let states = BTreeMap::from([state("web1", HostStatus::Completed, None)]);
    let responses = BTreeMap::from([response("web1", serde_json::json!({"pong": true}))]);
    let d0 = def("_any", &[]);
    let d = detail(&d0, &states, &responses, GRACE, CREATED_US + 10);
    assert_eq!(d.status, JobStatus::Completed);
    assert_eq!(d.hostname, Some("web1"));
    assert_eq!(d.result, Some(&serde_json::json!({"pong": true})));
    assert_eq!(d.error, None);
    let events: Vec<&str> = d.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        ["submitted", "acknowledged", "started", "completed"]
    );
    assert_eq!(d.updated_at, format_micros(1_200_000));
}

#[test]
fn broadcast_partial_failure_and_silent_host() {
    let d0 = def("_all", &["a", "b", "c"]);
    let states = BTreeMap::from([
        state("a", HostStatus::Completed, None),
        state("b", HostStatus::Failed, Some("boom")),
    ]);
    let before = detail(&d0, &states, &NO_RESPONSES, GRACE, CREATED_US + 500_000);
    assert_eq!(before.status, JobStatus::Running, "c has not answered yet");
    assert_eq!(before.worker_states.len(), 2);

    let after = detail(&d0, &states, &NO_RESPONSES, GRACE, CREATED_US + 2_000_000);
    assert_eq!(after.status, JobStatus::PartialFailure);
    let c = after.worker_states.get("c").map(|s| (s.status, s.error));
    assert_eq!(c, Some((HostStatus::Failed, Some(NO_RESPONSE))));
    assert_eq!(after.error.as_deref(), Some("b: boom; c: no response"));
    assert_eq!(after.result, None);
}

#[test]
fn nobody_answers() {
    let d0 = def("ghost", &[]);
    let none = BTreeMap::new();
    assert_eq!(
        detail(&d0, &none, &NO_RESPONSES, GRACE, CREATED_US).status,
        JobStatus::Pending
    );
    let late = detail(&d0, &none, &NO_RESPONSES, GRACE, CREATED_US + 1_000_001);
    assert_eq!(late.status, JobStatus::Failed);
    assert_eq!(late.error.as_deref(), Some(NO_RESPONSE));
}

#[test]
fn single_host_failure_keeps_its_message() {
    let states = BTreeMap::from([state("web1", HostStatus::Failed, Some("bad input"))]);
    let d0 = def("web1", &[]);
    let d = detail(&d0, &states, &NO_RESPONSES, GRACE, CREATED_US + 10);
    assert_eq!(d.status, JobStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("bad input"));
}

#[test]
fn a_host_stuck_running_past_its_grace_is_lost() {
    let d0 = def("_all", &["a", "b"]);
    let states = BTreeMap::from([
        state("a", HostStatus::Completed, None),
        state("b", HostStatus::Running, None),
    ]);
    // Deadline at 2.0 s; b wrote at 1.1 s, so its grace ends at 2.5 s.
    let during = detail(&d0, &states, &NO_RESPONSES, GRACE, CREATED_US + 1_500_000);
    assert_eq!(during.status, JobStatus::Running);
    let after = detail(&d0, &states, &NO_RESPONSES, GRACE, CREATED_US + 1_500_001);
    assert_eq!(after.status, JobStatus::PartialFailure);
    let b = after.worker_states.get("b").map(|s| (s.status, s.error));
    assert_eq!(b, Some((HostStatus::Failed, Some(WORKER_LOST))));
    assert_eq!(after.error.as_deref(), Some("b: worker lost"));
    assert!(after
        .timeline
        .iter()
        .any(|e| e.hostname == "b" && e.error.as_deref() == Some(WORKER_LOST)));
}

#[test]
fn a_cancelled_job_shows_who_cancelled_and_keeps_finished_results() {
    use crate::job::CancelRecord;
    let def = def("group:web", &["a", "b", "c"]);
    let states: BTreeMap<String, HostState> = [
        state("a", HostStatus::Completed, None),
        state("b", HostStatus::Cancelled, None),
    ]
    .into_iter()
    .collect();
    let cancel = CancelRecord {
        by: "alice".into(),
        at: format_micros(1_500_000),
        at_us: 1_500_000,
    };
    let d = detail_with_cancel(
        &def,
        &states,
        &NO_RESPONSES,
        Some(&cancel),
        GRACE,
        1_600_000,
    );
    assert_eq!(d.status, JobStatus::Cancelled);
    assert_eq!(d.worker_states["a"].status, HostStatus::Completed);
    assert_eq!(d.worker_states["b"].status, HostStatus::Cancelled);
    assert_eq!(
        d.worker_states["c"].status,
        HostStatus::Cancelled,
        "never started"
    );
    let event = d.timeline.iter().find(|e| e.event == "cancelled");
    let event = event.unwrap_or_else(|| panic!("no cancelled event: {:?}", d.timeline));
    assert_eq!(event.message, "cancelled by alice");
    assert_eq!(d.error, None);
    // Without the cancel record, c would still be pending.
    let plain = detail(&def, &states, &NO_RESPONSES, GRACE, 1_600_000);
    assert_eq!(plain.status, JobStatus::Running, "{plain:?}");
}

#[test]
fn the_submitter_is_named_in_the_detail_and_the_timeline() {
    let mut d = def("web1", &[]);
    let none = BTreeMap::new();
    let anonymous = detail(&d, &none, &NO_RESPONSES, GRACE, CREATED_US);
    assert_eq!(anonymous.submitted_by, "");
    assert_eq!(
        anonymous.timeline[0].message,
        "job submitted for target web1"
    );
    d.submitted_by = "alice".into();
    let named = detail(&d, &none, &NO_RESPONSES, GRACE, CREATED_US);
    assert_eq!(named.submitted_by, "alice");
    assert_eq!(named.timeline[0].event, "submitted");
    assert_eq!(
        named.timeline[0].message,
        "job submitted by alice for target web1"
    );
}
