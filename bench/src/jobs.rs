//! Phases 2-4, through HTTP like a user: the sequential round trip, throughput with concurrent clients
//! (sampling the daemons' RSS meanwhile), and a broadcast to every worker.

use crate::args::HttpClient;
use crate::client::{status_of, Api};
use crate::lean::Lean;
use crate::procs::rss_kib;
use crate::stats::ms;
use osapi_common::status::JobStatus;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often RSS is sampled under load.
const RSS_EVERY: Duration = Duration::from_millis(50);

/// `POST /job` + `GET /job/{id}?wait=` for `system.hostname.get`, one job at a time.
pub fn round_trip(api: &Api, jobs: usize) -> Result<Vec<f64>, String> {
    (0..jobs).map(|_| one_round_trip(api)).collect()
}

/// One `POST /job` + `GET /job/{id}?wait=` of a completed job, ms.
pub fn one_round_trip(api: &Api) -> Result<f64, String> {
    let t = Instant::now();
    let id = api.create("system.hostname.get", "_any")?;
    let done = api.wait(&id)?;
    if done.detail["status"] != "completed" {
        return Err(format!("job {id} ended {}", done.detail["status"]));
    }
    Ok(ms(t.elapsed()))
}

#[derive(Default)]
pub struct Throughput {
    pub completed: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Create + wait of each completed job, ms.
    pub latencies: Vec<f64>,
    /// `?wait=` requests answered before the job ended (the API's waiter slots were full).
    pub early_answers: usize,
    /// Highest RSS seen per sampled pid, KiB.
    pub rss_max_kib: BTreeMap<u32, u64>,
}

impl Throughput {
    pub fn jobs_per_s(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds a later slice of the same load: counts and times summed, latencies pooled, RSS the highest.
    pub fn merge(&mut self, other: Throughput) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.early_answers += other.early_answers;
        for (pid, kib) in other.rss_max_kib {
            keep_max(&mut self.rss_max_kib, pid, kib);
        }
    }
}

/// Records `kib` for `pid` when it is the highest seen.
fn keep_max(rss: &mut BTreeMap<u32, u64>, pid: u32, kib: u64) {
    let e = rss.entry(pid).or_default();
    *e = (*e).max(kib);
}

/// How a throughput client has a job done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `POST /job`, then `GET /job/{id}?wait=`: two requests, as the upstream API's clients do.
    CreateThenWait,
    /// `POST /job?wait=`: one request (always the lean client).
    OneRequest,
}

/// `clients` threads, each creating a job and waiting for it (in `form`), again and again, for
/// `duration`; the jobs started before the end are waited for and counted. `watch_pids` are sampled
/// for RSS.
pub fn throughput(
    api_url: &str,
    http: HttpClient,
    form: Form,
    clients: usize,
    duration: Duration,
    watch_pids: &[u32],
) -> Result<Throughput, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let rss: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let sampler = {
        let (stop, rss, pids) = (stop.clone(), rss.clone(), watch_pids.to_vec());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for &pid in &pids {
                    if let Some(kib) = rss_kib(pid) {
                        let mut m = rss.lock().unwrap_or_else(|p| p.into_inner());
                        keep_max(&mut m, pid, kib);
                    }
                }
                std::thread::sleep(RSS_EVERY);
            }
        })
    };
    let start = Instant::now();
    let end = start + duration;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let http = match form {
                Form::OneRequest => HttpClient::Lean,
                Form::CreateThenWait => http,
            };
            let mut client = Client::new(api_url, http)?;
            Ok(std::thread::spawn(
                move || -> Result<(Vec<f64>, usize, usize), String> {
                    let (mut lat, mut failed, mut early) = (Vec::new(), 0, 0);
                    while Instant::now() < end {
                        let t = Instant::now();
                        let (status, gets) = client.create_and_wait(form)?;
                        early += gets - 1;
                        if status == JobStatus::Completed {
                            lat.push(ms(t.elapsed()));
                        } else {
                            failed += 1;
                        }
                    }
                    Ok((lat, failed, early))
                },
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut result = Throughput {
        completed: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        early_answers: 0,
        rss_max_kib: BTreeMap::new(),
    };
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok((lat, failed, early))) => {
                result.completed += lat.len();
                result.latencies.extend(lat);
                result.failed += failed;
                result.early_answers += early;
            }
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some("a client thread panicked".into())),
        }
    }
    result.elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    result.rss_max_kib = rss.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match first_error {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// One throughput client: the lean one or ureq's.
enum Client {
    Lean(Lean),
    Ureq(Api),
}

impl Client {
    fn new(api_url: &str, http: HttpClient) -> Result<Client, String> {
        Ok(match http {
            HttpClient::Ureq => Client::Ureq(Api::new(api_url)),
            HttpClient::Lean => Client::Lean(Lean::new(api_url)?),
        })
    }

    /// Creates a `system.hostname.get` job for `_any` and waits for it: its final status and the
    /// `?wait=` requests it took.
    fn create_and_wait(&mut self, form: Form) -> Result<(JobStatus, usize), String> {
        match self {
            Client::Lean(lean) if form == Form::OneRequest => {
                lean.create_waited("system.hostname.get", "_any")
            }
            Client::Ureq(api) => {
                let id = api.create("system.hostname.get", "_any")?;
                let done = api.wait(&id)?;
                let status = status_of(&done.detail)
                    .ok_or_else(|| format!("job {id}: status {}", done.detail["status"]))?;
                Ok((status, done.gets))
            }
            Client::Lean(lean) => {
                let id = lean.create("system.hostname.get", "_any")?;
                lean.wait_terminal(&id)
            }
        }
    }
}

/// `_all` to the `hosts` live workers, `runs` times: time from POST until the job is terminal with
/// every host's result in.
pub fn broadcast(api: &Api, hosts: usize, runs: usize) -> Result<Vec<f64>, String> {
    broadcast_ids(api, hosts, runs).map(|(times, _)| times)
}

/// [`broadcast`], and the id of the last job (for reading a broadcast job's detail).
pub fn broadcast_ids(api: &Api, hosts: usize, runs: usize) -> Result<(Vec<f64>, String), String> {
    let mut out = Vec::with_capacity(runs);
    let mut last = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let id = api.create("system.hostname.get", "_all")?;
        let done = api.wait(&id)?;
        let took = ms(t.elapsed());
        let d = &done.detail;
        let expected = d["expected_hosts"].as_array().map_or(0, Vec::len);
        let answered = d["responses"].as_object().map_or(0, |r| r.len());
        if d["status"] != "completed" || expected != hosts || answered != hosts {
            return Err(format!(
                "broadcast {id}: status {}, {expected} expected and {answered} answered of {hosts}",
                d["status"]
            ));
        }
        out.push(took);
        last = id;
    }
    Ok((out, last))
}
