//! A small HTTP client for the API under test: a keep-alive agent with the bearer token, JSON in and out,
//! and the two waits every phase needs (a job to finish, the worker list to show a set of hosts).

use osapi_common::status::JobStatus;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Bound on one HTTP exchange; `?wait=` asks for less than this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(40);
/// What `GET /job/{id}?wait=` asks for; a job that takes longer is an error of the run.
pub const JOB_WAIT: &str = "30s";
pub const JOB_WAIT_MAX: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// One client: one agent (one kept-alive connection per thread that uses it).
pub struct Api {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// A finished job and how many `?wait=` requests it took (more than 1: the API refused to hold the
/// request, because its waiter slots were taken, and answered at once).
pub struct Finished {
    pub detail: Value,
    pub gets: usize,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            auth: format!(
                "Bearer {}",
                std::env::var("OSAPI_TOKEN").unwrap_or_default()
            ),
            agent: ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).build(),
        }
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path`; any status comes back with its JSON body (Null when there is none).
    pub fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let req = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        answer(req.call(), path)
    }

    /// GET that must answer 200.
    pub fn get_ok(&self, path: &str) -> Result<Value, String> {
        match self.get(path)? {
            (200, v) => Ok(v),
            (code, v) => Err(format!("GET {path}: {code} {v}")),
        }
    }

    /// `POST /job`; the new job's id.
    pub fn create(&self, op: &str, target: &str) -> Result<String, String> {
        let body =
            serde_json::json!({"operation": {"type": op, "data": {}}, "target_hostname": target});
        let req = self
            .agent
            .post(&format!("{}/job", self.base))
            .set("Authorization", &self.auth);
        match answer(req.send_json(body), "/job")? {
            (201, v) => v["job_id"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| format!("POST /job: no job_id in {v}")),
            (code, v) => Err(format!("POST /job: {code} {v}")),
        }
    }

    /// `GET /job/{id}?wait=` until the job is terminal.
    pub fn wait(&self, id: &str) -> Result<Finished, String> {
        let deadline = Instant::now() + JOB_WAIT_MAX;
        let mut gets = 0;
        loop {
            let detail = self.get_ok(&format!("/job/{id}?wait={JOB_WAIT}"))?;
            gets += 1;
            let status = status_of(&detail);
            if status.is_some_and(JobStatus::is_terminal) {
                return Ok(Finished { detail, gets });
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "job {id} still {} after {JOB_WAIT_MAX:?}",
                    detail["status"]
                ));
            }
        }
    }

    /// How many hosts `GET /job/workers` lists as subscribed, and how many as not.
    pub fn subscription_counts(&self) -> Result<(usize, usize), String> {
        let v = self.get_ok("/job/workers")?;
        let ws = v["workers"].as_array().map_or(&[][..], Vec::as_slice);
        let yes = ws.iter().filter(|w| w["subscribed"] == true).count();
        let no = ws.iter().filter(|w| w["subscribed"] == false).count();
        Ok((yes, no))
    }

    /// Waits until `GET /job/workers` lists every host of `hosts` as subscribed (routable).
    pub fn wait_workers(&self, hosts: &BTreeSet<String>, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get_ok("/job/workers")?;
            let listed: BTreeSet<String> = v["workers"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .filter(|w| w["subscribed"] != false)
                        .filter_map(|w| w["hostname"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if hosts.is_subset(&listed) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let missing: Vec<&String> = hosts.difference(&listed).collect();
                return Err(format!("workers {missing:?} not listed after {within:?}"));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A job detail's `status`, when it is one.
pub fn status_of(detail: &Value) -> Option<JobStatus> {
    serde_json::from_value(detail["status"].clone()).ok()
}

fn answer(r: Result<ureq::Response, ureq::Error>, path: &str) -> Result<(u16, Value), String> {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let code = resp.status();
    let text = resp
        .into_string()
        .map_err(|e| format!("{path}: reading the body: {e}"))?;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{path}: body is not JSON ({e})"))?
    };
    Ok((code, v))
}
