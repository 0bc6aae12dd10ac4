//! On record: every job names who submitted it, and the audit stream holds an entry for each request that
//! changed something (create, retry, delete) and for each 401 and 403; `GET /audit` is for `admin` only;
//! `osapi audit list|export` read it.

use osapi_tests::{admin_token, command, request_as, token, wait_until, Cluster, FLEET};
use serde_json::{json, Value};
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
