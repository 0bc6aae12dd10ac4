//! Job collection endpoints: listing with filters and pagination, delete, retry, and statistics.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{parse_rfc3339_micros, Cluster};

const JOB_DEADLINE: Duration = Duration::from_secs(30);

fn ids_of(list: &Value) -> Vec<String> {
    let items = list["items"].as_array();
    let items = items.unwrap_or_else(|| panic!("items must be a list: {list:#}"));
    items
        .iter()
        .map(|job| {
            job["id"]
                .as_str()
                .expect("every item has an id")
                .to_string()
        })
        .collect()
}

fn list(cluster: &Cluster, query: &str) -> Value {
    let resp = cluster.http("GET", &format!("/job{query}"), None);
    assert_eq!(resp.status, 200, "GET /job{query} -> {}", resp.text);
    resp.body
}

#[test]
fn list_is_newest_first_with_limit_offset_and_status_filters() {
    let cluster = Cluster::start(&[("web1", &[("group", "web")], 4)]);
    let ids: Vec<String> = (0..12)
        .map(|_| cluster.create_job("test.ping.do", json!({}), "_any"))
        .collect();
    for id in &ids {
        cluster.wait_job(id, JOB_DEADLINE);
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let all = list(&cluster, "?limit=1000");
    assert_eq!(all["total_items"], 12, "{all:#}");
    assert_eq!(
        ids_of(&all),
        newest_first,
        "limit=1000 lists all 12, newest first"
    );
    let created: Vec<i64> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|job| {
            job["created"]
                .as_str()
                .and_then(parse_rfc3339_micros)
                .expect("created")
        })
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "created desc: {created:?}"
    );

    let default = list(&cluster, "");
    assert_eq!(ids_of(&default), newest_first[..10], "default limit is 10");
    assert_eq!(default["total_items"], 12, "{default:#}");

    let page = list(&cluster, "?limit=2");
    assert_eq!(ids_of(&page), newest_first[..2], "limit=2");
    assert_eq!(
        page["total_items"], 12,
        "total_items counts all matches: {page:#}"
    );
    assert_eq!(
        ids_of(&list(&cluster, "?limit=2&offset=2")),
        newest_first[2..4]
    );
    assert_eq!(
        ids_of(&list(&cluster, "?offset=10&limit=5")),
        newest_first[10..]
    );
    assert_eq!(ids_of(&list(&cluster, "?offset=50")), Vec::<String>::new());

    let done = list(&cluster, "?status=completed&limit=1000");
    assert_eq!(ids_of(&done), newest_first, "{done:#}");
    let failed = list(&cluster, "?status=failed");
    assert_eq!(failed["total_items"], 0, "{failed:#}");
    assert_eq!(ids_of(&failed), Vec::<String>::new());
    // OSAPI's names are aliases: submitted = pending, processing = running.
    for (asked, meant) in [
        ("pending", "pending"),
        ("submitted", "pending"),
        ("running", "running"),
        ("processing", "running"),
        ("partial_failure", "partial_failure"),
    ] {
        let filtered = list(&cluster, &format!("?status={asked}"));
        for job in filtered["items"].as_array().expect("items") {
            assert_eq!(job["status"], meant, "status={asked}: {filtered:#}");
        }
    }
}

#[test]
fn list_rejects_bad_query_values() {
    let cluster = Cluster::start(&[]);
    for query in [
        "?status=bogus",
        "?limit=-1",
        "?limit=abc",
        "?offset=-1",
        "?offset=abc",
    ] {
        let resp = cluster.http("GET", &format!("/job{query}"), None);
        resp.assert_error(400);
    }
}

#[test]
fn delete_removes_a_job() {
    let cluster = Cluster::fleet();
    let id = cluster.create_job("test.ping.do", json!({}), "web1");
    cluster.wait_job(&id, JOB_DEADLINE);
    let keep = cluster.create_job("test.ping.do", json!({}), "web1");

    let resp = cluster.http("DELETE", &format!("/job/{id}"), None);
    assert_eq!(resp.status, 204, "DELETE /job/{id} -> {}", resp.text);
    cluster
        .http("GET", &format!("/job/{id}"), None)
        .assert_error(404);
    cluster
        .http("DELETE", &format!("/job/{id}"), None)
        .assert_error(404);

    let all = list(&cluster, "?limit=1000");
    assert_eq!(
        ids_of(&all),
        vec![keep.clone()],
        "only the other job is left: {all:#}"
    );
    cluster.wait_job(&keep, JOB_DEADLINE);
}

#[test]
fn retry_creates_a_new_job_and_keeps_the_original() {
    let cluster = Cluster::fleet();
    let original = cluster.create_job("test.echo.do", json!({"n": 7}), "web1");
    cluster.wait_job(&original, JOB_DEADLINE);

    let resp = cluster.http("POST", &format!("/job/{original}/retry"), None);
    assert_eq!(resp.status, 201, "retry -> {}", resp.text);
    let retry = resp.body["job_id"]
        .as_str()
        .expect("retry answers a job_id")
        .to_string();
    assert_ne!(retry, original, "a retry is a new job");
    let job = cluster.wait_job(&retry, JOB_DEADLINE);
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["retry_of"], original.as_str(), "{job:#}");
    assert_eq!(
        job["target_hostname"], "web1",
        "same target by default: {job:#}"
    );
    assert_eq!(
        job["operation"],
        json!({"type": "test.echo.do", "data": {"n": 7}}),
        "{job:#}"
    );
    assert_eq!(job["result"], json!({"n": 7}), "{job:#}");

    let kept = cluster.job(&original);
    assert_eq!(
        kept["status"], "completed",
        "the original is kept: {kept:#}"
    );
    assert!(kept["retry_of"].is_null(), "{kept:#}");

    let body = json!({"target_hostname": "web2"});
    let resp = cluster.http("POST", &format!("/job/{original}/retry"), Some(body));
    assert_eq!(resp.status, 201, "retry to web2 -> {}", resp.text);
    let moved = resp.body["job_id"].as_str().expect("job_id").to_string();
    let job = cluster.wait_job(&moved, JOB_DEADLINE);
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["target_hostname"], "web2", "{job:#}");
    assert_eq!(job["retry_of"], original.as_str(), "{job:#}");
    let hosts: Vec<&String> = job["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .collect();
    assert_eq!(hosts, ["web2"], "{job:#}");
}

#[test]
fn retry_of_unknown_or_malformed_ids() {
    let cluster = Cluster::start(&[]);
    let random = uuid::Uuid::new_v4();
    cluster
        .http("POST", &format!("/job/{random}/retry"), None)
        .assert_error(404);
    cluster
        .http("POST", "/job/not-a-uuid/retry", None)
        .assert_error(400);
    let resp = cluster.http("DELETE", &format!("/job/{random}"), None);
    resp.assert_error(404);
    cluster
        .http("DELETE", "/job/not-a-uuid", None)
        .assert_error(400);
}

#[test]
fn stats_count_jobs_by_status_and_operation() {
    let cluster = Cluster::fleet();
    for _ in 0..3 {
        cluster.run_job("test.ping.do", json!({}), "_any");
    }
    let failed = cluster.run_job("test.fail.do", json!({"message": "no"}), "db1");
    assert_eq!(failed["status"], "failed", "{failed:#}");

    let resp = cluster.http("GET", "/job/status", None);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let stats = &resp.body;
    assert_eq!(stats["total_jobs"], 4, "{stats:#}");
    assert_eq!(stats["status_counts"]["completed"], 3, "{stats:#}");
    assert_eq!(stats["status_counts"]["failed"], 1, "{stats:#}");
    assert_eq!(stats["operation_counts"]["test.ping.do"], 3, "{stats:#}");
    assert_eq!(stats["operation_counts"]["test.fail.do"], 1, "{stats:#}");
    assert!(
        stats["dlq_count"].is_u64(),
        "dlq_count must be a number: {stats:#}"
    );
}
