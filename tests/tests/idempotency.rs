//! `Idempotency-Key` on POST /job and POST /job/{id}/retry, against a real nats-server and the real API:
//! replays give the first answer and create nothing, another body is 422, keys are per user, a refused
//! request leaves the key free, and requests racing with one key create one job.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{admin_token, claims, request_with, sign, Cluster, Response, SIGNING_KEY};

fn post(cluster: &Cluster, token: &str, path: &str, body: Option<&str>, key: &str) -> Response {
    request_with(
        Some(token),
        &cluster.api.base_url(),
        "POST",
        path,
        body,
        &[("Idempotency-Key", key)],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn total_jobs(cluster: &Cluster) -> u64 {
    let list = cluster.http("GET", "/job?limit=1", None);
    assert_eq!(list.status, 200, "{}", list.text);
    list.body["total_items"].as_u64().expect("total_items")
}

fn one_worker() -> Cluster {
    Cluster::start(&[("web1", &[("group", "web")], 2)])
}

#[test]
fn a_replay_returns_the_first_answer_and_creates_nothing() {
    let cluster = one_worker();
    let admin = admin_token();
    let body = r#"{"operation":{"type":"test.echo.do","data":{"a":1,"b":[1,2]}},"target_hostname":"_any"}"#;
    let first = post(&cluster, &admin, "/job", Some(body), "key-1");
    assert_eq!(first.status, 201, "{}", first.text);
    let id = first.body["job_id"].as_str().expect("job_id").to_string();

    // The same request, spelled differently (key order, spacing), is the same request.
    let respelled = r#"{ "target_hostname": "_any", "operation": {"data": {"b": [1, 2], "a": 1}, "type": "test.echo.do"} }"#;
    for again in [body, respelled] {
        let replay = post(&cluster, &admin, "/job", Some(again), "key-1");
        assert_eq!(replay.status, 201, "{}", replay.text);
        assert_eq!(replay.body, first.body, "a replay is the first answer");
    }
    cluster.wait_job(&id, Duration::from_secs(30));
    assert_eq!(total_jobs(&cluster), 1, "replays created nothing");

    // Another body under the same key is refused, and still creates nothing.
    let other = r#"{"operation":{"type":"test.echo.do","data":{"a":2}},"target_hostname":"_any"}"#;
    post(&cluster, &admin, "/job", Some(other), "key-1").assert_error(422);
    post(&cluster, &admin, &format!("/job/{id}/retry"), None, "key-1").assert_error(422);
    assert_eq!(total_jobs(&cluster), 1);

    // Keys are per user: another subject's "key-1" is its own.
    let mut c = claims(&["write"], None);
    c["sub"] = json!("someone-else");
    let theirs = post(
        &cluster,
        &sign(&c, SIGNING_KEY),
        "/job",
        Some(body),
        "key-1",
    );
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    assert_ne!(theirs.body["job_id"], first.body["job_id"]);
    assert_eq!(total_jobs(&cluster), 2);

    // Retry: replayed the same way; another target under the same key is 422.
    let retry_path = format!("/job/{id}/retry");
    let retried = post(&cluster, &admin, &retry_path, None, "retry-1");
    assert_eq!(retried.status, 201, "{}", retried.text);
    let replay = post(&cluster, &admin, &retry_path, None, "retry-1");
    assert_eq!(replay.body, retried.body);
    post(
        &cluster,
        &admin,
        &retry_path,
        Some(r#"{"target_hostname":"web1"}"#),
        "retry-1",
    )
    .assert_error(422);
    assert_eq!(total_jobs(&cluster), 3);
}

#[test]
fn bad_keys_are_400_and_a_refused_request_leaves_the_key_free() {
    let cluster = one_worker();
    let admin = admin_token();
    let ping = r#"{"operation":{"type":"test.ping.do"}}"#;
    for bad in ["k".repeat(256), "tab\tkey".to_string()] {
        let resp = post(&cluster, &admin, "/job", Some(ping), &bad);
        resp.assert_error(400);
        assert!(resp.text.contains("Idempotency-Key"), "{}", resp.text);
    }
    // A request the API refuses records nothing: the same key then serves a corrected request.
    let unknown = format!("/job/{}/retry", uuid_like());
    post(&cluster, &admin, &unknown, None, "fix-me").assert_error(404);
    post(
        &cluster,
        &admin,
        "/job",
        Some(r#"{"operation":{"type":"no.such.op"}}"#),
        "fix-me",
    )
    .assert_error(400);
    let ok = post(&cluster, &admin, "/job", Some(ping), "fix-me");
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(
        post(&cluster, &admin, "/job", Some(ping), "fix-me").body,
        ok.body
    );
    // Without the header nothing changes: two POSTs are two jobs.
    cluster.submit(json!({"operation": {"type": "test.ping.do"}}));
    cluster.submit(json!({"operation": {"type": "test.ping.do"}}));
    assert_eq!(total_jobs(&cluster), 3);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[test]
fn requests_racing_with_one_key_create_one_job() {
    let cluster = one_worker();
    let admin = admin_token();
    const ROUNDS: usize = 5;
    const RACERS: usize = 8;
    for round in 0..ROUNDS {
        let key = format!("race-{round}");
        let body = r#"{"operation":{"type":"test.ping.do"}}"#;
        let answers: Vec<Response> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..RACERS)
                .map(|_| s.spawn(|| post(&cluster, &admin, "/job", Some(body), &key)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("racer panicked"))
                .collect()
        });
        let created: Vec<&Value> = answers
            .iter()
            .filter(|r| r.status == 201)
            .map(|r| &r.body["job_id"])
            .collect();
        assert!(
            !created.is_empty(),
            "round {round}: nobody got a 201: {answers:?}"
        );
        assert!(
            created.iter().all(|id| *id == created[0]),
            "round {round}: one key, several jobs: {created:?}"
        );
        for r in answers.iter().filter(|r| r.status != 201) {
            r.assert_error(409);
        }
        assert_eq!(total_jobs(&cluster), round as u64 + 1, "round {round}");
    }
}
