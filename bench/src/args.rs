//! The command line: where the running system is, and every size the benchmark uses, so that a smoke
//! run (tests/tests/bench_smoke.rs) can shrink each phase to a second.

use osapi_common::duration::parse_duration;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: osapi-bench --nats URL --api URL --config PATH [options]

Runs every phase of `make bench` against a running nats-server and API (token in $OSAPI_TOKEN), starting
the workers and extra API processes it needs from --bin-dir with --config (OSAPI_* env overrides).

  --nats URL                 nats-server of the running system
  --api URL                  the running API, e.g. http://127.0.0.1:8080
  --api-pid PID              its process id (for RSS); without it the API's RSS is not reported
  --nats-pid PID             the nats-server's process id (for its CPU time under load)
  --config PATH              the YAML the API was started with; workers and extra APIs use it too
  --bin-dir DIR              where osapi-api, osapi-worker, osapi are (default: this binary's dir)
  --run-dir DIR              child logs and bench.pids (pids of children, for cleanup) go here
  --out PATH                 also write the results as JSON here
  --jobs N                   sequential jobs for the floor and the round trip (300)
  --duration D               throughput phase length, e.g. 20s or 500ms (20s)
  --slices N                 the phase's raw floor and two HTTP loads take turns in N slices of D/N each (4)
  --clients N                concurrent throughput clients (16)
  --http-client lean|ureq    the throughput clients' HTTP code: a hand-written keep-alive client (lean,
                             the default) or ureq (what a Rust script would use; ~3x the client CPU)
  --workers N                throughput workers bench1..benchN (2)
  --max-jobs N               their job.worker.max_jobs (8)
  --broadcast-workers N      workers for the `_all` phase, bench1..benchN (10)
  --broadcast-runs N         `_all` jobs timed (5)
  --scaling N,N              bucket sizes for the scaling phase (10000,50000)
  --scaling-samples N        requests per endpoint and size (30)
  --ready-runs N             fresh API starts timed (3)
  --fleet N                  workers of the fleet phase, each its own process (1000; 0 skips it)
  --fleet-nats PATH[,PATH]   nats-server binaries: the fleet runs on a fresh server of each in turn
  --fleet-idle D             how long the joined fleet sits idle while CPU is measured (60s)
  --fleet-runs N             `_all` jobs timed with the fleet (5)
  --fleet-any D              `_any` throughput run with the fleet (10s)
  --fleet-heartbeat D        the fleet workers' job.worker.heartbeat (10s, the default)
  --fleet-cluster N          then N workers on a 3-node cluster (replicas 3) of the last --fleet-nats (0)
  --fleet-consumer-replicas N  the fleet workers' job.worker.consumer.replicas (0: the stream's)
  --fleet-node-down D        then, on the cluster, idle D with all nodes and D with one stopped (CPU,
                             hosts out of reach), and the time until all are back once it restarts
  --only fleet               run the fleet phase alone; its figures replace `fleet` in --out";

/// The throughput clients' HTTP code (`--http-client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpClient {
    /// `bench/src/lean.rs`, the default.
    Lean,
    Ureq,
}

impl HttpClient {
    pub fn name(self) -> &'static str {
        match self {
            HttpClient::Lean => "lean",
            HttpClient::Ureq => "ureq",
        }
    }
}

/// Everything the phases need to know.
#[derive(Debug, Clone)]
pub struct Args {
    pub nats_url: String,
    pub api_url: String,
    pub api_pid: Option<u32>,
    pub nats_pid: Option<u32>,
    pub nats_monitor: Option<String>,
    pub config: PathBuf,
    pub bin_dir: PathBuf,
    pub run_dir: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub jobs: usize,
    pub duration: Duration,
    pub clients: usize,
    pub http_client: HttpClient,
    /// Phase 3's turns: the floor and the two HTTP loads each run `slices` times for `duration / slices`.
    pub slices: usize,
    pub workers: usize,
    pub max_jobs: usize,
    pub broadcast_workers: usize,
    pub broadcast_runs: usize,
    pub scaling: Vec<usize>,
    pub scaling_samples: usize,
    pub ready_runs: usize,
    pub fleet: usize,
    pub fleet_nats: Vec<PathBuf>,
    pub fleet_idle: Duration,
    pub fleet_runs: usize,
    pub fleet_any: Duration,
    pub fleet_heartbeat: String,
    pub fleet_cluster: usize,
    pub fleet_consumer_replicas: usize,
    pub fleet_node_down: Option<Duration>,
    pub only_fleet: bool,
}

fn count(flag: &str, v: &str, min: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{flag}: expected an integer >= {min}, got '{v}'")),
    }
}

fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    match parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{flag}: must be more than 0")),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

impl Args {
    /// Parses `--flag value` pairs (the program name first).
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut a = Args {
            nats_url: String::new(),
            api_url: String::new(),
            api_pid: None,
            nats_pid: None,
            nats_monitor: None,
            config: PathBuf::new(),
            bin_dir,
            run_dir: None,
            out: None,
            jobs: 300,
            duration: Duration::from_secs(20),
            clients: 16,
            http_client: HttpClient::Lean,
            slices: 4,
            workers: 2,
            max_jobs: 8,
            broadcast_workers: 10,
            broadcast_runs: 5,
            scaling: vec![10_000, 50_000],
            scaling_samples: 30,
            ready_runs: 3,
            fleet: 1000,
            fleet_nats: Vec::new(),
            fleet_idle: Duration::from_secs(60),
            fleet_runs: 5,
            fleet_any: Duration::from_secs(10),
            fleet_heartbeat: "10s".into(),
            fleet_cluster: 0,
            fleet_consumer_replicas: 0,
            fleet_node_down: None,
            only_fleet: false,
        };
        let mut it = argv.iter().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(String::new());
            }
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            match flag.as_str() {
                "--nats" => a.nats_url = v.to_string(),
                "--api" => a.api_url = v.trim_end_matches('/').to_string(),
                "--api-pid" => a.api_pid = Some(count(flag, v, 1)? as u32),
                "--nats-pid" => a.nats_pid = Some(count(flag, v, 1)? as u32),
                "--nats-monitor" => a.nats_monitor = Some(v.trim_end_matches('/').to_string()),
                "--config" => a.config = PathBuf::from(v),
                "--bin-dir" => a.bin_dir = PathBuf::from(v),
                "--run-dir" => a.run_dir = Some(PathBuf::from(v)),
                "--out" => a.out = Some(PathBuf::from(v)),
                "--jobs" => a.jobs = count(flag, v, 1)?,
                "--duration" => {
                    a.duration = parse_duration(v).map_err(|e| format!("--duration: {e}"))?
                }
                "--clients" => a.clients = count(flag, v, 1)?,
                "--slices" => a.slices = count(flag, v, 1)?,
                "--http-client" => {
                    a.http_client = match v {
                        "lean" => HttpClient::Lean,
                        "ureq" => HttpClient::Ureq,
                        _ => return Err(format!("--http-client: lean or ureq, not '{v}'")),
                    }
                }
                "--workers" => a.workers = count(flag, v, 1)?,
                "--max-jobs" => a.max_jobs = count(flag, v, 1)?,
                "--broadcast-workers" => a.broadcast_workers = count(flag, v, 1)?,
                "--broadcast-runs" => a.broadcast_runs = count(flag, v, 1)?,
                "--scaling" => {
                    a.scaling = v
                        .split(',')
                        .map(|n| count(flag, n.trim(), 1))
                        .collect::<Result<_, _>>()?;
                    a.scaling.sort_unstable();
                }
                "--scaling-samples" => a.scaling_samples = count(flag, v, 1)?,
                "--ready-runs" => a.ready_runs = count(flag, v, 1)?,
                "--fleet" => a.fleet = count(flag, v, 0)?,
                "--fleet-nats" => {
                    a.fleet_nats = v
                        .split(',')
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| PathBuf::from(p.trim()))
                        .collect()
                }
                "--fleet-idle" => a.fleet_idle = duration(flag, v)?,
                "--fleet-runs" => a.fleet_runs = count(flag, v, 1)?,
                "--fleet-cluster" => a.fleet_cluster = count(flag, v, 0)?,
                "--fleet-consumer-replicas" => a.fleet_consumer_replicas = count(flag, v, 0)?,
                "--fleet-any" => a.fleet_any = duration(flag, v)?,
                "--fleet-node-down" if v == "0" => a.fleet_node_down = None,
                "--fleet-node-down" => a.fleet_node_down = Some(duration(flag, v)?),
                "--fleet-heartbeat" => {
                    duration(flag, v)?;
                    a.fleet_heartbeat = v.to_string();
                }
                "--only" if v == "fleet" => a.only_fleet = true,
                "--only" => {
                    return Err(format!(
                        "--only: the one phase that runs alone is fleet, not '{v}'"
                    ))
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        if a.nats_url.is_empty() || a.api_url.is_empty() || a.config.as_os_str().is_empty() {
            return Err("--nats, --api and --config are required".into());
        }
        if a.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if a.fleet > 0 && a.fleet_nats.is_empty() {
            return Err("--fleet needs --fleet-nats (or --fleet 0)".into());
        }
        // The broadcast fleet includes the throughput workers.
        a.broadcast_workers = a.broadcast_workers.max(a.workers);
        Ok(a)
    }
}
