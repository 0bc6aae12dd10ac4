//! `POST /job/{id}/cancel` against a real nats-server and the real binaries: a running `test.sleep.do`
//! stops within 2 s and frees its pool slot; a pending job is never run by a host that starts later;
//! finished jobs are 409; `status=cancelled` filters and counts; who cancelled is in the timeline.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use osapi_tests::{token, wait_until, Cluster, Options, Worker};

const DEADLINE: Duration = Duration::from_secs(30);

fn cancel(cluster: &Cluster, id: &str) -> osapi_tests::Response {
    cluster.http("POST", &format!("/job/{id}/cancel"), None)
}

fn events<'a>(job: &'a Value, name: &str) -> Vec<&'a Value> {
    job["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == name)
        .collect()
}

#[test]
fn a_running_sleep_is_stopped_within_two_seconds_and_its_slot_freed() {
    let cluster = Cluster::start(&[("web1", &[], 1)]);
    let id = cluster.create_job("test.sleep.do", json!({"seconds": 120}), "web1");
    wait_until("the sleep to run", DEADLINE, || {
        cluster.job(&id)["status"] == "running"
    });

    let asked = Instant::now();
    let resp = cancel(&cluster, &id);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let job = cluster.wait_job(&id, Duration::from_secs(10));
    let took = asked.elapsed();
    assert_eq!(job["status"], "cancelled", "{job:#}");
    assert!(took < Duration::from_secs(2), "cancelled after {took:?}");
    assert_eq!(
        job["worker_states"]["web1"]["status"], "cancelled",
        "{job:#}"
    );
    let by_api = events(&job, "cancelled");
    assert!(
        by_api.iter().any(|e| e["message"] == "cancelled by tester"),
        "the timeline names who cancelled: {job:#}"
    );
    assert!(
        by_api.iter().any(|e| e["hostname"] == "web1"),
        "and the host that stopped: {job:#}"
    );

    // The only pool slot is free again: the next job runs.
    let next = cluster.run_job("test.ping.do", json!({}), "web1");
    assert_eq!(next["status"], "completed", "{next:#}");
    wait_until("web1 to report nothing running", DEADLINE, || {
        let workers = cluster.http("GET", "/job/workers", None).body;
        workers["workers"][0]["running"] == 0
    });
}

#[test]
fn a_pending_job_is_never_run_by_a_host_that_starts_later() {
    let mut cluster = Cluster::start(&[("web1", &[], 2)]);
    let id = cluster.create_job("test.sleep.do", json!({"seconds": 60}), "late1");
    assert_eq!(cluster.job(&id)["status"], "pending");
    let resp = cancel(&cluster, &id);
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.body["status"], "cancelled",
        "nobody runs it: {}",
        resp.text
    );

    let late = Worker::start(&cluster.nats.url(), "late1", &[], 2, &Options::default());
    cluster.workers.push(late);
    wait_until("late1 to record that it will not run it", DEADLINE, || {
        cluster.job(&id)["worker_states"]["late1"]["status"] == "cancelled"
    });
    let job = cluster.job(&id);
    assert_eq!(job["status"], "cancelled", "{job:#}");
    assert!(
        events(&job, "started").is_empty(),
        "late1 never started it: {job:#}"
    );
    // late1 is not stuck on it: its slots run new work.
    let next = cluster.run_job("test.ping.do", json!({}), "late1");
    assert_eq!(next["status"], "completed", "{next:#}");
}

#[test]
fn finished_jobs_are_409_and_cancelled_is_a_status_like_the_others() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let done = cluster.run_job("test.ping.do", json!({}), "web1");
    let done_id = done["id"].as_str().expect("id");
    cancel(&cluster, done_id).assert_error(409);

    let id = cluster.create_job("test.sleep.do", json!({"seconds": 60}), "web1");
    let reader = token(&["read"], None);
    cluster
        .http_as(Some(&reader), "POST", &format!("/job/{id}/cancel"), None)
        .assert_error(403);
    assert_eq!(cancel(&cluster, &id).status, 200);
    cluster.wait_job(&id, DEADLINE);
    cancel(&cluster, &id).assert_error(409);
    cancel(&cluster, "00000000-0000-4000-8000-000000000000").assert_error(404);
    cancel(&cluster, "not-a-uuid").assert_error(400);
    cluster
        .http_raw("POST", &format!("/job/{id}/cancel"), Some("{\"why\": 1}"))
        .assert_error(400);
    cluster
        .http("GET", &format!("/job/{id}/cancel"), None)
        .assert_error(405);

    let list = cluster.http("GET", "/job?status=cancelled", None).body;
    assert_eq!(list["total_items"], 1, "{list:#}");
    assert_eq!(list["items"][0]["id"], id.as_str());
    let stats = cluster.http("GET", "/job/status", None).body;
    assert_eq!(stats["status_counts"]["cancelled"], 1, "{stats:#}");
    assert_eq!(stats["status_counts"]["completed"], 1, "{stats:#}");
}
