//! The records stored in KV: a job's immutable definition, one host's state of it, one host's response,
//! and a worker's heartbeat. Their JSON is the storage format shared by the API and the worker.

use crate::operation::OperationType;
use crate::status::HostStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What to run: the operation type and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    #[serde(rename = "type")]
    pub op_type: OperationType,
    #[serde(default = "empty_object")]
    pub data: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A job as submitted. Written once (`jobs.{id}`) before the notification is published; never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDef {
    pub id: String,
    pub operation: Operation,
    pub target_hostname: String,
    /// Live workers matching a broadcast target at submission; empty for `_any` and host targets.
    #[serde(default)]
    pub expected_hosts: Vec<String>,
    /// RFC 3339 submission time.
    pub created: String,
    /// Unix microseconds of `created`, kept so readers need not parse.
    pub created_us: i64,
    /// How long hosts have to answer before a silent one counts as `no response`.
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Who submitted it: the `sub` of the API token ("" for jobs from before this field, or `--no-auth`).
    #[serde(default)]
    pub submitted_by: String,
    /// The API's Ed25519 signature over every field above (`trust::canonical_bytes`); workers verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<JobSignature>,
}

/// A job's signature: which key made it (its public key in base64) and the 64 signature bytes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSignature {
    pub key_id: String,
    pub sig: String,
}

impl JobDef {
    /// Whether the job went to exactly one worker of the shared consumer (`_any`).
    pub fn is_any_target(&self) -> bool {
        self.target_hostname.parse::<crate::target::Target>() == Ok(crate::target::Target::Any)
    }

    /// The workers' copy of a broadcast (`run.{id}`): the same job without `expected_hosts` and unsigned
    /// (the API signs it as `trust::Form::Run`). A host reads it instead of the whole record, which lists
    /// every expected host and so grows with the fleet.
    pub fn run_copy(&self) -> JobDef {
        JobDef {
            expected_hosts: Vec::new(),
            signature: None,
            ..self.clone()
        }
    }

    /// Unix microseconds after which a host that never answered counts as failed.
    pub fn deadline_us(&self) -> i64 {
        let timeout_us = i64::try_from(self.timeout_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.created_us.saturating_add(timeout_us)
    }

    /// The job's timing for the status rule, given the hosts' grace.
    pub fn timing(&self, grace: crate::status::Grace) -> crate::status::Timing {
        crate::status::Timing {
            deadline_us: self.deadline_us(),
            grace,
            cancelled: false,
        }
    }
}

/// Lifecycle event names as they appear in `timeline`.
pub mod event {
    pub const SUBMITTED: &str = "submitted";
    pub const ACKNOWLEDGED: &str = "acknowledged";
    pub const STARTED: &str = "started";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const RETRIED: &str = "retried";
    pub const CANCELLED: &str = "cancelled";
}

/// A cancel request (`cancel.{id}` in the job bucket), written once by `POST /job/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRecord {
    /// Who cancelled (the token's `sub`; empty without auth).
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub at_us: i64,
}

/// One entry of a job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: String,
    pub event: String,
    pub hostname: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's state of one job (`state.{id}.{host}`), rewritten by that host's worker at each transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    pub hostname: String,
    pub status: HostStatus,
    /// Delivery attempts so far (1 on the first).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Run time of the last attempt, e.g. `1.002s`, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    pub events: Vec<Event>,
    /// When the worker wrote this record (Unix µs): how long a `running`/`retryable` host has been silent
    /// (`status::Grace`). 0 in records written before the field existed.
    #[serde(default)]
    pub updated_us: i64,
    /// The host's answer, in its final record (`completed`, `failed`, `cancelled` after it started): one
    /// write carries both, so a reader that sees the host finished has its answer. Workers before this
    /// field wrote the answer on its own, to the response bucket, before the final state; readers take
    /// either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

/// What the index keeps of a host's state record: its fields for the status rule, read without
/// building the events or the answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct HostStateHead {
    pub status: HostStatus,
    pub attempts: u32,
    #[serde(default)]
    pub updated_us: i64,
}

impl HostState {
    /// What the status rule needs of this record.
    pub fn record<'a>(&self, host: &'a str) -> crate::status::HostRecord<'a> {
        crate::status::HostRecord {
            host,
            status: self.status,
            attempts: self.attempts,
            updated_us: self.updated_us,
        }
    }
}

/// One host's answer (`{id}.{host}` in the response bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: HostStatus,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub hostname: String,
}

/// A worker's heartbeat (`workers.{host}`), rewritten every `heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub hostname: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub started_at: String,
    pub last_seen: String,
    pub last_seen_us: i64,
    pub heartbeat_ms: u64,
    pub max_jobs: usize,
    pub running: usize,
    #[serde(default)]
    pub operations: Vec<String>,
    /// Node conditions (`MemoryPressure`, `HighLoad`, `DiskPressure`) as of this beat.
    #[serde(default)]
    pub conditions: Vec<crate::conditions::Condition>,
    /// `ready`, `draining` or `cordoned` (`common::drain::state`).
    #[serde(default)]
    pub state: crate::drain::WorkerState,
    /// The worker's drain timeline (drain, cordoned, undrain, with who), newest last.
    #[serde(default)]
    pub timeline: Vec<crate::drain::DrainEvent>,
    /// False while a consumer the worker needs does not exist: some jobs for it could not reach it, so
    /// routing leaves it out. Heartbeats of workers older than this field count as subscribed.
    #[serde(default = "subscribed_by_default")]
    pub subscribed: bool,
    /// Why the worker is not subscribed (the consumer and NATS's answer), for `/job/workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn subscribed_by_default() -> bool {
    true
}

impl WorkerInfo {
    /// Live and subscribed to every subject it serves: the API may count on it for `_all`, labels and
    /// `expected_hosts`.
    pub fn is_routable(&self, now_us: i64) -> bool {
        self.subscribed && self.is_live(now_us)
    }

    /// Missing three heartbeats in a row means the worker is gone.
    pub fn is_live(&self, now_us: i64) -> bool {
        let grace_us = i64::try_from(self.heartbeat_ms.saturating_mul(3000)).unwrap_or(i64::MAX);
        now_us.saturating_sub(self.last_seen_us) <= grace_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_def_round_trips_and_deadline() {
        let raw = r#"{"id":"x","operation":{"type":"test.echo.do","data":{"a":1}},"target_hostname":"_all",
            "expected_hosts":["a"],"created":"1970-01-01T00:00:01Z","created_us":1000000,"timeout_ms":2000}"#;
        let def: JobDef = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(def.operation.op_type, OperationType::TestEchoDo);
        assert_eq!(def.deadline_us(), 3_000_000);
        let again: JobDef = serde_json::to_string(&def)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| panic!("round trip"));
        assert_eq!(again, def);
    }

    #[test]
    fn liveness() {
        let w = WorkerInfo {
            hostname: "h".into(),
            labels: BTreeMap::new(),
            started_at: String::new(),
            last_seen: String::new(),
            last_seen_us: 1_000_000,
            heartbeat_ms: 500,
            max_jobs: 1,
            running: 0,
            operations: vec![],
            conditions: vec![],
            state: Default::default(),
            timeline: vec![],
            subscribed: true,
            problem: None,
        };
        assert!(w.is_live(2_500_000));
        assert!(!w.is_live(2_500_001));
        assert!(w.is_routable(2_500_000));
        let unsubscribed = WorkerInfo {
            subscribed: false,
            problem: Some("consumer x: limit".into()),
            ..w.clone()
        };
        assert!(unsubscribed.is_live(2_500_000));
        assert!(!unsubscribed.is_routable(2_500_000));
    }

    #[test]
    fn heartbeat_without_subscription_fields_counts_as_subscribed() {
        let old = r#"{"hostname":"h","started_at":"","last_seen":"","last_seen_us":1,"heartbeat_ms":500,
            "max_jobs":1,"running":0}"#;
        let w: WorkerInfo = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert!(w.subscribed);
        assert_eq!(w.problem, None);
        let text = serde_json::to_string(&w).unwrap_or_default();
        assert!(!text.contains("problem"), "{text}");
    }
}
