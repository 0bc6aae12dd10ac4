//! Liveness and readiness: /health answers while the process lives, /health/ready follows NATS. With NATS gone the
//! API answers 503 quickly instead of hanging, and it recovers when NATS comes back.

use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::{wait_until, Cluster};

fn status_of(cluster: &Cluster, path: &str) -> Option<u16> {
    cluster.try_http("GET", path).ok().map(|resp| resp.status)
}

#[test]
fn health_and_ready_are_200_and_ready_turns_503_without_nats() {
    let mut cluster = Cluster::start(&[]);
    assert_eq!(status_of(&cluster, "/health"), Some(200));
    assert_eq!(status_of(&cluster, "/health/ready"), Some(200));

    cluster.nats.stop();
    wait_until(
        "/health/ready to answer 503 after nats-server stopped",
        Duration::from_secs(5),
        || status_of(&cluster, "/health/ready") == Some(503),
    );
    let resp = cluster.http("GET", "/health/ready", None);
    resp.assert_error(503);
    assert_eq!(
        status_of(&cluster, "/health"),
        Some(200),
        "liveness does not depend on NATS"
    );

    // Submitting without NATS is a quick 503, never a hang (request_timeout is 2s by default).
    let asked = Instant::now();
    let body =
        json!({"operation": {"type": "test.ping.do", "data": {}}, "target_hostname": "_any"});
    let resp = cluster.http("POST", "/job", Some(body));
    resp.assert_error(503);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "POST /job without NATS took {:?}",
        asked.elapsed()
    );
}

#[test]
fn api_and_workers_recover_when_nats_comes_back() {
    let mut cluster = Cluster::start(&[("web1", &[("group", "web")], 2)]);
    cluster.nats.stop();
    wait_until(
        "/health/ready to answer 503 after nats-server stopped",
        Duration::from_secs(5),
        || status_of(&cluster, "/health/ready") == Some(503),
    );

    cluster.nats.restart();
    wait_until(
        "/health/ready to answer 200 after nats-server restarted",
        Duration::from_secs(20),
        || status_of(&cluster, "/health/ready") == Some(200),
    );
    wait_until(
        "web1 to be listed again after nats-server restarted",
        Duration::from_secs(20),
        || cluster.listed_workers().contains(&"web1".to_string()),
    );
    let job = cluster.run_job("test.ping.do", json!({}), "web1");
    assert_eq!(job["status"], "completed", "{job:#}");
}
