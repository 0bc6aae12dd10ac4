//! The API's detail cache (`api/src/index/detail.rs`) and read-your-writes without a wait in `POST /job`,
//! against the real binaries and nats-server: two APIs on one NATS, one with the cache (the default)
//! and one with `api.server.detail_cache_bytes: 0` (every detail read from KV), answer every finished
//! job, and each list page, with the same bytes; the cached one counts hits in `/metrics`. A client
//! that POSTs and at once GETs or lists finds its job.

use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{json, Value};

use osapi_common::job::{HostState, Response};
use osapi_common::names::keys;
use osapi_common::status::HostStatus;
use osapi_tests::{
    admin_token, free_port, request, request_as, Api, Attacker, Cluster, ExtraConfig, Options,
};

const DEADLINE: Duration = Duration::from_secs(30);

fn get(base_url: &str, path: &str) -> (u16, String) {
    let resp = request_as(Some(&admin_token()), base_url, "GET", path, None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (resp.status, resp.text)
}

fn hits(metrics_url: &str, result: &str) -> f64 {
    let resp = request(metrics_url, "GET", "/metrics", None).unwrap_or_else(|e| panic!("{e}"));
    let lines = resp.text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).unwrap_or_else(|e| panic!("metrics: {e}"));
    scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("osapi_detail_cache_lookups"))
        .filter(|s| s.labels.get("result") == Some(result))
        .find_map(|s| match s.value {
            Sample::Counter(v) | Sample::Untyped(v) => Some(v),
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!(
                "no osapi_detail_cache_lookups{{result={result}}}:\n{}",
                resp.text
            )
        })
}

/// A second API on the cluster's NATS with the cache off: every detail read from KV.
fn uncached_api(cluster: &Cluster, options: &Options) -> Api {
    Api::start_extra(
        &cluster.nats.url(),
        options,
        &ExtraConfig {
            api_server_yaml: vec![("detail_cache_bytes".into(), "0".into())],
            ..ExtraConfig::default()
        },
    )
}

#[test]
fn the_cache_answers_finished_jobs_with_the_bytes_kv_gives() {
    let metrics_port = free_port();
    let options = Options::default();
    let extra = ExtraConfig {
        api_metrics_listen: format!("127.0.0.1:{metrics_port}"),
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[("w1", &[], 2), ("w2", &[], 2)], &options, &extra);
    let plain = uncached_api(&cluster, &options);
    let metrics = format!("http://127.0.0.1:{metrics_port}");

    let mut ids = vec![
        cluster.run_job("test.echo.do", json!({"x": 1}), "w1"),
        cluster.run_job("test.fail.do", json!({}), "w2"),
        cluster.run_job("test.ping.do", json!({}), "_any"),
        cluster.run_job("test.ping.do", json!({}), "_all"),
    ];
    let sleeping = cluster.create_job("test.sleep.do", json!({"seconds": 30}), "w1");
    let resp = cluster.http("POST", &format!("/job/{sleeping}/cancel"), None);
    assert_eq!(resp.status, 200, "cancel: {}", resp.text);
    ids.push(cluster.wait_job(&sleeping, DEADLINE));
    for job in &ids {
        assert!(job["status"].is_string(), "{job:#}");
    }
    let before = hits(&metrics, "hit");
    for job in &ids {
        let id = job["id"].as_str().unwrap_or_default();
        // `?wait=` returns once that API's index has the job finished (a terminal job at once).
        let cached = get(&cluster.api.base_url(), &format!("/job/{id}?wait=5s"));
        let read = get(&plain.base_url(), &format!("/job/{id}?wait=5s"));
        assert_eq!(cached.0, 200, "{}", cached.1);
        assert_eq!(cached, read, "job {id}: the cache and KV disagree");
    }
    let page = "/job?limit=50";
    assert_eq!(
        get(&cluster.api.base_url(), page),
        get(&plain.base_url(), page)
    );
    assert!(
        hits(&metrics, "hit") >= before + ids.len() as f64,
        "the finished jobs were not answered from the cache"
    );
}

#[test]
fn a_job_just_created_is_found_at_once() {
    let cluster = Cluster::start(&[]);
    for _ in 0..20 {
        let id = cluster.create_job("test.ping.do", json!({}), "nobody-here");
        let resp = cluster.http("GET", &format!("/job/{id}"), None);
        assert_eq!(resp.status, 200, "GET right after POST: {}", resp.text);
        let page = cluster.http("GET", "/job?limit=1", None);
        assert_eq!(page.body["items"][0]["id"], Value::from(id.as_str()));
    }
    let stats = cluster.http("GET", "/job/status", None);
    assert_eq!(stats.body["total_jobs"], 20, "{}", stats.text);
}

/// A worker of before the answer went into the final state wrote it to the response bucket, then a
/// final state without it: both APIs (cache and KV) still show that answer, the same way.
#[test]
fn an_older_workers_separate_response_is_still_shown() {
    let options = Options::default();
    let cluster = Cluster::start_extra(&[], &options, &ExtraConfig::default());
    let plain = uncached_api(&cluster, &options);
    let id = cluster.create_job("test.echo.do", json!({"x": 1}), "old1");
    let old = Attacker::connect(&cluster.nats.url(), &options.namespace, Default::default())
        .expect("connects as the old worker would");
    let response = Response {
        status: HostStatus::Completed,
        data: json!({"echo": "from the response bucket"}),
        error: None,
        hostname: "old1".into(),
    };
    let state = HostState {
        hostname: "old1".into(),
        status: HostStatus::Completed,
        attempts: 1,
        error: None,
        duration: Some("0.001s".into()),
        events: vec![],
        updated_us: 0,
        response: None,
    };
    let names = &old.names;
    // The old worker's order: the response, then the final state without it.
    let writes = [
        (
            &names.response_bucket,
            keys::response(&id, "old1"),
            serde_json::to_vec(&response),
        ),
        (
            &names.bucket,
            keys::state(&id, "old1"),
            serde_json::to_vec(&state),
        ),
    ];
    for (bucket, key, value) in writes {
        let value = value.unwrap_or_default();
        old.bus.kv_put(bucket, &key, &value).expect(&key);
    }
    for api in [cluster.api.base_url(), plain.base_url()] {
        let (code, text) = get(&api, &format!("/job/{id}?wait=10s"));
        assert_eq!(code, 200, "{text}");
        let job: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(job["status"], "completed", "{job:#}");
        assert_eq!(
            job["responses"]["old1"]["data"]["echo"], "from the response bucket",
            "{job:#}"
        );
    }
    assert_eq!(
        get(&cluster.api.base_url(), &format!("/job/{id}")),
        get(&plain.base_url(), &format!("/job/{id}"))
    );
}
