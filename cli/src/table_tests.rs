//! Layouts of the human output.

use super::*;
use serde_json::json;

#[test]
fn render_pads_columns_but_not_the_last() {
    let rows = vec![
        vec!["a".to_string(), "long value".to_string(), "x".to_string()],
        vec!["bbbb".to_string(), "v".to_string(), "".to_string()],
    ];
    let want = "\
H1    HEADER2     LAST
a     long value  x
bbbb  v
";
    assert_eq!(render(&["H1", "HEADER2", "LAST"], &rows), want);
    assert_eq!(render(&["ONLY"], &[]), "ONLY\n");
}

#[test]
fn job_list_table() {
    let body = json!({
        "total_items": 7,
        "items": [
            {"id": "id-1", "status": "completed", "operation": {"type": "test.ping.do", "data": {}},
             "target_hostname": "_any", "created": "2026-11-29T05:29:09.571171Z"},
            {"id": "id-22", "status": "partial_failure", "operation": {"type": "system.hostname.get"},
             "target_hostname": "group:web.dev", "created": "2026-11-29T05:30:00Z"},
        ],
    });
    let want = "\
ID     STATUS           OPERATION            TARGET         CREATED
id-1   completed        test.ping.do         _any           2026-11-29 05:29:09Z
id-22  partial_failure  system.hostname.get  group:web.dev  2026-11-29 05:30:00Z
(2 of 7 jobs)
";
    assert_eq!(job_list(&body), want);
    assert_eq!(
        job_list(&json!({"total_items": 0, "items": []})),
        "ID  STATUS  OPERATION  TARGET  CREATED\n(0 of 0 jobs)\n"
    );
}

#[test]
fn workers_table() {
    let now_us = parse_micros("2026-11-29T05:30:00Z").expect("time");
    let body = json!({"total": 2, "workers": [
        {"hostname": "web1", "labels": {"group": "web.dev", "zone": "a"}, "running": 2, "max_jobs": 10,
         "last_seen": "2026-11-29T05:29:57.5Z", "conditions": [
            {"type": "MemoryPressure", "status": true}, {"type": "HighLoad", "status": false},
            {"type": "DiskPressure", "status": true}]},
        {"hostname": "db1", "labels": {}, "running": 0, "max_jobs": 4, "last_seen": "2026-11-29T03:00:00Z"},
    ]});
    let want = "\
HOSTNAME  LABELS                RUNNING/MAX  LAST SEEN  CONDITIONS
web1      group=web.dev,zone=a  2/10         2s ago     MemoryPressure,DiskPressure
db1       -                     0/4          2h ago     -
(2 workers)
";
    assert_eq!(workers(&body, now_us), want);
}

#[test]
fn queue_status_counts() {
    let body = json!({
        "total_jobs": 3, "dlq_count": 1,
        "status_counts": {"completed": 2, "failed": 1, "partial_failure": 0, "pending": 0, "running": 0},
        "operation_counts": {"test.ping.do": 2, "test.fail.do": 1},
    });
    let want = "\
jobs: 3   dead letters: 1

STATUS           JOBS
pending          0
running          0
completed        2
failed           1
partial_failure  0

OPERATION     JOBS
test.fail.do  1
test.ping.do  2
";
    assert_eq!(queue_status(&body), want);
}

#[test]
fn job_detail_summary_hosts_and_results() {
    let job = json!({
        "id": "fb11", "status": "partial_failure", "created": "2026-11-29T05:29:09.571171Z",
        "updated_at": "2026-11-29T05:29:10.1Z", "operation": {"type": "test.fail.do", "data": {}},
        "target_hostname": "_all", "expected_hosts": ["a", "b", "c"], "error": "b: boom; c: no response",
        "result": null, "retry_of": null,
        "responses": {
            "a": {"status": "completed", "data": {"pong": true}, "error": null, "hostname": "a"},
            "b": {"status": "failed", "data": null, "error": "boom", "hostname": "b"},
        },
        "worker_states": {"b": {"status": "failed", "error": "boom", "duration": "0.001s", "attempts": 1}},
    });
    let want = "\
job:       fb11
status:    partial_failure
operation: test.fail.do
target:    _all
created:   2026-11-29 05:29:09Z
updated:   2026-11-29 05:29:10Z
error:     b: boom; c: no response

HOST  STATUS     ERROR
a     completed  -
b     failed     boom
c     pending    -

result a:
{
  \"pong\": true
}
";
    assert_eq!(job_detail(&job), want);

    let single = json!({"id": "x", "status": "completed", "result": {"hostname": "web1"}, "retry_of": "old",
                        "responses": {}, "expected_hosts": []});
    let text = job_detail(&single);
    assert!(text.contains("retry of:  old\n"), "{text}");
    assert!(
        text.ends_with("\nresult:\n{\n  \"hostname\": \"web1\"\n}\n"),
        "{text}"
    );
    assert!(!text.contains("HOST "), "{text}");
}
