//! What the API answers when NATS cannot take a job, against the real binaries and nats-server: a record
//! over KV's largest value is a 413 (not "try again later"); a full job stream or job bucket is a 503
//! "job store is full" with `Retry-After` and stores nothing, so every 201 is a job that runs (a refused
//! broadcast leaves no hosts' copy behind either); and a full job bucket does not hide the fleet
//! (heartbeats have their own bucket). And what the worker does when the bucket refuses a job's final
//! record: the job is delivered again, not acked, and completes once there is room.

use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::{wait_until, Attacker, Cluster, ExtraConfig, Options, Response};

fn nats_extra(key: &str, value: &str) -> ExtraConfig {
    ExtraConfig {
        nats_yaml: vec![(key.to_string(), value.to_string())],
        ..ExtraConfig::default()
    }
}

fn assert_store_full(resp: &Response) {
    resp.assert_error(503);
    assert!(
        resp.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("store is full")),
        "503 must say the store is full: {}",
        resp.text
    );
    let retry = resp
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s > 0),
        "a full store answers Retry-After: {:?}",
        resp.headers
    );
}

/// The notifications the job stream holds, read as an operator would, straight from NATS.
fn stored_notifications(cluster: &Cluster) -> u64 {
    let nats = Attacker::connect(
        &cluster.nats.url(),
        &Options::default().namespace,
        Default::default(),
    )
    .expect("connects");
    nats.bus
        .stream_messages(&nats.names.stream)
        .expect("the stream")
}

fn total_jobs(cluster: &Cluster) -> u64 {
    let resp = cluster.http("GET", "/job/status", None);
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body["total_jobs"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn a_record_larger_than_a_kv_value_is_413_and_creates_nothing() {
    // The data cap (api.server.max_job_data_bytes, 64 KiB by default) would refuse this first: raise it
    // to the body cap, so the KV value limit is what answers.
    let extra = ExtraConfig {
        api_server_yaml: vec![("max_job_data_bytes".into(), "1048576".into())],
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[], &Options::default(), &extra);
    // The body is under max_body_bytes (1 MiB) but the job record would not fit in one KV value.
    let data = "x".repeat(1024 * 1024 - 2048);
    let body =
        json!({ "operation": { "type": "test.echo.do", "data": { "blob": data } } }).to_string();
    assert!(
        body.len() < 1024 * 1024,
        "the body must be under the body cap"
    );
    let resp = cluster.http_raw("POST", "/job", Some(&body));
    resp.assert_error(413);
    assert!(
        !resp.text.contains("max_job_data_bytes"),
        "the KV limit answers, not the data cap: {}",
        resp.text
    );
    assert_eq!(
        total_jobs(&cluster),
        0,
        "a refused job leaves nothing behind"
    );
}

#[test]
fn a_full_stream_never_answers_201_for_a_job_that_does_not_run() {
    const SUBMISSIONS: usize = 300;
    const STREAM_MSGS: usize = 100;
    let extra = nats_extra("stream", &format!("{{ max_msgs: {STREAM_MSGS} }}"));
    let cluster = Cluster::start_extra(&[("w1", &[], 8)], &Options::default(), &extra);
    let body =
        json!({ "operation": { "type": "test.ping.do" }, "target_hostname": "_any" }).to_string();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..SUBMISSIONS {
        let resp = cluster.http_raw("POST", "/job", Some(&body));
        match resp.status {
            201 => accepted.push(resp.body["job_id"].as_str().unwrap_or("?").to_string()),
            _ => {
                assert_store_full(&resp);
                refused += 1;
            }
        }
    }
    assert!(
        accepted.len() <= STREAM_MSGS,
        "{} accepted by a stream of {STREAM_MSGS}",
        accepted.len()
    );
    assert!(
        refused > 0,
        "300 submissions into a stream of 100 must meet a full stream"
    );
    for id in &accepted {
        let job = cluster.wait_job(id, Duration::from_secs(60));
        assert_eq!(job["status"], "completed", "a 201 job must run: {job:#}");
    }
    assert_eq!(
        total_jobs(&cluster),
        accepted.len() as u64,
        "refused jobs were removed again"
    );
}

/// The `run.{id}` keys of the job bucket that hold a record (not a delete marker), read as an operator
/// would, straight from NATS.
fn live_run_copies(cluster: &Cluster) -> usize {
    let nats = Attacker::connect(&cluster.nats.url(), "t1", Default::default()).expect("connect");
    let bucket = &nats.names.bucket;
    let info = nats
        .bus
        .js_api(
            &format!("STREAM.INFO.KV_{bucket}"),
            &json!({ "subjects_filter": format!("$KV.{bucket}.run.>") }),
        )
        .expect("stream info");
    let subjects = info["state"]["subjects"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let prefix = format!("$KV.{bucket}.");
    subjects
        .keys()
        .filter_map(|s| s.strip_prefix(&prefix))
        .filter(|key| nats.bus.kv_get(bucket, key).ok().flatten().is_some())
        .count()
}

#[test]
fn a_broadcast_refused_by_a_full_stream_leaves_no_copy_for_its_hosts() {
    const STREAM_MSGS: usize = 10;
    let extra = nats_extra("stream", &format!("{{ max_msgs: {STREAM_MSGS} }}"));
    let cluster = Cluster::start_extra(&[("w1", &[], 2)], &Options::default(), &extra);
    let body =
        json!({ "operation": { "type": "test.ping.do" }, "target_hostname": "_all" }).to_string();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..3 * STREAM_MSGS {
        let resp = cluster.http_raw("POST", "/job", Some(&body));
        match resp.status {
            201 => accepted += 1,
            _ => {
                assert_store_full(&resp);
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "30 broadcasts into a stream of 10 meet a full stream"
    );
    assert_eq!(
        live_run_copies(&cluster),
        accepted,
        "one hosts' copy per accepted broadcast, none for a refused one"
    );
}

#[test]
fn a_full_job_bucket_is_503_store_full_and_the_fleet_stays_listed() {
    let extra = nats_extra("kv", "{ max_bytes: 65536 }");
    let fleet = [("w1", &[][..], 2), ("w2", &[][..], 2), ("w3", &[][..], 2)];
    let cluster = Cluster::start_extra(&fleet, &Options::default(), &extra);
    let body = json!({
        "operation": { "type": "test.echo.do", "data": { "pad": "p".repeat(4000) } },
        "target_hostname": "no-such-host",
    })
    .to_string();
    let (mut full, mut accepted) = (None, 0);
    for _ in 0..100 {
        let resp = cluster.http_raw("POST", "/job", Some(&body));
        if resp.status != 201 {
            full = Some(resp);
            break;
        }
        accepted += 1;
    }
    let full = full.unwrap_or_else(|| panic!("100 jobs of 4 KB never filled a 64 KiB bucket"));
    assert_store_full(&full);
    // The record and the notification are sent at once: a refused job's notification, stored all
    // the same (the stream had room), is taken back. The stream holds one per accepted job.
    for _ in 0..5 {
        assert_store_full(&cluster.http_raw("POST", "/job", Some(&body)));
    }
    let notifications = stored_notifications(&cluster);
    assert_eq!(
        notifications, accepted,
        "notifications of refused jobs stayed in the stream"
    );
    // Heartbeats go on in their own bucket: for six heartbeat periods every worker stays listed.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let mut listed = cluster.listed_workers();
        listed.sort();
        assert_eq!(listed, ["w1", "w2", "w3"], "a full job bucket hid workers");
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_until("/health/ready to stay 200", Duration::from_secs(5), || {
        cluster.http("GET", "/health/ready", None).status == 200
    });
}

#[test]
fn a_job_held_by_its_post_and_refused_by_a_full_bucket_is_503_at_once_and_leaves_nothing() {
    // `POST /job?wait=` sends the writes and sleeps until the job ends; a refused write must wake it
    // and be answered as a plain POST's is, not after the wait, with the notification taken back.
    let extra = nats_extra("kv", "{ max_bytes: 65536 }");
    let cluster = Cluster::start_extra(&[], &Options::default(), &extra);
    let body = json!({
        "operation": { "type": "test.echo.do", "data": { "pad": "p".repeat(4000) } },
        "target_hostname": "no-such-host",
    })
    .to_string();
    let mut accepted = 0;
    loop {
        let resp = cluster.http_raw("POST", "/job", Some(&body));
        if resp.status != 201 {
            assert_store_full(&resp);
            break;
        }
        accepted += 1;
        assert!(
            accepted < 100,
            "100 jobs of 4 KB never filled a 64 KiB bucket"
        );
    }
    for _ in 0..3 {
        let started = Instant::now();
        let held = cluster.http_raw("POST", "/job?wait=30s", Some(&body));
        assert_store_full(&held);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a refused job was held for its wait: {:?}",
            started.elapsed()
        );
    }
    let notifications = stored_notifications(&cluster);
    assert_eq!(
        notifications, accepted,
        "notifications of refused held jobs stayed in the stream"
    );
    assert_eq!(total_jobs(&cluster), accepted, "refused jobs left records");
}

/// A job whose final record (its answer) a full bucket refuses is not lost: the worker does not ack its
/// notification but has it delivered again a second later, and once the operator has made room the job
/// completes, with its answer.
#[test]
fn a_final_record_refused_by_a_full_bucket_is_written_once_there_is_room() {
    let mut extra = nats_extra("kv", "{ max_bytes: 65536 }");
    // Deliveries enough for the time the test takes to make room (one a second).
    extra.job_worker_yaml = vec![("consumer".into(), "{ max_deliver: 30 }".into())];
    let cluster = Cluster::start_extra(&[("w1", &[][..], 2)], &Options::default(), &extra);
    // 20 KB of another job first, so the 25 KB job fits in the 64 KiB bucket and its 25 KB answer
    // does not.
    let filler = json!({
        "operation": { "type": "test.echo.do", "data": { "pad": "f".repeat(20_000) } },
        "target_hostname": "no-such-host",
    });
    let resp = cluster.http("POST", "/job", Some(filler));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let pad = "p".repeat(25_000);
    let id = cluster.create_job("test.echo.do", json!({ "pad": pad }), "w1");
    wait_until(
        "the worker to find its final record refused",
        Duration::from_secs(20),
        || {
            cluster.workers[0]
                .log_tail()
                .contains("writing the completed state failed")
        },
    );
    let job = cluster.job(&id);
    assert_ne!(job["status"], "completed", "no answer was stored: {job:#}");

    // Room, as an operator makes it: a larger bucket.
    let nats = Attacker::connect(
        &cluster.nats.url(),
        &Options::default().namespace,
        Default::default(),
    )
    .expect("connects");
    let stream = format!("KV_{}", nats.names.bucket);
    let info = nats
        .bus
        .js_api(&format!("STREAM.INFO.{stream}"), &json!({}))
        .expect("the bucket's stream");
    let mut config = info["config"].clone();
    config["max_bytes"] = json!(1024 * 1024);
    nats.bus
        .js_api(&format!("STREAM.UPDATE.{stream}"), &config)
        .expect("the bucket grows");

    let done = cluster.wait_job(&id, Duration::from_secs(30));
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(
        done["responses"]["w1"]["data"]["pad"].as_str(),
        Some(pad.as_str()),
        "the answer is the one the job gave"
    );
}
