//! Retries and dead letters: a transient failure is retried after each back-off step and, after
//! `max_deliver` attempts, ends `failed` with `max deliveries exceeded` and a MAX_DELIVERIES advisory in
//! JOBS-DLQ (`dlq_count`); a permanent failure is never retried; a job longer than the ack deadline is
//! kept alive by in-progress acks and runs exactly once.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{parse_rfc3339_micros, wait_until, Cluster, Options};

/// Deadline for a job that fails three times with short back-off steps, on a busy 2-core machine.
const RETRIED_JOB_DEADLINE: Duration = Duration::from_secs(40);

/// Options whose workers use the given `job.worker.consumer` settings.
fn with_consumer(consumer: &str) -> Options {
    Options {
        worker_yaml: vec![("consumer".into(), consumer.into())],
        ..Options::default()
    }
}

/// The timeline events called `name` recorded by `host`.
fn events<'a>(job: &'a Value, name: &str, host: &str) -> Vec<&'a Value> {
    let timeline = job["timeline"].as_array();
    let timeline = timeline.unwrap_or_else(|| panic!("job without a timeline: {job:#}"));
    timeline
        .iter()
        .filter(|e| e["event"] == name && e["hostname"] == host)
        .collect()
}

fn micros(event: &Value) -> i64 {
    let at = event["timestamp"].as_str().and_then(parse_rfc3339_micros);
    at.unwrap_or_else(|| panic!("event without an RFC 3339 timestamp: {event}"))
}

fn dlq_count(cluster: &Cluster) -> u64 {
    let resp = cluster.http("GET", "/job/status", None);
    assert_eq!(resp.status, 200, "GET /job/status -> {}", resp.text);
    let count = resp.body["dlq_count"].as_u64();
    count.unwrap_or_else(|| panic!("dlq_count must be a number: {}", resp.text))
}

#[test]
fn transient_failures_are_retried_with_back_off_then_dead_lettered() {
    let options = with_consumer("{ max_deliver: 3, ack_wait: '5s', back_off: ['400ms', '400ms'] }");
    let cluster = Cluster::start_with(&[("flaky", &[], 2)], &options);
    assert_eq!(dlq_count(&cluster), 0, "a fresh DLQ is empty");

    let data = json!({"transient": true, "message": "disk busy"});
    let id = cluster.create_job("test.fail.do", data, "flaky");
    let job = cluster.wait_job(&id, RETRIED_JOB_DEADLINE);

    assert_eq!(job["status"], "failed", "{job:#}");
    let state = &job["worker_states"]["flaky"];
    assert_eq!(state["status"], "failed", "{job:#}");
    assert_eq!(state["attempts"], 3, "max_deliver is 3: {job:#}");
    let error = state["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("max deliveries exceeded") && error.contains("disk busy"),
        "the final error names the cause and the give-up: {job:#}"
    );

    let retried = events(&job, "retried", "flaky");
    assert_eq!(retried.len(), 2, "attempts 1 and 2 were retried: {job:#}");
    for event in &retried {
        let why = event["error"].as_str().unwrap_or_default();
        assert!(
            why.contains("disk busy"),
            "retried event with its error: {event}"
        );
    }
    let started = events(&job, "started", "flaky");
    assert_eq!(started.len(), 3, "three deliveries: {job:#}");
    assert_eq!(events(&job, "failed", "flaky").len(), 1, "{job:#}");
    // Each redelivery waits for its back-off step (400ms) after the retry was recorded.
    for (retry, next_start) in retried.iter().zip(started.iter().skip(1)) {
        let waited_us = micros(next_start) - micros(retry);
        assert!(
            waited_us >= 350_000,
            "redelivered {waited_us} µs after the retry, back-off is 400ms: {job:#}"
        );
    }

    wait_until(
        "dlq_count to show the MAX_DELIVERIES advisory",
        Duration::from_secs(15),
        || dlq_count(&cluster) == 1,
    );
}

#[test]
fn permanent_failures_are_never_retried() {
    let options = with_consumer("{ max_deliver: 3, ack_wait: '5s', back_off: ['300ms', '300ms'] }");
    let cluster = Cluster::start_with(&[("solid", &[], 1)], &options);

    let data = json!({"transient": false, "message": "no such file"});
    let id = cluster.create_job("test.fail.do", data, "solid");
    let job = cluster.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["worker_states"]["solid"]["attempts"], 1, "{job:#}");

    // A job that outlasts every back-off step, run afterwards on the same one-thread worker: had the
    // failure been NAKed, its redeliveries would have come meanwhile.
    let later = cluster.run_job("test.sleep.do", json!({"seconds": 1}), "solid");
    assert_eq!(later["status"], "completed", "{later:#}");

    let job = cluster.job(&id);
    let state = &job["worker_states"]["solid"];
    assert_eq!(state["status"], "failed", "{job:#}");
    assert_eq!(
        state["attempts"], 1,
        "a permanent failure is not retried: {job:#}"
    );
    let error = state["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no such file") && !error.contains("max deliveries"),
        "{job:#}"
    );
    assert_eq!(events(&job, "started", "solid").len(), 1, "{job:#}");
    assert!(events(&job, "retried", "solid").is_empty(), "{job:#}");
    assert_eq!(dlq_count(&cluster), 0, "nothing was dead-lettered");
}

#[test]
fn a_job_longer_than_ack_wait_runs_once() {
    let options = with_consumer("{ ack_wait: '1s', back_off: [] }");
    let cluster = Cluster::start_with(&[("slow", &[], 2)], &options);

    let id = cluster.create_job("test.sleep.do", json!({"seconds": 4}), "slow");
    let job = cluster.wait_job(&id, Duration::from_secs(40));

    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(
        job["result"]["slept_seconds"].as_f64(),
        Some(4.0),
        "{job:#}"
    );
    assert_eq!(
        job["worker_states"]["slow"]["attempts"], 1,
        "in-progress acks kept the only delivery alive: {job:#}"
    );
    assert_eq!(events(&job, "started", "slow").len(), 1, "{job:#}");
    assert_eq!(events(&job, "completed", "slow").len(), 1, "{job:#}");
}
