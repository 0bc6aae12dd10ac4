//! `GET /metrics` of the API and of a worker, against a real nats-server and the real binaries, read
//! with a real Prometheus text-format parser (`prometheus-parse`): no token needed, the names of the
//! issue present, and the counters moving with the jobs run; and from the attacker's side, that idle
//! connections to the token-free port cannot pile up or keep a scrape out.

use std::io::Read;
use std::net::TcpStream;
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

/// The cap of api/src/metrics.rs and worker/src/metrics.rs (`CONNECTIONS_MAX`).
const METRICS_CONNECTIONS_MAX: usize = 8;
/// Idle connections the attacker opens to each metrics port: far more than the cap.
const IDLE_CONNECTIONS: usize = 64;
/// tiny_http closes any connection that sends no head within 10 s (408), cap or not: the bound must show
/// well before that.
const CAP_SHOWS_WITHIN: Duration = Duration::from_secs(5);

/// Server-side TCP connections open on 127.0.0.1:`port` (`/proc/net/tcp`, local port `port`, state
/// ESTABLISHED), accepted or still in the listen backlog: what the server holds for its clients.
fn server_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
        })
        .count()
}

/// Whether the server closed `s` (end of stream or reset) rather than holding it open.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or 503 before the close: read on to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_connections_cannot_pile_up_on_the_metrics_ports() {
    let (api_port, worker_port) = (free_port(), free_port());
    let extra = ExtraConfig {
        api_metrics_listen: format!("127.0.0.1:{api_port}"),
        worker_metrics_listen: format!("127.0.0.1:{worker_port}"),
        ..ExtraConfig::default()
    };
    let _cluster = Cluster::start_extra(&[("web1", &[], 1)], &Options::default(), &extra);
    for (who, port) in [("API", api_port), ("worker", worker_port)] {
        let url = format!("http://127.0.0.1:{port}");
        // Ready before the attack: the scrape below is not the server's first.
        scrape(&url);
        // No token needed to connect: open many and send nothing.
        let mut idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
            .map(|n| {
                TcpStream::connect(("127.0.0.1", port))
                    .unwrap_or_else(|e| panic!("idle connection {n} to the {who}: {e}"))
            })
            .collect();
        // Unbounded, the server would hold all 64 (each a thread); capped, it closes the oldest idle ones.
        wait_until(
            &format!(
                "the {who}'s metrics server to hold at most {METRICS_CONNECTIONS_MAX} connections"
            ),
            CAP_SHOWS_WITHIN,
            || server_connections(port) <= METRICS_CONNECTIONS_MAX,
        );
        let closed = idle.iter_mut().map(closed_by_server).filter(|c| *c).count();
        assert!(
            closed >= IDLE_CONNECTIONS - METRICS_CONNECTIONS_MAX,
            "the {who} closed only {closed} of {IDLE_CONNECTIONS} idle connections"
        );
        // The attacker still holds its sockets; a scrape gets in all the same.
        let s = scrape(&url);
        assert_eq!(
            must(&s, "osapi_component_up", &[]),
            1.0,
            "the {who} answers a scrape while {IDLE_CONNECTIONS} idle connections were opened"
        );
        assert!(server_connections(port) <= METRICS_CONNECTIONS_MAX + 1);
        drop(idle);
    }
}
