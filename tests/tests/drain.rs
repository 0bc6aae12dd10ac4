//! Drain and undrain against a real nats-server and the real binaries: a draining worker finishes its
//! job and takes nothing new (its own jobs wait, `_any` jobs go to the other worker), then shows
//! `cordoned`; undrain runs the waiting jobs; the state survives a restart and outlives `nats.kv.ttl`
//! (a host down longer than the TTL comes back still drained); only admin may do it.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{token, wait_until, Attacker, Cluster, ExtraConfig, Options, Worker};

const DEADLINE: Duration = Duration::from_secs(30);

fn worker(cluster: &Cluster, host: &str) -> Value {
    let body = cluster.http("GET", "/job/workers", None).body;
    body["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["hostname"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

fn post(cluster: &Cluster, path: &str) -> Value {
    let resp = cluster.http("POST", path, None);
    assert_eq!(resp.status, 200, "POST {path}: {}", resp.text);
    resp.body
}

#[test]
fn a_drained_worker_finishes_takes_nothing_new_then_resumes() {
    let cluster = Cluster::start(&[("web1", &[], 2), ("web2", &[], 2)]);
    let long = cluster.create_job("test.sleep.do", json!({"seconds": 2}), "web1");
    wait_until("the sleep to run", DEADLINE, || {
        cluster.job(&long)["status"] == "running"
    });
    let answer = post(&cluster, "/job/workers/web1/drain");
    assert_eq!(answer["state"], "draining", "{answer:#}");
    assert_eq!(answer["timeline"][0]["event"], "drain");
    assert_eq!(answer["timeline"][0]["by"], "tester");
    wait_until("web1 to show draining", DEADLINE, || {
        worker(&cluster, "web1")["state"] == "draining"
    });

    let waiting = cluster.create_job("test.ping.do", json!({}), "web1");
    for _ in 0..4 {
        let any = cluster.run_job("system.hostname.get", json!({}), "_any");
        assert_eq!(any["status"], "completed", "{any:#}");
        assert_eq!(
            any["hostname"], "web2",
            "_any jobs go to the ready worker: {any:#}"
        );
    }
    assert_eq!(
        cluster.wait_job(&long, DEADLINE)["status"],
        "completed",
        "the running job finishes"
    );
    wait_until("web1 to show cordoned", DEADLINE, || {
        worker(&cluster, "web1")["state"] == "cordoned"
    });
    assert_eq!(
        cluster.job(&waiting)["status"],
        "pending",
        "its own job waits"
    );

    let answer = post(&cluster, "/job/workers/web1/undrain");
    assert_eq!(answer["state"], "ready", "{answer:#}");
    let done = cluster.wait_job(&waiting, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");
    wait_until("web1 to show ready", DEADLINE, || {
        worker(&cluster, "web1")["state"] == "ready"
    });
    let events: Vec<(String, String)> = worker(&cluster, "web1")["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").into(),
                e["by"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want = [
        ("drain", "tester"),
        ("cordoned", "web1"),
        ("undrain", "tester"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(e, b)| (e.to_string(), b.to_string()))
        .collect();
    assert_eq!(events, want);
}

#[test]
fn the_drain_survives_a_restart_and_only_admin_may_drain() {
    let mut cluster = Cluster::start(&[("web1", &[], 2)]);
    let writer = token(&["write"], None);
    cluster
        .http_as(Some(&writer), "POST", "/job/workers/web1/drain", None)
        .assert_error(403);
    cluster
        .http("POST", "/job/workers/nobody/drain", None)
        .assert_error(404);
    cluster
        .http("POST", "/job/workers/bad%20name/drain", None)
        .assert_error(400);
    cluster
        .http("GET", "/job/workers/web1/drain", None)
        .assert_error(405);
    post(&cluster, "/job/workers/web1/drain");
    wait_until("web1 to show cordoned", DEADLINE, || {
        worker(&cluster, "web1")["state"] == "cordoned"
    });

    let before = worker(&cluster, "web1")["started_at"].clone();
    let nats_url = cluster.nats.url();
    cluster
        .worker("web1")
        .restart(&nats_url, &Options::default());
    wait_until("a new web1 process, still cordoned", DEADLINE, || {
        let w = worker(&cluster, "web1");
        w["started_at"] != before && w["state"] == "cordoned"
    });
    let waiting = cluster.create_job("test.ping.do", json!({}), "web1");
    // Two more heartbeats of the new process: had it pulled, the ping would have run by then.
    for _ in 0..2 {
        let seen = worker(&cluster, "web1")["last_seen"].clone();
        wait_until("a heartbeat", DEADLINE, || {
            worker(&cluster, "web1")["last_seen"] != seen
        });
    }
    // A second drain changes nothing; an undrain lets the job run.
    let again = post(&cluster, "/job/workers/web1/drain");
    assert_eq!(
        again["timeline"].as_array().map(Vec::len),
        Some(2),
        "{again:#}"
    );
    assert_eq!(cluster.job(&waiting)["status"], "pending");
    post(&cluster, "/job/workers/web1/undrain");
    assert_eq!(cluster.wait_job(&waiting, DEADLINE)["status"], "completed");
}

/// The job and heartbeat TTL of the test below: short, so that a drain outliving it shows in seconds.
const SHORT_TTL: &str = "4s";

/// Waits until a record written now to the heartbeat bucket has expired: `nats.kv.ttl` has passed for
/// every record written before (the drain record too, had it still lived there).
fn wait_past_ttl(nats: &Attacker, what: &str) {
    let bucket = &nats.names.workers_bucket;
    let probe = "probe.ttl";
    nats.bus
        .kv_put(bucket, probe, b"{}")
        .expect("writing the TTL probe");
    wait_until(&format!("the TTL to pass {what}"), DEADLINE, || {
        matches!(nats.bus.kv_get(bucket, probe), Ok(None))
    });
}

/// `host` takes nothing: a job addressed to it is not run over two of its heartbeats.
fn takes_nothing(cluster: &Cluster, host: &str) {
    let waiting = cluster.create_job("test.ping.do", json!({}), host);
    for _ in 0..2 {
        let seen = worker(cluster, host)["last_seen"].clone();
        wait_until("a heartbeat", DEADLINE, || {
            worker(cluster, host)["last_seen"] != seen
        });
    }
    // The job itself may have expired meanwhile (the TTL is short); it must not have run.
    let status = cluster.job(&waiting)["status"].clone();
    assert!(
        status != "completed" && status != "running" && status != "failed",
        "a drained {host} ran a job: {status}"
    );
}

#[test]
fn a_drain_outlives_the_kv_ttl_while_running_and_across_a_long_downtime() {
    let extra = ExtraConfig {
        nats_yaml: vec![("kv".into(), format!("{{ ttl: {SHORT_TTL} }}"))],
        ..ExtraConfig::default()
    };
    let options = Options::default();
    let mut cluster = Cluster::start_extra(&[("web1", &[], 1)], &options, &extra);
    let nats = Attacker::connect(&cluster.nats.url(), &options.namespace, Default::default())
        .expect("a NATS client connects");
    post(&cluster, "/job/workers/web1/drain");
    wait_until("web1 to show cordoned", DEADLINE, || {
        worker(&cluster, "web1")["state"] == "cordoned"
    });

    // Running past the TTL: the record is still there and the worker still takes nothing.
    wait_past_ttl(&nats, "with web1 running");
    let record = nats
        .bus
        .kv_get(&nats.names.drain_bucket, "drain.web1")
        .expect("reading the drain record")
        .expect("the drain record outlives the TTL");
    let record: Value = serde_json::from_slice(&record.value).expect("a JSON drain record");
    assert_eq!(record["drain"], true, "{record:#}");
    takes_nothing(&cluster, "web1");
    assert_eq!(worker(&cluster, "web1")["state"], "cordoned");

    // Down longer than the TTL (its heartbeat expires too), then back: still drained.
    let before = worker(&cluster, "web1")["started_at"].clone();
    cluster.worker("web1").kill();
    wait_past_ttl(&nats, "with web1 down");
    let nats_url = cluster.nats.url();
    *cluster.worker("web1") = Worker::start_extra(&nats_url, "web1", &[], 1, &options, &extra);
    wait_until("a new web1 process, still cordoned", DEADLINE, || {
        let w = worker(&cluster, "web1");
        w["started_at"] != before && w["state"] == "cordoned"
    });
    takes_nothing(&cluster, "web1");
    let events: Vec<Value> = worker(&cluster, "web1")["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(
        events,
        [json!("drain"), json!("cordoned")],
        "the timeline is kept"
    );

    // Only undrain ends it.
    post(&cluster, "/job/workers/web1/undrain");
    let done = cluster.run_job("test.ping.do", json!({}), "web1");
    assert_eq!(done["status"], "completed", "{done:#}");
}
