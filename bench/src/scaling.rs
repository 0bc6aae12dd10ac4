//! Phase 5, scaling with the bucket: an API on its own namespace, its bucket filled straight through
//! `osapi-bus` (job definitions, then host states and responses: 85% completed, 10% failed, 5% never
//! answered, so failed past their deadline), then the read endpoints timed at each size.
//!
//! Writing records directly is ~50x faster than submitting through the API and gives the index exactly
//! what the watch would deliver for real jobs. Definitions are written before their states: the index
//! drops a state whose job it does not know yet.

use crate::client::Api;
use crate::stats::{ms, Summary};
use osapi_bus::{Bus, ConnectOptions, BATCH_MAX};
use osapi_common::config::Config;
use osapi_common::job::{event, Event, HostState, JobDef, Operation, Response};
use osapi_common::names::{keys, Names};
use osapi_common::operation::OperationType;
use osapi_common::status::HostStatus;
use osapi_common::timefmt::format_micros;
use serde_json::json;
use std::time::{Duration, Instant};

/// Connections writing at once.
const FILL_THREADS: usize = 4;
/// How long the API's index may take to show what was written.
const INDEX_WITHIN: Duration = Duration::from_secs(600);
/// The one host every filled job ran on.
const HOST: &str = "scale1";

/// The endpoints timed, with the label used in the table and results.json.
pub const ENDPOINTS: [(&str, &str); 4] = [
    ("list", "GET /job?limit=50"),
    ("list_failed", "GET /job?status=failed&limit=50"),
    ("status", "GET /job/status"),
    ("get", "GET /job/{id}"),
];

/// What the filled jobs of one bucket size are.
#[derive(Default)]
pub struct Filled {
    /// Ids written so far, a sample of which `GET /job/{id}` reads.
    pub ids: Vec<String>,
    pub completed: usize,
    pub fill_time: Duration,
}

/// Names of the bucket the scaling API serves.
pub fn names(config_yaml: &str, namespace: &str) -> Result<Names, String> {
    let env = [("OSAPI_NATS_NAMESPACE".to_string(), namespace.to_string())];
    let cfg = Config::from_yaml_with_env(config_yaml, &env).map_err(|e| e.to_string())?;
    Ok(osapi_bus::setup::names(&cfg))
}

/// The fate of job `i`: `Some(status)` of its one host, or `None` for a host that never answered.
fn fate(i: usize) -> Option<HostStatus> {
    match i % 20 {
        0..=16 => Some(HostStatus::Completed),
        17 | 18 => Some(HostStatus::Failed),
        _ => None,
    }
}

fn records(i: usize, id: &str, created_us: i64) -> (JobDef, Option<HostState>) {
    let op_type = if i.is_multiple_of(3) {
        OperationType::TestEchoDo
    } else {
        OperationType::SystemHostnameGet
    };
    let def = JobDef {
        id: id.to_string(),
        operation: Operation {
            op_type,
            data: json!({}),
        },
        target_hostname: "_any".into(),
        expected_hosts: vec![],
        created: format_micros(created_us),
        created_us,
        timeout_ms: 60_000,
        retry_of: None,
        submitted_by: String::new(),
        signature: None,
    };
    let Some(status) = fate(i) else {
        return (def, None);
    };
    let ev = |name: &str, at: i64, error: Option<String>| Event {
        timestamp: format_micros(at),
        event: name.into(),
        hostname: HOST.into(),
        message: format!("{name} on {HOST}"),
        error,
    };
    let error = (status == HostStatus::Failed).then(|| "bench: failed on purpose".to_string());
    let last = match status {
        HostStatus::Failed => event::FAILED,
        _ => event::COMPLETED,
    };
    let state = HostState {
        hostname: HOST.into(),
        status,
        attempts: 1,
        error: error.clone(),
        duration: Some("0.001s".into()),
        events: vec![
            ev(event::ACKNOWLEDGED, created_us + 500, None),
            ev(event::STARTED, created_us + 500, None),
            ev(last, created_us + 1500, error.clone()),
        ],
        updated_us: created_us + 1500,
        response: Some(Response {
            status,
            data: json!({ "hostname": HOST }),
            error,
            hostname: HOST.into(),
        }),
    };
    (def, Some(state))
}

/// Writes `(bucket, key, value)` records in batches of one flush each; every PubAck must be clean.
fn put_all(bus: &Bus, records: &[(String, Vec<u8>)]) -> Result<(), String> {
    for chunk in records.chunks(BATCH_MAX) {
        let reqs: Vec<(&str, Option<_>, &[u8])> = chunk
            .iter()
            .map(|(subject, value)| (subject.as_str(), None, value.as_slice()))
            .collect();
        for answer in bus.request_many(&reqs) {
            let msg = answer.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_slice(&msg.data)
                .map_err(|e| format!("PubAck is not JSON: {e}"))?;
            if v.get("error").is_some() {
                return Err(format!("KV put refused: {v}"));
            }
        }
    }
    Ok(())
}

fn kv_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

fn json_bytes(v: Result<Vec<u8>, serde_json::Error>) -> Result<Vec<u8>, String> {
    v.map_err(|e| e.to_string())
}

/// Adds jobs `from..to` to the bucket, from several connections; `base_us` is the creation time of
/// job 0 (jobs are 10 µs apart, newest last).
pub fn fill(
    nats_url: &str,
    names: &Names,
    from: usize,
    to: usize,
    base_us: i64,
    filled: &mut Filled,
) -> Result<(), String> {
    let t = Instant::now();
    let all: Vec<(usize, String)> = (from..to)
        .map(|i| (i, uuid::Uuid::new_v4().to_string()))
        .collect();
    let per_thread = all.len().div_ceil(FILL_THREADS).max(1);
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(per_thread)
            .map(|part| {
                s.spawn(move || -> Result<(), String> {
                    let bus = Bus::connect(&ConnectOptions {
                        url: nats_url.to_string(),
                        user_pass: None,
                        token: None,
                        identity: Default::default(),
                        request_timeout: Duration::from_secs(10),
                        name: "osapi-bench fill".into(),
                        inbox_prefix: "_INBOX".into(),
                    })
                    .map_err(|e| e.to_string())?;
                    for batch in part.chunks(BATCH_MAX) {
                        let (mut defs, mut rest) = (Vec::new(), Vec::new());
                        for (i, id) in batch {
                            let created_us = base_us + (*i as i64) * 10;
                            let (def, done) = records(*i, id, created_us);
                            defs.push((
                                kv_subject(&names.bucket, &keys::job(id)),
                                json_bytes(serde_json::to_vec(&def))?,
                            ));
                            if let Some(state) = done {
                                rest.push((
                                    kv_subject(&names.bucket, &keys::state(id, HOST)),
                                    json_bytes(serde_json::to_vec(&state))?,
                                ));
                            }
                        }
                        put_all(&bus, &defs)?;
                        put_all(&bus, &rest)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a fill thread panicked".into()))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    filled.completed += (from..to)
        .filter(|i| fate(*i) == Some(HostStatus::Completed))
        .count();
    filled.ids.extend(all.into_iter().map(|(_, id)| id));
    filled.fill_time += t.elapsed();
    Ok(())
}

/// Waits until `GET /job/status` counts `total` jobs and `completed` of them completed.
pub fn wait_indexed(api: &Api, total: usize, completed: usize) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let v = api.get_ok("/job/status")?;
        let (n, c) = (
            v["total_jobs"].as_u64().unwrap_or(0) as usize,
            v["status_counts"]["completed"].as_u64().unwrap_or(0) as usize,
        );
        if n == total && c == completed {
            return Ok(t.elapsed());
        }
        if t.elapsed() > INDEX_WITHIN {
            return Err(format!(
                "index shows {n} jobs ({c} completed), expected {total} ({completed}) after {INDEX_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Times each endpoint `samples` times, sequentially; checks each answer is what it should be.
pub fn measure(api: &Api, filled: &Filled, samples: usize) -> Result<Vec<Summary>, String> {
    let mut out = Vec::with_capacity(ENDPOINTS.len());
    for (name, _) in ENDPOINTS {
        let mut lat = Vec::with_capacity(samples);
        for n in 0..samples {
            let path = match name {
                "list" => "/job?limit=50".to_string(),
                "list_failed" => "/job?status=failed&limit=50".to_string(),
                "status" => "/job/status".to_string(),
                _ => {
                    // Spread over the bucket: old and new jobs alike.
                    let i = (n * 7919) % filled.ids.len().max(1);
                    format!("/job/{}", filled.ids.get(i).map_or("", String::as_str))
                }
            };
            let t = Instant::now();
            let v = api.get_ok(&path)?;
            lat.push(ms(t.elapsed()));
            let items = v["items"].as_array().map_or(0, Vec::len);
            let ok = match name {
                "list" => items == 50.min(filled.ids.len()),
                "list_failed" => {
                    items > 0
                        && v["items"]
                            .as_array()
                            .is_some_and(|xs| xs.iter().all(|x| x["status"] == "failed"))
                }
                "status" => v["total_jobs"].as_u64() == Some(filled.ids.len() as u64),
                _ => v["id"].is_string(),
            };
            if !ok {
                let text = v.to_string();
                return Err(format!(
                    "{path}: unexpected answer {}",
                    &text[..text.len().min(300)]
                ));
            }
        }
        out.push(Summary::of(&lat));
    }
    Ok(out)
}
