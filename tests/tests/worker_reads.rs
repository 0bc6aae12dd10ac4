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

/// The API sends a job's record and its notification at once, and nats-server may store the
/// notification first: a worker that finds no record for a fresh notification reads again. Here the
/// record comes 150 ms after the notification (a genuine, signed job): the worker still runs it.
#[test]
fn a_notification_that_comes_before_its_record_is_run_once_the_record_is_there() {
    use osapi_common::job::{JobDef, Operation};
    use osapi_common::names::keys;
    use osapi_common::trust;
    use osapi_tests::{Attacker, Options, JOB_KEY};

    let options = Options::default();
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let nats = Attacker::connect(&cluster.nats.url(), &options.namespace, Default::default())
        .expect("connects");
    let id = uuid::Uuid::new_v4().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let mut def = JobDef {
        id: id.clone(),
        operation: Operation {
            op_type: "test.echo.do".parse().expect("an operation"),
            data: json!({"late": true}),
        },
        target_hostname: "web1".into(),
        expected_hosts: vec![],
        created: osapi_common::timefmt::format_micros(now),
        created_us: now,
        timeout_ms: 60_000,
        retry_of: None,
        submitted_by: "admin".into(),
        signature: None,
    };
    let key = trust::signing_key_from_pem(JOB_KEY).expect("the test key");
    def.signature = Some(trust::sign(&def, &key));
    nats.notify(&id, "test.echo.do", "web1")
        .expect("the notification");
    std::thread::sleep(Duration::from_millis(150));
    let bytes = serde_json::to_vec(&def).unwrap_or_default();
    nats.bus
        .kv_create(&nats.names.bucket, &keys::job(&id), &bytes)
        .expect("the record, late");
    let done = cluster.wait_job(&id, Duration::from_secs(20));
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["responses"]["web1"]["data"]["late"], true, "{done:#}");
}
