//! What one job costs NATS in messages: nats-server's own counters (`GET /varz` of its monitoring port,
//! `-m`), read before and after a sequential phase. `in_msgs` counts what clients published to the server
//! (publishes, KV puts, JetStream API requests, acks, pull requests), `out_msgs` what it delivered to
//! clients (replies, deliveries, watch updates); both server-wide. `GET /connz` gives the same two
//! counts per client connection, summed here by who holds it (the API, the workers, the bench's own
//! floor connections), so a job's messages can be told apart by side.
//!
//! Background traffic runs meanwhile (worker heartbeats, long polls, the watches' idle heartbeats), so
//! the same counters are read over an idle window of the same length right after the phase, with
//! nothing else running, and that rate is subtracted: what is left per job is the job's own traffic.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Bound on one `/varz` request.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Quiet time after a phase's last job before its closing reading, so the job's trailing messages (the
/// worker's ack, the watch's last deliveries) are counted with the phase.
pub const TRAIL: Duration = Duration::from_millis(250);
/// The idle window is as long as the phase, but at least and at most this.
const IDLE_MIN: Duration = Duration::from_millis(500);
const IDLE_MAX: Duration = Duration::from_secs(30);

/// Server-wide message and byte counters at one moment, and messages (in, out) per side.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub by_side: BTreeMap<String, [u64; 2]>,
}

impl Counters {
    fn since(&self, before: &Counters) -> [f64; 4] {
        [
            self.in_msgs.saturating_sub(before.in_msgs) as f64,
            self.out_msgs.saturating_sub(before.out_msgs) as f64,
            self.in_bytes.saturating_sub(before.in_bytes) as f64,
            self.out_bytes.saturating_sub(before.out_bytes) as f64,
        ]
    }

    /// Per side: messages (in, out) since `before` (a connection closed meanwhile counts nothing).
    fn sides_since(&self, before: &Counters) -> BTreeMap<String, [f64; 2]> {
        self.by_side
            .iter()
            .map(|(side, now)| {
                let then = before.by_side.get(side).copied().unwrap_or_default();
                let d = |i: usize| now[i].saturating_sub(then[i]) as f64;
                (side.clone(), [d(0), d(1)])
            })
            .collect()
    }
}

/// Who holds a connection, from the name its client gave it.
fn side(name: &str) -> &'static str {
    if name == "osapi-api" {
        "api"
    } else if name.starts_with("osapi-worker") {
        "workers"
    } else if name.starts_with("bench-") {
        "floor"
    } else {
        "other"
    }
}

/// The monitoring endpoint of the run's nats-server.
pub struct Monitor {
    base: String,
    agent: ureq::Agent,
}

impl Monitor {
    /// `base` is `http://127.0.0.1:PORT` of nats-server's `-m PORT`.
    pub fn new(base: &str) -> Monitor {
        Monitor {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().timeout(TIMEOUT).build(),
        }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.agent
            .get(&url)
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .into_json()
            .map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    pub fn read(&self) -> Result<Counters, String> {
        let v = self.get("/varz")?;
        let n = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("GET {}/varz: no number '{k}'", self.base))
        };
        let mut by_side: BTreeMap<String, [u64; 2]> = BTreeMap::new();
        let conns = self.get("/connz?limit=100000")?;
        for c in conns["connections"].as_array().into_iter().flatten() {
            let e = by_side
                .entry(side(c["name"].as_str().unwrap_or("")).to_string())
                .or_default();
            e[0] += c["in_msgs"].as_u64().unwrap_or(0);
            e[1] += c["out_msgs"].as_u64().unwrap_or(0);
        }
        Ok(Counters {
            in_msgs: n("in_msgs")?,
            out_msgs: n("out_msgs")?,
            in_bytes: n("in_bytes")?,
            out_bytes: n("out_bytes")?,
            by_side,
        })
    }
}

/// A phase being counted: the reading at its start.
pub struct Window<'a> {
    monitor: &'a Monitor,
    before: Counters,
    started: Instant,
}

impl<'a> Window<'a> {
    pub fn open(monitor: &'a Monitor) -> Result<Window<'a>, String> {
        Ok(Window {
            monitor,
            before: monitor.read()?,
            started: Instant::now(),
        })
    }

    /// Ends the phase of `jobs` jobs (after [`TRAIL`]), then reads an idle window as long as the phase
    /// and subtracts its rate: the messages and bytes per job.
    pub fn close(self, jobs: usize) -> Result<PerJob, String> {
        self.close_within(jobs, IDLE_MAX)
    }

    /// [`Window::close`] with an idle window of at most `idle_max` (a long load phase: its background
    /// rate is the same, read over less time).
    pub fn close_within(self, jobs: usize, idle_max: Duration) -> Result<PerJob, String> {
        std::thread::sleep(TRAIL);
        let after = self.monitor.read()?;
        let phase = self.started.elapsed();
        let busy = after.since(&self.before);
        let idle_for = phase.clamp(IDLE_MIN, idle_max.max(IDLE_MIN));
        let idle_start = Instant::now();
        std::thread::sleep(idle_for);
        let idle_end = self.monitor.read()?;
        let idle_s = idle_start.elapsed().as_secs_f64();
        let idle = idle_end.since(&after);
        let scale = phase.as_secs_f64() / idle_s;
        let jobs_f = jobs.max(1) as f64;
        let per_job: Vec<f64> = busy
            .iter()
            .zip(idle)
            .map(|(b, i)| (b - i * scale).max(0.0) / jobs_f)
            .collect();
        let idle_sides = idle_end.sides_since(&after);
        let by_side = after
            .sides_since(&self.before)
            .into_iter()
            .map(|(side, b)| {
                let i = idle_sides.get(&side).copied().unwrap_or_default();
                let f = |k: usize| (b[k] - i[k] * scale).max(0.0) / jobs_f;
                (side, [f(0), f(1)])
            })
            .filter(|(_, m)| m[0] + m[1] > 0.0)
            .collect();
        Ok(PerJob {
            jobs,
            phase_s: phase.as_secs_f64(),
            in_msgs: per_job[0],
            out_msgs: per_job[1],
            in_bytes: per_job[2],
            out_bytes: per_job[3],
            idle_in_msgs_per_s: idle[0] / idle_s,
            idle_out_msgs_per_s: idle[1] / idle_s,
            by_side,
        })
    }
}

/// One job's share of the server's traffic in a sequential phase, background subtracted.
#[derive(Debug, Clone)]
pub struct PerJob {
    pub jobs: usize,
    pub phase_s: f64,
    pub in_msgs: f64,
    pub out_msgs: f64,
    pub in_bytes: f64,
    pub out_bytes: f64,
    /// The background rate that was subtracted.
    pub idle_in_msgs_per_s: f64,
    pub idle_out_msgs_per_s: f64,
    /// Messages (in, out) per job by side: `api`, `workers`, `floor` (the bench's own connections).
    pub by_side: BTreeMap<String, [f64; 2]>,
}

impl PerJob {
    pub fn msgs(&self) -> f64 {
        self.in_msgs + self.out_msgs
    }

    pub fn json(&self) -> Value {
        let r = crate::stats::round3;
        json!({
            "jobs": self.jobs, "phase_s": r(self.phase_s),
            "in_msgs_per_job": r(self.in_msgs), "out_msgs_per_job": r(self.out_msgs),
            "msgs_per_job": r(self.msgs()),
            "in_bytes_per_job": r(self.in_bytes), "out_bytes_per_job": r(self.out_bytes),
            "idle_in_msgs_per_s": r(self.idle_in_msgs_per_s),
            "idle_out_msgs_per_s": r(self.idle_out_msgs_per_s),
            "by_side": self.by_side.iter()
                .map(|(side, m)| (side.clone(), json!({"in_msgs_per_job": r(m[0]), "out_msgs_per_job": r(m[1])})))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}
