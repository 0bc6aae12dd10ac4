//! `osapi-bench`: every figure of `make bench` (issue 6) from one run against one nats-server and API,
//! printed as one table and written as JSON. The phases, in order:
//! 1. raw floor: the NATS operations of one job through `osapi-bus`, no HTTP (`floor.rs`);
//! 2. round trip: `POST /job` + `GET /job/{id}?wait=`, sequential, and its ratio to 1 (`jobs.rs`);
//!    in both, with `--nats-monitor`, nats-server's messages per job (`varz.rs`);
//!    then idle RSS and the time a fresh API takes to be ready;
//! 3. throughput: concurrent clients against `--workers` workers, RSS sampled under load (`jobs.rs`);
//! 4. broadcast: `_all` to `--broadcast-workers` workers (`jobs.rs`);
//! 5. scaling: the read endpoints with 10k and 50k jobs in a bucket of their own (`scaling.rs`);
//! 6. footprint: RSS (phases 2-3), binary sizes, start-up to ready (`procs.rs`);
//! 7. fleet: `--fleet` worker processes on a fresh nats-server and API of each `--fleet-nats` binary
//!    (`fleet.rs`); `--only fleet` runs this phase alone.
//!
//! Timings on a shared machine are noisy: compare ratios within one run. See docs/benchmarks.md.

mod args;
mod client;
mod fleet;
mod fleet_cost;
mod fleet_down;
mod floor;
mod jobs;
mod lean;
mod procs;
mod report;
mod scaling;
mod stats;
mod varz;

use args::{Args, USAGE};
use client::Api;
use procs::{free_port, rss_kib, Procs};
use report::{per_job_us, total, Footprint, Results, ScaleLevel};
use stats::{ms, Summary};
use std::time::{Duration, Instant};

/// How long started workers may take to show up in `GET /job/workers`.
const WORKERS_WITHIN: Duration = Duration::from_secs(60);
/// How long a fresh API may take to be ready (the scaling one replays 100k+ records).
const READY_WITHIN: Duration = Duration::from_secs(300);
/// Quiet time before idle RSS is read, so the daemons are at rest.
const SETTLE: Duration = Duration::from_millis(500);
/// The idle window read after the throughput phase for its background message rate.
const LOAD_IDLE: Duration = Duration::from_secs(2);
/// The namespace of the scaling phase's bucket and API.
const SCALE_NAMESPACE: &str = "benchscale";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("osapi-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if args.only_fleet {
        return only_fleet(&args);
    }
    let (results, fleet) = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("osapi-bench: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", report::table(&results, &args));
    let mut json = report::json(&results, &args);
    if !fleet.is_empty() {
        print!("\n{}", report::fleet_table(&fleet));
        let fleet_json = report::fleet_json(&fleet, &args);
        if let (Some(all), Some(more)) = (
            json["targets"].as_array_mut(),
            fleet_json["targets"].as_array(),
        ) {
            all.extend(more.iter().cloned());
        }
        json["fleet"] = fleet_json;
    } else {
        println!("\nfleet targets: not measured (--fleet 0; BENCH_ONLY=fleet measures them alone)");
    }
    write_json(&args, &json);
}

/// `--only fleet`: the fleet phase alone; its figures replace `fleet` in the results file, whose other
/// sections (an earlier full run's) stay as they were.
fn only_fleet(args: &Args) {
    let mut procs = Procs::new(args);
    let fleet = match fleet::run_all(args, &mut procs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("osapi-bench: fleet: {e}");
            std::process::exit(1);
        }
    };
    drop(procs);
    print!("{}", report::fleet_table(&fleet));
    let mut json = args
        .out
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    json["fleet"] = report::fleet_json(&fleet, args);
    write_json(args, &json);
}

fn write_json(args: &Args, json: &serde_json::Value) {
    if let Some(out) = &args.out {
        let text = format!("{json:#}\n");
        if let Err(e) = std::fs::write(out, text) {
            eprintln!("osapi-bench: cannot write {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}

fn phase(n: usize, what: &str) {
    eprintln!("osapi-bench [{n}/7] {what}");
}

fn run(a: &Args) -> Result<(Results, Vec<fleet::FleetResult>), String> {
    let config_yaml = std::fs::read_to_string(&a.config)
        .map_err(|e| format!("cannot read {}: {e}", a.config.display()))?;
    let mut procs = Procs::new(a);
    let api = Api::new(&a.api_url);

    let monitor = a.nats_monitor.as_deref().map(varz::Monitor::new);
    phase(1, &format!("raw NATS floor, {} jobs", a.jobs));
    let (floor_ms, nats_floor) = floor::sequential(&a.nats_url, a.jobs, monitor.as_ref())?;
    let floor = Summary::of(&floor_ms);

    let hosts: Vec<String> = (1..=a.broadcast_workers)
        .map(|n| format!("bench{n}"))
        .collect();
    let (load_hosts, extra_hosts) = hosts.split_at(a.workers);
    let mut worker_pids = Vec::new();
    for h in load_hosts {
        worker_pids.push(procs.worker(h, a.max_jobs)?);
    }
    api.wait_workers(&load_hosts.iter().cloned().collect(), WORKERS_WITHIN)?;

    phase(2, &format!("HTTP round trip, {} jobs", a.jobs));
    let window = monitor.as_ref().map(varz::Window::open).transpose()?;
    let round_trip = Summary::of(&jobs::round_trip(&api, a.jobs)?);
    let nats_round_trip = window.map(|w| w.close(a.jobs)).transpose()?;
    // The ratio the target reads: floor and HTTP jobs taken turn about, not a minute apart.
    let (raw, http) = floor::interleaved(&a.nats_url, a.jobs, &|| jobs::one_round_trip(&api))?;
    let interleaved = (Summary::of(&raw), Summary::of(&http));
    std::thread::sleep(SETTLE);
    let api_idle_kib = a.api_pid.and_then(rss_kib);
    let worker_idle_kib = worker_pids.iter().filter_map(|p| rss_kib(*p)).max();
    let ready = Summary::of(&time_ready(&mut procs, "", a.ready_runs)?);

    phase(
        3,
        &format!(
            "throughput, {} clients for {:?}, raw and HTTP in turn, {} slices each",
            a.clients, a.duration, a.slices
        ),
    );
    let load = throughput_phase(a, &worker_pids, monitor.as_ref())?;
    let Load {
        throughput,
        cpu_load,
        one_request,
        cpu_one_request,
        nats_throughput,
        floor_jobs,
        floor_time,
        floor_nats_cpu,
        floor_own_cpu,
        turns,
    } = load;
    let floor_jobs_per_s = floor_jobs as f64 / floor_time.as_secs_f64().max(1e-9);
    let api_load_kib = a
        .api_pid
        .and_then(|p| throughput.rss_max_kib.get(&p).copied());
    let worker_load_kib = worker_pids
        .iter()
        .filter_map(|p| throughput.rss_max_kib.get(p).copied())
        .max();

    phase(4, &format!("broadcast to {} workers", hosts.len()));
    let mut extra_pids = Vec::new();
    for h in extra_hosts {
        extra_pids.push(procs.worker(h, a.max_jobs)?);
    }
    api.wait_workers(&hosts.iter().cloned().collect(), WORKERS_WITHIN)?;
    let broadcast = Summary::of(&jobs::broadcast(&api, hosts.len(), a.broadcast_runs)?);
    for pid in extra_pids {
        procs.stop(pid);
    }

    phase(
        5,
        &format!("scaling with {:?} jobs in the bucket", a.scaling),
    );
    let (scaling, ready_full) = scaling_phase(a, &mut procs, &config_yaml)?;

    phase(6, "footprint");
    let sizes = ["osapi-api", "osapi-worker", "osapi"]
        .iter()
        .map(|b| {
            let bytes = std::fs::metadata(procs.binary(b)).map(|m| m.len());
            bytes
                .map(|n| (b.to_string(), n))
                .map_err(|e| format!("{b}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let fleet = if a.fleet > 0 {
        phase(7, &format!("fleet of {} workers", a.fleet));
        fleet::run_all(a, &mut procs)?
    } else {
        Vec::new()
    };
    let results = Results {
        floor,
        round_trip,
        interleaved,
        nats_floor,
        nats_round_trip,
        nats_throughput,
        throughput,
        cpu_load,
        one_request,
        cpu_one_request,
        floor_jobs_per_s,
        floor_nats_cpu_us_per_job: per_job_us(floor_nats_cpu, floor_jobs),
        floor_cpu_us_per_job: per_job_us(floor_nats_cpu + floor_own_cpu, floor_jobs),
        turns,
        broadcast,
        broadcast_hosts: hosts.len(),
        scaling,
        footprint: Footprint {
            api_idle_kib,
            worker_idle_kib,
            api_load_kib,
            worker_load_kib,
            sizes,
            ready,
            ready_full,
        },
    };
    Ok((results, fleet))
}

/// Phase 3's figures: the three loads, each summed over its slices.
struct Load {
    throughput: jobs::Throughput,
    /// CPU of each group (and the bench's HTTP clients, last) during the HTTP slices.
    cpu_load: Vec<(String, Duration)>,
    /// The same two for the one-request form (`POST /job?wait=`).
    one_request: jobs::Throughput,
    cpu_one_request: Vec<(String, Duration)>,
    /// NATS messages a job, counted over the last HTTP slice.
    nats_throughput: Option<varz::PerJob>,
    /// The floor's jobs, and the time its slices took.
    floor_jobs: usize,
    floor_time: Duration,
    floor_nats_cpu: Duration,
    floor_own_cpu: Duration,
    /// Each turn's jobs/s.
    turns: Vec<report::Turn>,
}

/// The raw floor's 16 lanes and the HTTP clients in turn (create then wait, then the same jobs in
/// one request each, the two sharing the HTTP half of a slice), `--slices` slices, so that a slow or
/// fast spell of the shared machine lands on every side of the share alike rather than on whichever
/// load ran in it. (It evens out drift between the loads; the share still moves with the machine's
/// state from run to run: docs/benchmarks.md, round 11.)
fn throughput_phase(
    a: &Args,
    worker_pids: &[u32],
    monitor: Option<&varz::Monitor>,
) -> Result<Load, String> {
    let watched: Vec<u32> = a.api_pid.iter().chain(worker_pids).copied().collect();
    let groups = [
        (
            "nats-server",
            a.nats_pid.iter().copied().collect::<Vec<_>>(),
        ),
        ("API", a.api_pid.iter().copied().collect()),
        ("workers", worker_pids.to_vec()),
    ];
    let slices = a.slices.max(1);
    let slice = a.duration / slices as u32;
    // The two HTTP forms share the HTTP turn, half each: the API then runs as many jobs in the phase
    // as one form did before (its RSS under load grows with the jobs its index holds).
    let half = slice / 2;
    let zero = || -> Vec<(String, Duration)> {
        cpu_of(&groups)
            .into_iter()
            .map(|(name, _)| (name, Duration::ZERO))
            .collect()
    };
    // One HTTP form for half a slice, its groups' CPU added to `cpu`; with the CPU all of them used.
    let run_http = |form, cpu: &mut Vec<(String, Duration)>| {
        let before = cpu_of(&groups);
        let done = jobs::throughput(&a.api_url, a.http_client, form, a.clients, half, &watched)?;
        let after = cpu_of(&groups);
        let used = total(&after).saturating_sub(total(&before));
        add_cpu(cpu, before, after);
        Ok::<_, String>((done, used))
    };
    floor::with_lanes(&a.nats_url, a.clients, a.workers, |run_floor| {
        let mut load = Load {
            throughput: jobs::Throughput::default(),
            cpu_load: zero(),
            one_request: jobs::Throughput::default(),
            cpu_one_request: zero(),
            nats_throughput: None,
            floor_jobs: 0,
            floor_time: Duration::ZERO,
            floor_nats_cpu: Duration::ZERO,
            floor_own_cpu: Duration::ZERO,
            turns: Vec::with_capacity(slices),
        };
        for n in 0..slices {
            let nats_before = cpu_of(&groups[..1]);
            // The floor's lanes run in this process: its own CPU is the floor's "API and workers".
            let own_before = procs::cpu_time("self").unwrap_or_default();
            let (jobs, took) = run_floor(slice)?;
            let own = procs::cpu_time("self")
                .unwrap_or_default()
                .saturating_sub(own_before);
            let nats = cpu_of(&groups[..1])[0].1.saturating_sub(nats_before[0].1);
            load.floor_own_cpu += own;
            load.floor_nats_cpu += nats;
            load.floor_jobs += jobs;
            load.floor_time += took;
            let floor_per_s = jobs as f64 / took.as_secs_f64().max(1e-9);

            let last = n + 1 == slices;
            let window = monitor
                .filter(|_| last)
                .map(varz::Window::open)
                .transpose()?;
            let (http, http_cpu) = run_http(jobs::Form::CreateThenWait, &mut load.cpu_load)?;
            if let Some(w) = window {
                load.nats_throughput = Some(w.close_within(http.completed, LOAD_IDLE)?);
            }
            let (one, _) = run_http(jobs::Form::OneRequest, &mut load.cpu_one_request)?;
            load.turns.push(report::Turn {
                floor: floor_per_s,
                create_then_wait: http.jobs_per_s(),
                one_request: one.jobs_per_s(),
                floor_cpu_us: per_job_us(own + nats, jobs),
                create_then_wait_cpu_us: per_job_us(http_cpu, http.completed),
            });
            load.throughput.merge(http);
            load.one_request.merge(one);
        }
        Ok(load)
    })
}

/// Adds what each group used between `before` and `after` to `sums`.
fn add_cpu(
    sums: &mut [(String, Duration)],
    before: Vec<(String, Duration)>,
    after: Vec<(String, Duration)>,
) {
    for ((sum, (_, after)), (_, before)) in sums.iter_mut().zip(after).zip(before) {
        sum.1 += after.saturating_sub(before);
    }
}

/// CPU time so far of each named group of processes, and of this process (the HTTP clients) last.
fn cpu_of(groups: &[(&str, Vec<u32>)]) -> Vec<(String, Duration)> {
    let mut out: Vec<(String, Duration)> = groups
        .iter()
        .map(|(name, pids)| {
            let total = pids
                .iter()
                .filter_map(|p| procs::cpu_time(&p.to_string()))
                .sum();
            (name.to_string(), total)
        })
        .collect();
    let own = procs::cpu_time("self").unwrap_or_default();
    out.push(("bench clients".into(), own));
    out
}

/// Start-up time against the full scaling bucket: (jobs in it, times).
type ReadyFull = (usize, Summary);

/// Starts an API on `namespace`, fills its bucket to each size in turn and times the read endpoints;
/// at the end, times a fresh API's start against the full bucket.
fn scaling_phase(
    a: &Args,
    procs: &mut Procs,
    config_yaml: &str,
) -> Result<(Vec<ScaleLevel>, Option<ReadyFull>), String> {
    let names = scaling::names(config_yaml, SCALE_NAMESPACE)?;
    let port = free_port()?;
    let pid = procs.api("api-scaling", &format!("127.0.0.1:{port}"), SCALE_NAMESPACE)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(procs, pid, &url)?;
    let api = Api::new(&url);
    // Jobs created 30 minutes ago: every deadline has passed, and the 1 h TTL is far off.
    let base_us = now_us() - 30 * 60 * 1_000_000;
    let mut filled = scaling::Filled::default();
    let mut levels = Vec::new();
    for &size in &a.scaling {
        let from = filled.ids.len();
        let before = filled.fill_time;
        scaling::fill(&a.nats_url, &names, from, size, base_us, &mut filled)?;
        let index = scaling::wait_indexed(&api, filled.ids.len(), filled.completed)?;
        let endpoints = scaling::measure(&api, &filled, a.scaling_samples)?;
        levels.push(ScaleLevel {
            jobs: size,
            fill_s: (filled.fill_time - before).as_secs_f64(),
            index_s: index.as_secs_f64(),
            endpoints,
            api_rss_kib: rss_kib(pid),
        });
    }
    procs.stop(pid);
    let full = match a.scaling.last() {
        Some(&jobs) => Some((jobs, Summary::of(&time_ready(procs, SCALE_NAMESPACE, 1)?))),
        None => None,
    };
    Ok((levels, full))
}

/// Starts a fresh API `runs` times on `namespace` and times spawn to `/health/ready` 200 (ms).
fn time_ready(procs: &mut Procs, namespace: &str, runs: usize) -> Result<Vec<f64>, String> {
    let mut out = Vec::with_capacity(runs);
    for n in 0..runs {
        let port = free_port()?;
        let t = Instant::now();
        let pid = procs.api(
            &format!("api-ready-{n}"),
            &format!("127.0.0.1:{port}"),
            namespace,
        )?;
        wait_ready(procs, pid, &format!("http://127.0.0.1:{port}"))?;
        out.push(ms(t.elapsed()));
        procs.stop(pid);
    }
    Ok(out)
}

/// Polls `/health/ready` every millisecond until 200; fails if the process exits first.
fn wait_ready(procs: &mut Procs, pid: u32, url: &str) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(r) = agent.get(&format!("{url}/health/ready")).call() {
            if r.status() == 200 {
                return Ok(());
            }
        }
        if !procs.alive(pid) {
            return Err(format!("the API on {url} exited before it was ready"));
        }
        if Instant::now() > deadline {
            return Err(format!("the API on {url} not ready after {READY_WITHIN:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
