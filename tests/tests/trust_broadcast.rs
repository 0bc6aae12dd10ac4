//! A broadcast's hosts read its copy `run.{id}` (every field but the expected-host list, signed on its
//! own), from the attacker's side and across versions: a copy changed after signing is refused (and it is
//! the copy the hosts read, not the whole record); a broadcast in a bucket from before the copies (no
//! `run.{id}`) still runs from `jobs.{id}`; a deleted broadcast's copy goes with it; and a broadcast older
//! than a worker, that did not expect it, is still not that worker's (the list, read whole, says so).

use osapi_common::names::keys;
use osapi_common::trust;
use osapi_tests::{wait_until, Attacker, Cluster, Options, Worker, JOB_KEY};
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);
const HOSTS: [&str; 3] = ["web1", "web2", "db1"];

fn attacker(cluster: &Cluster) -> Attacker {
    Attacker::connect(&cluster.nats.url(), "t1", Default::default()).expect("attacker connects")
}

fn read(mallory: &Attacker, key: &str) -> Option<Value> {
    let entry = mallory.bus.kv_get(&mallory.names.bucket, key).ok()??;
    serde_json::from_slice(&entry.value).ok()
}

fn put(mallory: &Attacker, key: &str, value: &Value) {
    let bytes = serde_json::to_vec(value).expect("json");
    mallory
        .bus
        .kv_put(&mallory.names.bucket, key, &bytes)
        .expect("kv put");
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Waits until every host of [`HOSTS`] has a terminal state for job `id`; returns the job detail.
fn wait_hosts(cluster: &Cluster, id: &str, status: &str) -> Value {
    let mut detail = Value::Null;
    wait_until(&format!("job {id} {status} on {HOSTS:?}"), DEADLINE, || {
        detail = cluster.http("GET", &format!("/job/{id}"), None).body;
        HOSTS
            .iter()
            .all(|h| detail["worker_states"][h]["status"] == status)
    });
    detail
}

#[test]
fn a_broadcasts_hosts_read_its_signed_copy_and_refuse_a_changed_one() {
    let cluster = Cluster::fleet();
    let real = cluster.create_job("test.echo.do", json!({"x": 1}), "_all");
    let done = cluster.wait_job(&real, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["expected_hosts"].as_array().map(Vec::len), Some(3));
    let mallory = attacker(&cluster);
    let whole = read(&mallory, &keys::job(&real)).expect("jobs.{id}");
    assert_eq!(whole["expected_hosts"].as_array().map(Vec::len), Some(3));
    let copy = read(&mallory, &keys::run(&real)).expect("the API writes run.{id}");
    assert_eq!(copy["expected_hosts"], json!([]), "{copy:#}");
    assert_ne!(copy["signature"]["sig"], whole["signature"]["sig"]);

    // The genuine copy under a new id, with other data; the whole record beside it is unsigned (as
    // any writer could make it), so which one a host read shows in the error it records.
    let id = uuid::Uuid::new_v4().to_string();
    let mut changed = copy.clone();
    changed["id"] = json!(id);
    changed["operation"]["data"] = json!({"pwned": true});
    put(&mallory, &keys::run(&id), &changed);
    let mut unsigned = changed.clone();
    unsigned["expected_hosts"] = json!(HOSTS);
    unsigned["created_us"] = json!(now_us());
    unsigned.as_object_mut().map(|o| o.remove("signature"));
    mallory.forge(&unsigned).expect("forge");
    let detail = wait_hosts(&cluster, &id, "failed");
    for h in HOSTS {
        let error = detail["worker_states"][h]["error"].as_str().unwrap_or("");
        assert!(
            error.starts_with("rejected: bad signature"),
            "{h}: {detail:#}"
        );
        assert!(detail["responses"][h]["data"].is_null(), "{detail:#}");
    }
}

#[test]
fn a_broadcast_from_before_the_copies_runs_from_the_whole_record() {
    let cluster = Cluster::fleet();
    let key = trust::signing_key_from_pem(JOB_KEY).expect("the test job key");
    let now = now_us();
    let mut def: osapi_common::job::JobDef = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "operation": {"type": "test.echo.do", "data": {"old": true}},
        "target_hostname": "_all",
        "expected_hosts": HOSTS,
        "created": osapi_common::timefmt::format_micros(now),
        "created_us": now,
        "timeout_ms": 60_000,
        "submitted_by": "tester",
    }))
    .expect("a job definition");
    def.signature = Some(trust::sign(&def, &key));
    let mallory = attacker(&cluster);
    mallory
        .forge(&serde_json::to_value(&def).expect("json"))
        .expect("write the job as an older API did: jobs.{id} alone");
    let detail = wait_hosts(&cluster, &def.id, "completed");
    assert_eq!(detail["status"], "completed", "{detail:#}");
    assert!(read(&mallory, &keys::run(&def.id)).is_none());
}

#[test]
fn a_deleted_broadcast_takes_its_copy_with_it() {
    let mut cluster = Cluster::fleet();
    let id = cluster.create_job("test.echo.do", json!({}), "group:web");
    let done = cluster.wait_job(&id, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");
    let mallory = attacker(&cluster);
    assert!(read(&mallory, &keys::run(&id)).is_some());
    let resp = cluster.http("DELETE", &format!("/job/{id}"), None);
    assert_eq!(resp.status, 204, "{:?}", resp.body);
    assert!(read(&mallory, &keys::run(&id)).is_none());
    assert!(read(&mallory, &keys::job(&id)).is_none());
    // Its notification again: nothing to read, nothing run.
    mallory
        .notify(&id, "test.echo.do", "group:web")
        .expect("publish");
    let want = format!("job {id} on web1: deleted, notification skipped");
    let web1 = cluster.worker("web1");
    wait_until("web1 to skip the deleted job", DEADLINE, || {
        web1.log_tail().contains(&want)
    });
}

#[test]
fn a_broadcast_older_than_a_worker_that_did_not_expect_it_is_not_run_there() {
    let cluster = Cluster::fleet();
    let id = cluster.create_job("test.echo.do", json!({}), "_all");
    let done = cluster.wait_job(&id, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");
    // A new host's consumer replays the stream: the old broadcast reaches it, and its copy has no
    // list, so the worker reads the whole record to learn it was not expected.
    let mut late = Worker::start(&cluster.nats.url(), "late1", &[], 1, &Options::default());
    let want = format!("job {id} target _all on late1: submitted before this worker started");
    wait_until("late1 to skip the older broadcast", DEADLINE, || {
        late.log_tail().contains(&want)
    });
    let after = cluster.job(&id);
    assert!(after["worker_states"]["late1"].is_null(), "{after:#}");
    assert_eq!(after["status"], "completed", "{after:#}");
    late.kill();
}
