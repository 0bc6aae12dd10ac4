//! What the API reports is true, against the real binaries and nats-server: a worker killed for good
//! leaves its job `failed: worker lost` within the job's timeout plus `ack_wait` (not `running` for ever),
//! while a live worker's job that outlasts both is never called lost;
//! after a NATS restart that loses the API's watch consumer, `/health/ready` says 503 until the index is
//! current again, and from the moment it says 200 the index follows records written by others.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use osapi_tests::{admin_token, request_as, wait_until, Api, Cluster, ExtraConfig, Options};

const ACK_WAIT_S: u64 = 2;
const TIMEOUT_S: u64 = 2;

fn get(base_url: &str, path: &str) -> (u16, Value) {
    let resp = request_as(Some(&admin_token()), base_url, "GET", path, None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (resp.status, resp.body)
}

#[test]
fn a_worker_killed_for_good_leaves_its_job_failed_worker_lost() {
    // The API reads the workers' consumer settings from the shared config: give both the short ack_wait.
    let extra = ExtraConfig {
        job_worker_yaml: vec![(
            "consumer".into(),
            format!("{{ ack_wait: '{ACK_WAIT_S}s', back_off: [] }}"),
        )],
        ..ExtraConfig::default()
    };
    let mut cluster = Cluster::start_extra(&[("doomed", &[], 2)], &Options::default(), &extra);
    let submitted = Instant::now();
    let id = cluster.submit(json!({
        "operation": { "type": "test.sleep.do", "data": { "seconds": 120 } },
        "target_hostname": "doomed",
        "timeout": format!("{TIMEOUT_S}s"),
    }));
    wait_until("the job to run on doomed", Duration::from_secs(10), || {
        cluster.job(&id)["worker_states"]["doomed"]["status"] == "running"
    });
    cluster.worker("doomed").kill();

    let bound = Duration::from_secs(TIMEOUT_S + ACK_WAIT_S);
    let mut job = Value::Null;
    wait_until(
        "the killed worker's job to fail",
        bound + Duration::from_secs(3),
        || {
            job = cluster.job(&id);
            job["status"] == "failed"
        },
    );
    assert!(
        submitted.elapsed() >= bound,
        "not before timeout + ack_wait: a live worker may still be running it"
    );
    assert_eq!(
        job["worker_states"]["doomed"]["error"], "worker lost",
        "{job:#}"
    );
    assert_eq!(job["error"], "worker lost", "{job:#}");
    // The index files it under the same status as the view shows.
    let (status, failed) = get(&cluster.api.base_url(), "/job?status=failed");
    assert_eq!(status, 200);
    assert_eq!(failed["items"][0]["id"], id.as_str(), "{failed:#}");
    let (_, running) = get(&cluster.api.base_url(), "/job?status=running");
    assert_eq!(running["total_items"], 0, "{running:#}");
}

#[test]
fn a_live_workers_long_job_is_never_called_lost() {
    let extra = ExtraConfig {
        job_worker_yaml: vec![("consumer".into(), "{ ack_wait: '1s', back_off: [] }".into())],
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[("busy", &[], 1)], &Options::default(), &extra);
    // Runs 4 s: past its 1 s timeout plus the 1 s ack_wait twice over.
    let id = cluster.submit(json!({
        "operation": { "type": "test.sleep.do", "data": { "seconds": 4 } },
        "target_hostname": "busy",
        "timeout": "1s",
    }));
    let start = Instant::now();
    loop {
        let job = cluster.job(&id);
        match job["status"].as_str() {
            Some("completed") => break,
            Some("pending" | "running") => {}
            _ => panic!("a live worker's job must not fail: {job:#}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not done: {job:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let job = cluster.job(&id);
    assert_eq!(job["worker_states"]["busy"]["attempts"], 1, "{job:#}");
}

#[test]
fn after_nats_loses_the_watch_ready_is_honest_and_the_index_catches_up() {
    let mut cluster = Cluster::start(&[("w1", &[], 2)]);
    let first = cluster.run_job("test.ping.do", json!({}), "w1");
    assert_eq!(first["status"], "completed");
    // A second API on the same NATS writes records the first one only learns through its watch.
    let other = Api::start(&cluster.nats.url(), &Options::default());
    let base_url = cluster.api.base_url();

    cluster.nats.stop();
    wait_until(
        "ready to say 503 while NATS is down",
        Duration::from_secs(5),
        || get(&base_url, "/health/ready").0 == 503,
    );
    // A restart loses the watch's consumer (ephemeral, in memory).
    cluster.nats.restart();
    wait_until("ready to say 200 again", Duration::from_secs(30), || {
        get(&base_url, "/health/ready").0 == 200
    });
    assert!(
        cluster.api.log_tail().contains("re-creating it"),
        "the lost watch was re-created:\n{}",
        cluster.api.log_tail()
    );

    // Ready means current: a job another API submits now shows in this API's index at once.
    let mut id = None;
    wait_until(
        "the other API to take a job",
        Duration::from_secs(20),
        || {
            let body = json!({ "operation": { "type": "test.ping.do" }, "target_hostname": "w1" });
            let resp = request_as(
                Some(&admin_token()),
                &other.base_url(),
                "POST",
                "/job",
                Some(&body.to_string()),
            );
            id = resp
                .ok()
                .filter(|r| r.status == 201)
                .and_then(|r| r.body["job_id"].as_str().map(String::from));
            id.is_some()
        },
    );
    let id = id.unwrap_or_default();
    wait_until(
        "this API's index to count the other API's job completed",
        Duration::from_secs(3),
        || {
            let (_, page) = get(&base_url, "/job?status=completed");
            page["total_items"] == 2 && page["items"][0]["id"] == id.as_str()
        },
    );
    let (_, stats) = get(&base_url, "/job/status");
    assert_eq!(stats["total_jobs"], 2, "{stats:#}");
}
