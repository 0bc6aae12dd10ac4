//! What a client sees of a job: the job detail assembled from its definition, its hosts' states and
//! responses, and the clock. Pure: the API reads the records, this decides status, errors and timeline.

use crate::job::{event, Event, HostState, JobDef, Operation, Response};
use crate::status::{aggregate, effective_host_status, HostStatus, JobStatus, NO_RESPONSE};
use crate::timefmt::format_micros;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The source name of events the API writes.
pub const API_SOURCE: &str = "api";

/// One host's state as shown in `worker_states`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStateView {
    pub status: HostStatus,
    pub error: Option<String>,
    pub duration: Option<String>,
    pub attempts: u32,
}

/// One host's answer as shown in `responses`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseView {
    pub status: HostStatus,
    pub data: Value,
    pub error: Option<String>,
    pub hostname: String,
}

/// `GET /job/{id}`: OSAPI's JobDetailResponse plus `target_hostname`, `expected_hosts`, `retry_of`,
/// `submitted_by`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    pub id: String,
    pub status: JobStatus,
    pub created: String,
    pub updated_at: String,
    pub operation: Operation,
    pub target_hostname: String,
    pub expected_hosts: Vec<String>,
    pub hostname: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub retry_of: Option<String>,
    /// The `sub` of the token that submitted the job.
    pub submitted_by: String,
    pub responses: BTreeMap<String, ResponseView>,
    pub worker_states: BTreeMap<String, WorkerStateView>,
    pub timeline: Vec<Event>,
}

/// The hosts a job concerns: those expected at submission and those that answered.
pub fn hosts_of<'a>(def: &'a JobDef, answered: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    def.expected_hosts
        .iter()
        .map(String::as_str)
        .chain(answered)
        .collect()
}

/// Status of a job from its hosts' own statuses (`None` = never answered) and the clock.
pub fn job_status<'a>(
    def: &JobDef,
    host_statuses: impl Iterator<Item = (&'a str, Option<HostStatus>)>,
    now_us: i64,
) -> JobStatus {
    let past = now_us > def.deadline_us();
    let effective: Vec<HostStatus> = host_statuses
        .map(|(_, own)| effective_host_status(own, past))
        .collect();
    aggregate(&effective, past)
}

/// The `submitted` event's message, naming the user when there is one.
fn submitted_message(def: &JobDef) -> String {
    match def.submitted_by.as_str() {
        "" => format!("job submitted for target {}", def.target_hostname),
        user => format!("job submitted by {user} for target {}", def.target_hostname),
    }
}

/// Builds the detail. `states` and `responses` are keyed by hostname.
pub fn detail(
    def: &JobDef,
    states: &BTreeMap<String, HostState>,
    responses: &BTreeMap<String, Response>,
    now_us: i64,
) -> JobDetail {
    let past = now_us > def.deadline_us();
    let hosts = hosts_of(def, states.keys().map(String::as_str));
    let deciding: Vec<&str> = if def.is_any_target() {
        let written = hosts
            .iter()
            .filter_map(|h| states.get(*h).map(|s| (*h, s.status, s.attempts)));
        crate::status::any_target_decider(written)
            .into_iter()
            .collect()
    } else {
        hosts.iter().copied().collect()
    };
    let status = job_status(
        def,
        deciding
            .iter()
            .map(|h| (*h, states.get(*h).map(|s| s.status))),
        now_us,
    );

    let mut worker_states = BTreeMap::new();
    let mut timeline = vec![Event {
        timestamp: def.created.clone(),
        event: event::SUBMITTED.into(),
        hostname: API_SOURCE.into(),
        message: submitted_message(def),
        error: None,
    }];
    for host in &hosts {
        match states.get(*host) {
            Some(s) => {
                worker_states.insert(
                    host.to_string(),
                    WorkerStateView {
                        status: s.status,
                        error: s.error.clone(),
                        duration: s.duration.clone(),
                        attempts: s.attempts,
                    },
                );
                timeline.extend(s.events.iter().cloned());
            }
            None if past => {
                worker_states.insert(
                    host.to_string(),
                    WorkerStateView {
                        status: HostStatus::Failed,
                        error: Some(NO_RESPONSE.into()),
                        duration: None,
                        attempts: 0,
                    },
                );
                timeline.push(Event {
                    timestamp: format_micros(def.deadline_us()),
                    event: event::FAILED.into(),
                    hostname: host.to_string(),
                    message: format!("no answer within {} ms", def.timeout_ms),
                    error: Some(NO_RESPONSE.into()),
                });
            }
            None => {}
        }
    }
    if hosts.is_empty() && past {
        timeline.push(Event {
            timestamp: format_micros(def.deadline_us()),
            event: event::FAILED.into(),
            hostname: API_SOURCE.into(),
            message: format!("no worker answered within {} ms", def.timeout_ms),
            error: Some(NO_RESPONSE.into()),
        });
    }
    // RFC 3339 strings of one format sort by time; the sort is stable, so same-instant events keep order.
    timeline.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));

    let responses: BTreeMap<String, ResponseView> = responses
        .iter()
        .map(|(host, r)| {
            (
                host.clone(),
                ResponseView {
                    status: r.status,
                    data: r.data.clone(),
                    error: r.error.clone(),
                    hostname: r.hostname.clone(),
                },
            )
        })
        .collect();

    let hostname = match worker_states.len() {
        0 => None,
        _ => worker_states
            .iter()
            .find(|(_, s)| s.status == HostStatus::Completed)
            .or_else(|| worker_states.iter().next())
            .map(|(h, _)| h.clone()),
    };
    let result = match responses.len() {
        1 => responses.values().next().map(|r| r.data.clone()),
        _ => None,
    };
    let error = job_error(status, &worker_states, hosts.is_empty() && past);
    let updated_at = timeline
        .last()
        .map(|e| e.timestamp.clone())
        .unwrap_or_else(|| def.created.clone());

    JobDetail {
        id: def.id.clone(),
        status,
        created: def.created.clone(),
        updated_at,
        operation: def.operation.clone(),
        target_hostname: def.target_hostname.clone(),
        expected_hosts: def.expected_hosts.clone(),
        hostname,
        result,
        error,
        retry_of: def.retry_of.clone(),
        submitted_by: def.submitted_by.clone(),
        responses,
        worker_states,
        timeline,
    }
}

/// One line naming what failed: the single host's error, or `host: error` for each failed host.
fn job_error(
    status: JobStatus,
    states: &BTreeMap<String, WorkerStateView>,
    nobody_answered: bool,
) -> Option<String> {
    if !matches!(status, JobStatus::Failed | JobStatus::PartialFailure) {
        return None;
    }
    if nobody_answered {
        return Some(NO_RESPONSE.into());
    }
    let failed: Vec<(&String, &WorkerStateView)> = states
        .iter()
        .filter(|(_, s)| s.status == HostStatus::Failed)
        .collect();
    match failed.as_slice() {
        [(_, only)] if states.len() == 1 => only.error.clone(),
        many => Some(
            many.iter()
                .map(|(h, s)| format!("{h}: {}", s.error.as_deref().unwrap_or("failed")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
