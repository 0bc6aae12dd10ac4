//! The worker's Prometheus metrics (`prometheus-client`), served in the text exposition format on
//! `job.worker.metrics.listen` (`GET /metrics`, no token; `''` = off) by one thread of its own:
//! `osapi_component_up`, `osapi_jobs_processed_total{status}`, `osapi_jobs_active` (the pool's running
//! count, read at scrape time) and `osapi_job_duration_seconds{operation}`.

use crate::pool::PoolState;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Open connections the metrics server holds at most (each one a thread of tiny_http's); a scraper needs one.
pub const CONNECTIONS_MAX: usize = 8;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Component {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

struct Metrics {
    registry: Registry,
    processed: Family<StatusLabels, Counter>,
    active: Gauge,
    duration: Family<OperationLabels, Histogram>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let up = Family::<Component, Gauge>::default();
        up.get_or_create(&Component {
            component: "worker".into(),
        })
        .set(1);
        r.register("osapi_component_up", "1 while the component runs", up);
        let processed = Family::<StatusLabels, Counter>::default();
        r.register(
            "osapi_jobs_processed",
            "Job runs ended on this worker, by the state they ended in",
            processed.clone(),
        );
        let active = Gauge::default();
        r.register(
            "osapi_jobs_active",
            "Jobs running on this worker now",
            active.clone(),
        );
        let duration = Family::<OperationLabels, Histogram>::new_with_constructor(
            // 1 ms .. ~9 min.
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 20))) as fn() -> Histogram,
        );
        r.register(
            "osapi_job_duration_seconds",
            "Run time of operations on this worker",
            duration.clone(),
        );
        Metrics {
            registry: r,
            processed,
            active,
            duration,
        }
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// One run of `operation` ended in `status` (completed, failed, retryable, cancelled) after `took`.
pub fn job_ended(operation: &str, status: &str, took: Duration) {
    let m = get();
    m.processed
        .get_or_create(&StatusLabels {
            status: status.to_string(),
        })
        .inc();
    m.duration
        .get_or_create(&OperationLabels {
            operation: operation.to_string(),
        })
        .observe(took.as_secs_f64());
}

fn render(pool: &PoolState) -> String {
    let m = get();
    m.active.set(pool.running() as i64);
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &m.registry) {
        log::warn!("encoding metrics: {e}");
    }
    out
}

/// Serves `GET /metrics` on `listen` from a thread of its own for the life of the process; `''`
/// serves nothing.
pub fn start(listen: &str, pool: Arc<PoolState>) -> Result<(), String> {
    if listen.is_empty() {
        return Ok(());
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen} (job.worker.metrics.listen): {e}"))?;
    // Anyone who reaches the port may connect (no token): at the cap the connection idle longest is
    // closed, so idle sockets cannot hold more than CONNECTIONS_MAX threads or keep a scrape out.
    let server = tiny_http::Server::from_listener_limited(listener, None, CONNECTIONS_MAX)
        .map_err(|e| format!("cannot serve on {listen} (job.worker.metrics.listen): {e}"))?;
    log::info!("metrics on http://{listen}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let ok = req.method() == &tiny_http::Method::Get
                    && req.url().split('?').next() == Some("/metrics");
                let response = if ok {
                    let mut r = tiny_http::Response::from_string(render(&pool));
                    if let Ok(h) = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    ) {
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
