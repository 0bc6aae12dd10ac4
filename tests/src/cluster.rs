//! A whole private deployment for one test (nats-server + API + workers) and the HTTP helpers tests use on it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::admin_token;
use crate::daemons::{Api, ExtraConfig, Options, Worker};
use crate::http::{request_as, Response};
use crate::is_terminal;
use crate::nats::NatsServer;
use crate::wait::wait_until;

/// How long the workers' first heartbeats may take to show in GET /job/workers.
const WORKERS_LISTED_DEADLINE: Duration = Duration::from_secs(15);
/// The longest `?wait=` the helpers ask for; the HTTP timeout is longer.
const JOB_WAIT_SECONDS_MAX: u64 = 5;
/// Floor between two polls of a job, should the server answer `?wait=` early.
const JOB_POLL_FLOOR: Duration = Duration::from_millis(50);

/// A worker to start: hostname, labels, max_jobs.
pub type WorkerSpec<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

/// The three-host fleet most tests use.
pub const FLEET: [WorkerSpec<'static>; 3] = [
    ("web1", &[("group", "web.dev.us-east")], 4),
    ("web2", &[("group", "web.prod")], 4),
    ("db1", &[("group", "db.dev")], 4),
];

/// nats-server, one API and some workers. Fields drop in order: workers, API, then nats-server.
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub api: Api,
    pub nats: NatsServer,
}

impl Cluster {
    /// Starts everything and waits until GET /job/workers lists every worker's hostname.
    pub fn start(workers: &[WorkerSpec<'_>]) -> Cluster {
        Cluster::start_with(workers, &Options::default())
    }

    /// [`Cluster::start`] with other options (namespace, heartbeat, extra worker keys).
    pub fn start_with(workers: &[WorkerSpec<'_>], options: &Options) -> Cluster {
        Cluster::start_extra(workers, options, &ExtraConfig::default())
    }

    /// [`Cluster::start_with`] with the same extra config keys for the API and every worker.
    pub fn start_extra(
        workers: &[WorkerSpec<'_>],
        options: &Options,
        extra: &ExtraConfig,
    ) -> Cluster {
        let options = options.clone();
        let nats = NatsServer::start();
        let api = Api::start_extra(&nats.url(), &options, extra);
        let workers = workers
            .iter()
            .map(|(hostname, labels, max_jobs)| {
                Worker::start_extra(&nats.url(), hostname, labels, *max_jobs, &options, extra)
            })
            .collect();
        let mut cluster = Cluster { workers, api, nats };
        cluster.wait_workers_listed();
        cluster
    }

    /// [`Cluster::start`] with [`FLEET`]: web1 {group: web.dev.us-east}, web2 {group: web.prod}, db1 {group: db.dev}.
    pub fn fleet() -> Cluster {
        Cluster::start(&FLEET)
    }

    /// The worker called `hostname`.
    pub fn worker(&mut self, hostname: &str) -> &mut Worker {
        self.workers
            .iter_mut()
            .find(|w| w.hostname() == hostname)
            .unwrap_or_else(|| panic!("no worker {hostname} in this cluster"))
    }

    /// `method path` with an optional JSON body; panics only when the API does not answer at all.
    pub fn http(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|b| b.to_string());
        self.http_raw(method, path, body.as_deref())
    }

    /// `method path` with a raw body sent as `application/json` (for malformed JSON), as admin.
    pub fn http_raw(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.http_as(Some(&admin_token()), method, path, body)
    }

    /// `method path` with the given token (or none), for the auth tests.
    pub fn http_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Response {
        request_as(token, &self.api.base_url(), method, path, body)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// `method path` as admin, Err when the API does not answer (for tests that break things on purpose).
    pub fn try_http(&self, method: &str, path: &str) -> Result<Response, String> {
        request_as(
            Some(&admin_token()),
            &self.api.base_url(),
            method,
            path,
            None,
        )
    }

    /// POST /job with `body`; asserts 201 and the documented answer, returns the job id.
    pub fn submit(&self, body: Value) -> String {
        let resp = self.http("POST", "/job", Some(body.clone()));
        assert_eq!(resp.status, 201, "POST /job {body} -> {}", resp.text);
        assert_eq!(
            resp.body["status"], "pending",
            "POST /job answer: {}",
            resp.text
        );
        assert!(
            resp.body["revision"].is_u64(),
            "POST /job answer: {}",
            resp.text
        );
        assert!(
            resp.body["timestamp"].is_string(),
            "POST /job answer: {}",
            resp.text
        );
        let id = resp.body["job_id"].as_str();
        let id = id.unwrap_or_else(|| panic!("POST /job answer without job_id: {}", resp.text));
        uuid::Uuid::parse_str(id).unwrap_or_else(|err| panic!("job_id {id} is no UUID: {err}"));
        id.to_string()
    }

    /// Submits `op_type` with `data` to `target`; returns the job id.
    pub fn create_job(&self, op_type: &str, data: Value, target: &str) -> String {
        self.submit(json!({
            "operation": { "type": op_type, "data": data },
            "target_hostname": target,
        }))
    }

    /// GET /job/{id}; asserts 200.
    pub fn job(&self, id: &str) -> Value {
        let resp = self.http("GET", &format!("/job/{id}"), None);
        assert_eq!(resp.status, 200, "GET /job/{id} -> {}", resp.text);
        resp.body
    }

    /// Polls GET /job/{id}?wait=5s until the job is terminal (completed, failed, partial_failure); returns it.
    pub fn wait_job(&self, id: &str, deadline: Duration) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < deadline {
            let left = deadline.saturating_sub(start.elapsed()).as_secs();
            let wait_seconds = left.clamp(1, JOB_WAIT_SECONDS_MAX);
            let asked = Instant::now();
            let resp = self.http("GET", &format!("/job/{id}?wait={wait_seconds}s"), None);
            assert_eq!(resp.status, 200, "GET /job/{id} -> {}", resp.text);
            if resp.body["status"].as_str().is_some_and(is_terminal) {
                return resp.body;
            }
            last = resp.body;
            if asked.elapsed() < JOB_POLL_FLOOR {
                std::thread::sleep(JOB_POLL_FLOOR);
            }
        }
        panic!("job {id} not terminal after {deadline:?}; last seen:\n{last:#}");
    }

    /// Creates a job and waits (30 s) until it is terminal.
    pub fn run_job(&self, op_type: &str, data: Value, target: &str) -> Value {
        let id = self.create_job(op_type, data, target);
        self.wait_job(&id, Duration::from_secs(30))
    }

    /// The hostnames GET /job/workers lists now as subscribed (routable: every consumer exists).
    pub fn listed_workers(&self) -> Vec<String> {
        listed_workers(&self.api.base_url())
    }

    fn wait_workers_listed(&mut self) {
        let expected: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.hostname().to_string())
            .collect();
        let base_url = self.api.base_url();
        let workers = &mut self.workers;
        let mut dead = None;
        wait_until(
            &format!("GET /job/workers to list {expected:?}"),
            WORKERS_LISTED_DEADLINE,
            || {
                for worker in workers.iter_mut() {
                    if worker.exited().is_some() {
                        dead = Some(worker.hostname().to_string());
                        return true;
                    }
                }
                let listed = listed_workers(&base_url);
                expected.iter().all(|host| listed.contains(host))
            },
        );
        if let Some(host) = dead {
            panic!("osapi-worker {host} exited during start-up; its log follows");
        }
    }
}

fn listed_workers(base_url: &str) -> Vec<String> {
    let resp = request_as(Some(&admin_token()), base_url, "GET", "/job/workers", None)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(resp.status, 200, "GET /job/workers -> {}", resp.text);
    resp.body["workers"]
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .filter(|w| w["subscribed"] != false)
                .filter_map(|w| w["hostname"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
