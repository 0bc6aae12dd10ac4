//! Every documented client error: 400 for bad input, 404 for unknown jobs and routes, 405 with `Allow` for a wrong
//! method. Each answer is JSON `{error, details, code}` with `code` equal to the status, and nothing is created.

use serde_json::json;

use osapi_tests::Cluster;

#[test]
fn bad_job_submissions_are_400_and_create_nothing() {
    let cluster = Cluster::start(&[]);
    let raw_bodies = [
        ("malformed JSON", r#"{"operation": {"type": "test.ping.do""#),
        ("empty body", ""),
        ("not an object", r#"["test.ping.do"]"#),
    ];
    for (what, body) in raw_bodies {
        let resp = cluster.http_raw("POST", "/job", Some(body));
        assert_eq!(resp.status, 400, "{what}: {}", resp.text);
        resp.assert_error(400);
    }
    let ping = json!({"type": "test.ping.do", "data": {}});
    let bodies = [
        ("missing operation", json!({"target_hostname": "_any"})),
        (
            "unknown operation",
            json!({"operation": {"type": "nope.x.get", "data": {}}, "target_hostname": "_any"}),
        ),
        (
            "operation type not a string",
            json!({"operation": {"type": 5, "data": {}}, "target_hostname": "_any"}),
        ),
        (
            "target with a space",
            json!({"operation": ping, "target_hostname": "group:web dev"}),
        ),
        (
            "hostname with bad characters",
            json!({"operation": ping, "target_hostname": "bad host!"}),
        ),
        (
            "label key with bad characters",
            json!({"operation": ping, "target_hostname": "gr oup:web"}),
        ),
        (
            "empty label segment",
            json!({"operation": ping, "target_hostname": "group:web..dev"}),
        ),
        (
            "target not a string",
            json!({"operation": ping, "target_hostname": 5}),
        ),
        (
            "timeout not a duration",
            json!({"operation": ping, "target_hostname": "_any", "timeout": "soon"}),
        ),
    ];
    for (what, body) in bodies {
        let resp = cluster.http("POST", "/job", Some(body.clone()));
        assert_eq!(resp.status, 400, "{what}: {body} -> {}", resp.text);
        resp.assert_error(400);
    }

    let all = cluster.http("GET", "/job?limit=1000", None);
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        all.body["total_items"], 0,
        "a rejected job must not be stored: {}",
        all.text
    );
}

#[test]
fn unknown_jobs_and_bad_ids() {
    let cluster = Cluster::start(&[]);
    cluster
        .http("GET", "/job/not-a-uuid", None)
        .assert_error(400);
    let random = uuid::Uuid::new_v4();
    cluster
        .http("GET", &format!("/job/{random}"), None)
        .assert_error(404);
    cluster
        .http("GET", &format!("/job/{random}?wait=1s"), None)
        .assert_error(404);
}

#[test]
fn unknown_routes_are_404() {
    let cluster = Cluster::start(&[]);
    for path in ["/nope", "/", "/jobs", "/job/status/extra", "/health/nope"] {
        let resp = cluster.http("GET", path, None);
        assert_eq!(resp.status, 404, "GET {path}: {}", resp.text);
        resp.assert_error(404);
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let cluster = Cluster::start(&[]);
    let random = uuid::Uuid::new_v4();
    let cases = [
        ("PUT", "/job".to_string(), "POST"),
        ("DELETE", "/job".to_string(), "GET"),
        ("DELETE", "/job/status".to_string(), "GET"),
        ("POST", "/job/workers".to_string(), "GET"),
        ("PATCH", format!("/job/{random}"), "DELETE"),
        ("GET", format!("/job/{random}/retry"), "POST"),
        ("POST", "/health".to_string(), "GET"),
    ];
    for (method, path, allowed) in cases {
        let resp = cluster.http(method, &path, None);
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text);
        resp.assert_error(405);
        let allow = resp.header("Allow").unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow should list {allowed}, got {allow:?}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == method),
            "{method} {path}: Allow must not list {method}, got {allow:?}"
        );
    }
}
