//! Workers as the API sees them (GET /job/workers from heartbeats) and the `max_jobs` bound of a worker's pool.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{is_terminal, max_overlap, parse_rfc3339_micros, wait_until, Cluster};

fn micros(value: &Value, what: &str) -> i64 {
    let at = value.as_str().and_then(parse_rfc3339_micros);
    at.unwrap_or_else(|| panic!("{what} must be an RFC 3339 timestamp, got {value}"))
}

/// The entry of `hostname` in GET /job/workers, if listed.
fn listed(cluster: &Cluster, hostname: &str) -> Option<Value> {
    let resp = cluster.http("GET", "/job/workers", None);
    assert_eq!(resp.status, 200, "GET /job/workers -> {}", resp.text);
    let workers = resp.body["workers"].as_array().cloned().unwrap_or_default();
    workers.into_iter().find(|w| w["hostname"] == hostname)
}

#[test]
fn workers_are_listed_with_labels_times_and_pool_size() {
    let cluster = Cluster::fleet();
    let resp = cluster.http("GET", "/job/workers", None);
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.body["total"], 3, "{}", resp.text);
    let workers = resp.body["workers"].as_array().expect("workers is a list");
    assert_eq!(workers.len(), 3, "{}", resp.text);
    let expected = [
        ("web1", "web.dev.us-east"),
        ("web2", "web.prod"),
        ("db1", "db.dev"),
    ];
    for (hostname, group) in expected {
        let worker = workers.iter().find(|w| w["hostname"] == hostname);
        let worker = worker.unwrap_or_else(|| panic!("{hostname} not listed: {}", resp.text));
        assert_eq!(worker["labels"], json!({"group": group}), "{worker}");
        assert_eq!(worker["max_jobs"], 4, "{worker}");
        assert_eq!(
            worker["running"], 0,
            "an idle worker runs nothing: {worker}"
        );
        let started = micros(&worker["started_at"], "started_at");
        let seen = micros(&worker["last_seen"], "last_seen");
        assert!(seen >= started, "last_seen before started_at: {worker}");
    }
}

#[test]
fn heartbeats_advance_last_seen() {
    let cluster = Cluster::fleet();
    let first = listed(&cluster, "web1").expect("web1 listed");
    let first_seen = micros(&first["last_seen"], "last_seen");
    wait_until(
        "web1's last_seen to advance (heartbeat 500ms)",
        Duration::from_secs(5),
        || {
            let now = listed(&cluster, "web1").expect("web1 stays listed");
            micros(&now["last_seen"], "last_seen") > first_seen
        },
    );
}

#[test]
fn killed_worker_leaves_the_list() {
    let mut cluster = Cluster::fleet();
    cluster.worker("web2").kill();
    wait_until(
        "web2 to drop out of GET /job/workers after SIGKILL",
        Duration::from_secs(15),
        || listed(&cluster, "web2").is_none(),
    );
    assert!(listed(&cluster, "web1").is_some(), "web1 is alive");
    assert!(listed(&cluster, "db1").is_some(), "db1 is alive");
}

#[test]
fn pool_runs_at_most_max_jobs_at_once_and_really_in_parallel() {
    let cluster = Cluster::start(&[("solo", &[("group", "pool")], 2)]);
    let ids: Vec<String> = (0..6)
        .map(|_| cluster.create_job("test.sleep.do", json!({"seconds": 1}), "solo"))
        .collect();

    let mut most_running = 0;
    wait_until(
        "six 1 s sleeps on a pool of 2",
        Duration::from_secs(30),
        || {
            if let Some(worker) = listed(&cluster, "solo") {
                let running = worker["running"].as_u64();
                let running =
                    running.unwrap_or_else(|| panic!("running must be a number: {worker}"));
                assert!(
                    running <= 2,
                    "max_jobs is 2 but running = {running}: {worker}"
                );
                most_running = most_running.max(running);
            }
            ids.iter()
                .all(|id| cluster.job(id)["status"].as_str().is_some_and(is_terminal))
        },
    );
    assert!(
        most_running >= 1,
        "GET /job/workers never showed a running job"
    );

    let mut intervals = Vec::new();
    for id in &ids {
        let job = cluster.job(id);
        assert_eq!(job["status"], "completed", "{job:#}");
        assert_eq!(
            job["result"]["slept_seconds"].as_f64(),
            Some(1.0),
            "{job:#}"
        );
        let events = job["timeline"].as_array().cloned().unwrap_or_default();
        let at = |name: &str| {
            let event = events
                .iter()
                .find(|e| e["event"] == name && e["hostname"] == "solo");
            let event = event.unwrap_or_else(|| panic!("no `{name}` event by solo: {job:#}"));
            micros(&event["timestamp"], name)
        };
        let (started, completed) = (at("started"), at("completed"));
        assert!(
            completed - started >= 1_000_000,
            "a 1 s sleep took less: {job:#}"
        );
        intervals.push((started, completed));
    }
    let overlap = max_overlap(&intervals);
    assert!(
        overlap <= 2,
        "{overlap} jobs overlapped on a pool of 2: {intervals:?}"
    );
    assert_eq!(
        overlap, 2,
        "the pool of 2 never ran two jobs at once: {intervals:?}"
    );
}
