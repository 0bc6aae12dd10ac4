//! Time and place: a worker runs a job only before its deadline and only when the job addresses it. A host
//! that comes up after a job's deadline records `expired: ...` and does not run it; a signed job's id
//! replayed on another host's subject is not run there; a signed record copied under a new id (a replay
//! before the deadline) is not run again.

use osapi_tests::{wait_until, Attacker, Cluster, Options, Worker, FLEET};
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn started_anywhere(detail: &Value) -> bool {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["event"] == "started")
}

#[test]
fn a_host_that_starts_after_the_deadline_does_not_run_the_job() {
    let cluster = Cluster::start(&FLEET[..1]);
    let id = cluster.submit(json!({
        "operation": {"type": "test.echo.do", "data": {"reboot": "yesterday's"}},
        "target_hostname": "late1",
        "timeout": "1s",
    }));
    // The API gives up on the silent host once the deadline passes.
    let gave_up = cluster.wait_job(&id, DEADLINE);
    assert_eq!(gave_up["status"], "failed", "{gave_up:#}");

    // The host boots late: its consumer gets the old notification, and it must not run it.
    let _late = Worker::start(&cluster.nats.url(), "late1", &[], 1, &Options::default());
    let mut detail = Value::Null;
    wait_until("late1 to record the job", DEADLINE, || {
        detail = cluster.job(&id);
        detail["worker_states"]["late1"]["status"] == "failed"
    });
    assert_eq!(
        detail["worker_states"]["late1"]["error"], "expired: reached late1 after its deadline",
        "{detail:#}"
    );
    assert!(!started_anywhere(&detail), "{detail:#}");
    assert!(detail["responses"]["late1"]["data"].is_null(), "{detail:#}");
}

#[test]
fn a_job_replayed_on_another_hosts_subject_is_not_run_there() {
    let mut cluster = Cluster::fleet();
    let id = cluster.create_job("test.echo.do", json!({}), "web1");
    let done = cluster.wait_job(&id, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");

    // The signed record is genuine; only the notification lies about where it goes.
    let mallory =
        Attacker::connect(&cluster.nats.url(), "t1", Default::default()).expect("attacker");
    mallory
        .notify(&id, "test.echo.do", "web2")
        .expect("publish on web2's subject");
    let web2 = cluster.worker("web2");
    let want = format!("job {id} target web1 reached web2, which it does not address: skipped");
    wait_until("web2 to skip the replayed job", DEADLINE, || {
        web2.log_tail().contains(&want)
    });
    let after = cluster.job(&id);
    assert!(after["worker_states"]["web2"].is_null(), "{after:#}");
    assert_eq!(after["status"], "completed", "{after:#}");
}

#[test]
fn a_signed_job_copied_under_a_new_id_is_not_run_again() {
    let cluster = Cluster::start(&FLEET[..1]);
    let id = cluster.create_job("test.echo.do", json!({"reboot": "once"}), "web1");
    let done = cluster.wait_job(&id, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");

    // The genuine signed record, unchanged, under a fresh key, well before its deadline.
    let mallory =
        Attacker::connect(&cluster.nats.url(), "t1", Default::default()).expect("attacker");
    let record = mallory.read_job(&id).expect("the signed record");
    let copy = uuid::Uuid::new_v4().to_string();
    mallory.forge_as(&copy, &record).expect("forge the copy");
    let mut state = Value::Null;
    wait_until("web1 to refuse the copied job", DEADLINE, || {
        state = mallory.host_state(&copy, "web1");
        state["status"] == "failed"
    });
    assert_eq!(
        state["error"],
        format!("rejected: the record read as job {copy} was signed as job {id}"),
        "{state:#}"
    );
    let events = state["events"].as_array().cloned().unwrap_or_default();
    assert!(!events.iter().any(|e| e["event"] == "started"), "{state:#}");
}
