//! Workers that die or are told to stop, and an API told to stop: a SIGKILLed worker's `_any` job is
//! redelivered after `ack_wait` and finished by another worker, a host-targeted one when its worker comes
//! back; SIGTERM lets running jobs finish, hands the rest back, and exits 0. No host ever records two
//! `completed` results for one job.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{wait_until, Cluster, Options};

/// Options with a short ack deadline (no back-off list: `ack_wait` is then each delivery's deadline).
fn short_ack_wait() -> Options {
    Options {
        worker_yaml: vec![
            ("consumer".into(), "{ ack_wait: '2s', back_off: [] }".into()),
            ("shutdown_grace".into(), "'10s'".into()),
        ],
        ..Options::default()
    }
}

/// How many `name` events each host recorded in the job's timeline.
fn count_events(job: &Value, name: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in job["timeline"].as_array().into_iter().flatten() {
        if event["event"] == name {
            let host = event["hostname"].as_str().unwrap_or("?").to_string();
            *counts.entry(host).or_insert(0) += 1;
        }
    }
    counts
}

fn assert_completed_once_per_host(job: &Value) {
    for (host, n) in count_events(job, "completed") {
        assert_eq!(n, 1, "{host} recorded {n} `completed` events: {job:#}");
    }
}

/// The host whose state for `id` is `running`, once one is.
fn wait_running_host(cluster: &Cluster, id: &str) -> String {
    let mut host = None;
    wait_until(
        &format!("job {id} to be running on a host"),
        Duration::from_secs(20),
        || {
            let job = cluster.job(id);
            let states = job["worker_states"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            host = states
                .iter()
                .find(|(_, s)| s["status"] == "running")
                .map(|(h, _)| h.clone());
            host.is_some()
        },
    );
    host.expect("wait_until returned, so a host runs it")
}

fn listed(cluster: &Cluster, hostname: &str) -> bool {
    cluster.listed_workers().iter().any(|h| h == hostname)
}

#[test]
fn an_any_job_of_a_killed_worker_is_finished_by_another() {
    let options = short_ack_wait();
    let mut cluster = Cluster::start_with(&[("k1", &[], 1), ("k2", &[], 1)], &options);

    let id = cluster.create_job("test.sleep.do", json!({"seconds": 3}), "_any");
    let victim = wait_running_host(&cluster, &id);
    let survivor = if victim == "k1" { "k2" } else { "k1" };
    cluster.worker(&victim).kill();

    let job = cluster.wait_job(&id, Duration::from_secs(40));
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(
        job["worker_states"][survivor]["status"], "completed",
        "{job:#}"
    );
    assert_eq!(job["hostname"], survivor, "{job:#}");
    assert_eq!(
        job["result"]["slept_seconds"].as_f64(),
        Some(3.0),
        "{job:#}"
    );
    assert_completed_once_per_host(&job);
    assert_eq!(
        count_events(&job, "completed").values().sum::<usize>(),
        1,
        "one `_any` job, one result: {job:#}"
    );
}

#[test]
fn a_host_job_of_a_killed_worker_completes_when_it_returns() {
    let options = short_ack_wait();
    let mut cluster = Cluster::start_with(&[("h1", &[], 1)], &options);

    let running = cluster.create_job("test.sleep.do", json!({"seconds": 2}), "h1");
    assert_eq!(wait_running_host(&cluster, &running), "h1");
    cluster.worker("h1").kill();
    wait_until(
        "h1 to leave GET /job/workers after SIGKILL",
        Duration::from_secs(15),
        || !listed(&cluster, "h1"),
    );
    let queued = cluster.create_job("test.ping.do", json!({}), "h1");

    let nats_url = cluster.nats.url();
    cluster.worker("h1").restart(&nats_url, &options);

    for id in [&running, &queued] {
        let job = cluster.wait_job(id, Duration::from_secs(40));
        assert_eq!(job["status"], "completed", "{job:#}");
        assert_completed_once_per_host(&job);
    }
    let job = cluster.job(&running);
    assert_eq!(
        count_events(&job, "started").get("h1"),
        Some(&2),
        "started by the killed process, then again after the restart: {job:#}"
    );
    assert_eq!(job["worker_states"]["h1"]["attempts"], 2, "{job:#}");
}

#[test]
fn sigterm_lets_a_worker_finish_its_job_hand_back_the_rest_and_exit_0() {
    let options = short_ack_wait();
    let mut cluster = Cluster::start_with(&[("g1", &[], 1)], &options);

    let running = cluster.create_job("test.sleep.do", json!({"seconds": 2}), "g1");
    assert_eq!(wait_running_host(&cluster, &running), "g1");
    // Waits for g1's only pool thread: its fetcher holds it, or it is still in the stream.
    let waiting = cluster.create_job("test.ping.do", json!({}), "g1");

    let status = cluster.worker("g1").terminate();
    assert!(
        status.success(),
        "osapi-worker exit status after SIGTERM: {status}"
    );

    let job = cluster.job(&running);
    assert_eq!(
        job["status"], "completed",
        "the running job finished within the grace: {job:#}"
    );
    assert_completed_once_per_host(&job);
    let job = cluster.job(&waiting);
    assert_eq!(
        job["status"], "pending",
        "a job not started is handed back: {job:#}"
    );
    assert!(
        !listed(&cluster, "g1"),
        "a stopped worker removes its heartbeat at once"
    );

    let nats_url = cluster.nats.url();
    cluster.worker("g1").restart(&nats_url, &options);
    let job = cluster.wait_job(&waiting, Duration::from_secs(40));
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(
        job["worker_states"]["g1"]["attempts"]
            .as_u64()
            .map(|n| n >= 1),
        Some(true)
    );
    assert_completed_once_per_host(&job);
}

#[test]
fn sigterm_lets_the_api_answer_requests_in_flight_and_exit_0() {
    let mut cluster = Cluster::start_with(&[("a1", &[], 1)], &short_ack_wait());
    let id = cluster.create_job("test.sleep.do", json!({"seconds": 2}), "a1");

    let base_url = cluster.api.base_url();
    let path = format!("/job/{id}?wait=30s");
    let token = osapi_tests::admin_token();
    let waiter = std::thread::spawn(move || {
        osapi_tests::request_as(Some(&token), &base_url, "GET", &path, None)
    });
    assert_eq!(wait_running_host(&cluster, &id), "a1");

    let status = cluster.api.terminate();
    assert!(
        status.success(),
        "osapi-api exit status after SIGTERM: {status}"
    );
    let answer = waiter.join().expect("waiting client thread");
    let answer = answer.unwrap_or_else(|err| panic!("the request in flight got no answer: {err}"));
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "completed", "{}", answer.text);
    assert!(
        cluster.try_http("GET", "/health").is_err(),
        "a stopped API accepts no more requests"
    );
}
