//! Phase 7, the fleet: for each nats-server binary given, a fresh server and API of its own and `--fleet`
//! real worker processes (`fleet1..fleetN`, each its own NATS connection and consumers, labelled
//! `group: fleet`, `max_jobs` 1, the default 10 s heartbeat). Measured: time until every worker is listed
//! as subscribed, consumers on the stream, nats-server and API CPU and nats-server RSS with the fleet idle,
//! `_all` to every worker (POST until the last host's result), `_any` throughput with the fleet, and
//! `GET /job/workers` and `GET /job/{id}` of a broadcast job (latency and bytes); and what one broadcast
//! costs nats-server (messages, bytes, CPU), the API and each worker (CPU), and the job record's size
//! (fleet_cost.rs).

use crate::args::Args;
use crate::client::Api;
use crate::fleet_cost::{self, BroadcastCost, Pids, ReadCost};
use crate::fleet_down::{self, Cluster, Node, NodeDown};
use crate::jobs;
use crate::procs::{cpu_time, free_port, rss_kib, Procs};
use crate::stats::{ms, Summary};
use crate::varz::Monitor;
use osapi_bus::{Bus, ConnectOptions};
use osapi_common::names::Names;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the whole fleet may take to be listed as subscribed.
const JOIN_WITHIN: Duration = Duration::from_secs(600);
/// How long a fresh nats-server or API may take to answer.
const START_WITHIN: Duration = Duration::from_secs(30);
/// Pause after the fleet joined before the idle window: start-up work (layout, consumers) settles.
const SETTLE: Duration = Duration::from_secs(5);
/// Requests timed per read endpoint.
const READ_SAMPLES: usize = 20;
const POLL: Duration = Duration::from_millis(250);
/// The fewest hosts the in-process reading cost is timed at: the fleet target's size.
const READ_COST_HOSTS: usize = 1000;

/// The figures of one fleet on one nats-server.
pub struct FleetResult {
    pub server: String,
    pub workers: usize,
    pub join_s: f64,
    pub consumers: u64,
    pub idle_s: f64,
    pub idle_nats_cpu_percent: f64,
    pub idle_api_cpu_percent: f64,
    /// Messages a second into and out of nats-server while the fleet rests (a single server's `/varz`).
    pub idle_msgs_per_s: Option<[f64; 2]>,
    pub nats_rss_kib: Option<u64>,
    pub api_rss_kib: Option<u64>,
    pub broadcast: Summary,
    /// One broadcast's messages, bytes and CPU (bytes only from a single server's `/varz`).
    pub broadcast_cost: BroadcastCost,
    /// One worker's reading of a broadcast's record at (at least) 1,000 hosts, timed in-process.
    pub read_cost: ReadCost,
    pub any_jobs_per_s: f64,
    pub any_failed: usize,
    pub workers_get: Summary,
    pub workers_bytes: usize,
    pub detail_get: Summary,
    pub detail_bytes: usize,
    /// The cluster with one node stopped (`--fleet-node-down`).
    pub node_down: Option<NodeDown>,
}

/// Runs the fleet on each server of `a.fleet_nats` in turn, then (`--fleet-cluster N`) N workers on a
/// 3-node cluster of the last one with replicas 3.
pub fn run_all(a: &Args, procs: &mut Procs) -> Result<Vec<FleetResult>, String> {
    let mut out = Vec::new();
    for (i, nats) in a.fleet_nats.iter().enumerate() {
        out.push(run(a, procs, i, nats, 1, a.fleet)?);
    }
    if let (Some(nats), true) = (a.fleet_nats.last(), a.fleet_cluster > 0) {
        out.push(run(a, procs, a.fleet_nats.len(), nats, 3, a.fleet_cluster)?);
    }
    Ok(out)
}

/// `nodes` fresh nats-servers (clustered when more than one), their client URLs, the nodes (name,
/// arguments, pid), and a single server's monitoring endpoint (`-m`).
fn start_servers(
    procs: &mut Procs,
    dir: &Path,
    i: usize,
    nats_bin: &Path,
    nodes: usize,
) -> Result<(String, Vec<Node>, Option<Monitor>), String> {
    let ports: Vec<(u16, u16)> = (0..nodes)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_, String>>()?;
    let mut started = Vec::new();
    let mut monitor_url = None;
    for (n, (port, cluster_port)) in ports.iter().enumerate() {
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if nodes > 1 {
            let routes: Vec<String> = ports
                .iter()
                .filter(|(p, _)| p != port)
                .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
                .collect();
            args.extend([
                "--server_name".into(),
                format!("n{n}"),
                "--cluster_name".into(),
                format!("osapi-fleet{i}"),
                "--cluster".into(),
                format!("nats://127.0.0.1:{cluster_port}"),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        let monitor = match nodes {
            1 => Some(free_port()?),
            _ => None,
        };
        if let Some(m) = monitor {
            args.extend(["-m".into(), m.to_string()]);
            monitor_url = Some(format!("http://127.0.0.1:{m}"));
        }
        args.extend([
            "-js".into(),
            "-sd".into(),
            dir.join(format!("nats{n}")).display().to_string(),
        ]);
        let name = format!("fleet{i}-nats{n}");
        let pid = procs.program(&name, nats_bin, &args)?;
        started.push((name, args, pid));
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect();
    Ok((
        urls.join(","),
        started,
        monitor_url.as_deref().map(Monitor::new),
    ))
}

fn run(
    a: &Args,
    procs: &mut Procs,
    i: usize,
    nats_bin: &Path,
    nodes: usize,
    workers: usize,
) -> Result<FleetResult, String> {
    let dir = procs
        .run_dir()
        .map(|d| d.join(format!("fleet{i}")))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("osapi-fleet{i}-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (nats_url, mut nats_nodes, monitor) = start_servers(procs, &dir, i, nats_bin, nodes)?;
    let nats_pids: Vec<u32> = nats_nodes.iter().map(|n| n.2).collect();
    let started = Instant::now();
    let bus = loop {
        let opts = ConnectOptions {
            url: nats_url.clone(),
            user_pass: None,
            token: None,
            identity: Default::default(),
            request_timeout: Duration::from_secs(5),
            name: "osapi-bench fleet".into(),
            inbox_prefix: "_INBOX".into(),
        };
        // JetStream answers once a cluster has elected its meta leader.
        match Bus::connect(&opts).and_then(|b| b.js_api("INFO", &serde_json::json!({})).map(|_| b))
        {
            Ok(bus) => break bus,
            Err(e) if started.elapsed() > START_WITHIN => return Err(format!("{nats_url}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let version = bus.server_version().map_err(|e| e.to_string())?;
    let consumers = a.fleet_consumer_replicas;
    let server = match (nodes, consumers) {
        (1, _) => version,
        (_, 0) => format!("{version} x{nodes} R{nodes}"),
        _ => format!("{version} x{nodes} R{nodes}, own consumers R{consumers}"),
    };
    let config_yaml = std::fs::read_to_string(&a.config)
        .map_err(|e| format!("cannot read {}: {e}", a.config.display()))?;
    let names = crate::scaling::names(&config_yaml, "")?;
    // Every daemon lays out the same replicas (a worker with 1 would scale the streams down).
    let replicas = nodes.to_string();
    let common = [
        ("OSAPI_NATS_URL", nats_url.clone()),
        ("OSAPI_NATS_STREAM_REPLICAS", replicas.clone()),
        ("OSAPI_NATS_KV_REPLICAS", replicas.clone()),
        ("OSAPI_NATS_DLQ_REPLICAS", replicas),
    ];
    let api_port = free_port()?;
    let api_url = format!("http://127.0.0.1:{api_port}");
    let mut env = common.to_vec();
    env.push(("OSAPI_API_SERVER_LISTEN", format!("127.0.0.1:{api_port}")));
    let api_pid = procs.spawn(&format!("fleet{i}-api"), "osapi-api", &env)?;
    let api = Api::new(&api_url);
    wait_for(START_WITHIN, "the fleet API to answer", || {
        Ok(api.get("/health/ready").is_ok_and(|(code, _)| code == 200))
    })?;

    eprintln!("osapi-bench [7] nats-server {server}: starting {workers} workers");
    let t = Instant::now();
    let mut pids = Vec::with_capacity(workers);
    for n in 1..=workers {
        let mut env = common.to_vec();
        env.extend([
            ("OSAPI_JOB_WORKER_HOSTNAME", format!("fleet{n}")),
            ("OSAPI_JOB_WORKER_MAX_JOBS", "1".into()),
            ("OSAPI_JOB_WORKER_HEARTBEAT", a.fleet_heartbeat.clone()),
            ("OSAPI_JOB_WORKER_LABELS", "{group: fleet}".into()),
            // At most the stream's (the config refuses more): 1 on a single server.
            (
                "OSAPI_JOB_WORKER_CONSUMER_REPLICAS",
                consumers.min(nodes).to_string(),
            ),
        ]);
        pids.push(procs.spawn(&format!("fleet{i}-worker{n}"), "osapi-worker", &env)?);
    }
    let mut result = measure(
        a,
        (&api, &bus, &names, monitor.as_ref()),
        Pids {
            nats: &nats_pids,
            api: api_pid,
            workers: &pids,
        },
        (t, workers),
        server,
    );
    if let (Ok(r), Some(len), true) = (&mut result, a.fleet_node_down, nodes > 1) {
        let cluster = Cluster {
            nats_bin,
            api: api_pid,
            workers: &pids,
        };
        let api = Api::new(&api_url);
        match fleet_down::run(procs, &api, &mut nats_nodes, &cluster, workers, len) {
            Ok(down) => r.node_down = Some(down),
            Err(e) => result = Err(e),
        }
    }
    procs.stop_all(&pids);
    procs.stop(api_pid);
    procs.stop_all(&nats_nodes.iter().map(|n| n.2).collect::<Vec<_>>());
    result
}

fn measure(
    a: &Args,
    (api, bus, names, monitor): (&Api, &Bus, &Names, Option<&Monitor>),
    pids: Pids<'_>,
    (started, workers): (Instant, usize),
    server: String,
) -> Result<FleetResult, String> {
    let (nats_pids, api_pid, stream) = (pids.nats, pids.api, &names.stream);
    let mut last_count = 0;
    wait_for(
        JOIN_WITHIN,
        "every fleet worker to be listed as subscribed",
        || {
            last_count = api.subscription_counts()?.0;
            Ok(last_count >= workers)
        },
    )
    .map_err(|e| format!("{e} ({last_count} of {workers} joined)"))?;
    let join_s = started.elapsed().as_secs_f64();
    eprintln!("osapi-bench [7] {workers} workers joined in {join_s:.1} s");
    let consumers = bus
        .stream_consumers(stream)
        .map_err(|e| format!("consumers of {stream}: {e}"))?
        .used;

    std::thread::sleep(SETTLE.min(a.fleet_idle));
    let cpu = |pid: u32| cpu_time(&pid.to_string()).unwrap_or_default();
    // A cluster's figures are its nodes' together.
    let nats_cpu = || nats_pids.iter().map(|p| cpu(*p)).sum::<Duration>();
    let msgs = || {
        monitor
            .and_then(|m| m.read().ok())
            .map(|c| [c.in_msgs, c.out_msgs])
    };
    let msgs_before = msgs();
    let (nats_before, api_before, t) = (nats_cpu(), cpu(api_pid), Instant::now());
    std::thread::sleep(a.fleet_idle);
    let idle = t.elapsed().as_secs_f64();
    let idle_msgs_per_s = msgs_before
        .zip(msgs())
        .map(|(before, after)| [0, 1].map(|i| after[i].saturating_sub(before[i]) as f64 / idle));
    let percent = |after: Duration, before: Duration| {
        after.saturating_sub(before).as_secs_f64() * 100.0 / idle
    };
    let idle_nats_cpu_percent = percent(nats_cpu(), nats_before);
    let idle_api_cpu_percent = percent(cpu(api_pid), api_before);
    let nats_rss_kib = nats_pids.iter().map(|p| rss_kib(*p)).sum::<Option<u64>>();

    eprintln!("osapi-bench [7] broadcast to {workers} workers");
    // A fresh agent: the kept-alive connection sat idle past the API's head timeout, and its first
    // request would read the 408 the API sent on it meanwhile.
    let api = &Api::new(api.base());
    let (broadcast, last_id, broadcast_cost) =
        fleet_cost::broadcasts(api, bus, names, monitor, &pids, (workers, a.fleet_runs))?;
    let detail = timed_reads(api, &format!("/job/{last_id}"))?;
    let listing = timed_reads(api, "/job/workers")?;

    eprintln!("osapi-bench [7] _any throughput with the fleet");
    let any = jobs::throughput(
        api.base(),
        a.http_client,
        jobs::Form::CreateThenWait,
        a.clients,
        a.fleet_any,
        &[api_pid],
    )?;
    Ok(FleetResult {
        server,
        workers,
        join_s,
        consumers,
        idle_s: idle,
        idle_nats_cpu_percent,
        idle_api_cpu_percent,
        idle_msgs_per_s,
        nats_rss_kib,
        api_rss_kib: any.rss_max_kib.get(&api_pid).copied(),
        broadcast,
        broadcast_cost,
        read_cost: fleet_cost::read_cost(workers.max(READ_COST_HOSTS))?,
        any_jobs_per_s: any.jobs_per_s(),
        any_failed: any.failed,
        workers_get: listing.0,
        workers_bytes: listing.1,
        detail_get: detail.0,
        detail_bytes: detail.1,
        node_down: None,
    })
}

/// [`READ_SAMPLES`] GETs of `path`: latency and the body's size in bytes (of its JSON).
fn timed_reads(api: &Api, path: &str) -> Result<(Summary, usize), String> {
    let mut times = Vec::with_capacity(READ_SAMPLES);
    let mut bytes = 0;
    for _ in 0..READ_SAMPLES {
        let t = Instant::now();
        let v = api.get_ok(path)?;
        times.push(ms(t.elapsed()));
        bytes = v.to_string().len();
    }
    Ok((Summary::of(&times), bytes))
}

/// Polls `done` until it says true, or fails after `within`.
fn wait_for(
    within: Duration,
    what: &str,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        // A request that fails while the system is busy starting is one more poll, not the end.
        if done().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("waited {within:?} for {what}"));
        }
        std::thread::sleep(POLL);
    }
}
