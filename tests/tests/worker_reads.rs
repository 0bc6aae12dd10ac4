//! How the worker reads a job: with one replica, by direct gets (`$JS.API.DIRECT.GET`, answered outside
//! the JetStream API queue), on nats-server 2.9 and 2.15 alike; jobs, redeliveries and cancels behave as
//! with `STREAM.MSG.GET` (tests/tests/cancel.rs, reliability_retries.rs run on the same path).

use std::time::Duration;

use serde_json::json;

use osapi_tests::{wait_until, Cluster};

#[test]
fn a_one_replica_bucket_is_read_with_direct_gets() {
    let mut cluster = Cluster::start(&[("web1", &[], 2)]);
    let done = cluster.run_job("test.ping.do", json!({}), "web1");
    assert_eq!(done["status"], "completed", "{done:#}");
    let worker = cluster.worker("web1");
    wait_until(
        "the worker to say how it reads",
        Duration::from_secs(10),
        || worker.log_tail().contains("with direct gets"),
    );
    assert!(
        !worker.log_tail().contains("with STREAM.MSG.GET"),
        "{}",
        worker.log_tail()
    );
}
