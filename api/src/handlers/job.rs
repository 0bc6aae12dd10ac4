//! `/job` endpoints: create, list, queue stats, workers, get (with `?wait=`), delete, retry.

use super::Reply;
use crate::ctx::{Ctx, Query};
use crate::error::ApiError;
use crate::store::Submission;
use osapi_common::duration::parse_duration;
use osapi_common::job::Operation;
use osapi_common::operation::OperationType;
use osapi_common::status::JobStatus;
use osapi_common::target::Target;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A job's default `timeout` (how long hosts have to answer).
const TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
const TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest `?wait=` a client may ask for.
pub const WAIT_MAX: Duration = Duration::from_secs(60);
const LIMIT_DEFAULT: usize = 10;
/// Most jobs one list page may hold (each is read from KV and serialized whole): past it a 400.
pub const LIMIT_MAX: usize = 1_000;

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

fn reject_unknown(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown field '{k}' in {what} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_target(v: Option<&Value>) -> Result<Target, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Target::Any),
        Some(Value::String(s)) => s.parse().map_err(ApiError::bad_request),
        Some(other) => Err(ApiError::bad_request(format!(
            "target_hostname must be a string, got {other}"
        ))),
    }
}

fn parse_timeout(v: Option<&Value>) -> Result<Duration, ApiError> {
    let d = match v {
        None | Some(Value::Null) => return Ok(TIMEOUT_DEFAULT),
        Some(Value::String(s)) => {
            parse_duration(s).map_err(|e| ApiError::bad_request(format!("timeout: {e}")))?
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) => Duration::from_secs(secs),
            None => {
                return Err(ApiError::bad_request(
                    "timeout: seconds must be a whole number",
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "timeout must be a duration like \"30s\", got {other}"
            )))
        }
    };
    if d < Duration::from_secs(1) || d > TIMEOUT_MAX {
        return Err(ApiError::bad_request("timeout must be between 1s and 24h"));
    }
    Ok(d)
}

fn parse_operation(v: Option<&Value>) -> Result<Operation, ApiError> {
    let op = match v {
        Some(Value::Object(op)) => op,
        None | Some(Value::Null) => return Err(ApiError::bad_request("operation is required")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "operation must be an object {{type, data}}, got {other}"
            )))
        }
    };
    reject_unknown(op, &["type", "data"], "operation")?;
    let op_type: OperationType = match op.get("type") {
        Some(Value::String(t)) => t.parse().map_err(ApiError::bad_request)?,
        None => return Err(ApiError::bad_request("operation.type is required")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "operation.type must be a string, got {other}"
            )))
        }
    };
    let data = match op.get("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(d)) => Value::Object(d.clone()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "operation.data must be an object, got {other}"
            )))
        }
    };
    Ok(Operation { op_type, data })
}

fn created_reply(c: crate::store::Created) -> Reply {
    let mut reply = Reply::json(
        201,
        json!({ "job_id": &c.id, "status": JobStatus::Pending, "revision": c.revision, "timestamp": c.timestamp }),
    );
    reply.job_id = Some(c.id);
    reply
}

/// `POST /job`. With `hold_until` (`?wait=` without an `Idempotency-Key`), the creation itself holds
/// until the job ends or that instant comes, sleeping once rather than for the acks and then for the
/// end (`Store::submit_and_wait`; within the waiter slots, as [`hold`]); [`created_waited`] then finds
/// it ended.
pub fn create(
    ctx: &Ctx,
    body: &[u8],
    submitted_by: &str,
    hold_until: Option<Instant>,
) -> Result<Reply, ApiError> {
    let map = parse_object(body)?;
    reject_unknown(&map, &["operation", "target_hostname", "timeout"], "job")?;
    let operation = parse_operation(map.get("operation"))?;
    check_data_size(&operation.data, ctx.max_job_data_bytes)?;
    let submission = Submission {
        operation,
        target: parse_target(map.get("target_hostname"))?,
        timeout_ms: parse_timeout(map.get("timeout"))?.as_millis() as u64,
        retry_of: None,
        submitted_by: submitted_by.to_string(),
    };
    submit(ctx, submission, hold_until)
}

/// Submits the job, holding it until `hold_until` when given and a waiter slot is free.
fn submit(
    ctx: &Ctx,
    submission: Submission,
    hold_until: Option<Instant>,
) -> Result<Reply, ApiError> {
    let held = hold_until.and_then(|until| Some((until, WaiterSlot::take(ctx)?)));
    let created = match held {
        Some((until, _slot)) => ctx.store.submit_and_wait(submission, until)?,
        None => ctx.store.submit(submission)?,
    };
    Ok(created_reply(created))
}

/// One of the `api.server.max_waiters` slots of requests held for a job; given back when dropped.
struct WaiterSlot<'a>(&'a AtomicUsize);

impl<'a> WaiterSlot<'a> {
    /// A slot, or `None` when all are taken (the request then answers without holding).
    fn take(ctx: &'a Ctx) -> Option<WaiterSlot<'a>> {
        let slot = WaiterSlot(&ctx.waiters);
        (slot.0.fetch_add(1, Ordering::SeqCst) < ctx.waiters_max).then_some(slot)
    }
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// 413 when `operation.data` (as JSON) is over `api.server.max_job_data_bytes`: what one job may make
/// the job bucket hold is capped apart from the body.
fn check_data_size(data: &Value, max: usize) -> Result<(), ApiError> {
    let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
    if size <= max {
        return Ok(());
    }
    let mut e = ApiError::too_large(max);
    e.error = format!("operation.data is {size} bytes, larger than the limit of {max} bytes");
    e.details = "see api.server.max_job_data_bytes".into();
    Err(e)
}

fn parse_count(q: &Query, name: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("{name} must be a non-negative integer, got '{v}'"))
        }),
    }
}

/// `GET /job?status=&limit=&offset=`.
pub fn list(ctx: &Ctx, q: &Query) -> Result<Reply, ApiError> {
    q.only(&["status", "limit", "offset"])?;
    let filter = match q.get("status") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(ApiError::bad_request)?),
    };
    let limit = parse_count(q, "limit", LIMIT_DEFAULT)?;
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {LIMIT_MAX} (the maximum), got {limit}; page with offset"
        )));
    }
    let offset = parse_count(q, "offset", 0)?;
    ctx.require_nats()?;
    ctx.store.see_own_writes();
    let (total, ids) = ctx.store.page(filter, offset, limit);
    #[derive(serde::Serialize)]
    struct Page<'a> {
        total_items: usize,
        items: Vec<osapi_common::view::JobDetail<'a>>,
    }
    let records = ctx.store.details(&ids)?;
    Reply::json_of(
        200,
        &Page {
            total_items: total,
            items: records.iter().map(|r| r.detail()).collect(),
        },
    )
}

/// `GET /job/status`.
pub fn stats(ctx: &Ctx) -> Result<Reply, ApiError> {
    let dlq = ctx.store.dlq_count()?;
    ctx.store.see_own_writes();
    let s = ctx.store.stats();
    let by_status: Map<String, Value> = s
        .by_status
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json!(v)))
        .collect();
    let by_op: Map<String, Value> = s
        .by_operation
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json!(v)))
        .collect();
    Ok(Reply::json(
        200,
        json!({ "total_jobs": s.total, "status_counts": by_status, "operation_counts": by_op, "dlq_count": dlq }),
    ))
}

/// `GET /job/workers`: encoded straight from the heartbeats (~1 KB a worker: with a thousand hosts
/// this is the largest answer the API gives).
pub fn workers(ctx: &Ctx) -> Result<Reply, ApiError> {
    use osapi_common::{conditions::Condition, drain};
    #[derive(serde::Serialize)]
    struct Listed<'a> {
        hostname: &'a str,
        labels: &'a std::collections::BTreeMap<String, String>,
        started_at: &'a str,
        last_seen: &'a str,
        max_jobs: usize,
        running: usize,
        operations: &'a [String],
        subscribed: bool,
        problem: &'a Option<String>,
        conditions: &'a [Condition],
        state: &'a drain::WorkerState,
        timeline: &'a [drain::DrainEvent],
    }
    #[derive(serde::Serialize)]
    struct Page<'a> {
        total: usize,
        workers: Vec<Listed<'a>>,
    }
    ctx.require_nats()?;
    let live = ctx.store.live_workers();
    let workers: Vec<Listed<'_>> = live
        .iter()
        .map(|w| Listed {
            hostname: &w.hostname,
            labels: &w.labels,
            started_at: &w.started_at,
            last_seen: &w.last_seen,
            max_jobs: w.max_jobs,
            running: w.running,
            operations: &w.operations,
            subscribed: w.subscribed,
            problem: &w.problem,
            conditions: &w.conditions,
            state: &w.state,
            timeline: &w.timeline,
        })
        .collect();
    Reply::json_of(
        200,
        &Page {
            total: workers.len(),
            workers,
        },
    )
}

/// Job ids are UUIDs; anything else is a 400 naming it.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad_request(format!("job id '{raw}' is not a UUID")))
}

/// `?wait=`: how long a request may hold its answer for the job to end (none without it; at most
/// [`WAIT_MAX`]).
pub fn parse_wait(q: &Query) -> Result<Duration, ApiError> {
    match q.get("wait") {
        None | Some("") => Ok(Duration::ZERO),
        Some(w) => Ok(parse_duration(w)
            .map_err(|e| ApiError::bad_request(format!("wait: {e}")))?
            .min(WAIT_MAX)),
    }
}

/// Holds the calling request until job `id` is terminal or `wait` has passed, woken by the index's
/// watch (no polling of NATS). Waiters are bounded: past `api.server.max_waiters`, no wait.
fn hold(ctx: &Ctx, id: &Uuid, wait: Duration) {
    let mut known = ctx.store.knows(id);
    if !known {
        // Perhaps created by this API a moment ago, its watch not there yet: read your own writes.
        ctx.store.see_own_writes();
        known = ctx.store.knows(id);
    }
    if !wait.is_zero() && known {
        if let Some(_slot) = WaiterSlot::take(ctx) {
            ctx.store.wait_terminal(id, Instant::now() + wait);
        }
    }
}

/// `GET /job/{id}?wait=30s`: with `wait`, holds the request until the job is terminal or time is up
/// ([`hold`]), then answers the job as it stands.
pub fn get(ctx: &Ctx, raw_id: &str, q: &Query) -> Result<Reply, ApiError> {
    let id = parse_id(raw_id)?;
    q.only(&["wait"])?;
    let wait = parse_wait(q)?;
    ctx.require_nats()?;
    hold(ctx, &id, wait);
    match ctx.store.details(&[id])?.pop() {
        Some(records) => Reply::json_of(200, &records.detail()),
        None => Err(ApiError::not_found(format!("job {id} not found"))),
    }
}

/// `POST /job?wait=30s` (and `POST /job/{id}/retry?wait=30s`): the creation's answer (`created`, a
/// 201, perhaps an idempotent replay), and with `wait` the job held for as `GET /job/{id}?wait=` holds
/// it: then the 201 carries the job's detail (its status as it stands, its result when it has one)
/// beside `job_id`, `revision` and `timestamp`. One request where a client would otherwise make two.
/// A job gone before it could be read (deleted at once) answers the creation as it was.
pub fn created_waited(
    ctx: &Ctx,
    created: Reply,
    wait: Duration,
    until: Instant,
) -> Result<Reply, ApiError> {
    if wait.is_zero() || created.status != 201 {
        return Ok(created);
    }
    let head: Created = match &created.body {
        super::Body::Json(v) => Created::deserialize(v),
        super::Body::JsonBytes(b) => serde_json::from_slice(b),
        _ => return Ok(created),
    }
    .map_err(|e| ApiError::unavailable(format!("reading the creation's answer: {e}")))?;
    let Ok(id) = Uuid::parse_str(&head.job_id) else {
        return Ok(created);
    };
    hold(ctx, &id, until.saturating_duration_since(Instant::now()));
    let Some(records) = ctx.store.details(&[id])?.pop() else {
        return Ok(created);
    };
    let mut reply = Reply::json_of(
        201,
        &Waited {
            job_id: &head.job_id,
            revision: head.revision,
            timestamp: &head.timestamp,
            detail: &records.detail(),
        },
    )?;
    reply.job_id = Some(head.job_id);
    Ok(reply)
}

/// What a `POST /job` answers (`created_reply`, or its idempotent replay).
#[derive(Deserialize)]
struct Created {
    job_id: String,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    timestamp: String,
}

/// `POST /job?wait=`'s answer: the creation's fields, then the job's detail (encoded straight from
/// its types, as `GET /job/{id}` encodes it).
#[derive(serde::Serialize)]
struct Waited<'a> {
    job_id: &'a str,
    revision: u64,
    timestamp: &'a str,
    #[serde(flatten)]
    detail: &'a osapi_common::view::JobDetail<'a>,
}

/// `DELETE /job/{id}`.
pub fn delete(ctx: &Ctx, raw_id: &str) -> Result<Reply, ApiError> {
    let id = parse_id(raw_id)?;
    if ctx.store.delete(&id)? {
        Ok(Reply::empty(204))
    } else {
        Err(ApiError::not_found(format!("job {id} not found")))
    }
}

/// `POST /job/{id}/retry`: a new job with the same operation; the original stays. The target is the
/// body's `target_hostname`, else the original job's target. `hold_until` as for [`create`].
pub fn retry(
    ctx: &Ctx,
    raw_id: &str,
    body: &[u8],
    submitted_by: &str,
    hold_until: Option<Instant>,
) -> Result<Reply, ApiError> {
    let id = parse_id(raw_id)?;
    let override_target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let map = parse_object(body)?;
        reject_unknown(&map, &["target_hostname"], "retry")?;
        map.get("target_hostname")
            .map(|v| parse_target(Some(v)))
            .transpose()?
    };
    let Some(original) = ctx.store.definition(&id)? else {
        return Err(ApiError::not_found(format!("job {id} not found")));
    };
    let target = match override_target {
        Some(t) => t,
        None => original
            .target_hostname
            .parse()
            .map_err(ApiError::bad_request)?,
    };
    let submission = Submission {
        operation: original.operation,
        target,
        timeout_ms: original.timeout_ms,
        retry_of: Some(original.id),
        submitted_by: submitted_by.to_string(),
    };
    submit(ctx, submission, hold_until)
}
