//! `GET /metrics` of the API and of a worker, against a real nats-server and the real binaries, read
//! with a real Prometheus text-format parser (`prometheus-parse`): no token needed, the names of the
//! issue present, and the counters moving with the jobs run.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use serde_json::json;

use osapi_tests::{free_port, request, wait_until, Cluster, ExtraConfig, Options};

const DEADLINE: Duration = Duration::from_secs(30);

fn scrape(base_url: &str) -> Scrape {
    let resp = request(base_url, "GET", "/metrics", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let lines = resp.text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not the text format ({e}):\n{}", resp.text))
}

/// The value of the sample `name` whose labels include `labels`; for a histogram, its count.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches =
        |s: &&prometheus_parse::Sample| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    let count_name = format!("{name}_count");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name || s.metric == count_name)
        .filter(matches)
        .find_map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).reduce(f64::max),
            Value::Summary(_) => None,
        })
}

fn must(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, name, labels).unwrap_or_else(|| {
        let names: Vec<String> = scrape
            .samples
            .iter()
            .map(|s| format!("{}{}", s.metric, s.labels))
            .collect();
        panic!("no sample {name} {labels:?}; samples: {names:#?}")
    })
}

#[test]
fn both_endpoints_parse_and_count_the_jobs_run() {
    let (api_port, worker_port) = (free_port(), free_port());
    let extra = ExtraConfig {
        api_metrics_listen: format!("127.0.0.1:{api_port}"),
        worker_metrics_listen: format!("127.0.0.1:{worker_port}"),
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[("web1", &[], 2)], &Options::default(), &extra);
    let api = format!("http://127.0.0.1:{api_port}");
    let worker = format!("http://127.0.0.1:{worker_port}");

    let before = scrape(&api);
    assert_eq!(
        must(&before, "osapi_component_up", &[("component", "api")]),
        1.0
    );
    assert_eq!(must(&before, "osapi_jobs_created_total", &[]), 0.0);
    assert_eq!(
        must(
            &scrape(&worker),
            "osapi_component_up",
            &[("component", "worker")]
        ),
        1.0
    );

    for _ in 0..3 {
        let done = cluster.run_job("test.ping.do", json!({}), "web1");
        assert_eq!(done["status"], "completed");
    }
    let failed = cluster.run_job("test.fail.do", json!({"message": "on purpose"}), "web1");
    assert_eq!(failed["status"], "failed");
    let sleeping = cluster.create_job("test.sleep.do", json!({"seconds": 60}), "web1");
    wait_until("the sleep to run", DEADLINE, || {
        cluster.job(&sleeping)["status"] == "running"
    });
    let w = scrape(&worker);
    assert_eq!(must(&w, "osapi_jobs_active", &[]), 1.0, "the sleep runs");
    assert_eq!(
        cluster
            .http("POST", &format!("/job/{sleeping}/cancel"), None)
            .status,
        200
    );
    cluster.wait_job(&sleeping, DEADLINE);

    let a = scrape(&api);
    assert_eq!(must(&a, "osapi_jobs_created_total", &[]), 5.0);
    assert_eq!(must(&a, "osapi_jobs", &[("status", "completed")]), 3.0);
    assert_eq!(must(&a, "osapi_jobs", &[("status", "failed")]), 1.0);
    assert_eq!(must(&a, "osapi_jobs", &[("status", "cancelled")]), 1.0);
    assert_eq!(must(&a, "osapi_jobs_active", &[]), 0.0);
    assert_eq!(must(&a, "osapi_index_jobs", &[]), 5.0);
    assert_eq!(must(&a, "osapi_dlq_messages", &[]), 0.0);
    assert_eq!(must(&a, "osapi_wait_slots_in_use", &[]), 0.0);
    let age = must(&a, "osapi_heartbeat_age_seconds", &[("hostname", "web1")]);
    assert!((0.0..10.0).contains(&age), "heartbeat age {age}");
    let posts = [("method", "POST"), ("route", "/job"), ("code", "201")];
    assert_eq!(must(&a, "osapi_http_request_duration_seconds", &posts), 5.0);
    let cancels = [("route", "/job/:id/cancel"), ("code", "200")];
    assert_eq!(
        must(&a, "osapi_http_request_duration_seconds", &cancels),
        1.0
    );
    assert!(must(&a, "osapi_nats_request_duration_seconds", &[]) > 0.0);

    let w = scrape(&worker);
    assert_eq!(
        must(&w, "osapi_jobs_processed_total", &[("status", "completed")]),
        3.0
    );
    assert_eq!(
        must(&w, "osapi_jobs_processed_total", &[("status", "failed")]),
        1.0
    );
    assert_eq!(
        must(&w, "osapi_jobs_processed_total", &[("status", "cancelled")]),
        1.0
    );
    let pings = [("operation", "test.ping.do")];
    assert_eq!(must(&w, "osapi_job_duration_seconds", &pings), 3.0);
    assert_eq!(must(&w, "osapi_jobs_active", &[]), 0.0);

    // No token needed; nothing else is served there.
    let other = request(&api, "GET", "/job", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other.status, 404, "{}", other.text);
}
