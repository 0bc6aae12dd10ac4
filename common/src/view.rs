//! What a client sees of a job: the job detail assembled from its definition, its hosts' states and
//! responses, and the clock. Pure: the API reads the records, this decides status, errors and timeline.

use crate::job::{event, CancelRecord, Event, HostState, JobDef, Operation, Response};
use crate::status::{
    concerned_hosts, job_status, Grace, HostRecord, HostStatus, JobStatus, Timing, Verdict,
    NO_RESPONSE,
};
use crate::timefmt::format_micros;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The source name of events the API writes.
pub const API_SOURCE: &str = "api";

/// One host's state as shown in `worker_states`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStateView<'a> {
    pub status: HostStatus,
    pub error: Option<&'a str>,
    pub duration: Option<&'a str>,
    pub attempts: u32,
}

/// One host's answer as shown in `responses`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseView<'a> {
    pub status: HostStatus,
    pub data: &'a Value,
    pub error: Option<&'a str>,
    pub hostname: &'a str,
}

/// `GET /job/{id}`: OSAPI's JobDetailResponse plus `target_hostname`, `expected_hosts`, `retry_of`,
/// `submitted_by`. It borrows what it shows from the records it is built from (a detail is built for
/// every `GET` and serialized at once: copying the records' text into it was most of its cost), and
/// owns only what the clock and the rules add (the status, the errors and events they decide).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail<'a> {
    pub id: &'a str,
    pub status: JobStatus,
    pub created: &'a str,
    pub updated_at: Cow<'a, str>,
    pub operation: &'a Operation,
    pub target_hostname: &'a str,
    pub expected_hosts: &'a [String],
    pub hostname: Option<&'a str>,
    pub result: Option<&'a Value>,
    pub error: Option<Cow<'a, str>>,
    pub retry_of: Option<&'a str>,
    /// The `sub` of the token that submitted the job.
    pub submitted_by: &'a str,
    pub responses: BTreeMap<&'a str, ResponseView<'a>>,
    pub worker_states: BTreeMap<&'a str, WorkerStateView<'a>>,
    pub timeline: Vec<Cow<'a, Event>>,
}

/// The `submitted` event's message, naming the user when there is one.
fn submitted_message(def: &JobDef) -> String {
    match def.submitted_by.as_str() {
        "" => format!("job submitted for target {}", def.target_hostname),
        user => format!("job submitted by {user} for target {}", def.target_hostname),
    }
}

/// Builds the detail. `states` and `responses` are keyed by hostname; `grace` is the hosts' grace
/// (`status::Grace`). The status comes from `status::job_status`, the rule the API's index uses too.
pub fn detail<'a>(
    def: &'a JobDef,
    states: &'a BTreeMap<String, HostState>,
    responses: &'a BTreeMap<String, Response>,
    grace: Grace,
    now_us: i64,
) -> JobDetail<'a> {
    detail_with_cancel(def, states, responses, None, grace, now_us)
}

/// [`detail`] of a job that may have been cancelled (`cancel`: its `cancel.{id}` record): hosts that
/// had not started it count as cancelled, and the timeline records who cancelled it.
pub fn detail_with_cancel<'a>(
    def: &'a JobDef,
    states: &'a BTreeMap<String, HostState>,
    responses: &'a BTreeMap<String, Response>,
    cancel: Option<&'a CancelRecord>,
    grace: Grace,
    now_us: i64,
) -> JobDetail<'a> {
    let timing = Timing {
        cancelled: cancel.is_some(),
        ..def.timing(grace)
    };
    let expected: Vec<&str> = def.expected_hosts.iter().map(String::as_str).collect();
    let records: Vec<HostRecord<'_>> = states.iter().map(|(h, s)| s.record(h)).collect();
    let status = job_status(def.is_any_target(), &expected, &records, &timing, now_us);
    // Every host shown: expected ones and those that wrote a state (for `_any`, the ones that lost the
    // race are shown too; only the decider counts for the status).
    let shown = concerned_hosts(false, &expected, &records);
    let worker_states = worker_states(&shown, states, &timing, now_us);
    let mut timeline = timeline(def, &shown, states, &timing, now_us);
    if let Some(c) = cancel {
        let by = if c.by.is_empty() { "anonymous" } else { &c.by };
        timeline.push(Cow::Owned(Event {
            timestamp: c.at.clone(),
            event: event::CANCELLED.into(),
            hostname: API_SOURCE.into(),
            message: format!("cancelled by {by}"),
            error: None,
        }));
        timeline.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    }
    let responses: BTreeMap<&str, ResponseView<'_>> = responses
        .iter()
        .map(|(host, r)| (host.as_str(), response_view(r)))
        .collect();
    let hostname = worker_states
        .iter()
        .find(|(_, s)| s.status == HostStatus::Completed)
        .or_else(|| worker_states.iter().next())
        .map(|(h, _)| *h);
    let result = match responses.len() {
        1 => responses.values().next().map(|r| r.data),
        _ => None,
    };
    let nobody_answered = shown.is_empty() && now_us > timing.deadline_us && cancel.is_none();
    let error = job_error(status, &worker_states, nobody_answered);
    let updated_at = match timeline.last() {
        Some(Cow::Borrowed(e)) => Cow::Borrowed(e.timestamp.as_str()),
        Some(Cow::Owned(e)) => Cow::Owned(e.timestamp.clone()),
        None => Cow::Borrowed(def.created.as_str()),
    };
    JobDetail {
        id: &def.id,
        status,
        created: &def.created,
        updated_at,
        operation: &def.operation,
        target_hostname: &def.target_hostname,
        expected_hosts: &def.expected_hosts,
        hostname,
        result,
        error,
        retry_of: def.retry_of.as_deref(),
        submitted_by: &def.submitted_by,
        responses,
        worker_states,
        timeline,
    }
}

/// `worker_states`: each shown host's own record, with the verdict the clock gives it (a host silent
/// past the deadline is `failed: no response`, one stuck past its grace `failed: worker lost`).
fn worker_states<'a>(
    shown: &[(&'a str, Option<&HostRecord<'_>>)],
    states: &'a BTreeMap<String, HostState>,
    timing: &Timing,
    now_us: i64,
) -> BTreeMap<&'a str, WorkerStateView<'a>> {
    let mut out = BTreeMap::new();
    for (host, record) in shown {
        let verdict = timing.verdict(*record, now_us);
        let own = states.get(*host);
        if own.is_none() && verdict == Verdict::Own(HostStatus::Pending) {
            continue;
        }
        out.insert(
            *host,
            WorkerStateView {
                status: verdict.status(),
                error: verdict
                    .error()
                    .or_else(|| own.and_then(|s| s.error.as_deref())),
                duration: own.and_then(|s| s.duration.as_deref()),
                attempts: own.map_or(0, |s| s.attempts),
            },
        );
    }
    out
}

/// The submission, every host's events, and the failures the clock decided, oldest first.
fn timeline<'a>(
    def: &JobDef,
    shown: &[(&str, Option<&HostRecord<'_>>)],
    states: &'a BTreeMap<String, HostState>,
    timing: &Timing,
    now_us: i64,
) -> Vec<Cow<'a, Event>> {
    let mut timeline = vec![Cow::Owned(Event {
        timestamp: def.created.clone(),
        event: event::SUBMITTED.into(),
        hostname: API_SOURCE.into(),
        message: submitted_message(def),
        error: None,
    })];
    for (host, record) in shown {
        if let Some(s) = states.get(*host) {
            timeline.extend(s.events.iter().map(Cow::Borrowed));
        }
        let verdict = timing.verdict(*record, now_us);
        let (at_us, message) = match (verdict, record) {
            (Verdict::NoResponse, _) => (
                timing.deadline_us,
                format!("no answer within {} ms", def.timeout_ms),
            ),
            (Verdict::Lost, Some(r)) => (
                timing.deadline_us.max(r.updated_us),
                format!(
                    "no news while {}: the worker is gone",
                    status_word(r.status)
                ),
            ),
            _ => continue,
        };
        timeline.push(Cow::Owned(Event {
            timestamp: format_micros(at_us),
            event: event::FAILED.into(),
            hostname: host.to_string(),
            message,
            error: verdict.error().map(String::from),
        }));
    }
    if shown.is_empty() && now_us > timing.deadline_us && !timing.cancelled {
        timeline.push(Cow::Owned(Event {
            timestamp: format_micros(timing.deadline_us),
            event: event::FAILED.into(),
            hostname: API_SOURCE.into(),
            message: format!("no worker answered within {} ms", def.timeout_ms),
            error: Some(NO_RESPONSE.into()),
        }));
    }
    // RFC 3339 strings of one format sort by time; the sort is stable, so same-instant events keep order.
    timeline.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    timeline
}

fn status_word(s: HostStatus) -> &'static str {
    match s {
        HostStatus::Retryable => "waiting to retry",
        _ => "running",
    }
}

fn response_view(r: &Response) -> ResponseView<'_> {
    ResponseView {
        status: r.status,
        data: &r.data,
        error: r.error.as_deref(),
        hostname: &r.hostname,
    }
}

/// One line naming what failed: the single host's error, or `host: error` for each failed host.
fn job_error<'a>(
    status: JobStatus,
    states: &BTreeMap<&'a str, WorkerStateView<'a>>,
    nobody_answered: bool,
) -> Option<Cow<'a, str>> {
    if !matches!(status, JobStatus::Failed | JobStatus::PartialFailure) {
        return None;
    }
    if nobody_answered {
        return Some(Cow::Borrowed(NO_RESPONSE));
    }
    let failed: Vec<(&&str, &WorkerStateView<'a>)> = states
        .iter()
        .filter(|(_, s)| s.status == HostStatus::Failed)
        .collect();
    match failed.as_slice() {
        [(_, only)] if states.len() == 1 => only.error.map(Cow::Borrowed),
        many => Some(Cow::Owned(
            many.iter()
                .map(|(h, s)| format!("{h}: {}", s.error.unwrap_or("failed")))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
