//! The API's Prometheus metrics (`prometheus-client`), served in the text exposition format on
//! `api.metrics.listen` (`GET /metrics`, no token; `''` = off) by one thread of its own, so a scrape
//! never takes a handler slot. Counters and histograms are updated where things happen (store,
//! server, bus); gauges of the job index, the fleet and the dead-letter stream are read at scrape time.

use crate::ctx::{now_us, Ctx};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long the metrics thread waits for a request before looking at the shutdown flag.
const POLL: Duration = Duration::from_millis(500);
/// Open connections the metrics server holds at most (each one a thread of tiny_http's); a scraper needs one.
pub const CONNECTIONS_MAX: usize = 8;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Component {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    hostname: String,
}

/// Every metric of the API, registered once.
pub struct Metrics {
    registry: Registry,
    jobs_created: Counter,
    audit_dropped: Counter,
    http: Family<HttpLabels, Histogram>,
    nats: Histogram,
    jobs: Family<StatusLabels, Gauge>,
    jobs_active: Gauge,
    dlq: Gauge,
    wait_slots: Gauge,
    index_jobs: Gauge,
    heartbeat_age: Family<HostLabels, Gauge<f64, AtomicU64>>,
    detail_lookups: Family<ResultLabels, Counter>,
    detail_bytes: Gauge,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.25 ms .. ~8 s.
    exponential_buckets(0.000_25, 2.0, 16)
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let up = Family::<Component, Gauge>::default();
        up.get_or_create(&Component {
            component: "api".into(),
        })
        .set(1);
        r.register("osapi_component_up", "1 while the component runs", up);
        let jobs_created = Counter::default();
        r.register(
            "osapi_jobs_created",
            "Jobs accepted (201) by this API",
            jobs_created.clone(),
        );
        let audit_dropped = Counter::default();
        r.register(
            "osapi_audit_dropped",
            "Audit entries dropped because the queue to NATS was full",
            audit_dropped.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(seconds_buckets())) as fn() -> Histogram,
        );
        r.register(
            "osapi_http_request_duration_seconds",
            "HTTP request handling time by method, route template and status code",
            http.clone(),
        );
        let nats = Histogram::new(seconds_buckets());
        r.register(
            "osapi_nats_request_duration_seconds",
            "NATS round trips (a request, or a batch sent at once)",
            nats.clone(),
        );
        let jobs = Family::<StatusLabels, Gauge>::default();
        r.register("osapi_jobs", "Jobs in the index by status", jobs.clone());
        let jobs_active = Gauge::default();
        r.register(
            "osapi_jobs_active",
            "Jobs pending or running",
            jobs_active.clone(),
        );
        let dlq = Gauge::default();
        r.register(
            "osapi_dlq_messages",
            "Notifications in the dead-letter stream",
            dlq.clone(),
        );
        let wait_slots = Gauge::default();
        r.register(
            "osapi_wait_slots_in_use",
            "Requests held by ?wait= now",
            wait_slots.clone(),
        );
        let index_jobs = Gauge::default();
        r.register(
            "osapi_index_jobs",
            "Jobs the API's in-memory index holds",
            index_jobs.clone(),
        );
        let heartbeat_age = Family::<HostLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "osapi_heartbeat_age_seconds",
            "Seconds since each live worker's last heartbeat",
            heartbeat_age.clone(),
        );
        let detail_lookups = Family::<ResultLabels, Counter>::default();
        r.register(
            "osapi_detail_cache_lookups",
            "Job details looked up in the detail cache: hit, partial (a response read from KV), miss",
            detail_lookups.clone(),
        );
        let detail_bytes = Gauge::default();
        r.register(
            "osapi_detail_cache_bytes",
            "Bytes of job records the detail cache holds (api.server.detail_cache_bytes at most)",
            detail_bytes.clone(),
        );
        Metrics {
            registry: r,
            detail_lookups,
            detail_bytes,
            jobs_created,
            audit_dropped,
            http,
            nats,
            jobs,
            jobs_active,
            dlq,
            wait_slots,
            index_jobs,
            heartbeat_age,
        }
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// A job was accepted.
pub fn job_created() {
    get().jobs_created.inc();
}

/// An audit entry was dropped (`audit.rs`: its queue was full).
pub fn audit_dropped() {
    get().audit_dropped.inc();
}

/// One HTTP request of `method` and `route` (`routes::template`: static text, never a raw path)
/// answered `code`; the labels allocate nothing.
pub fn observe_http(method: &'static str, route: &'static str, code: u16, took: Duration) {
    let labels = HttpLabels {
        method,
        route,
        code,
    };
    get()
        .http
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

fn observe_nats(took: Duration) {
    get().nats.observe(took.as_secs_f64());
}

/// The text exposition of every metric, gauges refreshed from the index and NATS now.
fn render(ctx: &Ctx) -> String {
    let m = get();
    let stats = ctx.store.stats();
    for (status, n) in &stats.by_status {
        let labels = StatusLabels {
            status: status.as_str().to_string(),
        };
        m.jobs.get_or_create(&labels).set(*n as i64);
    }
    let active: usize = stats
        .by_status
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    m.jobs_active.set(active as i64);
    m.index_jobs.set(stats.total as i64);
    m.wait_slots.set(ctx.waiters.load(Ordering::SeqCst) as i64);
    if let Ok(n) = ctx.store.dlq_count() {
        m.dlq.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let cache = ctx.store.detail_cache();
    let (hit, partial, miss) = cache.counts();
    for (result, n) in [("hit", hit), ("partial", partial), ("miss", miss)] {
        let c = m.detail_lookups.get_or_create(&ResultLabels {
            result: result.into(),
        });
        c.inc_by(n.saturating_sub(c.get()));
    }
    m.detail_bytes
        .set(i64::try_from(cache.size().1).unwrap_or(i64::MAX));
    m.heartbeat_age.clear();
    let now = now_us();
    for w in ctx.store.live_workers() {
        let age = now.saturating_sub(w.last_seen_us).max(0) as f64 / 1e6;
        let labels = HostLabels {
            hostname: w.hostname,
        };
        m.heartbeat_age.get_or_create(&labels).set(age);
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &m.registry) {
        log::warn!("encoding metrics: {e}");
    }
    out
}

/// Serves `GET /metrics` on `listen` from a thread of its own until `shutdown`; `''` serves nothing.
pub fn start(
    listen: &str,
    ctx: Arc<Ctx>,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), String> {
    osapi_bus::observe_requests(observe_nats);
    if listen.is_empty() {
        return Ok(());
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen} (api.metrics.listen): {e}"))?;
    // Anyone who reaches the port may connect (no token): at the cap the connection idle longest is
    // closed, so idle sockets cannot hold more than CONNECTIONS_MAX threads or keep a scrape out.
    let server = tiny_http::Server::from_listener_limited(listener, None, CONNECTIONS_MAX)
        .map_err(|e| format!("cannot serve on {listen} (api.metrics.listen): {e}"))?;
    log::info!("metrics on http://{listen}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let Ok(Some(req)) = server.recv_timeout(POLL) else {
                    continue;
                };
                let ok = req.method() == &tiny_http::Method::Get
                    && req.url().split('?').next() == Some("/metrics");
                let response = if ok {
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    );
                    let mut r = tiny_http::Response::from_string(render(&ctx));
                    if let Ok(h) = content_type {
                        r.add_header(h);
                    }
                    r
                } else {
                    tiny_http::Response::from_string("only GET /metrics is served here\n")
                        .with_status_code(404)
                };
                if let Err(e) = req.respond(response) {
                    log::debug!("metrics answer not sent: {e}");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("starting the metrics thread: {e}"))
}
