//! Phase 1, the raw floor: the NATS operations one job needs, issued through `osapi-bus` with no HTTP
//! and no daemon, one job at a time: put job, publish, pull, get job, put state, put response, put
//! state, ack, get response. Runs on its own namespace (`bench{pid}`) so it shares nothing with the API.
//!
//! Sequentially it is the latency floor of one job; with as many lanes as the throughput phase has
//! clients, on one client connection and one per worker like the real daemons, it is the ceiling of
//! jobs/s that NATS allows on this machine.

use crate::stats::ms;
use crate::varz::{Monitor, PerJob, Window};
use osapi_bus::{Bus, BusError, ConnectOptions, ConsumerConfig, Puller, StreamConfig};
use osapi_common::names::Names;
use osapi_common::operation::Kind;
use osapi_common::target::Target;
use std::time::{Duration, Instant};

/// The streams, buckets and connections the lanes share.
struct Floor {
    client: Bus,
    workers: Vec<Bus>,
    names: Names,
}

/// One sequential job loop on its own consumer (`jobs.*.host.laneN`), so lanes never take each
/// other's messages.
struct Lane<'a> {
    floor: &'a Floor,
    worker: &'a Bus,
    puller: Puller,
    subject: String,
    host: String,
}

fn err(e: BusError) -> String {
    e.to_string()
}

const JOB: &[u8] = br#"{"id":"x","operation":{"type":"system.hostname.get","data":{}},"target_hostname":"_any","created":"","created_us":0,"timeout_ms":60000}"#;
/// About the size of a real HostState with three events.
const STATE_BYTES: usize = 400;

impl Floor {
    fn new(url: &str, worker_connections: usize) -> Result<Floor, String> {
        let opts = |name: &str| ConnectOptions {
            url: url.to_string(),
            user_pass: None,
            token: None,
            identity: Default::default(),
            request_timeout: Duration::from_secs(2),
            name: name.into(),
            inbox_prefix: "_INBOX".into(),
        };
        let client = Bus::connect(&opts("bench-client")).map_err(err)?;
        let workers = (0..worker_connections.max(1))
            .map(|n| Bus::connect(&opts(&format!("bench-worker{n}"))).map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        let ns = format!("bench{}", std::process::id());
        let names = Names::new(&ns, "JOBS", "jq", "jr", "w");
        let cfg = StreamConfig {
            max_age: Duration::from_secs(600),
            max_msgs: -1,
            max_bytes: -1,
            storage: "file".into(),
            replicas: 1,
            discard: "old".into(),
            max_consumers: 10_000,
        };
        client
            .stream_ensure(&names.stream, &[names.stream_subjects()], &cfg)
            .map_err(err)?;
        client.kv_ensure(&names.bucket, &cfg).map_err(err)?;
        client
            .kv_ensure(&names.response_bucket, &cfg)
            .map_err(err)?;
        Ok(Floor {
            client,
            workers,
            names,
        })
    }

    fn lane(&self, n: usize) -> Result<Lane<'_>, String> {
        let host = format!("lane{n}");
        let worker = &self.workers[n % self.workers.len()];
        let spec = &self.names.worker_consumers(&host, &Default::default())[2];
        worker
            .consumer_ensure(
                &self.names.stream,
                &ConsumerConfig {
                    durable: spec.durable.clone(),
                    filters: spec.filters.clone(),
                    ack_wait: Duration::from_secs(30),
                    max_deliver: 5,
                    back_off: vec![],
                    max_ack_pending: 1000,
                    max_waiting: 512,
                    replicas: 0,
                },
            )
            .map_err(err)?;
        let target = Target::Host(host.clone());
        Ok(Lane {
            floor: self,
            worker,
            puller: worker
                .puller(&self.names.stream, &spec.durable)
                .map_err(err)?,
            subject: self.names.job_subject(Kind::Query, &target),
            host,
        })
    }
}

impl Lane<'_> {
    /// One job, start to finish, as the API and a worker would do it.
    fn job(&self) -> Result<(), String> {
        let (client, worker, names) = (&self.floor.client, self.worker, &self.floor.names);
        let id = uuid::Uuid::new_v4().to_string();
        let state_key = format!("state.{id}.{}", self.host);
        let response_key = format!("{id}.{}", self.host);
        let state = vec![b'x'; STATE_BYTES];
        client
            .kv_create(&names.bucket, &format!("jobs.{id}"), JOB)
            .map_err(err)?;
        client
            .js_publish(&self.subject, &id, id.as_bytes())
            .map_err(err)?;
        let msg = self
            .puller
            .next(Duration::from_secs(5))
            .map_err(err)?
            .ok_or("no message within 5 s")?;
        worker
            .kv_get(&names.bucket, &format!("jobs.{id}"))
            .map_err(err)?;
        worker
            .kv_put(&names.bucket, &state_key, &state)
            .map_err(err)?;
        worker
            .kv_put(
                &names.response_bucket,
                &response_key,
                b"{\"hostname\":\"bench\"}",
            )
            .map_err(err)?;
        worker
            .kv_put(&names.bucket, &state_key, &state)
            .map_err(err)?;
        msg.ack().map_err(err)?;
        client
            .kv_get(&names.response_bucket, &response_key)
            .map_err(err)?;
        Ok(())
    }
}

/// `jobs` jobs one after the other: the latency of each, ms, and with `monitor` the server's messages
/// per job (the set-up of streams and consumers not counted).
pub fn sequential(
    url: &str,
    jobs: usize,
    monitor: Option<&Monitor>,
) -> Result<(Vec<f64>, Option<PerJob>), String> {
    let floor = Floor::new(url, 1)?;
    let lane = floor.lane(0)?;
    let window = monitor.map(Window::open).transpose()?;
    let mut out = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t = Instant::now();
        lane.job()?;
        out.push(ms(t.elapsed()));
    }
    let counted = window.map(|w| w.close(jobs)).transpose()?;
    Ok((out, counted))
}

/// `jobs` floor jobs and `jobs` runs of `other` (one HTTP round trip, ms), taken turn about, so a slow
/// stretch of the shared machine lands on both sides alike: (floor ms, `other` ms).
pub fn interleaved(
    url: &str,
    jobs: usize,
    other: &dyn Fn() -> Result<f64, String>,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let floor = Floor::new(url, 1)?;
    let lane = floor.lane(0)?;
    let (mut raw, mut http) = (Vec::with_capacity(jobs), Vec::with_capacity(jobs));
    for _ in 0..jobs {
        let t = Instant::now();
        lane.job()?;
        raw.push(ms(t.elapsed()));
        http.push(other()?);
    }
    Ok((raw, http))
}

/// Runs `lanes` loops at once for a given time, on one client and `worker_connections` worker connections
/// set up once: `body` gets the runner and may call it again and again (phase 3 alternates it with the
/// HTTP load); each call returns the jobs completed and the time they took.
pub fn with_lanes<T>(
    url: &str,
    lanes: usize,
    worker_connections: usize,
    body: impl FnOnce(
        &mut dyn FnMut(Duration) -> Result<(usize, Duration), String>,
    ) -> Result<T, String>,
) -> Result<T, String> {
    let floor = Floor::new(url, worker_connections)?;
    let lanes = (0..lanes)
        .map(|n| floor.lane(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut run = |duration: Duration| -> Result<(usize, Duration), String> {
        let start = Instant::now();
        let end = start + duration;
        let counts: Vec<Result<usize, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = lanes
                .iter()
                .map(|lane| {
                    s.spawn(move || {
                        let mut done = 0;
                        while Instant::now() < end {
                            lane.job()?;
                            done += 1;
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a lane panicked".into())))
                .collect()
        });
        let total: usize = counts.into_iter().sum::<Result<usize, String>>()?;
        Ok((total, start.elapsed()))
    };
    body(&mut run)
}
