//! Signed jobs, from the attacker's side: a job written straight into NATS (no API, no token) runs nowhere;
//! a signed job changed after signing, or signed by a key the workers do not trust, is rejected with
//! `rejected: ...`; two trusted keys let the API's key rotate; a worker without a trusted key refuses to
//! start (unless `allow_unsigned_jobs`), and the API refuses to start without a signing key.

use osapi_tests::{command, wait_until, Attacker, Cluster, Options, Worker, FLEET, JOB_KEY_PUB};
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn attacker(cluster: &Cluster) -> Attacker {
    Attacker::connect(&cluster.nats.url(), "t1", Default::default()).expect("attacker connects")
}

/// A job record as the API would write it, but by nobody: no signature.
fn forged(target: &str) -> Value {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "operation": {"type": "test.echo.do", "data": {"pwned": true}},
        "target_hostname": target,
        "expected_hosts": [],
        "created": "2026-12-01T00:00:00.000000Z",
        "created_us": now_us,
        "timeout_ms": 60_000,
    })
}

/// Waits until every host of `hosts` has a failed state for job `id`, and returns the job detail.
fn wait_rejected(cluster: &Cluster, id: &str, hosts: &[&str]) -> Value {
    let mut detail = Value::Null;
    wait_until(&format!("job {id} failed on {hosts:?}"), DEADLINE, || {
        let resp = cluster.http("GET", &format!("/job/{id}"), None);
        detail = resp.body;
        hosts
            .iter()
            .all(|h| detail["worker_states"][h]["status"] == "failed")
    });
    detail
}

/// Nothing ran: every host failed with an error starting `prefix`, none started or answered with data.
fn assert_ran_nowhere(detail: &Value, hosts: &[&str], prefix: &str) {
    for h in hosts {
        let error = detail["worker_states"][h]["error"].as_str().unwrap_or("");
        assert!(error.starts_with(prefix), "{h}: {error}\n{detail:#}");
        assert!(detail["responses"][h]["data"].is_null(), "{detail:#}");
    }
    let started = detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["event"] == "started");
    assert!(!started, "a host started the job:\n{detail:#}");
}

#[test]
fn a_job_forged_over_nats_runs_nowhere() {
    let cluster = Cluster::fleet();
    let mallory = attacker(&cluster);
    let job = forged("_all");
    mallory.forge(&job).expect("forge");
    let id = job["id"].as_str().unwrap_or_default();
    let hosts = ["web1", "web2", "db1"];
    let detail = wait_rejected(&cluster, id, &hosts);
    assert_ran_nowhere(&detail, &hosts, "rejected: the job is not signed");
    assert_eq!(detail["status"], "failed", "{detail:#}");

    // A record no worker can read is refused too (the API does not list it: read the state itself).
    let mut garbled = forged("web1");
    garbled["timeout_ms"] = json!("soon");
    mallory.forge(&garbled).expect("forge");
    let id = garbled["id"].as_str().unwrap_or_default();
    let mut state = Value::Null;
    wait_until("web1 to refuse the unreadable job", DEADLINE, || {
        state = mallory.host_state(id, "web1");
        state["status"] == "failed"
    });
    let error = state["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("rejected: cannot read the job definition"),
        "{state:#}"
    );
}

#[test]
fn a_signed_job_changed_after_signing_is_rejected() {
    let cluster = Cluster::fleet();
    let mallory = attacker(&cluster);
    // A real job, signed by the API, copied under a new id and aimed at every host.
    let real = cluster.create_job("test.echo.do", json!({"x": 1}), "web1");
    cluster.wait_job(&real, DEADLINE);
    let mut copy = mallory.read_job(&real).expect("the real job's record");
    assert!(
        copy["signature"]["sig"].is_string(),
        "the API signs: {copy}"
    );
    assert_eq!(copy["submitted_by"], "tester");
    copy["id"] = json!(uuid::Uuid::new_v4().to_string());
    copy["target_hostname"] = json!("_all");
    mallory.forge(&copy).expect("forge");
    let id = copy["id"].as_str().unwrap_or_default();
    let hosts = ["web1", "web2", "db1"];
    let detail = wait_rejected(&cluster, id, &hosts);
    assert_ran_nowhere(&detail, &hosts, "rejected: bad signature");
}

#[test]
fn a_job_signed_by_an_untrusted_key_is_rejected() {
    let dir = std::env::temp_dir().join(format!("osapi-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("rogue.key");
    let made = command("osapi")
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .expect("osapi keys generate");
    assert!(made.status.success(), "{made:?}");
    let options = Options {
        job_key: std::fs::read_to_string(&key).expect("rogue key"),
        ..Options::default()
    };
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::start_with(&FLEET[..1], &options);
    let id = cluster.create_job("test.echo.do", json!({}), "web1");
    let detail = wait_rejected(&cluster, &id, &["web1"]);
    assert_ran_nowhere(&detail, &["web1"], "rejected: signed by key ");
    let error = detail["error"].as_str().unwrap_or("");
    assert!(
        error.contains("which this worker does not trust"),
        "{detail:#}"
    );
}

#[test]
fn two_trusted_keys_rotate_without_downtime() {
    let new_key = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDshccTHng9U2Jf65LN56YVzwJGCvayGkeYw2PEpOloC
-----END PRIVATE KEY-----
";
    let new_pub = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAyKzgct1lpJ4QSr4/LOQIsCt+Pq7YXc8UQ21X9zXf03k=
-----END PUBLIC KEY-----
";
    let both = Options {
        trusted_job_keys: vec![JOB_KEY_PUB.to_string(), new_pub.to_string()],
        ..Options::default()
    };
    // The API signs with the old key; the workers already trust both.
    let mut cluster = Cluster::start_with(&FLEET[..1], &both);
    let old = cluster.run_job("test.echo.do", json!({"k": "old"}), "web1");
    assert_eq!(old["status"], "completed", "{old:#}");
    // The API restarts with the new key: jobs keep running, nothing restarted on the hosts.
    cluster.api.kill();
    let rotated = Options {
        job_key: new_key.to_string(),
        ..both
    };
    cluster.api = osapi_tests::Api::start(&cluster.nats.url(), &rotated);
    let new = cluster.run_job("test.echo.do", json!({"k": "new"}), "web1");
    assert_eq!(new["status"], "completed", "{new:#}");
    assert_eq!(new["result"], json!({"k": "new"}), "{new:#}");
}

#[test]
fn a_worker_without_a_trusted_key_refuses_to_start_unless_told_otherwise() {
    let cluster = Cluster::start(&[]);
    let keyless = Options {
        trusted_job_keys: Vec::new(),
        ..Options::default()
    };
    let mut worker = Worker::start(&cluster.nats.url(), "web9", &[], 1, &keyless);
    wait_until("the keyless worker to exit", DEADLINE, || {
        worker.exited().is_some()
    });
    let status = worker.exited().expect("exited");
    assert!(!status.success(), "{status}");
    assert!(
        worker
            .log_tail()
            .contains("job.worker.trusted_job_keys is empty"),
        "{}",
        worker.log_tail()
    );

    // Development mode: runs unsigned jobs, and says so at start and on every job.
    let open = Options {
        worker_yaml: vec![("allow_unsigned_jobs".into(), "true".into())],
        ..keyless
    };
    let _dev = Worker::start(&cluster.nats.url(), "dev1", &[], 1, &open);
    let job = forged("dev1");
    attacker(&cluster).forge(&job).expect("forge");
    let id = job["id"].as_str().unwrap_or_default();
    let done = cluster.wait_job(id, DEADLINE);
    assert_eq!(done["status"], "completed", "{done:#}");
    let log = _dev.log_tail();
    assert!(log.contains("allow_unsigned_jobs is on"), "{log}");
    assert!(
        log.contains(&format!("job {id} on dev1: NOT VERIFIED")),
        "{log}"
    );
}

#[test]
fn the_api_refuses_to_start_without_a_job_signing_key() {
    let dir = std::env::temp_dir().join(format!("osapi-nokey-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("api.yaml");
    std::fs::write(
        &config,
        "nats: {url: 'nats://127.0.0.1:9'}\napi: {server: {security: {signing_key: a-key-of-at-least-32-bytes-for-hs256}}}\n",
    )
    .expect("config");
    let out = command("osapi-api")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run osapi-api");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("api.server.security.job_signing_key_file is empty"),
        "{stderr}"
    );
}

#[test]
fn a_worker_whose_config_holds_an_api_secret_warns() {
    let cluster = Cluster::start(&[]);
    let dir = std::env::temp_dir().join(format!("osapi-shared-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let public = dir.join("job.key.pub");
    std::fs::write(&public, JOB_KEY_PUB).expect("public key");
    // One file for both daemons, as a careless install would have it.
    let config = dir.join("shared.yaml");
    std::fs::write(
        &config,
        format!(
            "nats: {{url: '{}', namespace: t1}}\napi: {{server: {{security: {{signing_key: a-jwt-key-the-worker-should-not-hold, job_signing_key_file: /etc/osapi/job.key}}}}}}\njob: {{worker: {{hostname: shared1, heartbeat: 500ms, trusted_job_keys: ['{}']}}}}\n",
            cluster.nats.url(),
            public.display()
        ),
    )
    .expect("config");
    let log_path = dir.join("worker.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = command("osapi-worker")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start osapi-worker");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("the worker to start", DEADLINE, || read().contains("ready"));
    let _ = child.kill();
    let _ = child.wait();
    let text = read();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        text.contains("holds api.server.security.signing_key")
            && text.contains("a worker needs none"),
        "{text}"
    );
    assert!(
        text.contains("names api.server.security.job_signing_key_file"),
        "{text}"
    );
}
