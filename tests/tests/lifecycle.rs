//! A job's life as a user sees it: detail fields, timeline order, per-host states, results and errors,
//! mixed outcomes (`partial_failure`), and hosts that never answer (`no response` after the job's timeout).

use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{parse_rfc3339_micros, Cluster};

/// The OS hostname, which `system.hostname.get` may report instead of the configured worker hostname.
fn os_hostname() -> String {
    let mut buf = [0_u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname failed");
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// (event, hostname) of each timeline entry, in the order the API lists them; asserts timestamps never go back.
fn timeline(job: &Value) -> Vec<(String, Option<String>)> {
    let events = job["timeline"].as_array();
    let events = events.unwrap_or_else(|| panic!("timeline must be a list: {job:#}"));
    let mut last_micros = i64::MIN;
    events
        .iter()
        .map(|event| {
            let at = event["timestamp"].as_str().and_then(parse_rfc3339_micros);
            let at = at.unwrap_or_else(|| panic!("timeline timestamp not RFC 3339: {event}"));
            assert!(at >= last_micros, "timeline goes back in time: {job:#}");
            last_micros = at;
            let name = event["event"]
                .as_str()
                .expect("timeline event name")
                .to_string();
            (name, event["hostname"].as_str().map(String::from))
        })
        .collect()
}

#[test]
fn single_host_job_detail_and_timeline() {
    let cluster = Cluster::fleet();
    let id = cluster.create_job("system.hostname.get", json!({}), "web1");
    let job = cluster.wait_job(&id, Duration::from_secs(30));

    assert_eq!(job["id"], id.as_str(), "{job:#}");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["target_hostname"], "web1", "{job:#}");
    assert_eq!(job["operation"]["type"], "system.hostname.get", "{job:#}");
    assert_eq!(job["hostname"], "web1", "{job:#}");
    let reported = job["result"]["hostname"].as_str().unwrap_or_default();
    assert!(
        reported == "web1" || reported == os_hostname(),
        "result.hostname should be the worker's hostname: {job:#}"
    );
    assert!(job["error"].is_null(), "no error on success: {job:#}");
    for key in ["created", "updated_at"] {
        let at = job[key].as_str().and_then(parse_rfc3339_micros);
        assert!(at.is_some(), "{key} must be RFC 3339: {job:#}");
    }
    let created = parse_rfc3339_micros(job["created"].as_str().unwrap_or_default());
    let updated = parse_rfc3339_micros(job["updated_at"].as_str().unwrap_or_default());
    assert!(updated >= created, "updated_at before created: {job:#}");

    let state = &job["worker_states"]["web1"];
    assert_eq!(state["status"], "completed", "{job:#}");
    assert_eq!(job["responses"]["web1"]["status"], "completed", "{job:#}");
    assert_eq!(job["responses"]["web1"]["data"], job["result"], "{job:#}");

    let events: Vec<String> = timeline(&job).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        events,
        ["submitted", "acknowledged", "started", "completed"],
        "timeline: {job:#}"
    );
    for (name, host) in timeline(&job).into_iter().skip(1) {
        assert_eq!(
            host.as_deref(),
            Some("web1"),
            "{name} should name web1: {job:#}"
        );
    }
}

#[test]
fn echo_returns_its_data() {
    let cluster = Cluster::fleet();
    let data = json!({"a": 1, "text": "héllo", "nested": {"list": [1, 2.5, "x", null, true]}});
    let job = cluster.run_job("test.echo.do", data.clone(), "db1");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["result"], data, "{job:#}");
    assert_eq!(
        job["operation"]["data"], data,
        "the job keeps its input: {job:#}"
    );
}

#[test]
fn permanent_failure_is_failed_at_once_with_its_message() {
    let cluster = Cluster::fleet();
    let job = cluster.run_job("test.fail.do", json!({"message": "boom"}), "web1");
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("boom"),
        "job error should carry the message: {job:#}"
    );
    let state = &job["worker_states"]["web1"];
    assert_eq!(state["status"], "failed", "{job:#}");
    if let Some(attempts) = state["attempts"].as_u64() {
        assert_eq!(attempts, 1, "a permanent failure is never retried: {job:#}");
    }
    let events: Vec<String> = timeline(&job).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        events.last().map(String::as_str),
        Some("failed"),
        "timeline: {job:#}"
    );
}

#[test]
fn mixed_outcomes_are_partial_failure() {
    let cluster = Cluster::fleet();
    let job = cluster.run_job(
        "test.fail.do",
        json!({"hosts": ["db1"], "message": "db says no"}),
        "_all",
    );
    assert_eq!(job["status"], "partial_failure", "{job:#}");
    assert_eq!(job["responses"]["db1"]["status"], "failed", "{job:#}");
    let error = job["responses"]["db1"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("db says no"), "{job:#}");
    assert_eq!(job["worker_states"]["db1"]["status"], "failed", "{job:#}");
    for host in ["web1", "web2"] {
        assert_eq!(
            job["responses"][host]["status"], "completed",
            "{host}: {job:#}"
        );
        assert_eq!(
            job["responses"][host]["data"],
            json!({"failed": false}),
            "{host}: {job:#}"
        );
        assert_eq!(
            job["worker_states"][host]["status"], "completed",
            "{host}: {job:#}"
        );
    }
}

#[test]
fn unknown_host_gets_no_response_after_the_timeout() {
    let cluster = Cluster::fleet();
    let id = cluster.submit(json!({
        "operation": {"type": "test.ping.do", "data": {}},
        "target_hostname": "ghost",
        "timeout": "2s",
    }));
    let job = cluster.wait_job(&id, Duration::from_secs(10));
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no response"),
        "error should say `no response`: {job:#}"
    );
}

#[test]
fn killed_worker_counts_as_no_response() {
    let mut cluster = Cluster::fleet();
    // Kill db1 without a goodbye and submit at once: its last heartbeat is still fresh, so the API expects it.
    cluster.worker("db1").kill();
    let id = cluster.submit(json!({
        "operation": {"type": "test.ping.do", "data": {}},
        "target_hostname": "_all",
        "timeout": "3s",
    }));
    let job = cluster.wait_job(&id, Duration::from_secs(15));
    let mut expected: Vec<&str> = job["expected_hosts"]
        .as_array()
        .map(|hosts| hosts.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    expected.sort_unstable();
    assert_eq!(expected, ["db1", "web1", "web2"], "{job:#}");
    assert_eq!(job["status"], "partial_failure", "{job:#}");
    let dead = &job["worker_states"]["db1"];
    assert_eq!(dead["status"], "failed", "{job:#}");
    let error = dead["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no response"),
        "db1 should have `no response`: {job:#}"
    );
    for host in ["web1", "web2"] {
        assert_eq!(
            job["worker_states"][host]["status"], "completed",
            "{host}: {job:#}"
        );
    }
}
