//! On record: every job names who submitted it, and the audit stream holds an entry for each request that
//! changed something (create, retry, delete) and for each 401 and 403; `GET /audit` is for `admin` only;
//! `osapi audit list|export` read it. Anyone can make entries, so a flood of them while NATS is frozen
//! neither holds the API nor grows the stream past `audit.max_bytes`.

use osapi_common::names::Names;
use osapi_tests::{
    admin_token, command, request, request_as, token, wait_until, Cluster, ExtraConfig, NatsServer,
    Options, FLEET,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

/// The newest entries of the trail, as the admin sees them.
fn audit(cluster: &Cluster) -> Value {
    let resp = cluster.http("GET", "/audit?limit=1000", None);
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body
}

/// Waits until an entry matches `want` (every field of `want` equal) and returns it.
fn wait_entry(cluster: &Cluster, want: &Value) -> Value {
    let mut found = Value::Null;
    wait_until(&format!("an audit entry like {want}"), DEADLINE, || {
        let body = audit(cluster);
        let hit = body["items"].as_array().into_iter().flatten().find(|e| {
            want.as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| &e[k] == v)
        });
        found = hit.cloned().unwrap_or(Value::Null);
        hit.is_some()
    });
    found
}

#[test]
fn changes_and_refusals_are_on_record_with_who_and_which_job() {
    let cluster = Cluster::start(&FLEET[..1]);
    let id = cluster.create_job("test.echo.do", json!({"a": 1}), "web1");
    let done = cluster.wait_job(&id, DEADLINE);
    assert_eq!(done["submitted_by"], "tester", "{done:#}");
    assert_eq!(
        done["timeline"][0]["message"], "job submitted by tester for target web1",
        "{done:#}"
    );
    let created = wait_entry(
        &cluster,
        &json!({"method": "POST", "path": "/job", "code": 201, "job_id": id}),
    );
    assert_eq!(created["user"], "tester", "{created}");
    assert_eq!(created["roles"], json!(["admin"]), "{created}");
    assert!(
        created["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{created}"
    );
    assert!(created["duration_ms"].is_u64(), "{created}");
    assert!(created["timestamp"].is_string() && created["id"].is_string());

    let retry = cluster.http("POST", &format!("/job/{id}/retry"), None);
    assert_eq!(retry.status, 201, "{}", retry.text);
    let new_id = retry.body["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_entry(
        &cluster,
        &json!({"method": "POST", "path": format!("/job/{id}/retry"), "code": 201, "job_id": new_id}),
    );
    let deleted = cluster.http("DELETE", &format!("/job/{id}"), None);
    assert_eq!(deleted.status, 204);
    wait_entry(
        &cluster,
        &json!({"method": "DELETE", "path": format!("/job/{id}"), "code": 204, "job_id": id, "user": "tester"}),
    );

    // No token: 401, on record without a user.
    let base = cluster.api.base_url();
    let anonymous = request_as(None, &base, "GET", "/job", None).expect("answer");
    assert_eq!(anonymous.status, 401);
    wait_entry(
        &cluster,
        &json!({"method": "GET", "path": "/job", "code": 401, "user": ""}),
    );
    // A read token may not read the trail: 403, itself on record.
    let reader = token(&["read"], None);
    let refused = request_as(Some(&reader), &base, "GET", "/audit", None).expect("answer");
    assert_eq!(refused.status, 403, "{}", refused.text);
    wait_entry(
        &cluster,
        &json!({"method": "GET", "path": "/audit", "code": 403, "roles": ["read"]}),
    );
    let writer = token(&["write"], None);
    let also = request_as(Some(&writer), &base, "GET", "/audit", None).expect("answer");
    assert_eq!(also.status, 403, "{}", also.text);
    // Entries are written after the answer, by another thread: wait for this one too before counting.
    wait_entry(
        &cluster,
        &json!({"method": "GET", "path": "/audit", "code": 403, "roles": ["write"]}),
    );

    // Reading is not on record; newest first; paging.
    let body = audit(&cluster);
    let items = body["items"].as_array().cloned().unwrap_or_default();
    assert!(items
        .iter()
        .all(|e| !(e["method"] == "GET" && e["code"] == 200)));
    let stamps: Vec<&str> = items
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");
    let total = body["total_items"].as_u64().unwrap_or(0);
    assert!(total >= 6, "{body:#}");
    let second = cluster.http("GET", "/audit?limit=1&offset=1", None);
    assert_eq!(second.body["items"][0], items[1], "{}", second.text);
    assert_eq!(second.body["total_items"], json!(total));
    let bad = cluster.http("GET", "/audit?limit=5000", None);
    bad.assert_error(400);
}

#[test]
fn the_cli_lists_and_exports_the_trail() {
    let cluster = Cluster::start(&[]);
    for n in 0..3 {
        cluster.http("DELETE", &format!("/job/{}", uuid::Uuid::new_v4()), None);
        wait_until("the deletes on record", DEADLINE, || {
            audit(&cluster)["total_items"].as_u64() == Some(n + 1)
        });
    }
    let dir = std::env::temp_dir().join(format!("osapi-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("empty.yaml");
    std::fs::write(&config, "").expect("config");
    let out = dir.join("audit.jsonl");
    let osapi = |args: &[&str], token: &str| {
        command("osapi")
            .env("OSAPI_URL", cluster.api.base_url())
            .env("OSAPI_TOKEN", token)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run osapi")
    };
    let admin = admin_token();
    let listed = osapi(&["audit", "list", "--limit", "2"], &admin);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        text.contains("DELETE /job/") && text.contains("2 of 3 entries"),
        "{text}"
    );

    let out_arg = out.display().to_string();
    let exported = osapi(&["audit", "export", "--out", &out_arg], &admin);
    assert!(exported.status.success(), "{exported:?}");
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let stamps: Vec<&str> = lines
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {stamps:?}"
    );

    let reader = token(&["read"], None);
    let refused = osapi(&["audit", "list"], &reader);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `audit.max_bytes` of the flood test: small, so the flood overruns it many times.
const AUDIT_MAX_BYTES: u64 = 65_536;
const FLOOD: usize = 2_000;
/// Clients of the flood, each sending its share one request after another: fewer than the API's 32
/// handlers plus its queue of 256, so no flood request is ever turned away with a 503.
const FLOOD_CONNECTIONS: usize = 250;

/// What the AUDIT stream of the test's namespace holds: `(bytes, first_seq)`, read as an operator would.
fn audit_stream_state(nats: &NatsServer) -> (u64, u64) {
    let bus = nats.bus("audit test");
    let names = Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker");
    let info = bus
        .js_api(&format!("STREAM.INFO.{}", names.audit_stream()), &json!({}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        info["config"]["max_bytes"],
        json!(AUDIT_MAX_BYTES),
        "{info}"
    );
    assert_eq!(info["config"]["discard"], "old", "{info}");
    let num = |field: &str| info["state"][field].as_u64().unwrap_or(0);
    (num("bytes"), num("first_seq"))
}

/// Polls `condition` until it holds or `deadline` passes; whether it held.
fn wait_for(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A route that needs a token, a different path each time: `/job/{uuid}/retry` (`n` picks the uuid).
fn retry_path(n: usize) -> String {
    format!("/job/00000000-0000-4000-8000-{n:012}/retry")
}

fn paths(cluster: &Cluster) -> Vec<String> {
    audit(cluster)["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_flood_of_refused_requests_while_nats_is_frozen_neither_holds_the_api_nor_grows_the_trail() {
    let extra = ExtraConfig {
        audit_yaml: vec![("max_bytes".into(), AUDIT_MAX_BYTES.to_string())],
        nats_yaml: vec![("request_timeout".into(), "'5s'".into())],
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[], &Options::default(), &extra);
    let base = cluster.api.base_url();

    // NATS answers nothing: every audit write waits nats.request_timeout (5 s). Were they written on
    // the handler threads, the 32 handlers would answer some 6 requests a second, and the API's queue
    // would hold the flood's 250 connections for half a minute ahead of anyone else.
    let answered = AtomicUsize::new(0);
    let codes: Vec<u16> = std::thread::scope(|s| {
        // Inside the scope: a failed assertion resumes NATS before the scope waits for the flood.
        let _paused = cluster.nats.paused();
        let workers: Vec<_> = (0..FLOOD_CONNECTIONS)
            .map(|t| {
                let (base, answered) = (&base, &answered);
                s.spawn(move || {
                    (t..FLOOD)
                        .step_by(FLOOD_CONNECTIONS)
                        .map(|n| {
                            let code =
                                request(base, "POST", &retry_path(n), None).map_or(0, |r| r.status);
                            answered.fetch_add(1, Ordering::SeqCst);
                            code
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        // In the middle of the flood, NATS still frozen: /health is answered within the client's
        // timeout (10 s), from a free handler.
        wait_until("half the flood answered", DEADLINE, || {
            answered.load(Ordering::SeqCst) >= FLOOD / 2
        });
        let health = request(&base, "GET", "/health", None).expect("an answer to /health");
        assert_eq!(health.status, 200, "{}", health.text);
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("flood thread"))
            .collect()
    });
    assert_eq!(codes.len(), FLOOD);
    let not_401: Vec<&u16> = codes.iter().filter(|c| **c != 401).collect();
    assert!(
        not_401.is_empty(),
        "every no-token POST is a 401: {not_401:?}"
    );
    assert!(
        cluster.api.log_tail().contains("audit entries dropped"),
        "the drops are logged:\n{}",
        cluster.api.log_tail()
    );

    // Once the queue has room again, a request is on record: one sentinel per look until one shows.
    let mut sent = 0;
    wait_until("a request after the flood on record", DEADLINE, || {
        request(&base, "POST", &retry_path(FLOOD + sent), None).expect("answer");
        sent += 1;
        let after: Vec<String> = (FLOOD..FLOOD + sent).map(retry_path).collect();
        paths(&cluster).iter().any(|p| after.contains(p))
    });
    // A path of 4,000 bytes is stored cut and marked.
    let long = format!("/job/{}", "x".repeat(3_995));
    request(&base, "POST", &long, None).expect("answer");
    let last: Vec<String> = (0..10).map(|k| retry_path(2 * FLOOD + k)).collect();
    for path in &last {
        let refused = request(&base, "POST", path, None).expect("answer");
        assert_eq!(refused.status, 401, "{}", refused.text);
    }
    // The newest entries are there. (As a set: each entry is queued after its answer went out, so two
    // requests in a row may go on record in either order.)
    let mut want: Vec<String> = last.clone();
    want.push(format!("{}...[truncated, 4000 bytes]", &long[..512]));
    want.sort();
    let mut seen = Vec::new();
    let found = wait_for(DEADLINE, || {
        seen = paths(&cluster);
        let mut newest: Vec<String> = seen.iter().take(want.len()).cloned().collect();
        newest.sort();
        newest == want
    });
    assert!(
        found,
        "want the newest entries {want:?}\ngot {:?}",
        &seen[..seen.len().min(12)]
    );
    let (bytes, first_seq) = audit_stream_state(&cluster.nats);
    assert!(
        bytes <= AUDIT_MAX_BYTES,
        "the stream holds {bytes} bytes, over audit.max_bytes"
    );
    assert!(first_seq > 1, "the oldest entries were discarded");
}
