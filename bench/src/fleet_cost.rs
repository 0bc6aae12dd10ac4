//! What one `_all` broadcast costs, in figures that do not depend on a quiet machine: nats-server's
//! messages and bytes (its `/varz`, background subtracted: varz.rs), CPU time per broadcast of
//! nats-server and the API and per worker (from /proc, the background rate of an idle window as long as
//! the broadcasts subtracted), and the size of what each worker reads of the job (`jobs.{id}`, and the
//! workers' copy `run.{id}` of a broadcast when there is one). And, without a fleet, what reading a
//! broadcast's record costs one worker at 1,000 hosts (`read_cost`).

use crate::client::Api;
use crate::jobs;
use crate::procs::cpu_time;
use crate::stats::Summary;
use crate::varz::{Monitor, PerJob, Window};
use osapi_bus::Bus;
use osapi_common::job::{JobDef, Operation};
use osapi_common::names::{keys, Names};
use osapi_common::operation::OperationType;
use osapi_common::trust::{self, Form, Trust};
use std::time::{Duration, Instant};

/// How much CPU each form's reading is timed over (the process clock has 10 ms ticks).
const READ_TIMED: Duration = Duration::from_millis(500);

/// One broadcast's share of the traffic and CPU, averaged over the timed broadcasts.
#[derive(Debug, Clone)]
pub struct BroadcastCost {
    pub runs: usize,
    /// nats-server's messages and bytes in and out per broadcast: `None` without a monitoring endpoint
    /// (a cluster).
    pub traffic: Option<PerJob>,
    pub nats_cpu_ms: f64,
    pub api_cpu_ms: f64,
    /// CPU µs one worker spends on one broadcast (every worker's time over the broadcasts, per worker).
    pub worker_cpu_us: f64,
    /// Context switches (voluntary + not) of one worker process per broadcast: each is a thread
    /// handing work to another or waiting on NATS, the worker's cost beyond its own computing.
    pub worker_switches: f64,
    /// Bytes of `jobs.{id}` of the last broadcast.
    pub job_record_bytes: usize,
    /// Bytes of `run.{id}` (the workers' copy), 0 when the API wrote none.
    pub run_record_bytes: usize,
}

/// The processes whose CPU is counted.
pub struct Pids<'a> {
    pub nats: &'a [u32],
    pub api: u32,
    pub workers: &'a [u32],
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter()
        .map(|p| cpu_time(&p.to_string()).unwrap_or_default())
        .sum()
}

/// Context switches so far of every thread of `pid` (`/proc/PID/task/*/status`; 0 when gone).
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| l.split_once("_ctxt_switches:"))
                .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn worker_switches(p: &Pids<'_>) -> u64 {
    p.workers.iter().map(|w| switches(*w)).sum()
}

/// CPU of (nats-server, API, workers) now.
fn cpu(p: &Pids<'_>) -> [Duration; 3] {
    [cpu_of(p.nats), cpu_of(&[p.api]), cpu_of(p.workers)]
}

/// `runs` broadcasts to every one of `hosts` workers, timed (as `jobs::broadcast_ids`) and counted: with
/// `monitor`, nats-server's messages and bytes; CPU always. Returns the times, the last job's id and the
/// cost.
pub fn broadcasts(
    api: &Api,
    bus: &Bus,
    names: &Names,
    monitor: Option<&Monitor>,
    pids: &Pids<'_>,
    (hosts, runs): (usize, usize),
) -> Result<(Summary, String, BroadcastCost), String> {
    let window = monitor.map(Window::open).transpose()?;
    let (cpu_before, started) = (cpu(pids), Instant::now());
    let switches_before = worker_switches(pids);
    let (times, last_id) = jobs::broadcast_ids(api, hosts, runs)?;
    let phase = started.elapsed();
    let (cpu_after, switches_after) = (cpu(pids), worker_switches(pids));
    // The window's close reads an idle stretch as long as the phase (at least 0.5 s): the CPU over
    // the same stretch gives the background rate to subtract.
    let idle_started = Instant::now();
    let per_job = window.map(|w| w.close(runs)).transpose()?;
    if per_job.is_none() {
        std::thread::sleep(phase.max(Duration::from_millis(500)));
    }
    let (cpu_idle, switches_idle, idle) =
        (cpu(pids), worker_switches(pids), idle_started.elapsed());
    let scale = phase.as_secs_f64() / idle.as_secs_f64().max(1e-3);
    let per_run = |i: usize| {
        let busy = cpu_after[i].saturating_sub(cpu_before[i]).as_secs_f64();
        let background = cpu_idle[i].saturating_sub(cpu_after[i]).as_secs_f64() * scale;
        (busy - background).max(0.0) / runs.max(1) as f64
    };
    let size = |key: String| -> Result<usize, String> {
        Ok(bus
            .kv_get(&names.bucket, &key)
            .map_err(|e| format!("reading {key}: {e}"))?
            .map_or(0, |e| e.value.len()))
    };
    let cost = BroadcastCost {
        runs,
        traffic: per_job,
        nats_cpu_ms: per_run(0) * 1e3,
        api_cpu_ms: per_run(1) * 1e3,
        worker_cpu_us: per_run(2) * 1e6 / pids.workers.len().max(1) as f64,
        worker_switches: {
            let busy = switches_after.saturating_sub(switches_before) as f64;
            let background = switches_idle.saturating_sub(switches_after) as f64 * scale;
            (busy - background).max(0.0) / (runs.max(1) * pids.workers.len().max(1)) as f64
        },
        job_record_bytes: size(keys::job(&last_id))?,
        run_record_bytes: size(keys::run(&last_id))?,
    };
    Ok((Summary::of(&times), last_id, cost))
}

/// What one worker's reading of a broadcast's record costs: its size and the CPU µs to parse and verify
/// it, as the whole `jobs.{id}` and as the copy `run.{id}`.
#[derive(Debug, Clone, Default)]
pub struct ReadCost {
    pub hosts: usize,
    pub whole_bytes: usize,
    pub whole_us: f64,
    pub run_bytes: usize,
    pub run_us: f64,
}

/// [`ReadCost`] of a broadcast to `hosts` hosts named as the fleet's (`fleet1..`), timed in this
/// process: parse (`serde_json`) and verify (`Trust::check_as`), the worker's own steps.
pub fn read_cost(hosts: usize) -> Result<ReadCost, String> {
    let key = trust::JobSigningKey::from_bytes(&[7; 32]);
    let trusted = Trust::new(vec![key.verifying_key()], false);
    let mut def = JobDef {
        id: uuid::Uuid::new_v4().to_string(),
        operation: Operation {
            op_type: OperationType::SystemHostnameGet,
            data: serde_json::json!({}),
        },
        target_hostname: "_all".into(),
        expected_hosts: (1..=hosts).map(|n| format!("fleet{n}")).collect(),
        created: "2026-12-02T00:00:00.000000Z".into(),
        created_us: 1_764_633_600_000_000,
        timeout_ms: 60_000,
        retry_of: None,
        submitted_by: "bench".into(),
        signature: None,
    };
    let mut run = def.run_copy();
    def.signature = Some(trust::sign(&def, &key));
    run.signature = Some(trust::sign_as(&run, Form::Run, &key));
    let time = |def: &JobDef, form: Form| -> Result<(usize, f64), String> {
        let bytes = serde_json::to_vec(def).map_err(|e| e.to_string())?;
        let (started, mut n) = (cpu_time("self").unwrap_or_default(), 0_u32);
        loop {
            let parsed: JobDef = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            trusted.check_as(&parsed, form)?;
            n += 1;
            let spent = cpu_time("self").unwrap_or_default().saturating_sub(started);
            if spent >= READ_TIMED {
                return Ok((bytes.len(), spent.as_secs_f64() * 1e6 / f64::from(n)));
            }
        }
    };
    let (whole_bytes, whole_us) = time(&def, Form::Whole)?;
    let (run_bytes, run_us) = time(&run, Form::Run)?;
    Ok(ReadCost {
        hosts,
        whole_bytes,
        whole_us,
        run_bytes,
        run_us,
    })
}
