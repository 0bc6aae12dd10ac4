//! `POST /job?wait=`: a job created and waited for in one request, against a real nats-server, the
//! real API and a real worker: the 201 carries the finished job, a bad `wait` is a 400 that creates
//! nothing, a job that cannot finish in time answers as it stands, an idempotent replay waits too, and
//! `POST /job/{id}/retry?wait=` does the same for the new job.

use std::time::{Duration, Instant};

use osapi_tests::{admin_token, request_with, wait_until, Cluster, Response};

const PING: &str = r#"{"operation":{"type":"test.ping.do","data":{}},"target_hostname":"_any"}"#;

fn post(cluster: &Cluster, path: &str, body: &str, headers: &[(&str, &str)]) -> Response {
    request_with(
        Some(&admin_token()),
        &cluster.api.base_url(),
        "POST",
        path,
        Some(body),
        headers,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn total_jobs(cluster: &Cluster) -> u64 {
    let list = cluster.http("GET", "/job?limit=1", None);
    assert_eq!(list.status, 200, "{}", list.text);
    list.body["total_items"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn one_request_creates_the_job_and_answers_it_finished() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let resp = post(&cluster, "/job?wait=20s", PING, &[]);
    assert_eq!(resp.status, 201, "{}", resp.text);
    let b = &resp.body;
    assert_eq!(b["status"], "completed", "{}", resp.text);
    assert_eq!(b["hostname"], "web1", "{}", resp.text);
    assert!(b["result"].is_object(), "{}", resp.text);
    assert!(b["revision"].is_u64(), "{}", resp.text);
    assert!(b["timestamp"].is_string(), "{}", resp.text);
    let id = b["job_id"].as_str().unwrap_or_default();
    assert_eq!(b["id"], id, "{}", resp.text);
    // The same job as a later GET sees it.
    let got = cluster.http("GET", &format!("/job/{id}"), None);
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["status"], "completed");
    assert_eq!(got.body["result"], b["result"]);
    // On the audit trail like any creation, with its job.
    wait_until(
        "the audit entry of the waited POST",
        Duration::from_secs(20),
        || {
            let trail = cluster.http("GET", "/audit?limit=100", None);
            trail.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| {
                    e["method"] == "POST"
                        && e["path"] == "/job"
                        && e["code"] == 201
                        && e["job_id"] == id
                })
        },
    );
    // Without `wait` the answer is the creation's, as before.
    let plain = post(&cluster, "/job", PING, &[]);
    assert_eq!(plain.status, 201, "{}", plain.text);
    assert_eq!(plain.body["status"], "pending", "{}", plain.text);
    assert!(plain.body.get("result").is_none(), "{}", plain.text);
}

#[test]
fn a_bad_wait_is_a_400_that_creates_nothing() {
    let cluster = Cluster::start(&[]);
    let before = total_jobs(&cluster);
    for (path, names) in [
        ("/job?wait=forever", "wait"),
        ("/job?wait=-1s", "wait"),
        ("/job?wiat=5s", "wiat"),
    ] {
        let resp = post(&cluster, path, PING, &[]);
        assert_eq!(resp.status, 400, "{path}: {}", resp.text);
        resp.assert_error(400);
        assert!(resp.text.contains(names), "{path}: {}", resp.text);
    }
    // A bad body with a good wait is the body's 400, and does not wait.
    let t = Instant::now();
    let resp = post(&cluster, "/job?wait=30s", r#"{"operation":{}}"#, &[]);
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(total_jobs(&cluster), before);
}

#[test]
fn a_job_nobody_runs_answers_pending_once_the_wait_is_over() {
    let cluster = Cluster::start(&[]);
    let t = Instant::now();
    let resp = post(&cluster, "/job?wait=1s", PING, &[]);
    let took = t.elapsed();
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert_eq!(resp.body["status"], "pending", "{}", resp.text);
    assert!(resp.body["job_id"].is_string(), "{}", resp.text);
    assert!(took >= Duration::from_secs(1), "answered after {took:?}");
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
}

#[test]
fn an_idempotent_replay_with_wait_answers_the_same_finished_job() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let key = "create-wait-replay-1";
    let first = post(&cluster, "/job?wait=20s", PING, &[("Idempotency-Key", key)]);
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["status"], "completed", "{}", first.text);
    let before = total_jobs(&cluster);
    let again = post(&cluster, "/job?wait=20s", PING, &[("Idempotency-Key", key)]);
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body["job_id"], first.body["job_id"]);
    assert_eq!(again.body["status"], "completed", "{}", again.text);
    assert_eq!(total_jobs(&cluster), before, "the replay created nothing");
}

#[test]
fn a_retry_with_wait_answers_the_new_job_finished() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let first = post(&cluster, "/job?wait=20s", PING, &[]);
    assert_eq!(first.status, 201, "{}", first.text);
    let id = first.body["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = total_jobs(&cluster);
    let bad = post(&cluster, &format!("/job/{id}/retry?wait=soon"), "", &[]);
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("wait"), "{}", bad.text);
    assert_eq!(total_jobs(&cluster), before, "a bad wait created nothing");
    let retry = post(&cluster, &format!("/job/{id}/retry?wait=20s"), "", &[]);
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.body["status"], "completed", "{}", retry.text);
    assert_eq!(retry.body["retry_of"], id.as_str(), "{}", retry.text);
    assert_ne!(retry.body["job_id"], id.as_str(), "{}", retry.text);
    assert_eq!(retry.body["id"], retry.body["job_id"], "{}", retry.text);
}

#[test]
fn the_wait_bounds_the_whole_request_not_each_part_of_it() {
    // The creation holds the job first, then the answer is read: together no longer than `wait`. A
    // job that outlasts it is answered running, never held for the wait a second time.
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let sleeper = r#"{"operation":{"type":"test.sleep.do","data":{"seconds":15}}}"#;
    let t = Instant::now();
    let resp = post(&cluster, "/job?wait=4s", sleeper, &[]);
    let took = t.elapsed();
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert_eq!(resp.body["status"], "running", "{}", resp.text);
    assert!(took >= Duration::from_secs(4), "answered after {took:?}");
    // Held twice, it would answer after 8 s.
    assert!(took < Duration::from_secs(7), "answered after {took:?}");
}
