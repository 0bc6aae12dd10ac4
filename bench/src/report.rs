//! The one table `make bench` prints and the same figures as JSON (bench/results.json), with each target
//! of issues 6 and 13 checked: PASS or MISS, and by how much.

use crate::args::Args;
use crate::jobs::Throughput;
use crate::scaling::ENDPOINTS;
use crate::stats::{mib, round3, Summary};
use crate::varz::PerJob;
use serde_json::{json, Value};
use std::time::Duration;

mod fleet_report;
mod targets;
pub use fleet_report::{fleet_json, fleet_table};
use targets::{checks, checks_text, nats_cpu_us_per_http_job, Check};

/// One bucket size of the scaling phase.
pub struct ScaleLevel {
    pub jobs: usize,
    pub fill_s: f64,
    /// From the last write until the API's index showed every record.
    pub index_s: f64,
    /// In [`ENDPOINTS`] order.
    pub endpoints: Vec<Summary>,
    /// The scaling API's RSS at this size (what the index costs).
    pub api_rss_kib: Option<u64>,
}

pub struct Footprint {
    pub api_idle_kib: Option<u64>,
    pub worker_idle_kib: Option<u64>,
    pub api_load_kib: Option<u64>,
    pub worker_load_kib: Option<u64>,
    /// (binary, bytes)
    pub sizes: Vec<(String, u64)>,
    /// Fresh API start to `/health/ready` 200, against the run's bucket before the load phases.
    pub ready: Summary,
    /// The same against the scaling bucket at its largest size: (jobs, times).
    pub ready_full: Option<(usize, Summary)>,
}

pub struct Results {
    pub floor: Summary,
    pub round_trip: Summary,
    /// The floor and the round trip again, one job of each in turn: (floor, HTTP).
    pub interleaved: (Summary, Summary),
    /// nats-server's messages per job in phase 1 and phase 2 (with `--nats-monitor`).
    pub nats_floor: Option<PerJob>,
    pub nats_round_trip: Option<PerJob>,
    /// The same over the HTTP throughput phase (concurrent jobs: the audit trail's batches show here).
    pub nats_throughput: Option<PerJob>,
    pub throughput: Throughput,
    /// CPU time each side used during the throughput phase.
    pub cpu_load: Vec<(String, std::time::Duration)>,
    /// The same load with each job created and waited for in one request (`POST /job?wait=`).
    pub one_request: Throughput,
    pub cpu_one_request: Vec<(String, std::time::Duration)>,
    /// The raw floor with as many lanes as clients: the most jobs/s NATS allows here.
    pub floor_jobs_per_s: f64,
    /// nats-server CPU per job of that raw run.
    pub floor_nats_cpu_us_per_job: f64,
    /// All CPU per job of that raw run: nats-server's and the floor's own process (its lanes).
    pub floor_cpu_us_per_job: f64,
    /// Each turn of phase 3 on its own: its spread within one run shows how much of a run's share
    /// is the machine's moment.
    pub turns: Vec<Turn>,
    pub broadcast: Summary,
    pub broadcast_hosts: usize,
    pub scaling: Vec<ScaleLevel>,
    pub footprint: Footprint,
}

/// One turn of phase 3: the floor's slice, then the two HTTP forms' halves, jobs/s each.
pub struct Turn {
    pub floor: f64,
    pub create_then_wait: f64,
    pub one_request: f64,
    /// CPU a job of every process the load ran on (nats-server and this process for the floor; with
    /// the API and the workers for HTTP), µs: whether a turn's share moved with what a job cost.
    pub floor_cpu_us: f64,
    pub create_then_wait_cpu_us: f64,
}

impl Turn {
    /// `jobs_per_s` as a share of this turn's floor, %.
    pub fn share(&self, jobs_per_s: f64) -> f64 {
        jobs_per_s * 100.0 / self.floor.max(1e-9)
    }

    /// Create-then-wait's CPU a job over the floor's, this turn.
    pub fn cpu_ratio(&self) -> f64 {
        self.create_then_wait_cpu_us / self.floor_cpu_us.max(1e-9)
    }
}

/// All CPU per HTTP job in the throughput phase: nats-server, the API, the workers and the clients.
fn http_cpu_us_per_job(r: &Results) -> f64 {
    cpu_us_per_job(&r.cpu_load, &r.throughput)
}

/// The sum of a CPU split's groups (`cpu_of`'s).
pub(crate) fn total(cpu: &[(String, Duration)]) -> Duration {
    cpu.iter().map(|(_, d)| *d).sum()
}

/// `cpu` spread over `jobs` jobs, µs a job (`cpu` itself for none).
pub(crate) fn per_job_us(cpu: Duration, jobs: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / jobs.max(1) as f64
}

/// `cpu`'s sum over `t`'s completed jobs, µs.
fn cpu_us_per_job(cpu: &[(String, Duration)], t: &Throughput) -> f64 {
    per_job_us(total(cpu), t.completed)
}

/// Each group's CPU a job of `t`, for the table.
fn fmt_cpu_split(cpu: &[(String, Duration)], t: &Throughput) -> String {
    cpu.iter()
        .map(|(name, d)| {
            let per_job = per_job_us(*d, t.completed);
            format!("{name} {per_job:.0}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One phase's messages per job, for the table.
fn fmt_msgs(p: &PerJob) -> String {
    let sides: Vec<String> = p
        .by_side
        .iter()
        .map(|(side, m)| format!("{side} {:.1}+{:.1}", m[0], m[1]))
        .collect();
    format!(
        "{:.1} ({:.1} in + {:.1} out: {}); {:.0} B in, {:.0} B out; background {:.0}+{:.0}/s subtracted",
        p.msgs(),
        p.in_msgs,
        p.out_msgs,
        sides.join(", "),
        p.in_bytes,
        p.out_bytes,
        p.idle_in_msgs_per_s,
        p.idle_out_msgs_per_s
    )
}

fn fmt_mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", mib(k)))
}

/// The printed table.
pub fn table(r: &Results, a: &Args) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: String, v: String| rows.push((k, v));
    let lat = |s: &Summary| format!("p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99);
    row(
        format!("1 raw NATS floor, sequential ({} jobs)", r.floor.n),
        lat(&r.floor),
    );
    row(
        format!("2 HTTP create + wait, sequential ({} jobs)", r.round_trip.n),
        lat(&r.round_trip),
    );
    row(
        "2 round trip / floor".into(),
        format!(
            "p50 {:.2}x, p99 {:.2}x",
            r.round_trip.p50 / r.floor.p50,
            r.round_trip.p99 / r.floor.p99
        ),
    );
    let (raw, http) = &r.interleaved;
    row(
        format!("2 floor and HTTP in turn ({} jobs each)", http.n),
        format!(
            "floor p50 {:.2} ms, HTTP p50 {:.2} ms: {:.2}x (p99 {:.2}x)",
            raw.p50,
            http.p50,
            http.p50 / raw.p50,
            http.p99 / raw.p99
        ),
    );
    if let (Some(f), Some(h)) = (&r.nats_floor, &r.nats_round_trip) {
        row("1 NATS messages per job, floor".into(), fmt_msgs(f));
        row("2 NATS messages per job, HTTP".into(), fmt_msgs(h));
        row(
            "2 NATS messages HTTP / floor".into(),
            format!(
                "{:.2}x ({:+.1} a job); bytes {:.2}x",
                h.msgs() / f.msgs(),
                h.msgs() - f.msgs(),
                (h.in_bytes + h.out_bytes) / (f.in_bytes + f.out_bytes)
            ),
        );
    }
    if let Some(p) = &r.nats_throughput {
        row(
            "3 NATS messages per job under load, HTTP".into(),
            fmt_msgs(p),
        );
    }
    let t = &r.throughput;
    let tl = Summary::of(&t.latencies);
    row(
        format!(
            "3 throughput: {} {} clients, {} workers x {} jobs, {:.0?}",
            a.clients,
            a.http_client.name(),
            a.workers,
            a.max_jobs,
            a.duration
        ),
        format!(
            "{:.0} jobs/s ({} completed, {} failed)",
            t.jobs_per_s(),
            t.completed,
            t.failed
        ),
    );
    row("3 throughput create + wait".into(), lat(&tl));
    row(
        format!(
            "3 raw NATS floor, {} lanes, {} turns with HTTP",
            a.clients, a.slices
        ),
        format!(
            "{:.0} jobs/s (HTTP reaches {:.0}%); nats-server {:.0} µs CPU per job",
            r.floor_jobs_per_s,
            t.jobs_per_s() * 100.0 / r.floor_jobs_per_s,
            r.floor_nats_cpu_us_per_job
        ),
    );
    let turns = |pick: fn(&Turn) -> f64| {
        r.turns
            .iter()
            .map(|t| format!("{:.0}", pick(t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row("3 each turn: floor jobs/s".into(), turns(|t| t.floor));
    row(
        "3 each turn: share, %".into(),
        format!(
            "create + wait {}; one request {}",
            turns(|t| t.share(t.create_then_wait)),
            turns(|t| t.share(t.one_request))
        ),
    );
    let ratios = r
        .turns
        .iter()
        .map(|t| format!("{:.2}", t.cpu_ratio()))
        .collect::<Vec<_>>()
        .join(", ");
    row("3 each turn: HTTP / floor CPU a job".into(), ratios);
    row(
        "3 ?wait= answered early (waiter slots full)".into(),
        t.early_answers.to_string(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy: f64 = r.cpu_load.iter().map(|(_, d)| d.as_secs_f64()).sum();
    row(
        "3 CPU per job, µs (share of all cores)".into(),
        format!(
            "{}, (busy {:.0}%)",
            fmt_cpu_split(&r.cpu_load, t),
            busy * 100.0 / (t.elapsed.as_secs_f64() * cores)
        ),
    );
    let all = http_cpu_us_per_job(r);
    row(
        "3 CPU per job in all, HTTP / raw floor".into(),
        format!(
            "{all:.0} / {:.0} µs ({:.2}x); 75% of the floor's jobs/s would allow {:.0} µs",
            r.floor_cpu_us_per_job,
            all / r.floor_cpu_us_per_job,
            r.floor_cpu_us_per_job / 0.75
        ),
    );
    let one = &r.one_request;
    row(
        "3 one request a job (POST /job?wait=), lean".into(),
        format!(
            "{:.0} jobs/s (reaches {:.0}% of the floor; {} completed, {} failed, {} answered early)",
            one.jobs_per_s(),
            one.jobs_per_s() * 100.0 / r.floor_jobs_per_s,
            one.completed,
            one.failed,
            one.early_answers
        ),
    );
    row(
        "3 one request a job: CPU per job, µs".into(),
        format!(
            "{}; in all {:.0} ({:.2}x the floor's)",
            fmt_cpu_split(&r.cpu_one_request, one),
            cpu_us_per_job(&r.cpu_one_request, one),
            cpu_us_per_job(&r.cpu_one_request, one) / r.floor_cpu_us_per_job
        ),
    );
    row(
        format!(
            "4 broadcast _all to {} workers ({} runs)",
            r.broadcast_hosts, r.broadcast.n
        ),
        lat(&r.broadcast),
    );
    for l in &r.scaling {
        row(
            format!("5 bucket of {} jobs: fill / index", l.jobs),
            format!(
                "{:.1} s / {:.1} s; API RSS {}",
                l.fill_s,
                l.index_s,
                fmt_mib(l.api_rss_kib)
            ),
        );
        for ((_, label), s) in ENDPOINTS.iter().zip(&l.endpoints) {
            row(format!("5   {label}"), lat(s));
        }
    }
    if let [small, .., big] = r.scaling.as_slice() {
        for (i, (_, label)) in ENDPOINTS.iter().enumerate() {
            row(
                format!("5 {label}: {} / {} jobs", big.jobs, small.jobs),
                format!("{:.2}x p50", big.endpoints[i].p50 / small.endpoints[i].p50),
            );
        }
    }
    let f = &r.footprint;
    row(
        "6 API RSS idle / under load".into(),
        format!("{} / {}", fmt_mib(f.api_idle_kib), fmt_mib(f.api_load_kib)),
    );
    row(
        "6 worker RSS idle / under load".into(),
        format!(
            "{} / {}",
            fmt_mib(f.worker_idle_kib),
            fmt_mib(f.worker_load_kib)
        ),
    );
    for (name, bytes) in &f.sizes {
        row(
            format!("6 {name} size"),
            format!("{:.2} MiB", *bytes as f64 / 1_048_576.0),
        );
    }
    row(
        format!("6 start to /health/ready ({} runs)", f.ready.n),
        format!("p50 {:.0} ms, max {:.0} ms", f.ready.p50, f.ready.max),
    );
    if let Some((jobs, s)) = &f.ready_full {
        row(
            format!("6 start to /health/ready, {jobs} jobs in bucket"),
            format!("{:.0} ms", s.p50),
        );
    }

    let mut out = rows_text(&rows);
    out.push_str("\ntargets\n");
    out.push_str(&checks_text(&checks(r)));
    out
}

fn rows_text(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// The same figures for bench/results.json.
pub fn json(r: &Results, a: &Args) -> Value {
    let t = &r.throughput;
    let f = &r.footprint;
    let kib = |k: Option<u64>| k.map(|k| round3(mib(k)));
    json!({
        "config": {
            "jobs": a.jobs, "duration_s": a.duration.as_secs_f64(), "clients": a.clients, "slices": a.slices, "http_client": a.http_client.name(), "workers": a.workers,
            "max_jobs": a.max_jobs, "broadcast_workers": a.broadcast_workers, "broadcast_runs": a.broadcast_runs,
            "scaling": a.scaling, "scaling_samples": a.scaling_samples, "ready_runs": a.ready_runs,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        },
        "floor": r.floor.json(),
        "round_trip": {
            "latency": r.round_trip.json(),
            "ratio_p50": round3(r.round_trip.p50 / r.floor.p50),
            "ratio_p99": round3(r.round_trip.p99 / r.floor.p99),
            "interleaved": {
                "floor": r.interleaved.0.json(),
                "http": r.interleaved.1.json(),
                "ratio_p50": round3(r.interleaved.1.p50 / r.interleaved.0.p50),
            },
        },
        "throughput": {
            "jobs_per_s": round3(t.jobs_per_s()), "completed": t.completed, "failed": t.failed,
            "elapsed_s": round3(t.elapsed.as_secs_f64()), "latency": Summary::of(&t.latencies).json(),
            "early_wait_answers": t.early_answers,
            "raw_floor_jobs_per_s": round3(r.floor_jobs_per_s),
            "raw_floor_nats_cpu_us_per_job": round3(r.floor_nats_cpu_us_per_job),
            "floor_share_percent": round3(t.jobs_per_s() * 100.0 / r.floor_jobs_per_s),
            "turns": r.turns.iter().map(|t| json!({
                "raw_floor_jobs_per_s": round3(t.floor),
                "jobs_per_s": round3(t.create_then_wait),
                "floor_share_percent": round3(t.share(t.create_then_wait)),
                "one_request_jobs_per_s": round3(t.one_request),
                "one_request_floor_share_percent": round3(t.share(t.one_request)),
                "raw_floor_cpu_us_per_job_all": round3(t.floor_cpu_us),
                "cpu_us_per_job_all": round3(t.create_then_wait_cpu_us),
            })).collect::<Vec<_>>(),
            "nats_cpu_ratio_to_raw": round3(nats_cpu_us_per_http_job(r) / r.floor_nats_cpu_us_per_job),
            "cpu_us_per_job_all": round3(http_cpu_us_per_job(r)),
            "raw_floor_cpu_us_per_job_all": round3(r.floor_cpu_us_per_job),
            "cpu_us_per_job": r.cpu_load.iter()
                .map(|(n, d)| (n.clone(), json!(round3(d.as_secs_f64() * 1e6 / t.completed.max(1) as f64))))
                .collect::<serde_json::Map<_, _>>(),
            "one_request": {
                "request": "POST /job?wait=, lean client",
                "jobs_per_s": round3(r.one_request.jobs_per_s()), "completed": r.one_request.completed,
                "failed": r.one_request.failed, "early_wait_answers": r.one_request.early_answers,
                "latency": Summary::of(&r.one_request.latencies).json(),
                "floor_share_percent": round3(r.one_request.jobs_per_s() * 100.0 / r.floor_jobs_per_s),
                "cpu_us_per_job_all": round3(cpu_us_per_job(&r.cpu_one_request, &r.one_request)),
                "cpu_us_per_job": r.cpu_one_request.iter()
                    .map(|(n, d)| (n.clone(), json!(round3(d.as_secs_f64() * 1e6 / r.one_request.completed.max(1) as f64))))
                    .collect::<serde_json::Map<_, _>>(),
            },
        },
        "nats_per_job": match (&r.nats_floor, &r.nats_round_trip) {
            (Some(f), Some(h)) => json!({
                "method": "nats-server /varz in_msgs, out_msgs, in_bytes, out_bytes read before and after the sequential phase (its last job + 250 ms), minus the rate of an idle window of the same length right after it; throughput: the same around the HTTP load phase, idle window 2 s",
                "floor": f.json(), "round_trip": h.json(),
                "throughput": r.nats_throughput.as_ref().map(PerJob::json),
                "ratio_msgs": round3(h.msgs() / f.msgs()),
            }),
            _ => Value::Null,
        },
        "broadcast": { "workers": r.broadcast_hosts, "latency": r.broadcast.json() },
        "scaling": r.scaling.iter().map(|l| json!({
            "jobs": l.jobs, "fill_s": round3(l.fill_s), "index_s": round3(l.index_s),
            "api_rss_mib": kib(l.api_rss_kib),
            "endpoints": ENDPOINTS.iter().zip(&l.endpoints)
                .map(|((name, label), s)| json!({"name": name, "request": label, "latency": s.json()}))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "footprint": {
            "api_rss_idle_mib": kib(f.api_idle_kib), "api_rss_load_mib": kib(f.api_load_kib),
            "worker_rss_idle_mib": kib(f.worker_idle_kib), "worker_rss_load_mib": kib(f.worker_load_kib),
            "binary_bytes": f.sizes.iter().map(|(n, b)| (n.clone(), json!(b))).collect::<serde_json::Map<_, _>>(),
            "ready": f.ready.json(),
            "ready_full_bucket": f.ready_full.as_ref().map(|(jobs, s)| json!({"jobs": jobs, "latency": s.json()})),
        },
        "targets": checks(r).iter().map(Check::json).collect::<Vec<_>>(),
    })
}
