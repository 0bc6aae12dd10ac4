//! Bad input never hurts the API: every client mistake not already covered by `api_errors.rs` is a 400
//! naming the problem, down to bytes that are not UTF-8 (the generated odd requests are in `hostile_fuzz.rs`).

use serde_json::json;

use osapi_tests::edge::raw_request;
use osapi_tests::{admin_token, Cluster};

/// Each case: what, method, path, raw body, a word the error must contain (lower-case).
type BadCase = (
    &'static str,
    &'static str,
    String,
    Option<String>,
    &'static str,
);

#[test]
fn more_bad_input_is_400_naming_the_problem() {
    let cluster = Cluster::start(&[]);
    let id = uuid::Uuid::new_v4();
    let ping = json!({"type": "test.ping.do", "data": {}});
    let job = |extra: serde_json::Value| {
        let mut body = json!({"operation": ping, "target_hostname": "_any"});
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        Some(body.to_string())
    };
    let cases: Vec<BadCase> = vec![
        (
            "unknown job field",
            "POST",
            "/job".into(),
            job(json!({"priority": 1})),
            "priority",
        ),
        (
            "unknown operation field",
            "POST",
            "/job".into(),
            Some(
                json!({"operation": {"type": "test.ping.do", "data": {}, "extra": 1}}).to_string(),
            ),
            "extra",
        ),
        (
            "operation not an object",
            "POST",
            "/job".into(),
            Some(r#"{"operation": "test.ping.do"}"#.into()),
            "operation",
        ),
        (
            "data not an object",
            "POST",
            "/job".into(),
            Some(json!({"operation": {"type": "test.ping.do", "data": [1]}}).to_string()),
            "data",
        ),
        (
            "zero timeout",
            "POST",
            "/job".into(),
            job(json!({"timeout": "0s"})),
            "timeout",
        ),
        (
            "timeout over a day",
            "POST",
            "/job".into(),
            job(json!({"timeout": "25h"})),
            "timeout",
        ),
        (
            "negative timeout",
            "POST",
            "/job".into(),
            job(json!({"timeout": -5})),
            "timeout",
        ),
        (
            "fractional timeout",
            "POST",
            "/job".into(),
            job(json!({"timeout": 1.5})),
            "timeout",
        ),
        (
            "timeout beyond f64",
            "POST",
            "/job".into(),
            Some(r#"{"operation": {"type": "test.ping.do"}, "timeout": 1e400}"#.into()),
            "json",
        ),
        (
            "10000 nested arrays",
            "POST",
            "/job".into(),
            Some("[".repeat(10_000)),
            "recursion",
        ),
        (
            "10000 nested objects in data",
            "POST",
            "/job".into(),
            Some(format!(
                r#"{{"operation": {{"type": "test.ping.do", "data": {}"#,
                r#"{"a":"#.repeat(10_000)
            )),
            "recursion",
        ),
        (
            "a very long operation type",
            "POST",
            "/job".into(),
            Some(json!({"operation": {"type": "x".repeat(10_000)}}).to_string()),
            "operation",
        ),
        ("bad id on DELETE", "DELETE", "/job/xyz".into(), None, "xyz"),
        (
            "bad id on retry",
            "POST",
            "/job/xyz/retry".into(),
            None,
            "xyz",
        ),
        (
            "malformed retry body",
            "POST",
            format!("/job/{id}/retry"),
            Some("{".into()),
            "json",
        ),
        (
            "unknown retry field",
            "POST",
            format!("/job/{id}/retry"),
            Some(r#"{"operation": {}}"#.into()),
            "operation",
        ),
        (
            "bad retry target",
            "POST",
            format!("/job/{id}/retry"),
            Some(r#"{"target_hostname": "a b"}"#.into()),
            "a b",
        ),
        (
            "limit not a number",
            "GET",
            "/job?limit=ten".into(),
            None,
            "limit",
        ),
        (
            "negative limit",
            "GET",
            "/job?limit=-1".into(),
            None,
            "limit",
        ),
        (
            "limit over the maximum",
            "GET",
            "/job?limit=100000".into(),
            None,
            "1000",
        ),
        (
            "limit 0 (it no longer means all)",
            "GET",
            "/job?limit=0".into(),
            None,
            "between 1 and 1000",
        ),
        (
            "limit beyond u64",
            "GET",
            "/job?limit=99999999999999999999999".into(),
            None,
            "limit",
        ),
        (
            "unknown status filter",
            "GET",
            "/job?status=bogus".into(),
            None,
            "bogus",
        ),
        (
            "unknown list parameter",
            "GET",
            "/job?sort=asc".into(),
            None,
            "sort",
        ),
        (
            "wait not a duration",
            "GET",
            format!("/job/{id}?wait=soon"),
            None,
            "wait",
        ),
        (
            "unknown get parameter",
            "GET",
            format!("/job/{id}?expand=1"),
            None,
            "expand",
        ),
    ];
    for (what, method, path, body, word) in &cases {
        let resp = cluster.http_raw(method, path, body.as_deref());
        assert_eq!(resp.status, 400, "{what}: {method} {path} -> {}", resp.text);
        resp.assert_error(400);
        let error = resp.body["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            error.contains(word),
            "{what}: the error should name `{word}`: {}",
            resp.text
        );
    }

    // Bytes that are not UTF-8 at all.
    let auth = [(
        "Authorization".to_string(),
        format!("Bearer {}", admin_token()),
    )];
    let resp = raw_request(&cluster, b"POST", b"/job", &auth, &[0xff, 0xfe, b'{', 0x80]);
    assert_eq!(resp.0, Some(400), "invalid UTF-8 body: {}", resp.1);

    let all = cluster.http("GET", "/job?limit=1000", None);
    assert_eq!(
        all.body["total_items"], 0,
        "nothing was created: {}",
        all.text
    );
}
